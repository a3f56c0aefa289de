import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdx.backend import Backend, buckets
from etcdx.mvcc import KVStore
from etcdx.mvcc.key_index import CHUNK, decode_key, encode_key


@pytest.fixture
def store(tmp_path):
    backend = Backend(str(tmp_path / "db"), map_size=1 << 30)
    yield KVStore(backend), backend
    backend.close()


def put_all(backend, store, keys):
    with backend.write() as txn:
        w = store.write(txn)
        for k in keys:
            w.put(k, b"v" + k[-4:])
        w.end()


@given(st.binary(), st.binary())
def test_key_encoding_preserves_order_and_round_trips(a, b):
    assert decode_key(encode_key(a)) == a
    assert (encode_key(a) < encode_key(b)) == (a < b)
    assert a == b or not encode_key(b).startswith(encode_key(a))


def test_100_kib_key_round_trips_and_ranges_in_order(store):
    kv, backend = store
    big = b"k" * (100 * 1024)
    put_all(backend, kv, [b"k", big, big + b"\x00", b"l"])
    assert kv.range(big).kvs[0].key == big
    assert [x.key for x in kv.range(b"k", b"\x00").kvs] == [b"k", big, big + b"\x00", b"l"]
    assert [x.key for x in kv.range(big, b"l").kvs] == [big, big + b"\x00"]
    assert kv.range(big + b"\x00", b"\x00", count_only=True).count == 2


def test_many_long_keys_sharing_a_600_byte_prefix_sort_as_bytes(store):
    kv, backend = store
    prefix = bytes(random.Random(7).randrange(256) for _ in range(600))
    rng = random.Random(1)
    keys = {prefix + bytes(rng.randrange(4) for _ in range(rng.randrange(0, 700)))
            for _ in range(300)} | {prefix[:CHUNK - 1], prefix[:CHUNK], prefix[:CHUNK + 1], b"\x00"}
    put_all(backend, kv, list(keys))
    assert [x.key for x in kv.range(b"\x00", b"\x00").kvs] == sorted(keys)
    middle = sorted(keys)[100]
    end = sorted(keys)[200]
    assert [x.key for x in kv.range(middle, end).kvs] == sorted(keys)[100:200]
    assert [x.key for x in kv.range(middle, end, limit=5).kvs] == sorted(keys)[100:105]
    assert kv.range(b"\x00", b"\x00", count_only=True).count == len(keys)
    assert kv.range(b"\x00", b"\x00", limit=1).count == len(keys)
    assert kv.range(middle, end, limit=5).count == 100


def test_compaction_prunes_the_trie_of_deleted_long_keys(store):
    kv, backend = store
    keys = [b"p" * 2000 + bytes([i]) for i in range(20)]
    put_all(backend, kv, keys)
    with backend.write() as txn:
        w = kv.write(txn)
        w.delete_range(b"p", b"q")
        w.end()
    with backend.write() as txn:
        kv.compact(3, txn)
        assert kv.compact_step(txn, 100)
    with backend.read() as txn:
        assert list(txn.scan(buckets.INDEX_TREE, b"")) == []
        assert list(txn.scan(buckets.INDEX, b"")) == []
        assert list(txn.scan(buckets.KEY, b"")) == []
