"""Membership operations of a member: the Cluster service, MoveLeader, and a member's own
publication and removal.

Membership changes are conf-change entries in the raft log (the applier
applies them); this module decides whether a change may be proposed (etcd's
strict reconfiguration checks), proposes it until it is applied, and answers
with the members after it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from etcdx.pb import raft_internal_pb2, rpc_pb2
from etcdx.raft import ProposalDropped
from etcdx.raft.types import ConfChange, ConfChangeType, StateType
from etcdx.server import bootstrap, errors
from etcdx.server.config import Config
from etcdx.server.headers import Headers
from etcdx.server.ids import IdGenerator, member_id
from etcdx.server.leader_link import LeaderLink
from etcdx.server.membership import Member, validate_conf_change
from etcdx.server.proposals import Proposals
from etcdx.server.raft_driver import RaftDriver
from etcdx.server.stores import Stores
from etcdx.transport import Transport, TransportError

log = logging.getLogger("etcdx.server")

HEALTH_INTERVAL = 5.0  # seconds a peer must have been connected before a reconfiguration relies on it
LEARNER_READY_PERCENT = 0.9  # a learner within 90% of the leader's log may be promoted

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest


class ClusterOps:
    """See the module docstring; ``transport`` is called for the current one (None before start)."""

    def __init__(self, cfg: Config, stores: Stores, headers: Headers, driver: RaftDriver,
                 proposals: Proposals, leader: LeaderLink, ids: IdGenerator, *, member_id: int,
                 transport: Callable[[], Transport | None],
                 propose: Callable[..., Awaitable[Any]],
                 barrier: Callable[[], Awaitable[None]],
                 on_removed: Callable[[], None]) -> None:
        self.cfg = cfg
        self.stores = stores
        self.headers = headers
        self.driver = driver
        self.proposals = proposals
        self.leader = leader
        self.ids = ids
        self.member_id = member_id
        self._transport = transport
        self._propose = propose
        self._barrier = barrier
        self._on_removed = on_removed
        self.published = asyncio.Event()

    @property
    def members(self) -> dict[int, Member]:
        return self.stores.members

    async def member_list(self, r: rpc_pb2.MemberListRequest | None = None) -> rpc_pb2.MemberListResponse:
        if r is not None and r.linearizable:
            await self._barrier()
        resp = rpc_pb2.MemberListResponse()
        self._fill_members(resp.members)
        self.headers.fill_without_revision(resp.header)
        return resp

    def _fill_members(self, out, members: list[Member] | None = None) -> None:
        for m in sorted(members if members is not None else self.members.values(), key=lambda m: m.id):
            out.add(ID=m.id, name=m.name, peerURLs=m.peer_urls, clientURLs=m.client_urls, isLearner=m.is_learner)

    async def member_add(self, r: rpc_pb2.MemberAddRequest) -> rpc_pb2.MemberAddResponse:
        urls = requested_peer_urls(r)
        m = Member(member_id(urls, "", time.time()), "", urls, [], r.isLearner)
        self._check_may_add(voter=not r.isLearner)
        cc = ConfChange(type=ConfChangeType.ADD_LEARNER_NODE if r.isLearner else ConfChangeType.ADD_NODE,
                        node_id=m.id, context=m.encode())
        members = await self._change_membership(cc)
        resp = rpc_pb2.MemberAddResponse()
        resp.member.ID, resp.member.peerURLs[:], resp.member.isLearner = m.id, urls, r.isLearner
        self._fill_members(resp.members, members)
        self.headers.fill_without_revision(resp.header)
        return resp

    async def member_remove(self, r: rpc_pb2.MemberRemoveRequest) -> rpc_pb2.MemberRemoveResponse:
        m = self.members.get(r.ID)
        if m is None:
            raise errors.MEMBER_NOT_FOUND
        if self.cfg.strict_reconfig_check and not m.is_learner:
            voters = [x for x in self.members.values() if not x.is_learner]
            remaining = len(voters) - 1
            if sum(1 for x in voters if x.name and x.id != r.ID) < remaining // 2 + 1:
                raise errors.NOT_ENOUGH_STARTED_MEMBERS
            transport = self._transport()
            down = r.ID != self.member_id and (transport is None or transport.active_since(r.ID) is None)
            # A member that is down is not part of the active quorum: removing it is safe.
            if not down and self._connected_voters(exclude=r.ID) < remaining // 2 + 1:
                raise errors.UNHEALTHY_CLUSTER
        members = await self._change_membership(ConfChange(type=ConfChangeType.REMOVE_NODE, node_id=r.ID))
        resp = rpc_pb2.MemberRemoveResponse()
        self._fill_members(resp.members, members)
        self.headers.fill_without_revision(resp.header)
        return resp

    async def member_update(self, r: rpc_pb2.MemberUpdateRequest) -> rpc_pb2.MemberUpdateResponse:
        urls = requested_peer_urls(r)
        old = self.members.get(r.ID)
        if old is None:
            raise errors.MEMBER_NOT_FOUND
        m = Member(r.ID, old.name, urls, old.client_urls, old.is_learner)
        members = await self._change_membership(
            ConfChange(type=ConfChangeType.UPDATE_NODE, node_id=r.ID, context=m.encode()))
        resp = rpc_pb2.MemberUpdateResponse()
        self._fill_members(resp.members, members)
        self.headers.fill_without_revision(resp.header)
        return resp

    async def member_promote(self, r: rpc_pb2.MemberPromoteRequest) -> rpc_pb2.MemberPromoteResponse:
        """Make a learner a voter; only the leader can tell whether it has caught up."""
        leader = await self.leader.wait_leader()
        if leader != self.member_id:
            raw = await self.leader.call(leader, "member_promote", r.SerializeToString())
            return rpc_pb2.MemberPromoteResponse.FromString(raw)
        m = self.members.get(r.ID)
        if m is None:
            raise errors.MEMBER_NOT_FOUND
        if not m.is_learner:
            raise errors.MEMBER_NOT_LEARNER
        progress = self.driver.node.status().progress
        mine, theirs = progress.get(self.member_id), progress.get(r.ID)
        if mine is None or theirs is None or theirs.match < mine.match * LEARNER_READY_PERCENT:
            raise errors.LEARNER_NOT_READY
        self._check_may_add(voter=True)
        cc = ConfChange(type=ConfChangeType.ADD_NODE, node_id=r.ID, context=m.encode())
        members = await self._change_membership(cc)
        resp = rpc_pb2.MemberPromoteResponse()
        self._fill_members(resp.members, members)
        self.headers.fill_without_revision(resp.header)
        return resp

    def _check_may_add(self, voter: bool) -> None:
        """etcd's strict reconfiguration checks before a member joins (or a learner becomes) a voter."""
        if not self.cfg.strict_reconfig_check:
            return
        voters = [x for x in self.members.values() if not x.is_learner]
        if voter and sum(1 for x in voters if x.name) + 1 < (len(voters) + 1) // 2 + 1:
            raise errors.NOT_ENOUGH_STARTED_MEMBERS
        if self._connected_voters() < len(voters):
            raise errors.UNHEALTHY_CLUSTER

    def _connected_voters(self, exclude: int = 0) -> int:
        """Voters (us included) this member has been connected to for HEALTH_INTERVAL seconds.

        As etcd: a reconfiguration is refused ("unhealthy cluster") unless the
        member handling it has seen the voters it depends on up for a while.
        """
        since = time.monotonic() - HEALTH_INTERVAL
        transport = self._transport()
        n = 0
        for m in self.members.values():
            if m.is_learner or m.id == exclude:
                continue
            if m.id == self.member_id:
                n += 1
                continue
            up = transport.active_since(m.id) if transport is not None else None
            if up is not None and up <= since:
                n += 1
        return n

    async def _change_membership(self, cc: ConfChange) -> list[Member]:
        """Propose a membership change and wait until it is applied here; the members after it."""
        if self.proposals.stopped:
            raise errors.STOPPED
        if self.stores.is_learner(self.member_id):
            raise errors.LEARNER_NOT_SUPPORTED
        validate_conf_change(self.members, self.stores.removed_ids, cc)
        cc.id = self.ids.next()
        fut = self.proposals.expect(cc.id)
        retry = 2 * self.cfg.election_timeout / 1000.0 + 0.5
        node = self.driver.node
        try:
            while True:
                await self.leader.wait_leader()
                try:
                    node.propose_conf_change(cc)
                except ProposalDropped:
                    pass
                self.driver.wake()
                # A leader still applying its predecessor's log turns a conf change into
                # an empty entry; propose again (a duplicate fails validation and is a no-op).
                done, _ = await asyncio.wait([fut], timeout=retry)
                if done:
                    break
        finally:
            self.proposals.forget(cc.id)
        members = await fut
        return [Member(m.id, m.name, list(m.peer_urls), list(m.client_urls), m.is_learner) for m in members]

    async def move_leader(self, r: rpc_pb2.MoveLeaderRequest) -> rpc_pb2.MoveLeaderResponse:
        node = self.driver.node
        if node.raft_state != StateType.LEADER:
            raise errors.NOT_LEADER
        target = self.members.get(r.targetID)
        if target is None or target.is_learner:
            raise errors.BAD_LEADER_TRANSFEREE
        if r.targetID != self.member_id:
            node.transfer_leader(r.targetID)
            self.driver.wake()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.proposals.timeout
            while node.lead != r.targetID:
                if loop.time() >= deadline:
                    raise errors.TIMEOUT_LEADER_TRANSFER
                await asyncio.sleep(self.cfg.heartbeat_interval / 1000.0)
            log.info("leadership transferred", extra={"fields": {"to": f"{r.targetID:x}", "term": node.term}})
        resp = rpc_pb2.MoveLeaderResponse()
        self.headers.fill(resp.header)
        return resp

    async def run_removal_check(self) -> None:
        """Notice our own removal when the entry that removed us never reaches us.

        The leader stops replicating to a member as soon as it applies its
        removal, so the member may never apply it. A member that has had no
        leader for a few election timeouts asks its peers whether it was removed.
        """
        leaderless_since: float | None = None
        patience = 3 * self.cfg.election_timeout / 1000.0
        loop = asyncio.get_running_loop()
        node = self.driver.node
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            if node.lead:
                leaderless_since = None
                continue
            leaderless_since = leaderless_since or now
            if now - leaderless_since < patience:
                continue
            transport = self._transport()
            for peer in list(self.members):
                if peer == self.member_id or transport is None:
                    continue
                try:
                    info = bootstrap.parse_members_payload(await transport.call(peer, "members", b"", timeout=1.0))
                except TransportError:
                    continue
                if self.member_id in info.removed:
                    self._on_removed()
                    return
                break

    async def run_publish(self) -> None:
        """Publish this member's name and client URLs through the log until they are applied."""
        node = self.driver.node
        while True:
            me = self.members.get(self.member_id)
            if me is not None and me.name == self.cfg.name and me.client_urls == list(self.cfg.advertise_client_urls):
                self.published.set()
                return
            if me is not None and node.lead:
                req = InternalRaftRequest(cluster_member_attr_set=raft_internal_pb2.ClusterMemberAttrSetRequest(
                    member_ID=self.member_id, name=self.cfg.name, client_urls=self.cfg.advertise_client_urls))
                try:
                    await self._propose(req, learner_ok=True)
                    log.info("published member attributes", extra={"fields": {"name": self.cfg.name}})
                    continue
                except errors.EtcdError as err:
                    log.debug("publish failed: %s", err.message)
            await asyncio.sleep(0.2)


def requested_peer_urls(r: rpc_pb2.MemberAddRequest | rpc_pb2.MemberUpdateRequest) -> list[str]:
    """The request's peer URLs, or etcd's "given member URLs are invalid"."""
    urls = list(r.peerURLs)
    if not urls or not all(_valid_peer_url(u) for u in urls):
        raise errors.MEMBER_BAD_URLS
    return urls


def _valid_peer_url(u: str) -> bool:
    try:
        parts = urlsplit(u)
        return parts.scheme in ("http", "https", "unix", "unixs") and bool(parts.netloc) and parts.port is not None
    except ValueError:
        return False
