"""Streams that ask for a leader (gRPC metadata ``hasleader: true``) end when the member loses it.

etcd's clients set this metadata on watches so that a watch on a member cut
off from its cluster fails over instead of hanging: the member refuses such a
stream without a leader and ends it with Unavailable "etcdserver: no leader"
after a few leaderless election timeouts. A stream without the metadata stays
open. Checked on etcd and etcdx alike.
"""

from __future__ import annotations

import queue
import threading

import grpc
import pytest

from etcdx.pb import rpc_pb2
from support import procs
from support.cluster import Cluster

pytestmark = [pytest.mark.timeout(120), pytest.mark.etcd]

FAST = ["--heartbeat-interval", "50", "--election-timeout", "500"]
HAS_LEADER = (("hasleader", "true"),)


class _Watch:
    def __init__(self, member, metadata=()) -> None:
        self.requests: queue.Queue = queue.Queue()
        self.requests.put(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"k")))
        self.call = member.watch.Watch(iter(self.requests.get, None), metadata=metadata, timeout=60)
        self.ended: queue.Queue = queue.Queue()
        first = next(self.call)
        assert first.created
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        try:
            for _ in self.call:
                pass
            self.ended.put(("end", ""))
        except grpc.RpcError as e:
            self.ended.put((e.code(), e.details()))


@pytest.mark.parametrize("kind", ["etcd", "etcdx"])
def test_a_watch_that_requires_a_leader_ends_when_the_member_is_cut_off(tmp_path, kind) -> None:
    procs.require(kind)
    with Cluster(kind, tmp_path, size=3, extra_args=FAST).start() as c:
        lonely = c.live_member(exclude=[c.leader()])
        strict, lax = _Watch(lonely, HAS_LEADER), _Watch(lonely)
        for m in c.members:
            if m is not lonely:
                m.kill()
        assert strict.ended.get(timeout=20) == (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
        assert lax.ended.empty()
        with pytest.raises(grpc.RpcError) as err:
            next(_Watch(lonely, HAS_LEADER).call)
        assert (err.value.code(), err.value.details()) == (grpc.StatusCode.UNAVAILABLE, "etcdserver: no leader")
        strict.requests.put(None), lax.requests.put(None)
        lax.call.cancel()
