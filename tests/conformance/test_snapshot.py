"""Snapshots between etcd and etcdx: save, status and restore, with both sides' tools.

- ``etcdctl snapshot save`` + ``status`` against etcdx give what they give
  against etcd for the same history (same revision, same ``key`` bucket byte
  for byte, the same keys in every bucket but ``meta``'s ``term``, which etcd
  3.5 adds and 3.4 does not write).
- Real etcd 3.4 boots from ``etcdctl snapshot restore`` of an etcdx snapshot
  and serves every key at every revision, the leases and the restored member,
  with the same HashKV.
- ``etcdxutl snapshot restore`` of a real etcd snapshot gives an etcdx member
  with the ids etcd's own restore gives (new cluster, same flags), the same
  keys at every revision and the same HashKV.
- Bad input gets etcd's errors from etcdxutl (or a clear one where etcd panics).
"""

from __future__ import annotations

import pytest
from support import procs, snapshots

from etcdx.bbolt import Reader
from etcdx.pb import rpc_pb2

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]

LEASE_ID = 0x64
BIG = bytes(range(256)) * 4096  # 1 MiB: overflow pages


def fill(member: procs.Member) -> tuple[int, int]:
    """The same history on any server: puts, overwrites, a lease with keys, deletes, a txn,
    a 1 MiB value and a compaction. Returns (compact revision, current revision)."""
    kv = member.kv
    member.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=LEASE_ID, TTL=600), timeout=5)
    for i in range(120):
        kv.Put(rpc_pb2.PutRequest(key=b"k%02d" % (i % 40), value=b"v%d" % i,
                                  lease=LEASE_ID if i % 9 == 0 else 0), timeout=5)
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k05"), timeout=5)
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k3", range_end=b"k4"), timeout=5)
    kv.Txn(rpc_pb2.TxnRequest(success=[
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"t/%d" % i, value=b"x")) for i in range(5)]),
        timeout=5)
    kv.Put(rpc_pb2.PutRequest(key=b"big", value=BIG), timeout=10)
    kv.Compact(rpc_pb2.CompactionRequest(revision=80, physical=True), timeout=5)
    kv.Put(rpc_pb2.PutRequest(key=b"after", value=b"compaction"), timeout=5)
    return 80, kv.Range(rpc_pb2.RangeRequest(key=b"after"), timeout=5).header.revision


def bucket_keys(path) -> dict[bytes, list[bytes]]:
    with Reader(path) as r:
        return {name: [k for k, _ in r.bucket(name).items()] for name, _ in r.root().items()}


def key_bucket(path) -> list[tuple[bytes, bytes]]:
    with Reader(path) as r:
        return list(r.bucket(b"key").items())


def leases(member: procs.Member) -> list[tuple[int, int, list[bytes]]]:
    out = []
    for lease in member.lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=5).leases:
        ttl = member.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease.ID, keys=True), timeout=5)
        out.append((lease.ID, ttl.grantedTTL, sorted(ttl.keys)))
    return out


def members(member: procs.Member) -> list[tuple[int, str, list[str]]]:
    resp = member.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=5)
    return [(m.ID, m.name, list(m.peerURLs)) for m in resp.members]


@pytest.fixture
def pair(member_group):
    """(etcd, etcdx) with the same history."""
    procs.require("etcdctl")
    procs.require("etcd")
    procs.require("etcdx")
    etcd = member_group.new("etcd", name="m1", subdir="etcd", start=False)
    etcdx = member_group.new("etcdx", name="m1", subdir="etcdx", start=False)
    procs.start_members([etcd, etcdx])
    assert fill(etcd) == fill(etcdx)
    return etcd, etcdx


def test_save_and_status_give_what_they_give_against_etcd(pair, tmp_path):
    etcd, etcdx = pair
    snapshots.save(etcd, tmp_path / "etcd.db")
    snapshots.save(etcdx, tmp_path / "etcdx.db")
    for tool in ("etcdctl", "etcdxutl"):
        want, got = snapshots.status(tool, tmp_path / "etcd.db"), snapshots.status(tool, tmp_path / "etcdx.db")
        assert got["revision"] == want["revision"]
        assert got["totalKey"] == want["totalKey"] + 1  # meta's term (etcd 3.5 writes it, 3.4 does not)
    assert key_bucket(tmp_path / "etcdx.db") == key_bucket(tmp_path / "etcd.db")
    want, got = bucket_keys(tmp_path / "etcd.db"), bucket_keys(tmp_path / "etcdx.db")
    assert got.pop(b"meta") == sorted(want.pop(b"meta") + [b"term"])
    got_members, want_members = got.pop(b"members"), want.pop(b"members")
    assert len(got_members) == len(want_members) == 1
    assert got == want


def test_real_etcd_boots_from_etcdctls_restore_of_an_etcdx_snapshot(pair, member_group, tmp_path):
    _, etcdx = pair
    compacted, current = 80, etcdx.kv.Range(rpc_pb2.RangeRequest(key=b"a"), timeout=5).header.revision
    snapshots.save(etcdx, tmp_path / "etcdx.db")
    restored = member_group.new("etcd", name="r1", start=False)
    snapshots.restore("etcdctl", tmp_path / "etcdx.db", restored)
    restored.start()
    assert snapshots.dump(restored, compacted, current) == snapshots.dump(etcdx, compacted, current)
    assert snapshots.hash_kv(restored) == snapshots.hash_kv(etcdx)
    assert leases(restored) == leases(etcdx)
    assert [(name, urls) for _, name, urls in members(restored)] == [("r1", [restored.peer_url])]
    with pytest.raises(Exception, match="compacted"):
        restored.kv.Range(rpc_pb2.RangeRequest(key=b"k01", revision=compacted - 1), timeout=5)


