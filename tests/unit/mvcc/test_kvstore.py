import pytest

from etcdx.backend import Backend
from etcdx.mvcc import CompactedError, FutureRevisionError, KVStore
from etcdx.pb import kv_pb2


@pytest.fixture
def backend(tmp_path):
    b = Backend(str(tmp_path / "db"), map_size=1 << 30)
    yield b
    b.close()


@pytest.fixture
def store(backend):
    return KVStore(backend)


def txn(backend, store, *ops):
    """Run one etcd txn; ops are ("put", k, v) or ("del", k, end)."""
    with backend.write() as t:
        w = store.write(t)
        for op in ops:
            if op[0] == "put":
                w.put(op[1], op[2], *op[3:])
            else:
                w.delete_range(op[1], op[2])
        return w.end()


def test_version_resets_after_delete_and_recreate_gets_new_create_revision(backend, store):
    txn(backend, store, ("put", b"k", b"1"))
    txn(backend, store, ("put", b"k", b"2"))
    txn(backend, store, ("del", b"k", b""))
    txn(backend, store, ("put", b"k", b"3"))
    kv = store.range(b"k").kvs[0]
    assert (kv.create_revision, kv.mod_revision, kv.version) == (5, 5, 1)
    old = store.range(b"k", revision=3).kvs[0]
    assert (old.create_revision, old.mod_revision, old.version) == (2, 3, 2)
    assert store.range(b"k", revision=4).kvs == []


def test_one_txn_is_one_revision_with_sub_revisions_in_order(backend, store):
    events = txn(backend, store, ("put", b"a", b"1"), ("put", b"b", b"2"), ("del", b"a", b""))
    assert store.current_revision == 2
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
        (kv_pb2.Event.PUT, b"a", 2), (kv_pb2.Event.PUT, b"b", 2), (kv_pb2.Event.DELETE, b"a", 2)]
    assert not events[2].HasField("prev_kv")  # "a" did not exist before this txn


def test_events_carry_the_value_before_the_txn_not_within_it(backend, store):
    """etcd's watch reads prev_kv at revision - 1 and none for create events: a key
    created and deleted in one txn gives a DELETE without prev_kv, and one deleted then
    re-created gives a DELETE with the old value and a PUT (a creation) without one."""
    txn(backend, store, ("put", b"old", b"0"), ("put", b"kept", b"0"))
    events = txn(backend, store, ("put", b"new", b"1"), ("del", b"n", b"\x00"), ("put", b"old", b"2"),
                 ("put", b"kept", b"1"))
    assert [(e.type, e.kv.key) for e in events] == [
        (kv_pb2.Event.PUT, b"new"), (kv_pb2.Event.DELETE, b"new"), (kv_pb2.Event.DELETE, b"old"),
        (kv_pb2.Event.PUT, b"old"), (kv_pb2.Event.PUT, b"kept")]
    assert [e.HasField("prev_kv") for e in events] == [False, False, True, False, True]
    assert events[2].prev_kv.value == events[4].prev_kv.value == b"0"


def test_delete_returns_what_the_txn_saw(backend, store):
    """A DeleteRange response's prev_kvs is the txn's own view (its earlier put)."""
    with backend.write() as t:
        w = store.write(t)
        w.put(b"k", b"mine")
        deleted = w.delete_range(b"k", b"\x00")
        w.end()
    assert [kv.value for kv in deleted] == [b"mine"]


def test_txn_without_changes_does_not_bump_revision(backend, store):
    txn(backend, store, ("put", b"a", b"1"))
    assert txn(backend, store, ("del", b"zzz", b"\x00")) == []
    assert store.current_revision == 2


def test_put_returns_prev_and_keeps_lease_as_given(backend, store):
    txn(backend, store, ("put", b"a", b"1", 7))
    with backend.write() as t:
        w = store.write(t)
        prev = w.put(b"a", b"2")
        w.end()
    assert (prev.value, prev.lease) == (b"1", 7)
    assert store.range(b"a").kvs[0].lease == 0


def test_range_end_forms(backend, store):
    txn(backend, store, *[("put", k, b"v") for k in (b"\x00", b"a", b"ab", b"b")])
    keys = lambda r: [kv.key for kv in r.kvs]  # noqa: E731
    assert keys(store.range(b"a")) == [b"a"]
    assert keys(store.range(b"a", b"b")) == [b"a", b"ab"]
    assert keys(store.range(b"a", b"\x00")) == [b"a", b"ab", b"b"]
    assert keys(store.range(b"\x00", b"\x00")) == [b"\x00", b"a", b"ab", b"b"]
    assert keys(store.range(b"b", b"a")) == []


