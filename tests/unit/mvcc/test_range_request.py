import pytest

from etcdx.backend import Backend
from etcdx.mvcc import KVStore
from etcdx.mvcc.range_request import (
    ASCEND,
    CREATE,
    DESCEND,
    KEY,
    MOD,
    VALUE,
    VERSION,
    execute_range,
)


@pytest.fixture
def store(tmp_path):
    backend = Backend(str(tmp_path / "db"), map_size=1 << 28)
    s = KVStore(backend)
    # a@2 b@3 c@4, then a again @5: a has version 2, mod 5.
    for key, value in ((b"a", b"3"), (b"b", b"1"), (b"c", b"2"), (b"a", b"0")):
        with backend.write() as txn:
            w = s.write(txn)
            w.put(key, value)
            w.end()
    yield s
    backend.close()


def keys(reply):
    return [kv.key for kv in reply.kvs]


def test_limit_sets_more_only_when_keys_remain(store):
    reply = execute_range(store.range, b"a", b"\x00", limit=2)
    assert (keys(reply), reply.more, reply.count) == ([b"a", b"b"], True, 3)
    reply = execute_range(store.range, b"a", b"\x00", limit=3)
    assert (keys(reply), reply.more) == ([b"a", b"b", b"c"], False)


def test_sorts_by_target_and_defaults_to_ascending_for_non_key_targets(store):
    assert keys(execute_range(store.range, b"a", b"\x00", sort_target=MOD)) == [b"b", b"c", b"a"]
    assert keys(execute_range(store.range, b"a", b"\x00", sort_target=VALUE,
                              sort_order=DESCEND)) == [b"c", b"b", b"a"]
    assert keys(execute_range(store.range, b"a", b"\x00", sort_order=DESCEND)) == [
        b"c", b"b", b"a"]
    assert keys(execute_range(store.range, b"a", b"\x00", sort_target=VERSION,
                              sort_order=DESCEND, limit=1)) == [b"a"]
    assert keys(execute_range(store.range, b"a", b"\x00", sort_target=CREATE,
                              sort_order=ASCEND)) == [b"a", b"b", b"c"]
    assert keys(execute_range(store.range, b"a", b"\x00", sort_target=KEY,
                              sort_order=ASCEND)) == [b"a", b"b", b"c"]


def test_revision_filters_prune_but_count_does_not(store):
    reply = execute_range(store.range, b"a", b"\x00", min_mod_revision=4)
    assert (keys(reply), reply.count) == ([b"a", b"c"], 3)
    reply = execute_range(store.range, b"a", b"\x00", max_create_revision=3, limit=1)
    assert (keys(reply), reply.more) == ([b"a"], True)
