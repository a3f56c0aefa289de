"""A replicated etcdx cluster of real member processes on loopback.

Each test asserts one of etcd's promises under a real fault: kill -9 of the
leader loses no acknowledged write and a new leader is elected within a few
election timeouts; a leader cut off by the fault proxy steps down and serves
no stale read; a member that missed many writes catches up by snapshot;
membership grows and shrinks under load; remaining lease TTLs survive a
leader change.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest

from etcdx.pb import rpc_pb2
from tests.support import procs
from tests.support.cluster import Cluster
from tests.support.procs import require

pytestmark = pytest.mark.timeout(180)

FAST = ["--heartbeat-interval", "50", "--election-timeout", "500"]
ONE_PROCESS = ["--api-workers", "0"]


@pytest.fixture
def cluster(tmp_path):
    require("etcdx")
    c = Cluster("etcdx", tmp_path, size=3, extra_args=FAST + ONE_PROCESS)
    try:
        yield c.start()
    finally:
        c.close()


def put(m, key: bytes, value: bytes, timeout: float = 3.0) -> rpc_pb2.PutResponse:
    return m.kv.Put(rpc_pb2.PutRequest(key=key, value=value), timeout=timeout)


def get(m, key: bytes, serializable: bool = False, timeout: float = 3.0) -> rpc_pb2.RangeResponse:
    return m.kv.Range(rpc_pb2.RangeRequest(key=key, serializable=serializable), timeout=timeout)


def eventually(fn, timeout: float = 10.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = fn()
            if result:
                return result
        except (grpc.RpcError, AssertionError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


class Writers:
    """Concurrent writers on every live member, recording each acknowledged put."""

    def __init__(self, members, prefix: bytes, threads_per_member: int = 2) -> None:
        self.acked: dict[bytes, tuple[bytes, int]] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(m, prefix + b"%d-%d" % (i, j)), daemon=True)
                         for i, m in enumerate(members) for j in range(threads_per_member)]

    def _run(self, m, prefix: bytes) -> None:
        n = 0
        while not self._stop.is_set():
            key, value = prefix + b"-%06d" % n, b"v%d" % n
            n += 1
            try:
                resp = put(m, key, value, timeout=2.0)
            except grpc.RpcError:
                with self._lock:
                    self.errors += 1
                time.sleep(0.02)
                continue
            except ValueError:  # grpc's "closed channel": the test removed this member and closed it
                return
            with self._lock:
                self.acked[key] = (value, resp.header.revision)

    def __enter__(self) -> Writers:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def assert_all_present(m, acked: dict[bytes, tuple[bytes, int]]) -> None:
    """Every acknowledged put is on ``m`` with its value and revision: one linearizable read of
    every key (a read per key took half a minute for a few thousand keys on three members)."""
    resp = m.kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0"), timeout=30)
    stored = {kv.key: (kv.value, kv.mod_revision) for kv in resp.kvs}
    for key, (value, revision) in acked.items():
        assert key in stored, f"acknowledged put of {key!r} at revision {revision} is lost"
        assert stored[key] == (value, revision)


def test_replicates_and_agrees(cluster):
    leader = cluster.leader()
    statuses = [m.status() for m in cluster.members]
    assert {s.leader for s in statuses} == {leader.member_id}
    assert len({s.raftTerm for s in statuses}) == 1
    assert [s.isLearner for s in statuses] == [False] * 3
    follower = next(m for m in cluster.members if m is not leader)
    resp = put(follower, b"k", b"v1")  # forwarded to the leader
    for m in cluster.members:
        kv = get(m, b"k").kvs[0]  # linearizable on every member
        assert (kv.value, kv.mod_revision) == (b"v1", resp.header.revision)
    headers = {get(m, b"k").header.cluster_id for m in cluster.members}
    assert len(headers) == 1
    members = follower.cluster.MemberList(rpc_pb2.MemberListRequest()).members
    assert sorted(m.name for m in members) == ["m1", "m2", "m3"]
    # each member publishes its client URLs through the log once it runs
    eventually(lambda: all(m.clientURLs for m in follower.cluster.MemberList(rpc_pb2.MemberListRequest()).members))


def test_kill_leader_under_writes_loses_nothing(cluster):
    old = cluster.leader()
    with Writers(cluster.members, b"kill/") as w:
        time.sleep(1.5)
        killed_at = time.monotonic()
        old.kill()
        survivors = [m for m in cluster.members if m is not old]
        new = eventually(lambda: _leader_among(survivors, exclude=old.member_id), timeout=10)
        elected_after = time.monotonic() - killed_at
        time.sleep(1.5)
    assert new is not old
    assert elected_after < 5.0, f"new leader after {elected_after:.1f}s (election timeout 0.5 s)"
    assert len(w.acked) > 50, "the writers made no progress"
    old.start()
    for m in cluster.members:
        assert_all_present(m, w.acked)
    revisions = sorted(rev for _, rev in w.acked.values())
    assert len(set(revisions)) == len(revisions), "two acknowledged puts share a revision"


def _leader_among(members, exclude: int):
    views = set()
    for m in members:
        st = m.status(timeout=0.5)
        views.add(st.leader)
    if len(views) == 1 and 0 not in views and exclude not in views:
        return next(m for m in members if m.member_id in views)
    return None


def test_restarted_member_catches_up_by_snapshot(tmp_path):
    require("etcdx")
    args = FAST + ONE_PROCESS + ["--snapshot-count", "200", "--snapshot-catchup-entries", "50"]
    with Cluster("etcdx", tmp_path, size=3, extra_args=args) as c:
        c.start()
        leader = c.leader()
        lagger = next(m for m in c.members if m is not leader)
        lagger.kill()
        for i in range(800):
            put(leader, b"snap/%04d" % i, b"x" * 100)
        time.sleep(1.5)  # let the leader snapshot and compact its log past the lagger
        lagger.start()
        eventually(lambda: get(lagger, b"snap/0799", serializable=True).kvs, timeout=20)
        eventually(lambda: "installed snapshot" in lagger.log_path.read_text(), timeout=5)
        assert get(lagger, b"snap/", serializable=True).header.revision == get(leader, b"snap/").header.revision
        rng = rpc_pb2.RangeRequest(key=b"snap/", range_end=b"snap0", count_only=True, serializable=True)
        assert lagger.kv.Range(rng).count == 800
        # and it keeps following after the snapshot
        put(leader, b"after", b"1")
        eventually(lambda: get(lagger, b"after", serializable=True).kvs, timeout=5)


def test_isolated_leader_steps_down_and_serves_no_stale_read(tmp_path):
    require("etcdx")
    with Cluster("etcdx", tmp_path, size=3, extra_args=FAST + ONE_PROCESS, proxied=True) as c:
        c.start()
        old = c.leader()
        others = [m for m in c.members if m is not old]
        put(old, b"k", b"before")
        c.net.isolate(old)
        new = eventually(lambda: _leader_among(others, exclude=old.member_id), timeout=10)
        put(new, b"k", b"after")
        # The old leader must not answer a linearizable read with "before".
        try:
            resp = get(old, b"k", timeout=2.0)
        except grpc.RpcError as err:
            assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
        else:
            pytest.fail(f"isolated old leader served a linearizable read: {resp.kvs}")
        eventually(lambda: old.status().leader != old.member_id, timeout=5)
        c.net.heal()
        eventually(lambda: get(old, b"k", timeout=1.0).kvs[0].value == b"after", timeout=10)


def test_membership_grows_to_five_and_shrinks_to_three_under_load(tmp_path):
    require("etcdx")
    with Cluster("etcdx", tmp_path, size=1, extra_args=FAST + ONE_PROCESS) as c:
        c.start()
        first = c.members[0]
        with Writers([first], b"grow/", threads_per_member=2) as w:
            learner = add_member(c, "m2", learner=True)
            st = learner.status()
            assert st.isLearner
            with pytest.raises(grpc.RpcError) as err:
                put(learner, b"x", b"y")
            assert err.value.details() == "etcdserver: rpc not supported for learner"
            eventually(lambda: first.cluster.MemberPromote(
                rpc_pb2.MemberPromoteRequest(ID=learner.member_id), timeout=3), timeout=15)
            eventually(lambda: not learner.status().isLearner, timeout=5)
            for name in ("m3", "m4", "m5"):
                add_member(c, name)
            members = first.cluster.MemberList(rpc_pb2.MemberListRequest()).members
            assert len(members) == 5 and not any(m.isLearner for m in members)
            time.sleep(1.0)
            for name in ("m1", "m2"):  # m1 probably leads
                eventually(lambda: c.remove_member(c.member_by_name(name)) or True, timeout=20, interval=0.5)
            time.sleep(1.0)
        survivors = c.members
        assert len(survivors) == 3
        members = survivors[0].cluster.MemberList(rpc_pb2.MemberListRequest()).members
        assert sorted(m.name for m in members) == ["m3", "m4", "m5"]
        leader = c.leader()
        assert leader in survivors
        assert len(w.acked) > 50
        for m in survivors:
            assert_all_present(m, w.acked)


def add_member(c: Cluster, name: str, learner: bool = False):
    """As etcd, a member refuses reconfigurations until it has seen every voter up for 5 s."""
    deadline = time.monotonic() + 20
    while True:
        try:
            return c.add_member(name, learner=learner)
        except grpc.RpcError as err:
            if err.details() != "etcdserver: unhealthy cluster" or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_lease_remaining_ttl_survives_leader_change(tmp_path):
    require("etcdx")
    args = FAST + ONE_PROCESS + ["--experimental-lease-checkpoint-interval", "1s"]
    with Cluster("etcdx", tmp_path, size=3, extra_args=args) as c:
        c.start()
        leader = c.leader()
        lease = leader.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=3).ID
        time.sleep(4.0)  # several checkpoints
        others = [m for m in c.members if m is not leader]
        leader.cluster  # noqa: B018 - channel stays open for the transfer
        leader.maintenance.MoveLeader(rpc_pb2.MoveLeaderRequest(targetID=others[0].member_id), timeout=5)
        eventually(lambda: _leader_among(c.members, exclude=leader.member_id), timeout=10)
        ttl = others[1].lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease), timeout=3)
        # Reset would give ~30 s; the checkpointed remainder is ~26 s (+ at most an election timeout).
        assert ttl.grantedTTL == 30
        assert 20 <= ttl.TTL <= 28, ttl


def test_member_of_another_cluster_is_refused(tmp_path):
    """Peers check the cluster id at the handshake: a member bootstrapped with another
    --initial-cluster-token (hence another cluster id) is not let in."""
    require("etcdx")
    with Cluster("etcdx", tmp_path / "a", size=3, extra_args=FAST + ONE_PROCESS) as c:
        c.start()
        target = c.members[1]
        stranger = procs.Member("etcdx", tmp_path / "b", name="x1", extra_args=FAST + ONE_PROCESS + [
            "--initial-cluster-token", "another-token"])
        stranger.extra_args += ["--initial-cluster", f"x1={stranger.peer_url},{target.name}={target.peer_url}"]
        try:
            stranger.start(wait=False)
            eventually(lambda: "cluster ID mismatch" in target.log_path.read_text(), timeout=15)
            time.sleep(1.0)
            assert stranger.is_running()
            with pytest.raises(grpc.RpcError):
                get(stranger, b"k", timeout=1.0)  # no quorum: it never joined anything
            statuses = [m.status() for m in c.members]
            assert len({s.header.cluster_id for s in statuses}) == 1
            assert len(target.cluster.MemberList(rpc_pb2.MemberListRequest()).members) == 3
        finally:
            stranger.close()