def test_etcdxutl_restore_of_an_etcd_snapshot_matches_etcds_own(pair, member_group, tmp_path):
    etcd, _ = pair
    compacted, current = 80, etcd.kv.Range(rpc_pb2.RangeRequest(key=b"a"), timeout=5).header.revision
    snapshots.save(etcd, tmp_path / "etcd.db")
    seen = {}
    ref = member_group.new("etcd", name="r1", subdir="ref", start=False)
    cand = member_group.new("etcdx", name="r1", subdir="cand", start=False)
    cand.client_port, cand.peer_port = ref.client_port, ref.peer_port  # same flags, so the same ids
    for tool, m in (("etcdctl", ref), ("etcdxutl", cand)):
        snapshots.restore(tool, tmp_path / "etcd.db", m, token="restored-token")
        m.start()
        header = m.kv.Range(rpc_pb2.RangeRequest(key=b"a"), timeout=5).header
        seen[tool] = (header.cluster_id, header.member_id, members(m), snapshots.hash_kv(m, current),
                      snapshots.dump(m, compacted, current), leases(m))
        m.stop()
    assert seen["etcdxutl"] == seen["etcdctl"]
    assert seen["etcdxutl"][3] == snapshots.hash_kv(etcd, current)


def test_etcdxutl_restores_an_etcdx_snapshot(pair, member_group, tmp_path):
    _, etcdx = pair
    compacted, current = 80, etcdx.kv.Range(rpc_pb2.RangeRequest(key=b"a"), timeout=5).header.revision
    snapshots.save(etcdx, tmp_path / "etcdx.db")
    restored = member_group.new("etcdx", name="r1", start=False)
    snapshots.restore("etcdxutl", tmp_path / "etcdx.db", restored)
    restored.start()
    assert snapshots.dump(restored, compacted, current) == snapshots.dump(etcdx, compacted, current)
    assert snapshots.hash_kv(restored) == snapshots.hash_kv(etcdx)
    assert leases(restored) == leases(etcdx)
    restored.kv.Put(rpc_pb2.PutRequest(key=b"new", value=b"write"), timeout=5)
    assert restored.kv.Range(rpc_pb2.RangeRequest(key=b"new"), timeout=5).header.revision == current + 1


@pytest.fixture(scope="module")
def etcd_snapshot(tmp_path_factory):
    """A snapshot of a real etcd holding a little data."""
    procs.require("etcd")
    procs.require("etcdctl")
    tmp = tmp_path_factory.mktemp("etcd-snapshot")
    with procs.MemberGroup(tmp / "members") as group:
        m = group.new("etcd")
        m.kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"), timeout=5)
        snapshots.save(m, tmp / "snap.db")
    return tmp / "snap.db"


def damaged(snapshot, tmp_path, how: str):
    raw = bytearray(snapshot.read_bytes())
    if how == "truncated":
        raw = raw[:len(raw) // 2 + 1000]
    elif how == "flipped":
        raw[4096 * 3 + 100] ^= 0x40
    elif how == "no-trailer":
        raw = raw[:-32]
    path = tmp_path / f"{how}.db"
    path.write_bytes(raw)
    return path


def restore_args(path, data_dir, *extra: str) -> list[str]:
    return ["snapshot", "restore", str(path), "--data-dir", str(data_dir), *extra]


@pytest.mark.parametrize("how", ["truncated", "flipped", "no-trailer"])
def test_a_damaged_snapshot_gets_etcds_error_from_etcdxutl(etcd_snapshot, tmp_path, how):
    path = damaged(etcd_snapshot, tmp_path, how)
    want = snapshots.run("etcdctl", *restore_args(path, tmp_path / "etcd"))
    got = snapshots.run("etcdxutl", *restore_args(path, tmp_path / "etcdx"))
    assert want.returncode != 0 and got.returncode != 0
    assert snapshots.last_line(got.stderr) == snapshots.last_line(want.stderr)
    assert "Traceback" not in got.stderr
    assert not (tmp_path / "etcdx").exists()


def test_a_file_that_is_no_database_gets_a_clear_error_where_etcd_panics(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"not a bbolt file, but the size is right " * 400)
    got = snapshots.run("etcdxutl", *restore_args(path, tmp_path / "etcdx", "--skip-hash-check"))
    assert (got.returncode, snapshots.last_line(got.stderr)) == (1, "Error: invalid database")
    assert not (tmp_path / "etcdx").exists()
    for tool in ("etcdctl", "etcdxutl"):
        r = snapshots.run(tool, "snapshot", "status", str(path))
        assert (r.returncode, r.stderr.strip()) == (1, "Error: invalid database"), tool


def test_status_of_a_truncated_file_says_so(etcd_snapshot, tmp_path):
    """etcd's bbolt may read past the end of such a file (and crash, or pass if the
    missing pages are free); etcdxutl says what is wrong."""
    path = tmp_path / "short.db"
    path.write_bytes(etcd_snapshot.read_bytes()[:4096 * 3])
    r = snapshots.run("etcdxutl", "snapshot", "status", str(path))
    assert r.returncode == 1 and r.stderr.startswith("Error: file is truncated: 12288 bytes"), r.stderr
