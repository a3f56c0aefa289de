"""The revisioned key space: etcd's MVCC store over the backend.

State lives only in the backend: the ``key`` bucket (revision -> KeyValue),
the key index, and compaction progress in ``meta``. The current revision is
derived from the newest entry of the ``key`` bucket (or the compact revision,
when compaction removed a trailing tombstone), so any process that opens the
backend, read-only API workers included, sees the same revision as the writer.
"""

from __future__ import annotations

from dataclasses import dataclass

import lmdb

from etcdx.backend import Backend, ReadTxn, WriteTxn, buckets
from etcdx.mvcc import revision as rev
from etcdx.mvcc.errors import CompactedError, FutureRevisionError
from etcdx.mvcc.hash import hash_all, hash_kv
from etcdx.mvcc.key_index import IndexEntry, KeyIndex, KeyRef, decode_key
from etcdx.mvcc.meta import (
    META_COMPACT_CURSOR,
    META_FINISHED_COMPACT,
    META_SCHEDULED_COMPACT,
    compact_revision,
    current_revision,
    meta_revision,
    revisions,
)
from etcdx.pb import kv_pb2

ALL_KEYS = b"\x00"  # as range_end: every key >= key


@dataclass
class RangeResult:
    kvs: list[kv_pb2.KeyValue]
    count: int      # matching keys, ignoring limit
    revision: int   # the store's revision the range was served at (response header)


def _parse(raw: bytes) -> kv_pb2.KeyValue:
    kv = kv_pb2.KeyValue()
    kv.ParseFromString(raw)
    return kv


def _read(values: lmdb.Cursor, entry: IndexEntry, keys_only: bool) -> kv_pb2.KeyValue:
    kv = _parse(values.get(rev.encode(entry.main, entry.sub)))
    if keys_only:
        kv.value = b""
    return kv


def _end(range_end: bytes) -> bytes | None:
    """The exclusive end of a range request's [key, end) interval; None: unbounded."""
    return None if range_end == ALL_KEYS else range_end


def range_at(txn: ReadTxn, index: KeyIndex, key: bytes, range_end: bytes, *,
             revision: int, current: int, compacted: int, limit: int, count_only: bool,
             keys_only: bool) -> RangeResult:
    """Range with etcd's rules, for a store whose revision (as seen by the
    caller, which may be a write in progress) is ``current``."""
    at = current if revision <= 0 else revision
    if at > current:
        raise FutureRevisionError(current)
    if at < compacted:
        raise CompactedError(compacted)
    values = txn.cursor(buckets.KEY)
    if not range_end:
        ref = index.ref(key)
        entry = index.latest(ref, at) if ref is not None else None
        if entry is None or entry.tombstone:
            return RangeResult([], 0, current)
        kvs = [] if count_only else [_read(values, entry, keys_only)]
        return RangeResult(kvs, 1, current)
    end = _end(range_end)
    if end is not None and end <= key:
        return RangeResult([], 0, current)
    if count_only:
        return RangeResult([], index.count(key, end, at), current)
    kvs: list[kv_pb2.KeyValue] = []
    count = 0
    for ref, newest in index.walk(key, end):
        entry = newest if newest.main <= at else index.latest(ref, at)
        if entry is None or entry.tombstone:
            continue
        count += 1
        kvs.append(_read(values, entry, keys_only))
        if len(kvs) == limit:  # count the rest without reading them
            count += index.count(decode_key(ref.encoded) + b"\x00", end, at)
            break
    return RangeResult(kvs, count, current)


