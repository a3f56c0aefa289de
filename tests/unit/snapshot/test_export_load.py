"""An etcdx backend survives export to etcd's layout and loading back, bucket for bucket.

The ``key`` bucket must come back byte for byte (HashKV is computed over it)
and everything etcdx derives from it (key index, lease attachments) must be
rebuilt exactly as the member built it while applying.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from support.stores import apply, op_lists, random_ops

from etcdx.backend import Backend, buckets
from etcdx.bbolt import Reader, Writer
from etcdx.mvcc import KVStore
from etcdx.mvcc.errors import CompactedError
from etcdx.pb import lease_pb2, rpc_pb2
from etcdx.server.membership import Member
from etcdx.snapshot import layout
from etcdx.snapshot.export import export_backend
from etcdx.snapshot.layout import LayoutError
from etcdx.snapshot.load import load
from etcdx.snapshot.status import status

MEMBERS = [Member(0x8E9E05C52164694D, "m1", ["http://127.0.0.1:2380"], ["http://127.0.0.1:2379"]),
           Member(0x10, "", ["http://127.0.0.1:2381"], [], is_learner=True)]
ALARMS = [(0x8E9E05C52164694D, rpc_pb2.NOSPACE), (0x10, rpc_pb2.CORRUPT)]
COMPARED = [b for b in buckets.ALL if b != buckets.META]


def new_backend(path) -> Backend:
    return Backend(str(path), map_size=1 << 30)


def export(backend: Backend, path) -> None:
    with open(path, "w+b") as fh:
        export_backend(backend, fh, cluster_version="3.5.0")


def contents(backend: Backend, bucket: bytes) -> list[tuple[bytes, bytes]]:
    with backend.read() as txn:
        return list(txn.scan(bucket, b""))


def assert_same_store(a: Backend, b: Backend) -> None:
    for bucket in COMPARED:
        if bucket in (buckets.AUTH, buckets.CLUSTER):
            continue  # the export adds etcd's defaults (authRevision, clusterVersion)
        assert contents(a, bucket) == contents(b, bucket), bucket
    with a.read() as ta, b.read() as tb:
        for name in layout.META_KEYS:
            assert ta.get(buckets.META, name) == tb.get(buckets.META, name), name
    ka, kb = KVStore(a), KVStore(b)
    current, compacted = ka.current_revision, ka.compact_revision
    assert (kb.current_revision, kb.compact_revision) == (current, compacted)
    for revision in range(max(compacted, 1), current + 1):
        assert ka.hash_kv(revision) == kb.hash_kv(revision)
        assert ka.range(b"\x00", b"\x00", revision=revision).kvs == kb.range(b"\x00", b"\x00", revision=revision).kvs
    if compacted > 1:
        with pytest.raises(CompactedError):
            kb.range(b"a", revision=compacted - 1)


def round_trip(tmp_path, ops, **extra) -> tuple[Backend, Backend]:
    src = new_backend(tmp_path / "src")
    apply(src, ops, **extra)
    export(src, tmp_path / "snap.db")
    dst = new_backend(tmp_path / "dst")
    with Reader(tmp_path / "snap.db") as reader:
        assert reader.check() == []
        load(reader, dst)
    return src, dst


def test_a_store_with_history_leases_and_compaction_comes_back_the_same(tmp_path):
    src, dst = round_trip(tmp_path, random_ops(seed=7, n=400), members=MEMBERS, removed=[0x99], alarms=ALARMS)
    assert_same_store(src, dst)
    assert contents(dst, buckets.LEASE_KEYS), "the store has keys attached to leases"
    assert KVStore(dst).compact_revision > 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=op_lists)
def test_any_store_comes_back_the_same(tmp_path_factory, ops):
    tmp = tmp_path_factory.mktemp("rt")
    src, dst = round_trip(tmp, ops)
    assert_same_store(src, dst)


def test_the_export_has_etcds_layout(tmp_path):
    src = new_backend(tmp_path / "src")
    apply(src, random_ops(seed=3, n=30), members=MEMBERS, removed=[0x99], alarms=ALARMS, applied=(12, 4))
    export(src, tmp_path / "snap.db")
    with Reader(tmp_path / "snap.db") as r:
        assert [name for name, _ in r.root().items()] == list(layout.BUCKETS)
        meta = dict(r.bucket(b"meta").items())
        assert meta[b"consistent_index"] == (12).to_bytes(8, "big")
        assert meta[b"term"] == (4).to_bytes(8, "big")
        assert set(meta) <= set(layout.META_KEYS)  # no etcdx-only keys (confState, compaction cursor)
        members = dict(r.bucket(b"members").items())
        assert json.loads(members[b"8e9e05c52164694d"]) == {
            "id": 0x8E9E05C52164694D, "peerURLs": ["http://127.0.0.1:2380"], "name": "m1",
            "clientURLs": ["http://127.0.0.1:2379"]}
        assert json.loads(members[b"10"]) == {"id": 16, "peerURLs": ["http://127.0.0.1:2381"], "isLearner": True}
        assert dict(r.bucket(b"members_removed").items()) == {b"99": b"removed"}
        alarms = {rpc_pb2.AlarmMember.FromString(k).alarm: v for k, v in r.bucket(b"alarm").items()}
        assert alarms == {rpc_pb2.NOSPACE: b"", rpc_pb2.CORRUPT: b""}
        for key, value in r.bucket(b"lease").items():
            lease = lease_pb2.Lease.FromString(value)
            assert key == lease.ID.to_bytes(8, "big") and lease.TTL == 60
        assert r.bucket(b"auth").get(b"authRevision") == (1).to_bytes(8, "big")
        assert r.bucket(b"cluster").get(b"clusterVersion") == b"3.5.0"
    with Reader(tmp_path / "snap.db") as r:
        key_entries = sum(1 for _ in r.bucket(b"key").items())
    s = status(tmp_path / "snap.db")
    assert s.revision == KVStore(src).current_revision
    assert s.total_key >= key_entries


def test_restoring_members_is_optional(tmp_path):
    src = new_backend(tmp_path / "src")
    apply(src, [], members=MEMBERS, removed=[0x99])
    export(src, tmp_path / "snap.db")
    dst = new_backend(tmp_path / "dst")
    with Reader(tmp_path / "snap.db") as r:
        load(r, dst, members=False)
    assert contents(dst, buckets.MEMBERS) == contents(dst, buckets.MEMBERS_REMOVED) == []


def test_a_key_whose_lease_is_gone_keeps_its_lease_id_but_no_attachment(tmp_path):
    """As in etcd, which logs the failed attach when it restores such a store."""
    path = tmp_path / "etcd.db"
    kv = b"\n\x01k\x10\x02\x18\x02 \x01*\x01v0\x05"  # key k, lease 5
    write_etcd_db(path, {b"key": [(b"\x00" * 7 + b"\x02_" + b"\x00" * 8, kv)], b"meta": [],
                         b"lease": []})
    dst = new_backend(tmp_path / "dst")
    with Reader(path) as r:
        load(r, dst)
    assert KVStore(dst).range(b"k").kvs[0].lease == 5
    assert contents(dst, buckets.LEASE_KEYS) == []


def test_auth_buckets_are_carried_and_enabled_auth_is_reported(tmp_path):
    path = tmp_path / "etcd.db"
    write_etcd_db(path, {b"key": [], b"meta": [],
                         b"auth": [(b"authEnabled", b"\x01"), (b"authRevision", b"\x00" * 7 + b"\x05")],
                         b"authUsers": [(b"root", b"\x0a\x04root")], b"authRoles": [(b"root", b"\x0a\x04root")]})
    dst = new_backend(tmp_path / "dst")
    with Reader(path) as r:
        assert load(r, dst).auth_enabled
    assert contents(dst, buckets.AUTH_USERS) == [(b"root", b"\x0a\x04root")]
    export(dst, tmp_path / "back.db")
    with Reader(tmp_path / "back.db") as r:
        assert r.bucket(b"auth").get(b"authRevision") == b"\x00" * 7 + b"\x05"
        assert r.bucket(b"authRoles").get(b"root") == b"\x0a\x04root"


def write_etcd_db(path, content: dict[bytes, list[tuple[bytes, bytes]]]) -> None:
    with open(path, "w+b") as fh:
        w = Writer(fh)
        for name in sorted(content):
            with w.bucket(name) as b:
                for k, v in content[name]:
                    b.put(k, v)
        w.close()


REV2 = b"\x00" * 7 + b"\x02_" + b"\x00" * 8


@pytest.mark.parametrize("content, message", [
    ({b"other": []}, "no key or meta bucket"),
    ({b"key": [(b"short", b"")], b"meta": []}, "is not a revision"),
    ({b"key": [(REV2, b"\xff\xff\xff")], b"meta": []}, "no mvccpb.KeyValue"),
    ({b"key": [(REV2, b"")], b"meta": []}, "empty key"),
    ({b"key": [], b"meta": [(b"consistent_index", b"\x01")]}, "consistent_index has 1 bytes"),
    ({b"key": [], b"meta": [], b"lease": [(b"\x00" * 8, b"\x08\x05")]}, "does not name lease"),
    ({b"key": [], b"meta": [], b"members": [(b"1", b"{")]}, "not etcd's JSON"),
    ({b"key": [], b"meta": [], b"alarm": [(b"\xff", b"")]}, "AlarmMember"),
])
def test_a_database_without_etcds_layout_is_refused_with_a_message(tmp_path, content, message):
    write_etcd_db(tmp_path / "x.db", content)
    with Reader(tmp_path / "x.db") as r, pytest.raises(LayoutError, match=message):
        load(r, new_backend(tmp_path / "dst"))
