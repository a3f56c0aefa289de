"""support.cluster against real clusters: leader, replication, membership, and the proxies' faults."""

from __future__ import annotations

import time

import grpc
import pytest

from etcdx.pb import rpc_pb2
from faults import CLUSTER_KINDS


def names(members) -> list[str]:
    return sorted(m.name for m in members)


def retried(call, timeout: float = 10.0):
    """``call()`` retried while the cluster settles (leader changed, no leader yet)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except grpc.RpcError as e:
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def new_leader(cluster, old, timeout: float = 15.0):
    """The leader once one other than ``old`` is agreed on."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            leader = cluster.leader(timeout=1.0)
            if leader is not old:
                return leader
        except TimeoutError:
            pass
        assert time.monotonic() < deadline, f"{old.name} is still the leader"


@pytest.mark.parametrize("kind", CLUSTER_KINDS)
def test_members_agree_on_a_leader_and_a_write_is_read_everywhere(make_cluster, kind):
    cluster = make_cluster(kind)
    leader = cluster.leader()
    assert cluster.member_by_id(leader.member_id) is leader
    assert len(set(cluster.endpoints)) == 3
    follower = next(m for m in cluster.members if m is not leader)
    put = follower.kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=5)
    for m in cluster.members:
        got = m.kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=5)
        assert [kv.value for kv in got.kvs] == [b"v"]
        assert got.header.revision == put.header.revision


@pytest.mark.parametrize("kind", CLUSTER_KINDS)
def test_added_member_joins_and_removed_member_leaves(make_cluster, kind):
    cluster = make_cluster(kind, proxied=True)
    cluster.members[0].kv.Put(rpc_pb2.PutRequest(key=b"before", value=b"1"), timeout=5)
    m4 = cluster.add_member("m4")
    assert cluster.proxy(m4) is not None
    listed = m4.cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=5).members
    assert sorted(m.name for m in listed) == ["m1", "m2", "m3", "m4"]
    assert all(url.startswith(cluster.proxy(m4).url) for m in listed if m.ID == m4.member_id for url in m.peerURLs)
    got = m4.kv.Range(rpc_pb2.RangeRequest(key=b"before"), timeout=5)
    assert [kv.value for kv in got.kvs] == [b"1"]
    cluster.remove_member(m4)
    assert not m4.is_running()
    listed = cluster.members[0].cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=5).members
    assert sorted(m.name for m in listed) == ["m1", "m2", "m3"]


@pytest.mark.parametrize("kind", CLUSTER_KINDS)
def test_isolated_leader_is_replaced_and_rejoins_after_heal(make_cluster, kind):
    cluster = make_cluster(kind, proxied=True)
    old = cluster.leader()
    cluster.net.isolate(old)
    leader = new_leader(cluster, old)
    with pytest.raises(grpc.RpcError):
        old.kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"lost"), timeout=1)
    put = retried(lambda: leader.kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=5))
    cluster.net.heal()
    got = retried(lambda: old.kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=5))
    assert [kv.value for kv in got.kvs] == [b"v"]
    assert got.header.revision >= put.header.revision


@pytest.mark.parametrize("kind", CLUSTER_KINDS)
def test_leader_that_cannot_send_is_replaced(make_cluster, kind):
    cluster = make_cluster(kind, proxied=True)
    old = cluster.leader()
    cluster.net.one_way([old], [m for m in cluster.members if m is not old])
    new_leader(cluster, old)
    # etcd sends a member's messages on streams the peers dialled to it, etcdx on streams it
    # dialled to them: the bytes are discarded at its own proxy or at theirs.
    assert sum(cluster.proxy(m).stats.bytes_discarded for m in cluster.members) > 0
    cluster.net.heal()
    retried(lambda: old.kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=2))
    cluster.leader()


@pytest.mark.parametrize("kind", CLUSTER_KINDS)
def test_killed_member_restarts_with_its_id(make_cluster, kind):
    cluster = make_cluster(kind, proxied=True)
    m = cluster.members[1]
    member_id = m.member_id
    m.kill()
    retried(lambda: cluster.members[0].kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=5))
    m.start()
    assert m.status(timeout=5).header.member_id == member_id
    assert cluster.leader() is not None
