import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.backend import Backend
from etcdx.mvcc import KVStore
from etcdx.mvcc.watch_hub import WatchHub
from etcdx.pb import kv_pb2

PUT, DELETE = kv_pb2.Event.PUT, kv_pb2.Event.DELETE


class Cluster:
    """A store and its hub, with the applier's notify after each commit."""

    def __init__(self, path, max_buffered=1024):
        self.backend = Backend(str(path), map_size=1 << 28)
        self.store = KVStore(self.backend)
        self.hub = WatchHub(self.backend, max_buffered_events=max_buffered)

    def commit(self, *txns):
        """One backend txn holding etcd txns; each txn a list of ops."""
        events = []
        with self.backend.write() as t:
            for ops in txns:
                w = self.store.write(t)
                for op in ops:
                    if op[0] == "put":
                        w.put(op[1], op[2])
                    else:
                        w.delete_range(op[1], op[2] if len(op) > 2 else b"")
                events += w.end()
        self.hub.notify(events, self.store.current_revision)
        return events

    def put(self, key, value=b"v"):
        self.commit([("put", key, value)])

    def catch_up(self):
        while self.hub.sync_unsynced(max_events=3):
            pass


@pytest.fixture
def c(tmp_path):
    cluster = Cluster(tmp_path / "db")
    yield cluster
    cluster.backend.close()


def events(watcher):
    return [(e.type, e.kv.key, e.kv.mod_revision) for b in watcher.take() for e in b.events]


def test_synced_watcher_gets_events_at_once_and_is_signalled_once_per_drain(c):
    signals = []
    w = c.hub.watch(b"a", on_ready=lambda: signals.append(1))
    c.put(b"a")
    c.put(b"b")
    c.put(b"a")
    assert len(signals) == 1
    assert events(w) == [(PUT, b"a", 2), (PUT, b"a", 4)]
    c.put(b"a")
    assert len(signals) == 2


def test_catches_up_from_history_then_follows_live_events(c):
    for i in range(10):
        c.put(b"k", str(i).encode())
    w = c.hub.watch(b"k", start_revision=5)
    assert events(w) == []
    c.put(b"k")
    c.catch_up()
    c.put(b"k")
    assert [rev for _, _, rev in events(w)] == list(range(5, 14))


def test_start_revision_below_compaction_cancels_with_compact_revision(c):
    for _ in range(5):
        c.put(b"k")
    with c.backend.write() as t:
        c.store.compact(4, t)
    signals = []
    w = c.hub.watch(b"k", start_revision=3, on_ready=lambda: signals.append(1))
    assert signals == [1]
    [batch] = w.take()
    assert (batch.compact_revision, batch.events, w.cancelled) == (4, [], True)
    ok = c.hub.watch(b"k", start_revision=4)
    c.catch_up()
    assert [rev for _, _, rev in events(ok)] == [4, 5, 6]


def test_compaction_while_unsynced_cancels_the_watcher(tmp_path):
    c = Cluster(tmp_path / "db", max_buffered=2)
    w = c.hub.watch(b"k")
    for _ in range(6):
        c.put(b"k")
    with c.backend.write() as t:
        c.store.compact(6, t)
    w.take()
    c.catch_up()
    assert [b.compact_revision for b in w.take()] == [6]
    c.backend.close()


def test_slow_watcher_buffers_at_most_its_bound_and_loses_nothing(tmp_path):
    c = Cluster(tmp_path / "db", max_buffered=4)
    w = c.hub.watch(b"k")
    for _ in range(50):
        c.put(b"k")
        c.hub.sync_unsynced()
        assert w._buffered <= 4
    got = []
    while True:
        got += events(w)
        if not c.hub.sync_unsynced(max_events=7) and not w._batches:
            break
    assert [rev for _, _, rev in got] == list(range(2, 52))
    c.put(b"k")
    assert [rev for _, _, rev in events(w)] == [52]
    c.backend.close()


def test_a_revision_is_delivered_whole_even_when_larger_than_the_buffer(tmp_path):
    c = Cluster(tmp_path / "db", max_buffered=2)
    w = c.hub.watch(b"a", b"z")
    c.put(b"a")
    c.commit([("put", bytes([ord("b") + i]), b"v") for i in range(5)])
    first = w.take()
    assert [len(b.events) for b in first] == [1]
    c.catch_up()
    [batch] = w.take()
    assert [e.kv.mod_revision for e in batch.events] == [3] * 5
    c.backend.close()


def test_filters_drop_puts_or_deletes(c):
    no_put = c.hub.watch(b"k", no_put=True)
    no_delete = c.hub.watch(b"k", no_delete=True)
    c.put(b"k")
    c.commit([("del", b"k")])
    assert events(no_put) == [(DELETE, b"k", 3)]
    assert events(no_delete) == [(PUT, b"k", 2)]


