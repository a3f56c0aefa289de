"""The watch hub: delivers committed events to watchers, in revision order.

A pure object (no asyncio, no clock). The applier calls ``notify`` after each
committed backend transaction; *synced* watchers (caught up with the store)
get matching events at once in a bounded per-watcher buffer. A watcher whose
start revision is in the past, or whose buffer is full when events arrive,
is *unsynced*: it is caught up later from the ``key`` bucket by
``sync_unsynced``, which the server calls periodically. So a slow consumer
costs a bounded buffer, never unbounded memory, and no event is lost.

Promises: events come in revision order, each once, and all events of one
revision in the same ``WatchBatch``. A watcher whose start revision is below
the compact revision is cancelled with a batch carrying ``compact_revision``.

Threads: every method may be called from any thread (one lock guards the
hub); ``sync_unsynced`` must not run concurrently with itself. ``on_ready``
is called, without the lock held, when a watcher's buffer goes from empty to
non-empty; the consumer then drains it with ``Watcher.take()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import lmdb

from etcdx.backend import Backend, ReadTxn, buckets
from etcdx.mvcc import revision as rev
from etcdx.mvcc.key_index import KeyIndex
from etcdx.mvcc.meta import compact_revision, current_revision
from etcdx.pb import kv_pb2

Event = kv_pb2.Event


@dataclass
class WatchBatch:
    """Events for one watcher, whole revisions only, oldest first."""

    events: list[Event]
    revision: int               # the store revision to report in the response header
    compact_revision: int = 0   # non-zero: the watcher is cancelled; history is compacted


@dataclass(eq=False)
class Watcher:
    """One watch, made by ``WatchHub.watch``; its consumer drains ``take()``."""

    key: bytes
    range_end: bytes
    prev_kv: bool
    no_put: bool
    no_delete: bool
    on_ready: Callable[[], None] | None
    next_revision: int              # first revision not yet buffered or skipped
    _hub: WatchHub = field(repr=False)
    _batches: list[WatchBatch] = field(default_factory=list, repr=False)
    _buffered: int = 0
    cancelled: bool = False

    def matches(self, key: bytes) -> bool:
        if not self.range_end:
            return key == self.key
        return key >= self.key and (self.range_end == b"\x00" or key < self.range_end)

    def wants(self, event: Event) -> bool:
        if event.type == Event.PUT:
            return not self.no_put and self.matches(event.kv.key)
        return not self.no_delete and self.matches(event.kv.key)

    def take(self) -> list[WatchBatch]:
        """Everything buffered so far, oldest first."""
        with self._hub._lock:
            batches, self._batches, self._buffered = self._batches, [], 0
        return batches


@dataclass
class _CatchUp:
    """One unsynced watcher's progress through a ``sync_unsynced`` scan."""

    next_revision: int
    room: int
    events: list[Event] = field(default_factory=list)
    blocked: bool = False