def test_count_ignores_limit_and_keys_only_drops_values(backend, store):
    txn(backend, store, *[("put", bytes([c]), b"value") for c in b"abcde"])
    r = store.range(b"a", b"\x00", limit=2, keys_only=True)
    assert (r.count, [kv.key for kv in r.kvs], r.kvs[0].value) == (5, [b"a", b"b"], b"")
    r = store.range(b"a", b"\x00", count_only=True)
    assert (r.count, r.kvs) == (5, [])


def test_revision_errors(backend, store):
    for i in range(5):
        txn(backend, store, ("put", b"k", str(i).encode()))
    with pytest.raises(FutureRevisionError):
        store.range(b"k", revision=7)
    with backend.write() as t:
        store.compact(4, t)
    with pytest.raises(CompactedError) as err:
        store.range(b"k", revision=3)
    assert str(err.value) == "mvcc: required revision has been compacted"
    assert store.range(b"k", revision=4).kvs[0].value == b"2"
    with backend.write() as t, pytest.raises(CompactedError):
        store.compact(4, t)
    with backend.write() as t, pytest.raises(FutureRevisionError):
        store.compact(7, t)


def test_a_new_store_is_at_revision_1_and_never_compacted(store):
    assert (store.current_revision, store.compact_revision) == (1, -1)
    assert store.range(b"a", revision=1).kvs == []


def test_compacting_a_trailing_delete_keeps_the_revision(backend, store):
    txn(backend, store, ("put", b"k", b"1"))
    txn(backend, store, ("del", b"k", b""))
    with backend.write() as t:
        store.compact(3, t)
        assert store.compact_step(t)
    assert store.current_revision == 3
    events = txn(backend, store, ("put", b"k", b"2"))
    assert events[0].kv.mod_revision == 4


def test_write_txn_range_sees_own_writes_at_next_revision(backend, store):
    txn(backend, store, ("put", b"a", b"1"))
    with backend.write() as t:
        w = store.write(t)
        assert w.range(b"a").revision == 2
        w.put(b"a", b"2")
        r = w.range(b"a")
        assert (r.revision, r.kvs[0].value) == (3, b"2")
        assert w.range(b"a", revision=2).kvs[0].value == b"1"
        w.end()


def test_state_survives_reopen(tmp_path):
    path = str(tmp_path / "db")
    b = Backend(path, map_size=1 << 30)
    s = KVStore(b)
    txn(b, s, ("put", b"a", b"1"))
    txn(b, s, ("put", b"a", b"2"))
    with b.write() as t:
        s.compact(2, t)
    b.close()
    b = Backend(path, map_size=1 << 30)
    s = KVStore(b)
    assert (s.current_revision, s.compact_revision) == (3, 2)
    with b.write() as t:
        assert s.compact_step(t)
    assert s.range(b"a", revision=2).kvs[0].value == b"1"
    b.close()


def test_range_at_a_past_revision_over_keys_changed_since(backend, store):
    txn(backend, store, *[("put", k, b"old") for k in (b"a", b"b", b"c", b"d")])
    txn(backend, store, ("put", b"b", b"new"), ("put", b"c", b"new"))
    txn(backend, store, ("del", b"d", b""))
    r = store.range(b"a", b"\x00", revision=2)
    assert [(kv.key, kv.value) for kv in r.kvs] == [
        (b"a", b"old"), (b"b", b"old"), (b"c", b"old"), (b"d", b"old")]
    assert store.range(b"a", b"\x00", revision=4, count_only=True).count == 3


def test_store_keeps_working_across_defragment(backend, store):
    txn(backend, store, ("put", b"a", b"1"))
    backend.defragment()
    txn(backend, store, ("put", b"b", b"2"))
    assert (store.range(b"a", b"\x00").count, store.current_revision) == (2, 3)


def test_txn_revision_is_its_own_once_it_changed_something_even_after_end(backend, store):
    with backend.write() as t:
        w = store.write(t)
        assert w.revision == 1
        w.delete_range(b"missing")
        assert w.revision == 1
        w.put(b"a", b"1")
        w.end()
        assert w.revision == 2
        unchanged = store.write(t)
        unchanged.end()
        assert unchanged.revision == 2
