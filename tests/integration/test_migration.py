"""Migration both ways: a real etcd with 100k keys, leases and compacted history
moves to a 3-member etcdx cluster with one snapshot, and back with another.

Each side is checked the way an operator would: the same revision, the same
HashKV at it (on every member), the same key count, the same keys at the
compact revision, and the same leases with their keys.
"""

from __future__ import annotations

import pytest
from support import procs, snapshots
from support.cluster import Cluster

from etcdx.pb import rpc_pb2

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(300)]

KEYS = 100_000
PER_TXN = 5_000
LEASES = [0x1000 + i for i in range(10)]


def put_txn(member: procs.Member, puts: list[rpc_pb2.PutRequest]) -> None:
    ops = [rpc_pb2.RequestOp(request_put=p) for p in puts]
    member.kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=60)


def fill(etcd: procs.Member) -> int:
    """100k keys in big txns, leases holding every 100th key, overwrites, deletes,
    a compaction in the middle; returns the compact revision."""
    for lease in LEASES:
        etcd.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=lease, TTL=3600), timeout=5)
    for start in range(0, KEYS, PER_TXN):
        put_txn(etcd, [rpc_pb2.PutRequest(key=b"/registry/pods/ns/pod-%06d" % i, value=b"spec-%06d" % i,
                                          lease=LEASES[i % len(LEASES)] if i % 100 == 0 else 0)
                       for i in range(start, start + PER_TXN)])
    for start in range(0, 10_000, PER_TXN):  # overwrites: history below the compaction
        put_txn(etcd, [rpc_pb2.PutRequest(key=b"/registry/pods/ns/pod-%06d" % i, value=b"spec-v2")
                       for i in range(start + 1, start + PER_TXN, 2)])
    etcd.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/registry/pods/ns/pod-09", range_end=b"/registry/pods/ns/pod-1"),
                        timeout=30)
    compact = etcd.kv.Range(rpc_pb2.RangeRequest(key=b"x"), timeout=5).header.revision
    etcd.kv.Compact(rpc_pb2.CompactionRequest(revision=compact, physical=True), timeout=60)
    put_txn(etcd, [rpc_pb2.PutRequest(key=b"/registry/pods/ns/pod-%06d" % i, value=b"spec-v3")
                   for i in range(0, PER_TXN, 3)])
    etcd.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"/registry/pods/ns/pod-000003"), timeout=5)
    return compact


def state(member: procs.Member, revision: int, compact: int) -> dict:
    """What must survive a migration, as seen through ``member``'s API."""
    kv = member.kv
    at_compact = kv.Range(rpc_pb2.RangeRequest(key=b"/registry/pods/ns/pod-0", range_end=b"/registry/pods/ns/pod-1",
                                               revision=compact, keys_only=True), timeout=60)
    count = kv.Range(rpc_pb2.RangeRequest(key=b"\x00", range_end=b"\x00", count_only=True), timeout=60)
    sample = kv.Range(rpc_pb2.RangeRequest(key=b"/registry/pods/ns/pod-0000", range_end=b"/registry/pods/ns/pod-0001"),
                      timeout=10)
    lease_keys = {}
    for lease in member.lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=5).leases:
        ttl = member.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease.ID, keys=True), timeout=30)
        lease_keys[lease.ID] = (ttl.grantedTTL, sorted(ttl.keys))
    return {
        "revision": count.header.revision,
        "hash_kv": snapshots.hash_kv(member, revision),
        "count": count.count,
        "at_compact": [(kv.key, kv.mod_revision) for kv in at_compact.kvs],
        "sample": [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) for kv in sample.kvs],
        "leases": lease_keys,
    }


def test_etcd_to_etcdx_cluster_and_back(member_group, tmp_path):
    procs.require("etcd")
    procs.require("etcdctl")
    procs.require("etcdx")
    etcd = member_group.new("etcd", name="src", extra_args=["--max-txn-ops", str(PER_TXN)])
    compact = fill(etcd)
    revision = etcd.kv.Range(rpc_pb2.RangeRequest(key=b"x"), timeout=5).header.revision
    want = state(etcd, revision, compact)
    assert want["count"] == KEYS - 10_000 - 1 and len(want["leases"]) == len(LEASES)
    snapshots.save(etcd, tmp_path / "from-etcd.db")
    etcd.stop()

    with Cluster("etcdx", tmp_path / "etcdx", size=3) as cluster:
        spec = ",".join(f"{m.name}={m.advertise_peer_url}" for m in cluster.members)
        for m in cluster.members:
            snapshots.restore("etcdxutl", tmp_path / "from-etcd.db", m, initial_cluster=spec,
                              token=cluster.token, peer_url=m.advertise_peer_url)
        cluster.start()
        for m in cluster.members:
            assert state(m, revision, compact) == want, m.name
        snapshots.save(cluster.leader(), tmp_path / "from-etcdx.db")

    back = member_group.new("etcd", name="back", start=False)
    snapshots.restore("etcdctl", tmp_path / "from-etcdx.db", back)
    back.start()
    assert state(back, revision, compact) == want
