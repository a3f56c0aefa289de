"""etcdx's bbolt code against etcd's: our files through etcd's reader, etcd's files through ours.

- Random databases written by ``etcdx.bbolt.Writer`` (nested and inline
  buckets, overflow values, many pages) pass the consistency check of
  ``etcdctl snapshot status`` (bbolt's ``Tx.Check``), which reports the same
  hash, revision, key count and size as ``etcdx.snapshot.status``.
- Random etcdx stores (history, tombstones, long keys, leases, compaction)
  exported in etcd's layout go through ``etcdctl snapshot restore``, which
  rebuilds etcd's key index and lessor from them (and panics on anything it
  cannot parse), and keep their ``key`` bucket byte for byte.
- Files real etcd wrote (a snapshot, and a member's own db with free pages
  and no stored freelist) read the same through ``etcdx.bbolt.Reader``, and
  load into an etcdx backend that answers every range at every revision as
  etcd does.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import procs, snapshots
from support.stores import apply, op_lists

from etcdx.backend import Backend
from etcdx.bbolt import Reader, Writer
from etcdx.mvcc import KVStore
from etcdx.pb import rpc_pb2
from etcdx.snapshot.export import export_backend
from etcdx.snapshot.load import load
from etcdx.snapshot.status import status

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]

_rev = st.builds(lambda main, sub: struct.pack(">Q", main) + b"_" + struct.pack(">Q", sub),
                 st.integers(1, 1 << 40), st.integers(0, 3))
_big = st.builds(lambda byte, n: bytes([byte]) * n, st.integers(0, 255), st.integers(1000, 20000))
_values = st.one_of(st.binary(max_size=80), _big)
_nested = st.dictionaries(st.binary(min_size=1, max_size=16), _values, max_size=20)
_bucket = st.dictionaries(st.binary(min_size=1, max_size=24), st.one_of(_values, _nested), max_size=150)
_databases = st.fixed_dictionaries(
    {b"key": st.dictionaries(_rev, _values, max_size=300)},
    optional={b"meta": _bucket, b"lease": _bucket, b"other": _bucket, b"z": st.just({})})


def write(path, db: dict) -> None:
    def fill(bw, content: dict) -> None:
        for key in sorted(content):
            if isinstance(content[key], dict):
                with bw.bucket(key) as child:
                    fill(child, content[key])
            else:
                bw.put(key, content[key])

    with open(path, "w+b") as fh:
        w = Writer(fh)
        for name in sorted(db):
            with w.bucket(name) as bw:
                fill(bw, db[name])
        w.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.data_too_large])
@given(db=_databases)
def test_etcdctl_reads_what_the_writer_writes(tmp_path_factory, db):
    procs.require("etcdctl")
    path = tmp_path_factory.mktemp("bbolt") / "x.db"
    write(path, db)
    ours = status(path).to_json()
    assert snapshots.status("etcdctl", path) == ours
    assert ours["totalKey"] == sum(len(b) for b in db.values())  # a nested bucket counts as one key


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=op_lists)
def test_etcds_restore_takes_random_etcdx_stores(tmp_path_factory, ops):
    procs.require("etcdctl")
    tmp = tmp_path_factory.mktemp("export")
    backend = Backend(str(tmp / "src"), map_size=1 << 28)
    apply(backend, ops)
    with open(tmp / "x.db", "w+b") as fh:
        export_backend(backend, fh, cluster_version="3.5.0")
    backend.close()
    assert snapshots.status("etcdctl", tmp / "x.db") == status(tmp / "x.db").to_json()
    r = snapshots.run("etcdctl", "snapshot", "restore", str(tmp / "x.db"), "--skip-hash-check",
                      "--data-dir", str(tmp / "restored"))
    assert r.returncode == 0, r.stderr
    with Reader(tmp / "x.db") as ours, Reader(tmp / "restored" / "member" / "snap" / "db") as theirs:
        assert list(theirs.bucket(b"key").items()) == list(ours.bucket(b"key").items())
        assert list(theirs.bucket(b"lease").items()) == list(ours.bucket(b"lease").items())


@pytest.fixture
def etcd_with_history(etcd_server: procs.Member) -> procs.Member:
    """A real etcd member holding history, a tombstone, a lease, a compaction and a 1 MiB value."""
    kv = etcd_server.kv
    etcd_server.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=0x1234, TTL=600), timeout=5)
    for i in range(300):
        kv.Put(rpc_pb2.PutRequest(key=b"k%03d" % (i % 120), value=b"v%d" % i, lease=0x1234 if i % 7 == 0 else 0),
               timeout=5)
    kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"k010"), timeout=5)
    kv.Put(rpc_pb2.PutRequest(key=b"big", value=bytes(range(256)) * 4096), timeout=5)
    kv.Compact(rpc_pb2.CompactionRequest(revision=150, physical=True), timeout=5)
    kv.Put(rpc_pb2.PutRequest(key=b"k\x00zero", value=b"after compaction"), timeout=5)
    return etcd_server


def test_a_real_etcd_snapshot_reads_the_same_and_loads_into_etcdx(etcd_with_history, tmp_path):
    member = etcd_with_history
    snap = tmp_path / "etcd.db"
    snapshots.save(member, snap)
    assert status(snap).to_json() == snapshots.status("etcdctl", snap)
    with Reader(snap) as reader:
        assert reader.check() == []
        assert reader.bucket(b"key").get(b"\x00" * 7 + b"\x02_" + b"\x00" * 8) is None  # compacted away
        backend = Backend(str(tmp_path / "etcdx"), map_size=1 << 30)
        loaded = load(reader, backend)
    store = KVStore(backend)
    current = member.kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=5).header.revision
    assert (loaded.revision, loaded.compact_revision) == (current, 150)
    want = snapshots.dump(member, 150, current)
    for revision, kvs in want.items():
        got = store.range(b"\x00", b"\x00", revision=revision).kvs
        assert [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease) for kv in got] == kvs
    resp = member.maintenance.HashKV(rpc_pb2.HashKVRequest(revision=current), timeout=10)
    assert store.hash_kv(current)[:2] == (resp.hash, resp.compact_revision)
    assert backend.consistent_index()[0] > 0
    backend.close()


def test_a_real_etcd_members_own_db_with_free_pages_reads_the_same(etcd_with_history):
    member = etcd_with_history
    member.stop()
    db = member.data_dir / "member" / "snap" / "db"
    with Reader(db) as reader:
        assert reader.freelist() is None  # etcd runs bbolt without storing the freelist
        assert reader.check() == []
    assert status(db).to_json() == snapshots.status("etcdctl", db)