class KVStore:
    """etcd's MVCC key-value store over a ``Backend``.

    Threads: ``range`` and the properties may be called from any thread (each
    call reads in its own LMDB read transaction unless given one); ``write``,
    ``compact`` and ``compact_step`` belong to the one applier thread that
    owns the backend write transaction.
    """

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self._writing: _WriteContext | None = None

    @property
    def current_revision(self) -> int:
        with self._backend.read() as txn:
            return current_revision(txn)

    @property
    def compact_revision(self) -> int:
        with self._backend.read() as txn:
            return compact_revision(txn)

    def range(self, key: bytes, range_end: bytes = b"", *, revision: int = 0,
              limit: int = 0, count_only: bool = False, keys_only: bool = False,
              txn: ReadTxn | None = None) -> RangeResult:
        """Live keys in the range at ``revision`` (<= 0: current).

        range_end b"" means ``key`` alone, b"\\0" every key >= key. Raises
        FutureRevisionError / CompactedError as etcd does; ``count`` ignores
        ``limit``. Sorting and min/max revision filters are the caller's.
        """
        if txn is None:
            with self._backend.read() as own:
                return self.range(key, range_end, revision=revision, limit=limit,
                                  count_only=count_only, keys_only=keys_only, txn=own)
        current, compacted = revisions(txn)
        return range_at(txn, KeyIndex(txn), key, range_end, revision=revision,
                        current=current, compacted=compacted, limit=limit,
                        count_only=count_only, keys_only=keys_only)

    def hash_kv(self, revision: int = 0) -> tuple[int, int, int]:
        """(hash, compact_revision, hash_revision) as etcd's HashKV; see ``hash``."""
        with self._backend.read() as txn:
            return hash_kv(txn, revision)

    def hash(self) -> int:
        """CRC-32C of the whole ``key`` bucket."""
        with self._backend.read() as txn:
            return hash_all(txn)

    def write(self, txn: WriteTxn) -> TxnWrite:
        """Start one etcd transaction (one main revision) inside ``txn``.

        Several may run one after another in the same backend transaction
        (an apply batch); each must ``end()`` before the next starts. Cursors
        and the running revision are shared along the batch, so a store has
        one writer (the applier) at a time.
        """
        if self._writing is None or self._writing.txn is not txn:
            self._writing = _WriteContext(txn)
        return TxnWrite(self._writing)

    def compact(self, revision: int, txn: WriteTxn) -> None:
        """Schedule compaction at ``revision``; ``compact_step`` does the work.

        From here on reads below ``revision`` fail with CompactedError.
        """
        current, compacted = revisions(txn)
        if revision <= compacted:
            raise CompactedError(compacted)
        if revision > current:
            raise FutureRevisionError(current)
        txn.put(buckets.META, META_SCHEDULED_COMPACT, rev.encode(revision))
        txn.delete(buckets.META, META_COMPACT_CURSOR)

    def compact_step(self, txn: WriteTxn, batch: int = 1000) -> bool:
        """Advance the scheduled compaction by about ``batch`` entries of the
        ``key`` bucket; True when none is pending any more.

        Keeps, per key, the newest revision <= the compact revision unless it
        is a tombstone, and drops the older ones. Only keys changed since the
        last finished compaction can hold such revisions (what it left behind
        is each key's newest live one), so the work is proportional to the
        history since then, not to the number of keys.
        """
        target = meta_revision(txn, META_SCHEDULED_COMPACT)
        finished = meta_revision(txn, META_FINISHED_COMPACT)
        if target <= finished:
            return True
        index = KeyIndex(txn)
        values = txn.cursor(buckets.KEY)
        end = rev.encode(target + 1)
        position = txn.get(buckets.META, META_COMPACT_CURSOR) or rev.encode(finished + 1)
        compacted: set[bytes] = set()
        for _ in range(batch):
            if not values.set_range(position) or values.key() >= end:
                txn.put(buckets.META, META_FINISHED_COMPACT, rev.encode(target))
                txn.delete(buckets.META, META_COMPACT_CURSOR)
                return True
            revision_key, raw = values.item()
            position = revision_key + b"\x00"  # the least key after this one
            key = _parse(raw).key
            if key not in compacted:
                compacted.add(key)
                self._compact_key(txn, index, key, target)
        txn.put(buckets.META, META_COMPACT_CURSOR, position)
        return False

    @staticmethod
    def _compact_key(txn: WriteTxn, index: KeyIndex, key: bytes, target: int) -> None:
        ref = index.ref(key)
        if ref is None:
            return
        old = list(index.entries(ref, target))
        if old and not old[0].tombstone:
            old = old[1:]
        for entry in old:
            txn.delete(buckets.KEY, rev.encode(entry.main, entry.sub, entry.tombstone))
            index.remove(ref, entry.main, entry.sub)


class _WriteContext:
    """What consecutive TxnWrites of one backend transaction share."""

    def __init__(self, txn: WriteTxn) -> None:
        self.txn = txn
        self.index = KeyIndex(txn)
        self.values = txn.cursor(buckets.KEY)
        self.revision = current_revision(txn)


