"""Long maintenance work never stalls the member, and a client that leaves frees what it held.

- A Snapshot client that disconnects mid-stream: the member closes the
  database-sized temporary file within a second (it used to keep a producer
  thread blocked forever, holding the file).
- Defragmenting a big store: the copy runs off the event loop that ticks raft,
  so the member keeps answering, and on the leader of a 3-member cluster under
  writes heartbeats go on and no election happens (it used to run on the loop:
  the member fell silent for the whole copy, and with a big enough store the
  leader lost its leadership).
"""

from __future__ import annotations

import os
import threading
import time

import grpc
import pytest

from etcdx.pb import rpc_pb2
from support import procs
from support.cluster import Cluster

pytestmark = pytest.mark.timeout(300)


def _deleted_files(pid: int, under: str) -> list[str]:
    """Files process ``pid`` holds open that were unlinked from under ``under``."""
    fd_dir = f"/proc/{pid}/fd"
    found = []
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith(under) and target.endswith("(deleted)"):
            found.append(target)
    return found


def _fill(kv, megabytes: int, value_kib: int = 512) -> None:
    value = os.urandom(value_kib * 1024)
    for i in range(megabytes * 1024 // value_kib):
        kv.Put(rpc_pb2.PutRequest(key=b"fill/%06d" % i, value=value), timeout=30)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_a_snapshot_client_that_leaves_frees_the_file_within_a_second(member_group, workers: str) -> None:
    procs.require("etcdx")
    m = member_group.new("etcdx", extra_args=["--api-workers", workers])
    _fill(m.kv, 16)
    data_dir = str(m.base_dir)
    call = m.maintenance.Snapshot(rpc_pb2.SnapshotRequest(), timeout=60)
    first = next(call)
    assert first.remaining_bytes > 1 << 20  # far from done
    assert _deleted_files(m.pid, data_dir), "the member holds the snapshot file while streaming"
    call.cancel()
    deadline = time.monotonic() + 1.0
    while _deleted_files(m.pid, data_dir) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _deleted_files(m.pid, data_dir) == []
    assert m.kv.Range(rpc_pb2.RangeRequest(key=b"fill/000000"), timeout=5).count == 1


def _defragment_under_writes(tmp_path, megabytes: int) -> None:
    procs.require("etcdx")
    with Cluster("etcdx", tmp_path, size=3, extra_args=["--election-timeout", "1000"]).start() as cluster:
        leader = cluster.leader()
        _fill(leader.kv, megabytes)
        follower = cluster.live_member(exclude=[leader])
        before = leader.maintenance.Status(rpc_pb2.StatusRequest(), timeout=5)
        stop = threading.Event()
        written: list[int] = []
        errors: list[str] = []

        def write() -> None:
            i = 0
            while not stop.is_set():
                try:
                    follower.kv.Put(rpc_pb2.PutRequest(key=b"w/%d" % i, value=b"v"), timeout=10)
                    written.append(i)
                except grpc.RpcError as e:
                    errors.append(f"{e.code().name}: {e.details()}")
                i += 1

        writer = threading.Thread(target=write)
        writer.start()
        try:
            started = time.monotonic()
            leader.maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=120)
            took = time.monotonic() - started
            print(f"defragment of {megabytes} MB took {took:.2f} s")
        finally:
            stop.set()
            writer.join(30)
        after = leader.maintenance.Status(rpc_pb2.StatusRequest(), timeout=5)
        assert (after.leader, after.raftTerm) == (before.leader, before.raftTerm), \
            f"leadership changed during a {took:.1f} s defragment"
        assert written and not errors, errors[:5]
        got = leader.kv.Range(rpc_pb2.RangeRequest(key=b"w/", range_end=b"w0", count_only=True), timeout=10)
        assert got.count == len(written)
        filled = leader.kv.Range(rpc_pb2.RangeRequest(key=b"fill/", range_end=b"fill0", count_only=True), timeout=10)
        assert filled.count == megabytes * 2


def test_the_member_answers_while_it_defragments(member_group) -> None:
    """Copying a big store takes a while (~0.4 s for 400 MB here): calls made meanwhile
    that need no apply (Status) are answered before the defragment ends. With the copy
    on the event loop, none were: the member was deaf for the whole copy."""
    procs.require("etcdx")
    m = member_group.new("etcdx", extra_args=["--api-workers", "0"])
    _fill(m.kv, 400)
    done = threading.Event()

    def defragment() -> None:
        try:
            m.maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=120)
        finally:
            done.set()

    worker = threading.Thread(target=defragment)
    worker.start()
    answered = 0
    while not done.is_set():
        m.maintenance.Status(rpc_pb2.StatusRequest(), timeout=30)
        if not done.is_set():
            answered += 1
    worker.join()
    assert answered >= 5, f"only {answered} Status calls were answered during the defragment"
    assert m.kv.Range(rpc_pb2.RangeRequest(key=b"fill/", range_end=b"fill0", count_only=True), timeout=10).count == 800


@pytest.mark.slow
def test_defragment_of_a_1gb_store_under_writes_keeps_the_leadership(tmp_path) -> None:
    _defragment_under_writes(tmp_path, megabytes=1024)
