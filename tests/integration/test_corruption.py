"""The corruption checks find a member whose backend was altered on disk.

A follower of a 3-member cluster is stopped, one stored value in its ``key``
bucket is changed (same revision, other bytes: what a flipped bit on disk
would do), and it is started again:

- with ``--experimental-corrupt-check-time``, the leader finds the follower's
  HashKV differs at the same revision and raises the CORRUPT alarm for it;
  every member then refuses writes with "etcdserver: corrupt cluster" (reads go on);
- with ``--experimental-initial-corrupt-check``, the altered member finds its
  data differs from its peers' before serving and refuses to start.
"""

from __future__ import annotations

import time

import grpc
import pytest

from etcdx.backend import Backend, buckets
from etcdx.mvcc import revision as rev
from etcdx.pb import kv_pb2, rpc_pb2
from support import procs
from support.cluster import Cluster

pytestmark = pytest.mark.timeout(180)

FAST = ["--heartbeat-interval", "50", "--election-timeout", "500", "--api-workers", "0"]


def _alter_a_stored_value(data_dir) -> None:
    backend = Backend(str(data_dir / "member" / "snap" / "db"))
    try:
        with backend.write() as btx:
            for k, v in btx.scan(buckets.KEY, rev.encode(2)):
                kv = kv_pb2.KeyValue.FromString(v)
                kv.value = b"flipped" + kv.value
                btx.put(buckets.KEY, k, kv.SerializeToString())
                return
    finally:
        backend.close()


def _fill(cluster: Cluster) -> None:
    leader = cluster.leader()
    for i in range(20):
        leader.kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v%d" % i), timeout=5)


def _put_error(m) -> tuple:
    """The error a put gets, waiting out "no leader" (a member just restarted), as clients retry it."""
    deadline = time.monotonic() + 10
    while True:
        try:
            m.kv.Put(rpc_pb2.PutRequest(key=b"after", value=b"x"), timeout=5)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                return err.code(), err.details()
            time.sleep(0.1)
        else:
            return None


def test_the_periodic_check_raises_corrupt_and_writes_stop(tmp_path) -> None:
    procs.require("etcdx")
    with Cluster("etcdx", tmp_path, size=3, extra_args=[*FAST, "--experimental-corrupt-check-time", "1s"]).start() as c:
        _fill(c)
        leader = c.leader()
        follower = c.live_member(exclude=[leader])
        follower.stop()
        _alter_a_stored_value(follower.data_dir)
        follower.start()
        deadline = time.monotonic() + 30
        alarms = []
        while time.monotonic() < deadline:
            alarms = leader.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=5).alarms
            if alarms:
                break
            time.sleep(0.2)
        ids = {m.name: c._member_id_of(m) for m in c.members}
        assert [(a.memberID, a.alarm) for a in alarms] == [(ids[follower.name], rpc_pb2.CORRUPT)]
        for m in c.members:
            assert _put_error(m) == (grpc.StatusCode.DATA_LOSS, "etcdserver: corrupt cluster")
        assert leader.kv.Range(rpc_pb2.RangeRequest(key=b"k1"), timeout=5).kvs[0].value == b"v1"


def test_the_initial_check_keeps_an_altered_member_from_serving(tmp_path) -> None:
    procs.require("etcdx")
    with Cluster("etcdx", tmp_path, size=3, extra_args=FAST).start() as c:
        _fill(c)
        follower = c.live_member(exclude=[c.leader()])
        follower.stop()
        _alter_a_stored_value(follower.data_dir)
        follower.extra_args = [*follower.extra_args, "--experimental-initial-corrupt-check"]
        with pytest.raises(procs.MemberStartError):
            follower.start(timeout=20)
        assert follower.proc.wait(10) != 0
        assert "found data inconsistency with peers" in follower.log_tail(200)
        # An intact member passes the same check and serves.
        other = c.live_member(exclude=[c.leader(), follower])
        other.stop()
        other.extra_args = [*other.extra_args, "--experimental-initial-corrupt-check"]
        other.start()
        assert other.kv.Range(rpc_pb2.RangeRequest(key=b"k1", serializable=True), timeout=5).count == 1
