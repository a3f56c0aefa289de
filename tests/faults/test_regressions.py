"""Violations the fault harness found, kept as regression tests.

Each entry names the seed that found it; a run of that seed's schedule must now
pass. Seeds replay the same fault schedule, not the same interleaving, so each
finding also gets a targeted scenario where one could be written.

3-member cases run only for kinds in `faults.CLUSTER_KINDS` (etcdx joins it once
its clustering has landed), so until then they run against etcd only or skip.
"""

from __future__ import annotations

import signal
import threading
import time

import grpc
import pytest

from etcdx.pb import rpc_pb2, rpc_pb2_grpc
from faults import CLUSTER_KINDS, runner
from faults.nemesis import _process_tree, _signal_all
from faults.workload import channel

# (kind, members, seed, duration, what the seed found)
FOUND = [
    (
        "etcdx", 3, 603, 45.0,
        (
            "a paused leader, once resumed, answered a linearizable get at revision 5888 although a txn "
            "had been acknowledged at revision 5958 by the new leader before the get was called (window: "
            "pause_leader m3 [34.86, 37.30]; client 2 on m3, get('a/1') [36.461, 37.325]); found on the "
            "uncommitted clustering work of 2026-11-26"
        ),
    ),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "members", "seed", "duration", "found"), FOUND, ids=[f"{k}-x{n}-seed{s}" for k, n, s, _, _ in FOUND])
def test_seed_that_found_a_violation_now_passes(kind, members, seed, duration, found):
    if members > 1 and kind not in CLUSTER_KINDS:
        pytest.skip(f"{kind} is not in faults.CLUSTER_KINDS yet")
    report = runner.run(kind, members, seed, duration, log=print)
    print(report.details())
    assert not report.violations, f"seed {seed} once found: {found}\n{report.details()}"


def _retried(call, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _leader_other_than(cluster, old, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            leader = cluster.leader(timeout=1.0)
        except TimeoutError:
            continue
        if leader is not old:
            return leader
    raise AssertionError(f"no leader other than {old.name} after {timeout}s")


PAUSE_CYCLES = 4
PROBES = 4  # reads sent to the paused member: each is a chance to join a stale round


@pytest.mark.parametrize("kind", CLUSTER_KINDS)
def test_resumed_paused_leader_serves_no_stale_linearizable_read(make_cluster, kind):
    """Seed 603's finding, targeted: pause the leader under read load, let the others
    elect a leader and acknowledge a write, send linearizable reads to the paused
    member, resume it: each read must fail or see the write.

    etcd passes every cycle. The etcdx clustering work of 2026-11-26 served a
    stale read in about 1 cycle of 10 (2 of 18 measured), so this catches it only
    sometimes; the seed above is the other net.
    """
    cluster = make_cluster(kind)
    for cycle in range(PAUSE_CYCLES):
        stale = stale_read_after_pausing_the_leader(cluster, f"v{cycle}".encode())
        assert stale is None, f"cycle {cycle}: {stale}"


def stale_read_after_pausing_the_leader(cluster, value: bytes) -> str | None:
    """One pause cycle; a description of the stale read if the resumed member served one."""
    old = cluster.leader()
    stop = threading.Event()

    def load() -> None:
        ch = channel(old.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        while not stop.is_set():
            try:
                kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=1.0)
            except grpc.RpcError:
                pass
        ch.close()

    results: list = []

    def probe() -> None:
        ch = channel(old.endpoint)
        try:
            results.append(rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10.0))
        except grpc.RpcError as e:
            results.append(e)
        ch.close()

    readers = [threading.Thread(target=load, daemon=True) for _ in range(4)]
    for t in readers:
        t.start()
    time.sleep(0.3)
    pids = _process_tree(old.pid)
    _signal_all(pids, signal.SIGSTOP)
    try:
        leader = _leader_other_than(cluster, old)
        put = _retried(lambda: leader.kv.Put(rpc_pb2.PutRequest(key=b"k", value=value), timeout=2.0))
        probers = [threading.Thread(target=probe) for _ in range(PROBES)]
        for t in probers:
            t.start()
        time.sleep(0.3)
    finally:
        _signal_all(pids, signal.SIGCONT)
    stop.set()
    for t in [*probers, *readers]:
        t.join()
    for got in results:
        if isinstance(got, grpc.RpcError):
            continue
        if got.header.revision < put.header.revision or [kv.value for kv in got.kvs] != [value]:
            return (
                f"{old.name} answered a linearizable read at revision {got.header.revision} with "
                f"{[kv.value for kv in got.kvs]} after {value!r} was acknowledged at {put.header.revision}"
            )
    return None
