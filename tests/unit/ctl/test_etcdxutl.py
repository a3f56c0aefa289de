"""etcdxutl's snapshot commands: etcdutl's outputs, errors and exit codes.

Run in-process on files made here; what real etcd makes of the same
snapshots (and etcdxutl of real etcd's) is in tests/conformance/test_snapshot.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib

import pytest

from etcdx.backend import Backend, buckets
from etcdx.ctl import etcdxutl
from etcdx.mvcc import KVStore
from etcdx.server.ids import cluster_id, member_id
from etcdx.snapshot.export import export_backend

PEER = "http://127.0.0.1:2380"


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory) -> pathlib.Path:
    """An etcdx snapshot as ``etcdctl snapshot save`` stores it: database + SHA-256."""
    tmp = tmp_path_factory.mktemp("snap")
    backend = Backend(str(tmp / "src"), map_size=1 << 28)
    kv = KVStore(backend)
    for i in range(20):
        with backend.write() as btx:
            w = kv.write(btx)
            w.put(b"k%d" % i, b"v" * i)
            w.end()
            btx.set_consistent_index(100 + i, 2)
    path = tmp / "snap.db"
    with open(path, "w+b") as fh:
        size = export_backend(backend, fh, cluster_version="3.5.0")
        fh.seek(0)
        digest = hashlib.sha256(fh.read(size)).digest()
        fh.write(digest)
    backend.close()
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = etcdxutl.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("n, text", [(0, "0 B"), (9, "9 B"), (10, "10 B"), (999, "999 B"), (1000, "1.0 kB"),
                                     (24576, "25 kB"), (1921024, "1.9 MB"), (187736064, "188 MB"),
                                     (2 << 30, "2.1 GB")])
def test_sizes_are_printed_as_etcd_prints_them(n, text):
    assert etcdxutl.humanize_bytes(n) == text


def test_status_in_every_output_format(capsys, snapshot):
    code, out, _ = run(capsys, "snapshot", "status", str(snapshot), "-w", "json")
    assert code == 0
    s = json.loads(out)
    assert s["revision"] == 21 and s["totalSize"] == snapshot.stat().st_size - 32
    h, size = f"{s['hash']:x}", etcdxutl.humanize_bytes(s["totalSize"])
    assert run(capsys, "snapshot", "status", str(snapshot))[1] == f"{h}, 21, {s['totalKey']}, {size}\n"
    assert run(capsys, "-w", "fields", "snapshot", "status", str(snapshot))[1] == (
        f'"Hash" : {s["hash"]}\n"Revision" : 21\n"Keys" : {s["totalKey"]}\n"Size" : {s["totalSize"]}\n')
    table = run(capsys, "--write-out=table", "snapshot", "status", str(snapshot))[1].splitlines()
    assert table[1] == "|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |"
    assert table[3] == f"| {h:>8} | {21:>8} | {s['totalKey']:>10} | {size:>10} |"


@pytest.mark.parametrize("argv, code, error", [
    (["snapshot", "status"], 128, "snapshot status requires exactly one argument"),
    (["snapshot", "status", "a", "b"], 128, "snapshot status requires exactly one argument"),
    (["snapshot", "status", "/nonexistent.db"], 1, "stat /nonexistent.db: no such file or directory"),
    (["snapshot", "status", "{snap}", "-w", "protobuf"], 4, "protobuf not supported as output format"),
    (["snapshot", "status", "{snap}", "-w", "yaml"], 4, "unsupported output format"),
    (["snapshot", "restore"], 128, "snapshot restore requires exactly one argument"),
    (["snapshot", "restore", "{snap}", "--bogus"], 1, "unrecognized arguments: --bogus"),
])
def test_bad_arguments_get_etcdutls_errors(capsys, snapshot, argv, code, error):
    argv = [a.replace("{snap}", str(snapshot)) for a in argv]
    assert run(capsys, *argv) == (code, "", f"Error: {error}\n")


def test_a_file_that_is_no_database_is_refused_by_status(capsys, tmp_path):
    (tmp_path / "x.db").write_bytes(os.urandom(8192))
    assert run(capsys, "snapshot", "status", str(tmp_path / "x.db")) == (1, "", "Error: invalid database\n")


def restore(capsys, snapshot, data_dir, *extra: str) -> tuple[int, str, str]:
    return run(capsys, "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir), "--name", "m1",
               "--initial-cluster", f"m1={PEER}", "--initial-advertise-peer-urls", PEER, *extra)


def test_restore_makes_a_member_of_a_new_cluster(capsys, snapshot, tmp_path):
    code, out, err = restore(capsys, snapshot, tmp_path / "d", "--initial-cluster-token", "tok")
    assert (code, out) == (0, "")
    done = json.loads(err.splitlines()[-1])
    assert done["msg"] == "restored snapshot" and done["revision"] == 21
    mid = member_id([PEER], "tok")
    assert (done["member-id"], done["cluster-id"]) == (f"{mid:x}", f"{cluster_id([mid]):x}")
    assert sorted(os.listdir(tmp_path / "d" / "member")) == ["snap", "wal"]
    backend = Backend(str(tmp_path / "d" / "member" / "snap" / "db"), readonly=True)
    try:
        assert KVStore(backend).range(b"k19").kvs[0].value == b"v" * 19
        with backend.read() as txn:
            members = list(txn.scan(buckets.MEMBERS, b""))
        assert len(members) == 1 and json.loads(members[0][1])["id"] == mid
        assert backend.consistent_index() == (1, 1)  # the new cluster's log starts afresh
    finally:
        backend.close()


def tampered(snapshot: pathlib.Path, tmp_path: pathlib.Path, how: str) -> pathlib.Path:
    raw = bytearray(snapshot.read_bytes())
    if how == "flip":
        raw[5000] ^= 1
    elif how == "no-trailer":
        raw = raw[:-32]
    path = tmp_path / f"{how}.db"
    path.write_bytes(raw)
    return path


def test_restore_refuses_a_snapshot_whose_hash_does_not_match(capsys, snapshot, tmp_path):
    path = tampered(snapshot, tmp_path, "flip")
    data = path.read_bytes()
    want, got = data[-32:], hashlib.sha256(data[:-32]).digest()
    code, _, err = restore(capsys, path, tmp_path / "d")
    assert code == 1
    assert err.splitlines()[-1] == (f"Error: expected sha256 [{' '.join(map(str, want))}], "
                                    f"got [{' '.join(map(str, got))}]")
    assert not (tmp_path / "d").exists()


def test_a_copied_database_needs_skip_hash_check(capsys, snapshot, tmp_path):
    path = tampered(snapshot, tmp_path, "no-trailer")
    code, _, err = restore(capsys, path, tmp_path / "d")
    assert (code, err.splitlines()[-1]) == (1, "Error: snapshot missing hash but --skip-hash-check=false")
    assert restore(capsys, path, tmp_path / "d", "--skip-hash-check")[0] == 0


def test_restore_of_garbage_with_skip_hash_check_fails_cleanly(capsys, tmp_path):
    (tmp_path / "x.db").write_bytes(os.urandom(8192))
    code, _, err = restore(capsys, tmp_path / "x.db", tmp_path / "d", "--skip-hash-check=true")
    assert (code, err.splitlines()[-1]) == (1, "Error: invalid database")
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("argv, error", [
    (["--name", "x"], 'couldn\'t find local name "x" in the initial cluster configuration'),
    (["--initial-advertise-peer-urls", "http://127.0.0.1:9"],
     (f'--initial-cluster has m1={PEER} but missing from --initial-advertise-peer-urls=http://127.0.0.1:9 '
      f'(resolved urls: "http://127.0.0.1:9" != "{PEER}")')),
    (["--initial-cluster", f"m1={PEER},m2={PEER}"], f"initial cluster m1={PEER},m2={PEER} has duplicate url"),
])
def test_restore_checks_the_cluster_flags_as_etcd_does(capsys, snapshot, tmp_path, argv, error):
    code, _, err = restore(capsys, snapshot, tmp_path / "d", *argv)
    assert (code, err.splitlines()[-1]) == (1, f"Error: {error}")
    assert not (tmp_path / "d").exists()


def test_restore_never_writes_into_a_non_empty_data_dir(capsys, snapshot, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("x")
    code, _, err = restore(capsys, snapshot, tmp_path / "d")
    assert (code, err.splitlines()[-1]) == (1, f'Error: data-dir "{tmp_path / "d"}" not empty or could not be read')
    assert os.listdir(tmp_path / "d") == ["keep"]