def test_prev_kv_live_and_from_history(c):
    c.put(b"k", b"1")
    live = c.hub.watch(b"k", prev_kv=True)
    plain = c.hub.watch(b"k")
    past = c.hub.watch(b"k", start_revision=1, prev_kv=True)
    c.put(b"k", b"2")
    c.commit([("del", b"k")])
    c.catch_up()
    for w in (live, past):
        evs = [e for b in w.take() for e in b.events]
        assert [e.prev_kv.value if e.HasField("prev_kv") else None for e in evs][-2:] == [
            b"1", b"2"]
    assert not any(e.HasField("prev_kv") for b in plain.take() for e in b.events)


def test_range_and_prefix_watchers(c):
    prefix = c.hub.watch(b"a/", b"a0")
    everything = c.hub.watch(b"\x00", b"\x00")
    from_b = c.hub.watch(b"b", b"\x00")
    for k in (b"a", b"a/x", b"a/y", b"b", b"c"):
        c.put(k)
    assert [k for _, k, _ in events(prefix)] == [b"a/x", b"a/y"]
    assert [k for _, k, _ in events(everything)] == [b"a", b"a/x", b"a/y", b"b", b"c"]
    assert [k for _, k, _ in events(from_b)] == [b"b", b"c"]


def test_progress_lists_synced_watchers_with_nothing_pending(c):
    synced = c.hub.watch(b"k")
    c.put(b"x")
    behind = c.hub.watch(b"k", start_revision=1)
    c.put(b"k")
    assert c.hub.progress() == {}
    synced.take()
    assert c.hub.progress() == {synced: 3}
    c.catch_up()
    behind.take()
    assert c.hub.progress() == {synced: 3, behind: 3}


def test_cancelled_watcher_gets_nothing_more(c):
    w = c.hub.watch(b"k")
    c.hub.cancel(w)
    c.put(b"k")
    assert w.take() == []


ops = st.lists(st.tuples(st.sampled_from(["put", "del"]), st.sampled_from([b"a", b"b", b"c"])),
               min_size=1, max_size=3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("commit"), st.lists(ops, min_size=1, max_size=3)),
    st.tuples(st.just("take"), st.integers(0, 2)),
    st.tuples(st.just("sync"), st.integers(1, 5)),
    st.tuples(st.just("watch"), st.integers(0, 8)),
), max_size=40))
def test_every_watcher_sees_exactly_its_history_in_order(tmp_path_factory, script):
    c = Cluster(tmp_path_factory.mktemp("db"), max_buffered=3)
    history = []  # (type, key, revision) of every change, in order
    watchers = []  # (watcher, first revision it must see, events received)
    for step, arg in script:
        if step == "commit":
            history += [(e.type, e.kv.key, e.kv.mod_revision) for e in
                        c.commit(*[[(op, k, b"v") for op, k in txn] for txn in arg])]
        elif step == "take" and watchers:
            w, _, got = watchers[arg % len(watchers)]
            got += events(w)
        elif step == "sync":
            c.hub.sync_unsynced(max_events=arg)
        elif step == "watch":
            start = min(arg, c.store.current_revision + 1)
            first = start or c.store.current_revision + 1
            watchers.append((c.hub.watch(b"a", b"c", start_revision=start), first, []))
    while True:
        for w, _, got in watchers:
            got += events(w)
        progressed = c.hub.sync_unsynced(max_events=2)
        if not progressed and not any(w._batches for w, _, _ in watchers):
            break
    for w, first, got in watchers:
        assert got == [h for h in history if h[1] < b"c" and h[2] >= first]
    c.backend.close()


def test_after_restore_watchers_resume_from_the_new_database(tmp_path, c):
    w = c.hub.watch(b"k")
    c.put(b"k", b"1")
    donor = Cluster(tmp_path / "donor")
    for value in (b"1", b"2", b"3"):
        donor.put(b"k", value)
    with open(tmp_path / "snap.db", "wb") as out:
        donor.backend.snapshot(out)
    donor.backend.close()
    path = c.backend.path
    c.backend.close()
    os.replace(tmp_path / "snap.db", os.path.join(path, "data.mdb"))
    c.backend = Backend(path, map_size=1 << 28)
    c.store = KVStore(c.backend)
    c.hub.restore(c.backend)
    c.catch_up()
    c.put(b"k", b"4")
    assert [rev for _, _, rev in events(w)] == [2, 3, 4, 5]


def test_sync_reports_no_work_while_the_only_unsynced_watcher_is_full(tmp_path):
    c = Cluster(tmp_path / "db", max_buffered=1)
    w = c.hub.watch(b"k")
    c.put(b"k")
    c.put(b"k")
    assert c.hub.sync_unsynced() is False
    w.take()
    assert c.hub.sync_unsynced() is False  # caught up: synced again
    assert [rev for _, _, rev in events(w)] == [3]
    c.backend.close()
