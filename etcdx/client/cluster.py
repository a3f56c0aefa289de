"""Cluster membership programs: list, add, remove, update and promote members."""

from __future__ import annotations

from collections.abc import Iterable

from etcdx.pb import rpc_pb2

from .ops import Call, Program
from .types import Header, Member, MemberAddResult


def _members(response: rpc_pb2.MemberListResponse) -> tuple[Member, ...]:
    return tuple(Member.from_pb(m) for m in response.members)


def member_list(*, linearizable: bool = False, timeout: float | None = None) -> Program[tuple[Member, ...]]:
    """Every member (``linearizable`` asks etcd 3.5+ for a quorum-confirmed list)."""
    request = rpc_pb2.MemberListRequest(linearizable=linearizable)
    response = yield Call("Cluster", "MemberList", request, idempotent=True, timeout=timeout)
    return _members(response)


def member_add(
    peer_urls: Iterable[str], *, learner: bool = False, timeout: float | None = None
) -> Program[MemberAddResult]:
    """Add a member (start it afterwards with ``--initial-cluster-state existing``)."""
    request = rpc_pb2.MemberAddRequest(peerURLs=list(peer_urls), isLearner=learner)
    response = yield Call("Cluster", "MemberAdd", request, idempotent=False, timeout=timeout)
    return MemberAddResult(Member.from_pb(response.member), _members(response), Header.from_pb(response.header))


def member_remove(member_id: int, *, timeout: float | None = None) -> Program[tuple[Member, ...]]:
    """Remove a member; returns the members left."""
    request = rpc_pb2.MemberRemoveRequest(ID=member_id)
    response = yield Call("Cluster", "MemberRemove", request, idempotent=False, timeout=timeout)
    return _members(response)


def member_update(member_id: int, peer_urls: Iterable[str], *, timeout: float | None = None) -> Program[tuple[Member, ...]]:
    """Replace a member's peer URLs (setting the same URLs twice changes nothing, so it is retried)."""
    request = rpc_pb2.MemberUpdateRequest(ID=member_id, peerURLs=list(peer_urls))
    response = yield Call("Cluster", "MemberUpdate", request, idempotent=True, timeout=timeout)
    return _members(response)


def member_promote(member_id: int, *, timeout: float | None = None) -> Program[tuple[Member, ...]]:
    """Make a learner a voting member (refused until its log has caught up)."""
    request = rpc_pb2.MemberPromoteRequest(ID=member_id)
    response = yield Call("Cluster", "MemberPromote", request, idempotent=False, timeout=timeout)
    return _members(response)
