"""Response header revisions outside the KV service, pinned to etcd 3.4.

etcd fills header.revision from the store on KV, Lease, Status and Hash calls,
but not on MemberList, Alarm and Defragment (0), nor on the WatchResponse that
cancels a watcher whose start revision was compacted. Each server is one
fresh member per module with one put applied (so the store is at revision 2).
"""

from __future__ import annotations

import pytest
from support import compare, procs

from etcdx.pb import rpc_pb2 as p

KINDS = [pytest.param("etcd", marks=pytest.mark.etcd), "etcdx"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    group = procs.MemberGroup(tmp_path_factory.mktemp("headers"))
    started: dict[str, procs.Member] = {}

    def get(kind: str) -> procs.Member:
        procs.require(kind)
        if kind not in started:
            m = group.new(kind)
            m.kv.Put(p.PutRequest(key=b"a", value=b"1"))
            started[kind] = m
        return started[kind]

    yield get
    group.close()


CALLS = {
    # name: (call, header.revision etcd answers)
    "MemberList": (lambda m: m.cluster.MemberList(p.MemberListRequest()), 0),
    "AlarmGet": (
        lambda m: m.maintenance.Alarm(p.AlarmRequest(action=p.AlarmRequest.GET)),
        0,
    ),
    "Defragment": (lambda m: m.maintenance.Defragment(p.DefragmentRequest()), 0),
    "Status": (lambda m: m.maintenance.Status(p.StatusRequest()), 2),
    "Hash": (lambda m: m.maintenance.Hash(p.HashRequest()), 2),
    "HashKV": (lambda m: m.maintenance.HashKV(p.HashKVRequest()), 2),
    "LeaseLeases": (lambda m: m.lease.LeaseLeases(p.LeaseLeasesRequest()), 2),
    "LeaseTimeToLive": (
        lambda m: m.lease.LeaseTimeToLive(p.LeaseTimeToLiveRequest(ID=12345)),
        2,
    ),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("kind", KINDS)
def test_header_revision(servers, kind, call):
    fn, expected = CALLS[call]
    assert fn(servers(kind)).header.revision == expected


@pytest.mark.parametrize("kind", KINDS)
def test_compaction_cancel_response_has_no_header_revision(servers, kind):
    m = servers(kind)
    for i in range(3):
        m.kv.Put(p.PutRequest(key=b"w", value=b"%d" % i))
    m.kv.Compact(p.CompactionRequest(revision=4, physical=True))
    replay = compare.replay_watch(
        m.watch, p.WatchCreateRequest(key=b"w", start_revision=2), until_revision=10**9
    )
    canceled = [r for r in replay.control if r.canceled]
    assert len(canceled) == 1 and canceled[0].compact_revision == 4, replay.lines()
    assert canceled[0].header.revision == 0
