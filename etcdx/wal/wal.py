"""The write-ahead log: raft's entries and hard state, durable before anything depends on them."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass

from etcdx.raft.types import Entry, HardState
from etcdx.wal import codec, record
from etcdx.wal.errors import CorruptWALError
from etcdx.wal.record import HEADER_SIZE, Record, RecordType
from etcdx.wal.replay import GapError, Replay, WalState
from etcdx.wal.segment import (
    SegmentName,
    create_segment,
    fsync_dir,
    list_segments,
    lock_dir,
    preallocate,
    remove_partial,
    write_all,
)

log = logging.getLogger("etcdx.wal")

DEFAULT_SEGMENT_SIZE = 64 << 20


class WAL:
    """An append-only log in segment files, opened for appending by one member.

    Every ``save`` is one record written with one ``pwrite`` and made durable
    with one ``fdatasync`` (group commit: the host batches a whole Ready into
    one call). A crash can therefore tear only the last record, which ``open``
    trims; any other damage is a CorruptWALError.

    Not thread-safe: one caller at a time. After an OSError from a write or a
    sync the on-disk state is unknown (the kernel may have dropped the dirty
    pages), so the WAL refuses further writes and the member must restart.
    """

    def __init__(
        self,
        dirpath: str,
        segment_size: int,
        lock: int,
        wal_id: int,
        metadata: bytes,
        segments: list[SegmentName],
        fd: int,
        offset: int,
        crc: int,
        head_end: int,
        hard_state: HardState,
        snapshot: tuple[int, int],
        last_index: int,
    ) -> None:
        self._dir = dirpath
        self._segment_size = segment_size
        self._lock = lock  # an fd holding the directory's flock while this object may write
        self._wal_id = wal_id
        self._metadata = metadata
        self._segments = segments
        self._fd = fd
        self._offset = offset
        self._crc = crc
        self._salt = record.salt_for(wal_id, segments[-1].seq)
        self._head_end = head_end  # a segment holding only its head is never rolled
        self._hard_state = hard_state
        self._snapshot = snapshot
        self._last_index = last_index
        self._failed: OSError | None = None
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------

    @staticmethod
    def exists(dirpath: str) -> bool:
        return os.path.isdir(dirpath) and bool(list_segments(dirpath))

    @classmethod
    def create(cls, dirpath: str, metadata: bytes, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> WAL:
        """Create a WAL holding only ``metadata`` (e.g. the encoded member and cluster ids).

        The directory appears complete or not at all: it is built as
        ``<dirpath>.tmp`` and renamed. ``dirpath`` must not hold a WAL already.
        """
        dirpath = os.path.abspath(dirpath)
        if cls.exists(dirpath):
            raise FileExistsError(f"a WAL already exists in {dirpath}")
        parent = os.path.dirname(dirpath)
        os.makedirs(parent, exist_ok=True)
        tmp = dirpath + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.mkdir(tmp)
        name = SegmentName(0, 0)
        wal_id = int.from_bytes(os.urandom(8), "little")
        head, crc = _segment_head(wal_id, name.seq, 0, metadata, (0, 0), HardState())
        os.close(create_segment(tmp, name, head, segment_size))
        if os.path.isdir(dirpath):
            os.rmdir(dirpath)  # an empty directory the host made; rename cannot replace it otherwise
        os.rename(tmp, dirpath)
        fsync_dir(parent)
        lock = lock_dir(dirpath)
        fd = os.open(os.path.join(dirpath, name.filename), os.O_RDWR)
        end = len(head)
        return cls(
            dirpath, segment_size, lock, wal_id, metadata, [name], fd, end, crc, end, HardState(), (0, 0), 0
        )

    @classmethod
    def open(cls, dirpath: str, *, segment_size: int = DEFAULT_SEGMENT_SIZE) -> tuple[WAL, WalState]:
        """Read the whole WAL, trim a torn tail, and position for appending.

        Raises CorruptWALError for damage a crash cannot explain,
        FileNotFoundError when there is no WAL in ``dirpath`` and WALLockedError
        while another WAL object has it open.
        """
        dirpath = os.path.abspath(dirpath)
        lock = lock_dir(dirpath)
        try:
            return cls._open_locked(dirpath, segment_size, lock)
        except BaseException:
            os.close(lock)
            raise

    @classmethod
    def _open_locked(cls, dirpath: str, segment_size: int, lock: int) -> tuple[WAL, WalState]:
        remove_partial(dirpath)
        names = list_segments(dirpath)
        if not names:
            raise FileNotFoundError(f"no WAL segments in {dirpath}")
        for before, after in zip(names, names[1:]):
            if after.seq != before.seq + 1:
                raise CorruptWALError(
                    os.path.join(dirpath, after.filename), 0, 0, f"segment {before.seq + 1:016x} is missing"
                )
        replay = Replay()
        crc: int | None = None
        for i, name in enumerate(names):
            path = os.path.join(dirpath, name.filename)
            read = _read_segment(path, name.seq, crc, replay, last=i == len(names) - 1)
            crc = read.crc
        try:
            state = replay.state()
        except GapError as exc:
            raise CorruptWALError(path, read.end, 0, str(exc)) from exc
        fd = os.open(path, os.O_RDWR)
        try:
            _trim_tail(fd, path, read.end, read.content_end, segment_size)
        except BaseException:
            os.close(fd)
            raise
        wal = cls(
            dirpath,
            segment_size,
            lock,
            replay.wal_id,
            state.metadata,
            names,
            fd,
            read.end,
            read.crc,
            read.head_end,
            state.hard_state,
            (state.snapshot_index, state.snapshot_term),
            replay.last_index,
        )
        return wal, state

    def close(self) -> None:
        """Sync what ``save(sync=False)`` left in the page cache, then release the file."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._failed is None:
                os.fdatasync(self._fd)
        finally:
            os.close(self._fd)
            os.close(self._lock)

    # -- writing -------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: list[Entry], *, sync: bool = True) -> None:
        """Append one Ready's entries and hard state as one record; durable on return if ``sync``.

        Entries must be contiguous and start at most one past the last index
        saved (or snapshotted). They may start at or below an index already
        saved: that is raft truncating its uncommitted tail, and on replay the
        later entry wins.
        ``sync=False`` is for tests and benchmarks only: it breaks "acknowledged
        means durable".
        """
        if hard_state is not None and hard_state.is_empty():
            hard_state = None
        if hard_state is None and not entries:
            return
        if entries and (
            entries[0].index > self._last_index + 1 or entries[-1].index - entries[0].index != len(entries) - 1
        ):
            # Caught here rather than as a gap that stops the member at its next boot.
            raise ValueError(
                f"entries {entries[0].index}..{entries[-1].index} ({len(entries)}) do not continue"
                f" the log at {self._last_index}"
            )
        payload = codec.encode_batch(hard_state, entries)
        first = min(entries[0].index, self._last_index + 1) if entries else self._last_index + 1
        self._append(RecordType.BATCH, payload, first, sync)
        if hard_state is not None:
            self._hard_state = hard_state
        if entries:
            self._last_index = entries[-1].index

    def save_snapshot(self, index: int, term: int) -> None:
        """Record durably that the state up to and including ``index`` is in a snapshot.

        Call it after the snapshot itself is durable: on open, WalState's entries
        start after the last marker.
        """
        self._append(RecordType.SNAPSHOT, codec.encode_snapshot(index, term), self._last_index + 1, True)
        self._snapshot = (index, term)
        self._last_index = max(self._last_index, index)

    def release_to(self, index: int) -> None:
        """Delete the segments that hold only entries below ``index``.

        The segment that may hold ``index`` and all later ones are kept. Call it
        once the backend is durable up to ``index``. ``index`` is capped at the
        last snapshot marker: entries after it are the only copy of the log
        tail, and losing them would leave a WAL that cannot be opened.
        """
        index = min(index, self._snapshot[0])
        keep = 0
        for i, name in enumerate(self._segments):
            if name.first_index <= index:
                keep = i
        if keep == 0:
            return
        for _ in range(keep):
            # Oldest first, each durable before the next: a crash must never leave
            # a hole in the sequence, which open() would take for a lost segment.
            os.unlink(os.path.join(self._dir, self._segments[0].filename))
            fsync_dir(self._dir)
            del self._segments[0]

    # -- internals -----------------------------------------------------------------

    def _append(self, rtype: RecordType, payload: bytes, first_index: int, sync: bool) -> None:
        if self._closed:
            raise ValueError("WAL is closed")
        if self._failed is not None:
            raise OSError(f"WAL unusable after an earlier I/O error: {self._failed}") from self._failed
        try:
            full = self._offset + HEADER_SIZE + len(payload) > self._segment_size
            if full and self._offset > self._head_end:
                self._roll(first_index)
            header, crc = record.encode(rtype, payload, self._salt, self._crc)
            write_all(self._fd, header + payload, self._offset)
            if sync:
                os.fdatasync(self._fd)
        except OSError as exc:
            self._failed = exc
            raise
        self._offset += HEADER_SIZE + len(payload)
        self._crc = crc

    def _roll(self, first_index: int) -> None:
        """Seal the current segment at its written length and continue in a new one."""
        os.ftruncate(self._fd, self._offset)  # drop the preallocated tail: only the last segment has one
        os.fsync(self._fd)
        name = SegmentName(self._segments[-1].seq + 1, first_index)
        head, crc = _segment_head(
            self._wal_id, name.seq, self._crc, self._metadata, self._snapshot, self._hard_state
        )
        fd = create_segment(self._dir, name, head, self._segment_size)
        os.close(self._fd)
        self._fd = fd
        self._segments.append(name)
        self._salt = record.salt_for(self._wal_id, name.seq)
        self._offset = self._head_end = len(head)
        self._crc = crc


