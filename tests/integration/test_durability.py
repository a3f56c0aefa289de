"""Acknowledged writes survive kill -9; a torn WAL tail is repaired; a corrupt WAL refuses to start."""

from __future__ import annotations

import os
import pathlib
import random
import threading
import time

import grpc
import pytest

from etcdx.pb import rpc_pb2
from support import procs

pytestmark = pytest.mark.timeout(180)


def _wal_segments(member: procs.Member) -> list[pathlib.Path]:
    return sorted((member.data_dir / "member" / "wal").glob("*.wal"))


def _data_end(path: pathlib.Path) -> int:
    """Offset just past the last non-zero byte (segments may be preallocated with zeros)."""
    data = path.read_bytes()
    return len(data.rstrip(b"\x00"))


def _write_concurrently(member: procs.Member, writers: int, duration: float) -> dict[bytes, tuple[bytes, int]]:
    """Puts from several threads until the member dies or time is up; returns every acknowledged put."""
    acked: dict[bytes, tuple[bytes, int]] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def writer(w: int) -> None:
        ch = grpc.insecure_channel(member.endpoint)
        kv = procs.rpc_pb2_grpc.KVStub(ch)
        i = 0
        while not stop.is_set():
            key = f"w{w}/k{i:06d}".encode()
            value = os.urandom(16).hex().encode()
            try:
                resp = kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=5)
            except grpc.RpcError:
                break  # the member is gone; this put is indeterminate, not acknowledged
            with lock:
                acked[key] = (value, resp.header.revision)
            i += 1
        ch.close()

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    for t in threads:
        t.start()
    time.sleep(duration)
    member.kill()
    stop.set()
    for t in threads:
        t.join(10)
    return acked


def test_kill_9_under_concurrent_writes_loses_no_acknowledged_write(etcdx_server: procs.Member) -> None:
    acked = _write_concurrently(etcdx_server, writers=8, duration=2.0)
    assert len(acked) > 50, "the writers should have been acknowledged many times before the kill"
    etcdx_server.start()
    kv = etcdx_server.kv
    for key, (value, rev) in acked.items():
        got = kv.Range(rpc_pb2.RangeRequest(key=key), timeout=5)
        assert got.kvs, f"acknowledged key {key!r} (revision {rev}) lost after kill -9"
        assert got.kvs[0].value == value
        assert got.kvs[0].mod_revision == rev
    revs = sorted(rev for _, rev in acked.values())
    assert len(set(revs)) == len(revs), "two acknowledged puts share a revision"
    after = kv.Put(rpc_pb2.PutRequest(key=b"after-restart", value=b"v"), timeout=5)
    assert after.header.revision > revs[-1], "revisions must continue after the restart"


def test_torn_wal_tail_is_repaired_on_boot(etcdx_server: procs.Member) -> None:
    kv = etcdx_server.kv
    for i in range(20):
        kv.Put(rpc_pb2.PutRequest(key=f"k{i}".encode(), value=b"v"), timeout=5)
    etcdx_server.kill()
    last = _wal_segments(etcdx_server)[-1]
    end = _data_end(last)
    with open(last, "r+b") as fh:  # a record torn half-way: its last bytes never reached the disk
        fh.seek(end - 5)
        fh.write(b"\x00" * 5)
        fh.seek(end + 64)
        fh.write(random.Random(7).randbytes(3))  # and stray bytes past it, as a torn write leaves
    etcdx_server.start()
    kv = etcdx_server.kv
    got = kv.Range(rpc_pb2.RangeRequest(key=b"k", range_end=b"l"), timeout=5)
    assert 19 <= got.count <= 20, "only the torn last record may be lost"
    assert "torn write" in etcdx_server.log_tail(200), "the repair should be logged"
    kv.Put(rpc_pb2.PutRequest(key=b"after", value=b"v"), timeout=5)
    etcdx_server.restart()
    assert etcdx_server.kv.Range(rpc_pb2.RangeRequest(key=b"after"), timeout=5).count == 1


def test_corrupt_wal_record_in_the_middle_refuses_to_start(etcdx_server: procs.Member) -> None:
    kv = etcdx_server.kv
    for i in range(50):
        kv.Put(rpc_pb2.PutRequest(key=f"k{i}".encode(), value=b"x" * 100), timeout=5)
    etcdx_server.stop()
    seg = _wal_segments(etcdx_server)[-1]
    end = _data_end(seg)
    with open(seg, "r+b") as fh:
        fh.seek(end // 2)
        b = fh.read(1)
        fh.seek(end // 2)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(procs.MemberStartError):
        etcdx_server.start(timeout=15)
    assert not etcdx_server.is_running(), "a member with a corrupt WAL must not keep running"
    assert "corrupt" in etcdx_server.log_tail().lower()