class TxnWrite:
    """One etcd write transaction: all its changes share one main revision."""

    def __init__(self, ctx: _WriteContext) -> None:
        self._ctx = ctx
        self._txn = ctx.txn
        self._index = ctx.index
        self._values = ctx.values
        self._begin = ctx.revision
        self._rev = self._begin + 1
        self._changed = False
        self._events: list[kv_pb2.Event] = []
        # Each touched key's live value before this transaction: what a watch
        # event's prev_kv carries (etcd reads it at revision - 1), as opposed to the
        # value the transaction itself saw, which Put/DeleteRange responses carry.
        self._before: dict[bytes, kv_pb2.KeyValue | None] = {}

    @property
    def revision(self) -> int:
        """The store revision as this transaction sees it (its own once it
        has changed something, before and after ``end``)."""
        return self._rev if self._changed else self._begin

    def range(self, key: bytes, range_end: bytes = b"", *, revision: int = 0,
              limit: int = 0, count_only: bool = False,
              keys_only: bool = False) -> RangeResult:
        """Range that sees this transaction's own earlier changes."""
        return range_at(self._txn, self._index, key, range_end, revision=revision,
                        current=self.revision, compacted=compact_revision(self._txn),
                        limit=limit, count_only=count_only, keys_only=keys_only)

    def _live(self, ref: KeyRef | None) -> kv_pb2.KeyValue | None:
        entry = self._index.latest(ref, self._rev) if ref is not None else None
        if entry is None or entry.tombstone:
            return None
        return _parse(self._values.get(rev.encode(entry.main, entry.sub)))

    def put(self, key: bytes, value: bytes, lease: int = 0) -> kv_pb2.KeyValue | None:
        """Put ``key``; returns the previous live KeyValue, if any."""
        ref = self._index.ref(key, create=True)
        prev = self._live(ref)
        before = self._before.setdefault(key, prev)
        kv = kv_pb2.KeyValue(
            key=key, value=value, mod_revision=self._rev, lease=lease,
            create_revision=prev.create_revision if prev else self._rev,
            version=prev.version + 1 if prev else 1,
        )
        sub = len(self._events)
        self._changed = True
        self._ctx.revision = self._rev
        self._txn.append(buckets.KEY, rev.encode(self._rev, sub), kv.SerializeToString())
        self._index.add(ref, self._rev, sub, False)
        # A creation (create revision == this revision) carries no prev_kv, even when the
        # key lived before this txn and was deleted earlier in it: etcd's watch skips the
        # lookup for create events.
        self._events.append(kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv,
                                         prev_kv=None if kv.create_revision == self._rev else before))
        return prev

    def delete_range(self, key: bytes, range_end: bytes = b"") -> list[kv_pb2.KeyValue]:
        """Delete the live keys in the range; returns their previous KeyValues."""
        if not range_end:
            ref = self._index.ref(key)
            targets = [ref] if ref is not None else []
        else:
            end = _end(range_end)
            walked = self._index.walk(key, end) if end is None or end > key else []
            targets = [ref for ref, _ in walked]
        deleted: list[kv_pb2.KeyValue] = []
        for ref in targets:
            prev = self._live(ref)
            if prev is None:
                continue
            before = self._before.setdefault(prev.key, prev)
            sub = len(self._events)
            self._changed = True
            self._ctx.revision = self._rev
            tomb = kv_pb2.KeyValue(key=prev.key)
            self._txn.append(buckets.KEY, rev.encode(self._rev, sub, True),
                             tomb.SerializeToString())
            self._index.add(ref, self._rev, sub, True)
            tomb.mod_revision = self._rev
            self._events.append(kv_pb2.Event(type=kv_pb2.Event.DELETE, kv=tomb, prev_kv=before))
            deleted.append(prev)
        return deleted

    def end(self) -> list[kv_pb2.Event]:
        """Finish; the events in change order, each with ``prev_kv`` as etcd's watch
        reports it: the key's live value before this transaction (etcd reads it at
        revision - 1), none for creations. So a key created and deleted in one
        transaction gives a DELETE without prev_kv, and one deleted and re-created
        gives a PUT without one."""
        events, self._events = self._events, []
        return events
