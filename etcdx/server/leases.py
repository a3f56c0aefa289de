"""Lease requests and the leader's lease jobs (expiry, checkpoints).

Grant and revoke go through the log. Only the leader counts TTLs down, so a
keep-alive or time-to-live reaching a follower is forwarded to the leader.
The leader revokes expired leases through the log and, with checkpoints on,
persists the remaining TTL of long leases so a new leader resumes from it
instead of granting a full TTL again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from etcdx.lease import errors as lease_errors
from etcdx.pb import raft_internal_pb2, rpc_pb2
from etcdx.server import errors
from etcdx.server.auth_requests import NO_CREDENTIALS, AuthRequests, Credentials, request_for
from etcdx.server.headers import Headers
from etcdx.server.ids import IdGenerator
from etcdx.server.kv_requests import KV_OVERHEAD, Quota
from etcdx.server.leader_link import LeaderLink
from etcdx.server.stores import Stores

log = logging.getLogger("etcdx.server")

MAX_LEASE_TTL = 9_000_000_000
EXPIRY_INTERVAL = 0.5  # seconds between looks for expired leases
REVOKES_IN_FLIGHT = 64  # expired leases being revoked at once
InternalRaftRequest = raft_internal_pb2.InternalRaftRequest
Propose = Callable[[InternalRaftRequest], Awaitable[Any]]


class LeaseRequests:
    def __init__(self, stores: Stores, headers: Headers, quota: Quota, ids: IdGenerator,
                 leader: LeaderLink, auth: AuthRequests, *, member_id: int, propose: Propose,
                 barrier: Callable[[], Awaitable[None]], checkpoints: bool) -> None:
        self.stores = stores
        self.headers = headers
        self.auth = auth
        self.quota = quota
        self.ids = ids
        self.leader = leader
        self.member_id = member_id
        self._propose = propose
        self._barrier = barrier
        self._checkpoints = checkpoints

    async def grant(self, r: rpc_pb2.LeaseGrantRequest,
                    creds: Credentials = NO_CREDENTIALS) -> rpc_pb2.LeaseGrantResponse:
        """Any user may grant a lease (etcd checks only the token)."""
        if r.TTL > MAX_LEASE_TTL:
            raise errors.LEASE_TTL_TOO_LARGE
        self.quota.check(KV_OVERHEAD)
        req = rpc_pb2.LeaseGrantRequest(TTL=r.TTL, ID=r.ID)
        if req.ID == 0:
            req.ID = self.ids.next() & ((1 << 63) - 1)
        info = await self.auth.identify(creds)
        resp = await self._propose(request_for(info, lease_grant=req))
        self.headers.fill(resp.header)
        return resp

    async def revoke(self, r: rpc_pb2.LeaseRevokeRequest,
                     creds: Credentials = NO_CREDENTIALS) -> rpc_pb2.LeaseRevokeResponse:
        """The caller needs write on every key of the lease (checked when applied)."""
        req = request_for(await self.auth.identify(creds), lease_revoke=r)
        self.auth.precheck(req)
        resp = await self._propose(req)
        self.headers.fill(resp.header)
        return resp

    async def renew(self, lease_id: int) -> int:
        """Keep-alive: the new TTL, or 0 when the lease does not exist (etcd's answer)."""
        leader = await self.leader.wait_leader()
        if leader != self.member_id:
            raw = await self.leader.call(leader, "lease_renew", lease_id.to_bytes(8, "big", signed=True))
            return int.from_bytes(raw, "big", signed=True)
        await self._barrier()
        lessor = self.stores.lessor
        lease = lessor.lookup(lease_id)
        if lease is not None and lease.remaining_ttl > 0 and self._checkpoints:
            # Persist "full TTL again" first, or a new leader would resume the old remainder.
            await self._propose(InternalRaftRequest(lease_checkpoint=rpc_pb2.LeaseCheckpointRequest(
                checkpoints=[rpc_pb2.LeaseCheckpoint(ID=lease_id, remaining_TTL=0)])))
        try:
            return self.stores.lessor.renew(lease_id, time.monotonic())
        except lease_errors.LeaseNotFoundError:
            return 0
        except lease_errors.LeaseNotPrimaryError:
            raise errors.NOT_LEADER from None

    async def keep_alive(self, r: rpc_pb2.LeaseKeepAliveRequest) -> rpc_pb2.LeaseKeepAliveResponse:
        resp = rpc_pb2.LeaseKeepAliveResponse(ID=r.ID, TTL=await self.renew(r.ID))
        self.headers.fill(resp.header)
        return resp

    async def time_to_live(self, r: rpc_pb2.LeaseTimeToLiveRequest) -> rpc_pb2.LeaseTimeToLiveResponse:
        leader = await self.leader.wait_leader()
        if leader != self.member_id:
            raw = await self.leader.call(leader, "lease_ttl", r.SerializeToString())
            resp = rpc_pb2.LeaseTimeToLiveResponse.FromString(raw)
        else:
            await self._barrier()
            resp = rpc_pb2.LeaseTimeToLiveResponse(ID=r.ID)
            ttl, granted, keys = self.stores.lessor.time_to_live(r.ID, time.monotonic(), r.keys)
            resp.TTL = ttl
            if ttl != -1:
                resp.grantedTTL = granted
                if r.keys:
                    resp.keys.extend(sorted(keys))
        self.headers.fill(resp.header)
        return resp

    async def leases(self, r: rpc_pb2.LeaseLeasesRequest | None = None) -> rpc_pb2.LeaseLeasesResponse:
        await self._barrier()
        resp = rpc_pb2.LeaseLeasesResponse()
        for lease in sorted(self.stores.lessor.leases(), key=lambda lease: lease.id):
            resp.leases.add(ID=lease.id)
        self.headers.fill(resp.header)
        return resp


class LeaseJobs:
    """The leader's lease work: revoke expired leases, checkpoint long ones.

    An expired lease is revoked as root while auth is on, as etcd does: should
    the auth revision move before the revoke applies, it is refused and
    proposed again on a later look for expired leases.
    """

    def __init__(self, stores: Stores, auth: AuthRequests, *, propose: Propose,
                 checkpoint_interval: float | None) -> None:
        self.stores = stores
        self.auth = auth
        self._propose = propose
        self._checkpoint_interval = checkpoint_interval

    async def run_expiry(self) -> None:
        """Revoke expired leases through the log, a bounded number at a time."""
        revoking: set[int] = set()
        async with asyncio.TaskGroup() as tg:
            while True:
                await asyncio.sleep(EXPIRY_INTERVAL)
                room = REVOKES_IN_FLIGHT - len(revoking)
                if room <= 0:
                    continue
                for lease_id in self.stores.lessor.expired(time.monotonic(), limit=room):
                    if lease_id not in revoking:
                        revoking.add(lease_id)
                        tg.create_task(self._revoke(lease_id, revoking))

    async def _revoke(self, lease_id: int, revoking: set[int]) -> None:
        try:
            await self._propose(request_for(self.auth.root_info(),
                                            lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=lease_id)))
        except errors.EtcdError as err:
            if err != errors.LEASE_NOT_FOUND:
                log.warning("failed to revoke an expired lease", extra={"fields": {
                    "lease-id": f"{lease_id:x}", "error": err.message}})
        finally:
            revoking.discard(lease_id)

    async def run_checkpoints(self) -> None:
        """Leader: persist the remaining TTL of long leases, so a new leader resumes from it."""
        interval = self._checkpoint_interval
        if not interval:
            return
        while True:
            await asyncio.sleep(interval)
            lessor = self.stores.lessor
            if not lessor.is_primary:
                continue
            now = time.monotonic()
            cps = [rpc_pb2.LeaseCheckpoint(ID=lease.id, remaining_TTL=max(1, int(lease.remaining(now) + 0.999)))
                   for lease in lessor.leases() if lease.ttl > interval and lease.remaining(now) > 0]
            for i in range(0, len(cps), 1000):
                try:
                    await self._propose(InternalRaftRequest(
                        lease_checkpoint=rpc_pb2.LeaseCheckpointRequest(checkpoints=cps[i:i + 1000])))
                except errors.EtcdError as err:
                    log.warning("lease checkpoint failed", extra={"fields": {"error": err.message}})
                    break
