"""Where the raft core reads the stable log, and an in-memory implementation.

The core reads from ``Storage`` but never writes to it: the host persists what
each ``Ready`` hands out and then calls ``advance``.
"""

from __future__ import annotations

from typing import Protocol

from etcdx.raft.errors import CompactedError, SnapOutOfDateError, UnavailableError
from etcdx.raft.types import ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata


class Storage(Protocol):
    """Read access to the persisted log, hard state and latest snapshot."""

    def initial_state(self) -> tuple[HardState, ConfState]: ...

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in ``[lo, hi)``, at least one if any, at most ``max_size`` bytes of data."""
        ...

    def term(self, i: int) -> int: ...

    def last_index(self) -> int: ...

    def first_index(self) -> int: ...

    def snapshot(self) -> Snapshot: ...


def limit_size(ents: list[Entry], max_size: int | None) -> list[Entry]:
    """The longest prefix of ``ents`` within ``max_size`` bytes of data, never empty."""
    if max_size is None or len(ents) <= 1:
        return ents
    size = len(ents[0].data)
    for i in range(1, len(ents)):
        size += len(ents[i].data)
        if size > max_size:
            return ents[:i]
    return ents


# An entry as MemoryStorage keeps it: (term, index, type, data). A plain tuple of ints and bytes
# is untracked by Python's cycle collector after its first collection, so a log of --snapshot-count
# entries costs a full collection nothing; kept as Entry objects, 100k of them made every full
# collection a 20-50 ms pause of the loop (measured at 256 clients).
Packed = tuple[int, int, int, bytes]
_TYPES = {t.value: t for t in EntryType}


def _pack(e: Entry) -> Packed:
    return (e.term, e.index, int(e.type), e.data)


def _unpack(p: Packed) -> Entry:
    return Entry(p[0], p[1], _TYPES[p[2]], p[3])


class MemoryStorage:
    """A ``Storage`` kept in a Python list; the WAL-less choice for tests and the simulator.

    ``_ents[0]`` is a dummy entry carrying the index and term of the latest
    snapshot (or of compaction), so term lookups at the compaction point work.
    Entries are kept packed (see ``Packed``); ``entries`` hands out new ``Entry`` objects.
    """

    def __init__(self) -> None:
        self._hard_state = HardState()
        self._snapshot = Snapshot()
        self._ents: list[Packed] = [(0, 0, 0, b"")]

    def initial_state(self) -> tuple[HardState, ConfState]:
        return self._hard_state, self._snapshot.metadata.conf_state

    def set_hard_state(self, hs: HardState) -> None:
        self._hard_state = HardState(hs.term, hs.vote, hs.commit)

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        offset = self._ents[0][1]
        if lo <= offset:
            raise CompactedError(f"index {lo} is compacted (first is {offset + 1})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"entries [{lo}, {hi}) beyond last index {self.last_index()}")
        packed = self._ents[lo - offset : hi - offset]
        if max_size is not None and len(packed) > 1:  # limit_size's rule, before unpacking
            size = len(packed[0][3])
            for i in range(1, len(packed)):
                size += len(packed[i][3])
                if size > max_size:
                    packed = packed[:i]
                    break
        return [_unpack(p) for p in packed]

    def term(self, i: int) -> int:
        offset = self._ents[0][1]
        if i < offset:
            raise CompactedError(f"index {i} is compacted")
        if i - offset >= len(self._ents):
            raise UnavailableError(f"index {i} beyond last index {self.last_index()}")
        return self._ents[i - offset][0]

    def last_index(self) -> int:
        return self._ents[0][1] + len(self._ents) - 1

    def first_index(self) -> int:
        return self._ents[0][1] + 1

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def apply_snapshot(self, snap: Snapshot) -> None:
        """Replace the whole log by ``snap``; raises SnapOutOfDateError if it is not newer."""
        if snap.metadata.index <= self._snapshot.metadata.index:
            raise SnapOutOfDateError(
                f"snapshot at {snap.metadata.index} is not newer than {self._snapshot.metadata.index}"
            )
        self._snapshot = snap
        self._ents = [(snap.metadata.term, snap.metadata.index, 0, b"")]

    def create_snapshot(self, index: int, cs: ConfState | None, data: bytes) -> Snapshot:
        """Record a snapshot of the applied state at ``index``; ``cs`` None keeps the last one."""
        if index <= self._snapshot.metadata.index:
            raise SnapOutOfDateError(f"snapshot at {index} is not newer than {self._snapshot.metadata.index}")
        if index > self.last_index():
            raise UnavailableError(f"snapshot index {index} beyond last index {self.last_index()}")
        conf_state = cs if cs is not None else self._snapshot.metadata.conf_state
        self._snapshot = Snapshot(
            data=data,
            metadata=SnapshotMetadata(conf_state=conf_state, index=index, term=self.term(index)),
        )
        return self._snapshot

    def compact(self, compact_index: int) -> None:
        """Drop entries up to ``compact_index``; the host must have a snapshot covering them."""
        offset = self._ents[0][1]
        if compact_index <= offset:
            raise CompactedError(f"index {compact_index} is already compacted")
        if compact_index > self.last_index():
            raise UnavailableError(f"compact index {compact_index} beyond last index {self.last_index()}")
        i = compact_index - offset
        self._ents = [(self._ents[i][0], compact_index, 0, b"")] + self._ents[i + 1 :]

    def append(self, entries: list[Entry]) -> None:
        """Append ``entries``, replacing any existing suffix they conflict with."""
        if not entries:
            return
        first = self.first_index()
        if entries[-1].index < first:
            return
        if entries[0].index < first:
            entries = entries[first - entries[0].index :]
        packed = [_pack(e) for e in entries]
        offset = entries[0].index - self._ents[0][1]
        if offset < len(self._ents):
            self._ents = self._ents[:offset] + packed
        elif offset == len(self._ents):
            self._ents.extend(packed)
        else:
            raise UnavailableError(f"missing log entries [last: {self.last_index()}, append at: {entries[0].index}]")