class WatchHub:
    """Watchers of one KV store; see the module docstring."""

    def __init__(self, backend: Backend, *, max_buffered_events: int = 1024) -> None:
        self._backend = backend
        self._max_buffered = max_buffered_events
        self._lock = threading.Lock()
        with backend.read() as txn:
            self._revision = current_revision(txn)
        # Synced watchers (next revision: the hub's, or a future start), indexed
        # for notify: single-key ones by key, range ones in a set.
        self._by_key: dict[bytes, set[Watcher]] = {}
        self._ranged: set[Watcher] = set()
        self._unsynced: set[Watcher] = set()

    @property
    def revision(self) -> int:
        """The last revision notified."""
        return self._revision

    def watch(self, key: bytes, range_end: bytes = b"", *, start_revision: int = 0,
              prev_kv: bool = False, no_put: bool = False, no_delete: bool = False,
              on_ready: Callable[[], None] | None = None) -> Watcher:
        """Watch [key, range_end) (etcd's range_end forms) from ``start_revision``
        (0: the next revision)."""
        with self._backend.read() as txn:
            compacted = compact_revision(txn)
        with self._lock:
            start = start_revision if start_revision > 0 else self._revision + 1
            w = Watcher(key, range_end, prev_kv, no_put, no_delete, on_ready, start, self)
            if start <= self._revision:
                self._unsynced.add(w)
            else:
                self._sync(w)
            ready = start < compacted and self._cancel_compacted(w, compacted)
        if ready and on_ready is not None:
            on_ready()
        return w

    def cancel(self, watcher: Watcher) -> None:
        with self._lock:
            watcher.cancelled = True
            self._drop_synced(watcher)
            self._unsynced.discard(watcher)

    def restore(self, backend: Backend) -> None:
        """Follow the store to a replaced database (a snapshot from the leader):
        every watcher resumes from its ``key`` bucket at its next revision, or
        is cancelled if that is compacted there."""
        with backend.read() as txn:
            revision = current_revision(txn)
        with self._lock:
            self._backend = backend
            for w in self._synced():
                self._unsync(w, max(w.next_revision, self._revision + 1))
            self._revision = revision

    def progress(self) -> dict[Watcher, int]:
        """Synced watchers with nothing left to take, and the revision up to which
        they have received every event (for progress notifications)."""
        with self._lock:
            return {w: self._revision for w in self._synced() if not w._batches}

    def notify(self, events: Iterable[Event], revision: int) -> None:
        """Deliver the events of one committed backend transaction (in revision
        order, each carrying ``prev_kv`` as ``TxnWrite.end`` returns it) and
        advance to ``revision``."""
        by_revision: list[tuple[int, list[Event]]] = []
        for event in events:
            main = event.kv.mod_revision
            if by_revision and by_revision[-1][0] == main:
                by_revision[-1][1].append(event)
            else:
                by_revision.append((main, [event]))
        stripped: dict[int, Event] = {}
        ready: list[Watcher] = []
        with self._lock:
            for main, group in by_revision:
                for w in self._candidates(group):
                    if main < w.next_revision:
                        continue  # starts in the future
                    matched = [e if w.prev_kv else _without_prev(e, stripped)
                               for e in group if w.wants(e)]
                    if matched and not self._buffer(w, matched, main, ready):
                        self._unsync(w, main)
            self._revision = revision
        _signal(ready)

    def _candidates(self, group: list[Event]) -> set[Watcher]:
        found = set(self._ranged)
        for event in group:
            found.update(self._by_key.get(event.kv.key, ()))
        return found

    def _sync(self, w: Watcher) -> None:
        if w.range_end:
            self._ranged.add(w)
        else:
            self._by_key.setdefault(w.key, set()).add(w)

    def _unsync(self, w: Watcher, next_revision: int) -> None:
        """Move a synced watcher to the unsynced ones, to resume at ``next_revision``."""
        self._drop_synced(w)
        w.next_revision = next_revision
        self._unsynced.add(w)

    def _drop_synced(self, w: Watcher) -> None:
        if w.range_end:
            self._ranged.discard(w)
            return
        same_key = self._by_key.get(w.key)
        if same_key is not None:
            same_key.discard(w)
            if not same_key:
                del self._by_key[w.key]

    def _synced(self) -> list[Watcher]:
        return [*self._ranged, *(w for ws in self._by_key.values() for w in ws)]

    def sync_unsynced(self, max_events: int = 1000) -> bool:
        """Catch unsynced watchers up from the ``key`` bucket, reading about
        ``max_events`` entries (whole revisions). True if calling again now
        would make progress; watchers whose buffer is full wait for ``take``."""
        with self._lock:
            jobs = {w: _CatchUp(w.next_revision, self._max_buffered - w._buffered)
                    for w in self._unsynced if w._buffered < self._max_buffered}
            until = self._revision
            if not jobs:
                return False
        with self._backend.read() as txn:
            compacted = compact_revision(txn)
            live = {w: job for w, job in jobs.items() if job.next_revision >= compacted}
            if live:
                self._scan(txn, live, until, max_events, compacted)
        ready: list[Watcher] = []
        with self._lock:
            for w, job in jobs.items():
                if w.cancelled:
                    continue
                if w not in live:
                    if self._cancel_compacted(w, compacted):
                        ready.append(w)
                    continue
                if job.events:
                    self._buffer(w, job.events, self._revision, ready, force=True)
                w.next_revision = job.next_revision
                if w.next_revision > self._revision:
                    self._unsynced.discard(w)
                    self._sync(w)
            more = any(w._buffered < self._max_buffered for w in self._unsynced)
        _signal(ready)
        return more

    def _scan(self, txn: ReadTxn, jobs: dict[Watcher, _CatchUp], until: int,
              max_events: int, compacted: int) -> None:
        """Match the revisions from the oldest job's next revision up to ``until``
        (or the end of the revision at which ``max_events`` entries were read)."""
        index = KeyIndex(txn)
        values = txn.cursor(buckets.KEY)
        prevs = txn.cursor(buckets.KEY)
        scanned_to = until
        main = min(job.next_revision for job in jobs.values())
        group: list[Event] = []
        read = 0
        if values.set_range(rev.encode(main)):
            for k, v in values:
                r = rev.decode(k)
                if r.main > until:
                    break
                if r.main != main:
                    self._match(main, group, jobs, index, prevs, compacted)
                    if read >= max_events:
                        scanned_to = main
                        group = []
                        break
                    group, main = [], r.main
                kv = kv_pb2.KeyValue()
                kv.ParseFromString(v)
                if r.tombstone:
                    kv.mod_revision = r.main
                group.append(Event(type=Event.DELETE if r.tombstone else Event.PUT, kv=kv))
                read += 1
        if group:
            self._match(main, group, jobs, index, prevs, compacted)
        for job in jobs.values():
            if not job.blocked:
                job.next_revision = max(job.next_revision, scanned_to + 1)

    def _match(self, main: int, group: list[Event], jobs: dict[Watcher, _CatchUp],
               index: KeyIndex, prevs: lmdb.Cursor, compacted: int) -> None:
        for w, job in jobs.items():
            if main < job.next_revision or job.blocked:
                continue
            matched = [_with_prev(e, index, prevs, compacted) if w.prev_kv else e
                       for e in group if w.wants(e)]
            if matched and len(matched) > job.room and job.room < self._max_buffered:
                job.blocked = True
                continue
            job.room -= len(matched)
            job.events.extend(matched)
            job.next_revision = main + 1

    def _buffer(self, w: Watcher, events: list[Event], revision: int,
                ready: list[Watcher], force: bool = False) -> bool:
        """Append whole-revision events; False if the buffer has no room (a
        revision larger than the whole buffer is taken when it is empty)."""
        if not force and w._buffered and w._buffered + len(events) > self._max_buffered:
            return False
        if not w._batches:
            ready.append(w)
            w._batches.append(WatchBatch(list(events), revision))
        else:
            w._batches[-1].events.extend(events)
            w._batches[-1].revision = revision
        w._buffered += len(events)
        return True

    def _cancel_compacted(self, w: Watcher, compacted: int) -> bool:
        self._drop_synced(w)
        self._unsynced.discard(w)
        w.cancelled = True
        first = not w._batches
        w._batches.append(WatchBatch([], self._revision, compact_revision=compacted))
        return first


def _without_prev(event: Event, cache: dict[int, Event]) -> Event:
    if not event.HasField("prev_kv"):
        return event
    copy = cache.get(id(event))
    if copy is None:
        copy = cache[id(event)] = Event(type=event.type, kv=event.kv)
    return copy


def _with_prev(event: Event, index: KeyIndex, values: lmdb.Cursor, compacted: int) -> Event:
    """The event with the key's value before its revision, read from the store
    (none for creations, or when that revision is compacted, as etcd)."""
    kv = event.kv
    if event.type == Event.PUT and kv.create_revision == kv.mod_revision:
        return event
    before = kv.mod_revision - 1
    ref = index.ref(kv.key)
    entry = index.latest(ref, before) if ref is not None and before >= compacted else None
    if entry is None or entry.tombstone:
        return event
    prev = kv_pb2.KeyValue()
    prev.ParseFromString(values.get(rev.encode(entry.main, entry.sub)))
    return Event(type=event.type, kv=kv, prev_kv=prev)


def _signal(watchers: list[Watcher]) -> None:
    for w in watchers:
        if w.on_ready is not None:
            w.on_ready()
