"""Requests other members send this one over the peer transport (besides raft's messages).

Some any member answers: the membership (a joining member, or one that
suspects its own removal) and HashKV (corruption checks). The rest only the
leader answers (lease keep-alive and time-to-live: only it counts TTLs down;
learner promotion: only it knows how far the learner got); a member that is
not the leader refuses them rather than forward again, so the caller asks the
leader it knows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Awaitable, Callable

from etcdx.pb import rpc_pb2
from etcdx.server import bootstrap, errors
from etcdx.transport import RemoteError

if TYPE_CHECKING:
    from etcdx.server.etcdserver import EtcdServer


class PeerRequests:
    def __init__(self, server: EtcdServer) -> None:
        self.s = server

    async def handle(self, method: str, payload: bytes) -> bytes:
        s = self.s
        try:
            if method == "members":
                return bootstrap.members_payload(s.cluster_id, s.stores.members, s.stores.removed_ids)
            if method == "hashkv":
                return await s.corruption.answer(payload)
            handler = _LEADER_ONLY.get(method)
            if handler is None:
                raise RemoteError(f"UNIMPLEMENTED unknown peer request {method}")
            if s.driver.node.lead != s.member_id:
                raise errors.NOT_LEADER
            return await handler(s, payload)
        except errors.EtcdError as err:
            raise RemoteError(f"{err.code} {err.message}") from None


async def _lease_renew(s: EtcdServer, payload: bytes) -> bytes:
    ttl = await s.leases.renew(int.from_bytes(payload, "big", signed=True))
    return ttl.to_bytes(8, "big", signed=True)


async def _lease_ttl(s: EtcdServer, payload: bytes) -> bytes:
    resp = await s.leases.time_to_live(rpc_pb2.LeaseTimeToLiveRequest.FromString(payload))
    return resp.SerializeToString()


async def _member_promote(s: EtcdServer, payload: bytes) -> bytes:
    resp = await s.cluster.member_promote(rpc_pb2.MemberPromoteRequest.FromString(payload))
    return resp.SerializeToString()


_LEADER_ONLY: dict[str, Callable[[EtcdServer, bytes], Awaitable[bytes]]] = {
    "lease_renew": _lease_renew, "lease_ttl": _lease_ttl, "member_promote": _member_promote}
