import google_crc32c
import pytest

from etcdx.backend import Backend
from etcdx.mvcc import CompactedError, FutureRevisionError, KVStore, revision
from etcdx.pb import kv_pb2


def open_store(path):
    backend = Backend(str(path), map_size=1 << 30)
    return backend, KVStore(backend)


def apply(backend, store, history):
    for ops in history:
        with backend.write() as txn:
            w = store.write(txn)
            for op in ops:
                w.put(op[1], op[2]) if op[0] == "put" else w.delete_range(op[1])
            w.end()


# Overwrites, deletes, re-creates (revisions 2..7).
HISTORY = ([("put", b"a", b"1"), ("put", b"b", b"1")], [("put", b"a", b"2")],
           [("del", b"b")], [("put", b"c", b"1")], [("put", b"b", b"2")], [("del", b"a")])


def history(backend, store):
    apply(backend, store, HISTORY)


def test_hash_kv_equals_etcd_3_4s_for_the_same_history(tmp_path):
    # Hashes etcd 3.4.23 reported (etcdctl endpoint hashkv) after these
    # operations on a new single-member cluster, after `compact 4`, after `compact 10`.
    backend, store = open_store(tmp_path)
    apply(backend, store, [
        [("put", b"a", b"1")], [("put", b"b", b"1")], [("put", b"a", b"2")], [("del", b"b")],
        [("put", b"c", b"1")], [("put", b"b", b"2")], [("del", b"a")], [("put", b"z/x", b"vw")],
        [("put", b"t1", b"one"), ("put", b"t2", b"two")]])
    assert store.hash_kv() == (1308583527, -1, 10)
    with backend.write() as txn:
        store.compact(4, txn)
    assert store.hash_kv() == (14989217, 4, 10)
    assert store.hash_kv(6) == (2664599291, 4, 6)
    with backend.write() as txn:
        assert store.compact_step(txn)
    assert store.hash_kv() == (14989217, 4, 10)
    assert store.hash_kv(6) == (2664599291, 4, 6)
    with backend.write() as txn:
        store.compact(10, txn)
        assert store.compact_step(txn)
    assert store.hash_kv() == (834682261, 10, 10)
    backend.close()


def test_hash_kv_is_crc32c_over_bucket_name_and_entries(tmp_path):
    backend, store = open_store(tmp_path)
    with backend.write() as txn:
        w = store.write(txn)
        w.put(b"a", b"1")
        w.end()
    kv = kv_pb2.KeyValue(key=b"a", value=b"1", create_revision=2, mod_revision=2, version=1)
    want = google_crc32c.value(b"key" + revision.encode(2, 0) + kv.SerializeToString())
    assert store.hash_kv() == (want, -1, 2)
    assert store.hash() == want
    backend.close()


def test_hash_kv_is_the_same_before_and_after_physical_compaction(tmp_path):
    scheduled, scheduled_store = open_store(tmp_path / "scheduled")
    finished, finished_store = open_store(tmp_path / "finished")
    for backend, store in ((scheduled, scheduled_store), (finished, finished_store)):
        history(backend, store)
        with backend.write() as txn:
            store.compact(4, txn)
    with finished.write() as txn:
        assert finished_store.compact_step(txn)
    for at in (4, 5, 6, 7, 0):
        assert scheduled_store.hash_kv(at) == finished_store.hash_kv(at)
    assert scheduled_store.hash() != finished_store.hash()
    scheduled.close()
    finished.close()


def test_hash_kv_rejects_compacted_and_future_revisions(tmp_path):
    backend, store = open_store(tmp_path)
    history(backend, store)
    with backend.write() as txn:
        store.compact(3, txn)
    with pytest.raises(CompactedError):
        store.hash_kv(2)
    with pytest.raises(FutureRevisionError):
        store.hash_kv(8)
    assert store.hash_kv(3)[1:] == (3, 3)
    backend.close()


def test_hash_kv_skips_nothing_when_a_compaction_would_keep_nothing(tmp_path):
    # etcd skips compactable revisions only when its keep set is non-empty.
    backend, store = open_store(tmp_path)
    with backend.write() as txn:
        w = store.write(txn)
        w.put(b"a", b"1")
        w.end()
        store.compact(2, txn)
        store.compact_step(txn)
        w = store.write(txn)
        w.delete_range(b"a")
        w.end()
    assert store.hash_kv(3)[0] == store.hash()
    backend.close()
