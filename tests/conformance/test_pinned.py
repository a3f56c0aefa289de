"""Narrow cases the differential suite found, pinned with etcd 3.4.23's literal answers.

Each runs on a real etcd (validating the expectation) and on etcdx. Servers: one
fresh member per module per kind.
"""

from __future__ import annotations

import pytest
from support import procs

from etcdx.pb import rpc_pb2 as p

KINDS = [pytest.param("etcd", marks=pytest.mark.etcd), "etcdx"]


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    group = procs.MemberGroup(tmp_path_factory.mktemp("pinned"))
    started: dict[str, procs.Member] = {}

    def get(kind: str) -> procs.Member:
        procs.require(kind)
        if kind not in started:
            started[kind] = group.new(kind)
        return started[kind]

    yield get
    group.close()


def keys(resp) -> list[bytes]:
    return [kv.key for kv in resp.kvs]


@pytest.mark.parametrize("kind", KINDS)
def test_keys_only_range_sorts_by_the_real_values(servers, kind):
    """etcd sorts (and limits) before it strips values for keys_only, so sort_target=VALUE
    orders by the stored values even when the response carries none."""
    m = servers(kind)
    for key, value in [(b"s/a", b""), (b"s/b", b"v1"), (b"s/c", b"")]:
        m.kv.Put(p.PutRequest(key=key, value=value))
    req = p.RangeRequest(
        key=b"s/", range_end=b"s0", sort_target=p.RangeRequest.VALUE, keys_only=True
    )
    req.sort_order = p.RangeRequest.DESCEND
    assert keys(m.kv.Range(req)) == [b"s/b", b"s/a", b"s/c"]
    req.sort_order = p.RangeRequest.ASCEND
    assert keys(m.kv.Range(req)) == [b"s/a", b"s/c", b"s/b"]
    req.limit = 1
    req.sort_order = p.RangeRequest.DESCEND
    resp = m.kv.Range(req)
    assert (keys(resp), resp.more, resp.count) == ([b"s/b"], True, 3)
    assert all(kv.value == b"" for kv in resp.kvs)
