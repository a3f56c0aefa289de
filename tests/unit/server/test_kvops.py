"""etcd's Range rules on top of the store: limit and ``more``, sort defaults, revision filters."""

import pytest

from etcdx.backend import Backend
from etcdx.mvcc import KVStore
from etcdx.pb import rpc_pb2
from etcdx.server.kvops import do_range

R = rpc_pb2.RangeRequest


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


def rng(store, **kw) -> rpc_pb2.RangeResponse:
    resp = rpc_pb2.RangeResponse()
    do_range(store, R(key=b"a", range_end=b"\x00", **kw), resp)
    return resp


def keys(reply):
    return [kv.key for kv in reply.kvs]


def test_limit_sets_more_only_when_keys_remain(store):
    reply = rng(store, limit=2)
    assert (keys(reply), reply.more, reply.count) == ([b"a", b"b"], True, 3)
    reply = rng(store, limit=3)
    assert (keys(reply), reply.more) == ([b"a", b"b", b"c"], False)


def test_sorts_by_target_and_defaults_to_ascending_for_non_key_targets(store):
    assert keys(rng(store, sort_target=R.MOD)) == [b"b", b"c", b"a"]
    assert keys(rng(store, sort_target=R.VALUE, sort_order=R.DESCEND)) == [b"c", b"b", b"a"]
    assert keys(rng(store, sort_order=R.DESCEND)) == [b"c", b"b", b"a"]
    assert keys(rng(store, sort_target=R.VERSION, sort_order=R.DESCEND, limit=1)) == [b"a"]
    assert keys(rng(store, sort_target=R.CREATE, sort_order=R.ASCEND)) == [b"a", b"b", b"c"]
    assert keys(rng(store, sort_target=R.KEY, sort_order=R.ASCEND)) == [b"a", b"b", b"c"]


def test_keys_only_still_sorts_by_the_stored_values(store):
    reply = rng(store, sort_target=R.VALUE, sort_order=R.DESCEND, keys_only=True)
    assert keys(reply) == [b"c", b"b", b"a"]
    assert all(kv.value == b"" for kv in reply.kvs)


def test_revision_filters_prune_but_count_does_not(store):
    reply = rng(store, min_mod_revision=4)
    assert (keys(reply), reply.count) == ([b"a", b"c"], 3)
    reply = rng(store, max_create_revision=3, limit=1)
    assert (keys(reply), reply.more) == ([b"a"], True)