def _segment_head(
    wal_id: int, seq: int, crc: int, metadata: bytes, snapshot: tuple[int, int], hard_state: HardState
) -> tuple[bytes, int]:
    """The records every segment starts with, so it stands alone once older ones are released."""
    salt = record.salt_for(wal_id, seq)
    records = [
        (RecordType.METADATA, codec.encode_metadata(wal_id, metadata)),
        (RecordType.SNAPSHOT, codec.encode_snapshot(*snapshot)),
    ]
    if not hard_state.is_empty():
        records.append((RecordType.BATCH, codec.encode_batch(hard_state, [])))
    parts = []
    for rtype, payload in records:
        header, crc = record.encode(rtype, payload, salt, crc)
        parts += (header, payload)
    return b"".join(parts), crc


@dataclass(slots=True)
class _SegmentRead:
    end: int  # offset after the last valid record
    crc: int  # crc of that record: the next one chains from it
    content_end: int  # where the trailing zeros begin; past ``end`` only after a torn write
    head_end: int  # offset after the metadata and snapshot records every segment starts with


def _read_segment(path: str, seq: int, prev: int | None, replay: Replay, *, last: bool) -> _SegmentRead:
    """Replay one segment's records and report where they end.

    ``prev`` is the crc the first record must chain from (None for the oldest
    segment kept, whose predecessor was released).
    """
    with open(path, "rb") as f:
        data = f.read()
    view = memoryview(data)
    salt = record.salt_for(codec.peek_wal_id(view[HEADER_SIZE:]), seq)
    offset = 0
    number = 0
    while True:
        rec = record.read_at(view, salt, offset)
        if isinstance(rec, Record) and prev is not None and rec.prev != prev:
            reason = "crc chain broken: a record or segment is missing or out of order"
            raise CorruptWALError(path, offset, number, reason)
        if not isinstance(rec, Record):
            break
        if number == 0 and rec.type != RecordType.METADATA:
            raise CorruptWALError(path, offset, number, "segment does not start with metadata")
        try:
            _apply(rec, replay)
        except ValueError as exc:  # PayloadError, or metadata that changed
            raise CorruptWALError(path, offset, number, str(exc)) from exc
        prev = rec.crc
        offset = rec.offset + HEADER_SIZE + len(rec.payload)
        number += 1
        if number == 2:
            head_end = offset
    if number < 2:
        raise CorruptWALError(path, offset, number, f"segment lacks its leading records ({rec})")
    assert prev is not None
    content_end = len(data.rstrip(b"\x00"))
    result = _SegmentRead(offset, prev, content_end, head_end)
    if content_end <= offset:
        return result  # clean end, or the zeros of preallocation
    if not last:
        raise CorruptWALError(path, offset, number, f"{rec} in a segment that is not the last")
    chain = record.possible_crcs(view, salt, offset, prev)
    after = record.find_valid(view, salt, offset + 1, content_end, chain)
    if after is not None:
        raise CorruptWALError(path, offset, number, f"{rec}, yet a valid record follows at offset {after}")
    return result


def _apply(rec: Record, replay: Replay) -> None:
    if rec.type == RecordType.METADATA:
        wal_id, metadata = codec.decode_metadata(rec.payload)
        if replay.metadata is None:
            replay.wal_id, replay.metadata = wal_id, metadata
        elif replay.wal_id != wal_id:
            raise ValueError("segment belongs to another WAL")
        elif replay.metadata != metadata:
            raise ValueError("metadata differs from the first segment's")
    elif rec.type == RecordType.SNAPSHOT:
        replay.snapshot(*codec.decode_snapshot(rec.payload))
    else:
        replay.batch(*codec.decode_batch(rec.payload))


def _trim_tail(fd: int, path: str, end: int, content_end: int, segment_size: int) -> None:
    """Cut a torn last write off the last segment and restore its preallocation."""
    if content_end > end:
        log.warning("WAL %s: trimming %d bytes of a torn write at offset %d", path, content_end - end, end)
        os.ftruncate(fd, end)
        os.fsync(fd)
    preallocate(fd, segment_size)
