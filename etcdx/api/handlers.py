"""The core's handler for each RPC: etcd's request checks, then the server's parts.

One method per RPC in ``etcdx.api.rpcs``, named after it, taking the request
(or the stream of them) and the caller's ``CallContext``; every transport that
serves clients (the gRPC server in the core, the worker IPC) calls these.

Who may call what is etcd 3.4's table (``tests/conformance/test_auth_matrix.py``
compares every RPC with a real etcd): KV, Lease and Auth requests are checked
by the server's parts, which know when etcd looks at the caller; Cluster
changes and Hash, HashKV, Defragment and Snapshot need root, checked here
(the latter four, like Alarm, answer auth errors with the auth package's text
and code Unknown, as etcd 3.4 does); Status, MoveLeader, MemberList and the
lease reads do not look at the caller at all.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import AsyncIterator, Awaitable

from etcdx.api import validate
from etcdx.api.concurrency_services import LockElectionHandlers
from etcdx.api.context import CallContext
from etcdx.api.rpcs import parse
from etcdx.api.watch import serve_watch
from etcdx.pb import rpc_pb2
from etcdx.server.cluster_ops import requested_peer_urls
from etcdx.server.etcdserver import EtcdServer
from etcdx.server.kv_requests import txn_has_write
from etcdx.server.maintenance import CLUSTER_VERSION
from etcdx.snapshot.export import export_backend

SNAPSHOT_CHUNK = 32 * 1024


class CoreHandlers(LockElectionHandlers):
    """The RPCs of ``etcdx.api.rpcs``; Lock and Election come from ``LockElectionHandlers``."""

    def __init__(self, server: EtcdServer) -> None:
        self.s = server
        self._withdrawals = set()

    # -- KV -----------------------------------------------------------------------------

    async def Range(self, r: rpc_pb2.RangeRequest, ctx: CallContext) -> rpc_pb2.RangeResponse:
        validate.check_range(r)
        return await self.s.kv.range(r, ctx)

    async def Put(self, r: rpc_pb2.PutRequest, ctx: CallContext) -> rpc_pb2.PutResponse:
        validate.check_put(r)
        return await self.s.kv.put(r, ctx)

    async def DeleteRange(self, r: rpc_pb2.DeleteRangeRequest, ctx: CallContext) -> rpc_pb2.DeleteRangeResponse:
        validate.check_delete(r)
        return await self.s.kv.delete_range(r, ctx)

    async def Txn(self, r: rpc_pb2.TxnRequest, ctx: CallContext) -> rpc_pb2.TxnResponse:
        validate.check_txn(r, self.s.cfg.max_txn_ops)
        return await self.s.kv.txn(r, ctx)

    async def Compact(self, r: rpc_pb2.CompactionRequest, ctx: CallContext) -> rpc_pb2.CompactionResponse:
        return await self.s.kv.compact(r, ctx)

    # The writes again, serialized request in, a Future of the serialized response out:
    # no Task and no response message in the transport (etcdx.api.frontend_server, ipc).

    def raw_Put(self, body: bytes, ctx: CallContext) -> asyncio.Future | Awaitable[bytes]:
        r = parse(rpc_pb2.PutRequest, body)
        validate.check_put(r)
        return self.s.kv.put_bytes(r, ctx)

    def raw_DeleteRange(self, body: bytes, ctx: CallContext) -> asyncio.Future | Awaitable[bytes]:
        r = parse(rpc_pb2.DeleteRangeRequest, body)
        validate.check_delete(r)
        return self.s.kv.delete_range_bytes(r, ctx)

    def raw_Txn(self, body: bytes, ctx: CallContext) -> asyncio.Future | Awaitable[bytes]:
        r = parse(rpc_pb2.TxnRequest, body)
        validate.check_txn(r, self.s.cfg.max_txn_ops)
        if txn_has_write(r):
            return self.s.kv.write_txn_bytes(r, ctx)
        return self._read_txn_bytes(r, ctx)

    async def _read_txn_bytes(self, r: rpc_pb2.TxnRequest, ctx: CallContext) -> bytes:
        return (await self.s.kv.txn(r, ctx)).SerializeToString()

    # -- Watch --------------------------------------------------------------------------

    def Watch(self, requests: AsyncIterator[rpc_pb2.WatchRequest],
              ctx: CallContext) -> AsyncIterator[rpc_pb2.WatchResponse]:
        return serve_watch(self.s, requests, ctx, require_leader=ctx.require_leader)

    # -- Lease --------------------------------------------------------------------------

    async def LeaseGrant(self, r: rpc_pb2.LeaseGrantRequest, ctx: CallContext) -> rpc_pb2.LeaseGrantResponse:
        return await self.s.leases.grant(r, ctx)

    async def LeaseRevoke(self, r: rpc_pb2.LeaseRevokeRequest, ctx: CallContext) -> rpc_pb2.LeaseRevokeResponse:
        return await self.s.leases.revoke(r, ctx)

    async def LeaseKeepAlive(self, requests: AsyncIterator[rpc_pb2.LeaseKeepAliveRequest], ctx: CallContext
                             ) -> AsyncIterator[rpc_pb2.LeaseKeepAliveResponse]:
        """One response per request, in order; an unknown lease answers TTL 0 as etcd does."""
        async for r in requests:
            yield await self.s.leases.keep_alive(r)

    async def LeaseTimeToLive(self, r: rpc_pb2.LeaseTimeToLiveRequest,
                              ctx: CallContext) -> rpc_pb2.LeaseTimeToLiveResponse:
        return await self.s.leases.time_to_live(r)

    async def LeaseLeases(self, r: rpc_pb2.LeaseLeasesRequest, ctx: CallContext) -> rpc_pb2.LeaseLeasesResponse:
        return await self.s.leases.leases(r)

    # -- Cluster ------------------------------------------------------------------------

    async def _admin(self, ctx: CallContext, *, untranslated: bool = False) -> None:
        """Refuse a caller without the root role (while auth is on)."""
        auth = self.s.auth
        auth.check_admin(await auth.identify(ctx, untranslated=untranslated), untranslated=untranslated)

    async def MemberAdd(self, r: rpc_pb2.MemberAddRequest, ctx: CallContext) -> rpc_pb2.MemberAddResponse:
        requested_peer_urls(r)  # etcd checks the URLs before the caller
        await self._admin(ctx)
        return await self.s.cluster.member_add(r)

    async def MemberRemove(self, r: rpc_pb2.MemberRemoveRequest, ctx: CallContext) -> rpc_pb2.MemberRemoveResponse:
        await self._admin(ctx)
        return await self.s.cluster.member_remove(r)

    async def MemberUpdate(self, r: rpc_pb2.MemberUpdateRequest, ctx: CallContext) -> rpc_pb2.MemberUpdateResponse:
        await self._admin(ctx)
        return await self.s.cluster.member_update(r)

    async def MemberList(self, r: rpc_pb2.MemberListRequest, ctx: CallContext) -> rpc_pb2.MemberListResponse:
        return await self.s.cluster.member_list(r)

    async def MemberPromote(self, r: rpc_pb2.MemberPromoteRequest, ctx: CallContext) -> rpc_pb2.MemberPromoteResponse:
        await self._admin(ctx)
        return await self.s.cluster.member_promote(r)

    # -- Maintenance --------------------------------------------------------------------

    async def Alarm(self, r: rpc_pb2.AlarmRequest, ctx: CallContext) -> rpc_pb2.AlarmResponse:
        await self.s.auth.identify(ctx, untranslated=True)  # a bad token is refused; anyone else may
        return await self.s.maintenance.alarm(r)

    async def Status(self, r: rpc_pb2.StatusRequest, ctx: CallContext) -> rpc_pb2.StatusResponse:
        return await self.s.maintenance.status(r)

    async def Defragment(self, r: rpc_pb2.DefragmentRequest, ctx: CallContext) -> rpc_pb2.DefragmentResponse:
        await self._admin(ctx, untranslated=True)
        return await self.s.maintenance.defragment(r)

    async def Hash(self, r: rpc_pb2.HashRequest, ctx: CallContext) -> rpc_pb2.HashResponse:
        await self._admin(ctx, untranslated=True)
        return await self.s.maintenance.hash(r)

    async def HashKV(self, r: rpc_pb2.HashKVRequest, ctx: CallContext) -> rpc_pb2.HashKVResponse:
        await self._admin(ctx, untranslated=True)
        return await self.s.maintenance.hash_kv(r)

    async def MoveLeader(self, r: rpc_pb2.MoveLeaderRequest, ctx: CallContext) -> rpc_pb2.MoveLeaderResponse:
        return await self.s.cluster.move_leader(r)

    async def Snapshot(self, r: rpc_pb2.SnapshotRequest,
                       ctx: CallContext) -> AsyncIterator[rpc_pb2.SnapshotResponse]:
        """The backend as of now in etcd's snapshot format (a bbolt database, ``etcdx.snapshot``),
        in chunks, ending with the SHA-256 of the file, which ``etcdctl snapshot save`` checks,
        as etcd's stream does. Whoever stops reading (a client that went away) closes the
        file at once."""
        await self._admin(ctx, untranslated=True)
        backend = self.s.stores.backend
        snap = await self.s.maintenance.snapshot(
            lambda out: export_backend(backend, out, cluster_version=CLUSTER_VERSION))
        try:
            header = rpc_pb2.ResponseHeader()
            self.s.headers.fill(header)
            digest = hashlib.sha256()
            remaining = snap.size + digest.digest_size
            while True:
                chunk = snap.file.read(SNAPSHOT_CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                remaining -= len(chunk)
                yield rpc_pb2.SnapshotResponse(header=header, remaining_bytes=remaining, blob=chunk)
            yield rpc_pb2.SnapshotResponse(header=header, remaining_bytes=0, blob=digest.digest())
        finally:
            snap.close()

    # -- Auth ---------------------------------------------------------------------------

    async def AuthEnable(self, r: rpc_pb2.AuthEnableRequest, ctx: CallContext) -> rpc_pb2.AuthEnableResponse:
        return await self.s.auth.auth_enable(r, ctx)

    async def AuthDisable(self, r: rpc_pb2.AuthDisableRequest, ctx: CallContext) -> rpc_pb2.AuthDisableResponse:
        return await self.s.auth.auth_disable(r, ctx)

    async def AuthStatus(self, r: rpc_pb2.AuthStatusRequest, ctx: CallContext) -> rpc_pb2.AuthStatusResponse:
        return await self.s.auth.auth_status(r, ctx)

    async def Authenticate(self, r: rpc_pb2.AuthenticateRequest, ctx: CallContext) -> rpc_pb2.AuthenticateResponse:
        return await self.s.auth.authenticate(r, ctx)

    async def UserAdd(self, r: rpc_pb2.AuthUserAddRequest, ctx: CallContext) -> rpc_pb2.AuthUserAddResponse:
        return await self.s.auth.user_add(r, ctx)

    async def UserGet(self, r: rpc_pb2.AuthUserGetRequest, ctx: CallContext) -> rpc_pb2.AuthUserGetResponse:
        return await self.s.auth.user_get(r, ctx)

    async def UserList(self, r: rpc_pb2.AuthUserListRequest, ctx: CallContext) -> rpc_pb2.AuthUserListResponse:
        return await self.s.auth.user_list(r, ctx)

    async def UserDelete(self, r: rpc_pb2.AuthUserDeleteRequest, ctx: CallContext) -> rpc_pb2.AuthUserDeleteResponse:
        return await self.s.auth.user_delete(r, ctx)

    async def UserChangePassword(self, r: rpc_pb2.AuthUserChangePasswordRequest,
                                 ctx: CallContext) -> rpc_pb2.AuthUserChangePasswordResponse:
        return await self.s.auth.user_change_password(r, ctx)

    async def UserGrantRole(self, r: rpc_pb2.AuthUserGrantRoleRequest,
                            ctx: CallContext) -> rpc_pb2.AuthUserGrantRoleResponse:
        return await self.s.auth.user_grant_role(r, ctx)

    async def UserRevokeRole(self, r: rpc_pb2.AuthUserRevokeRoleRequest,
                             ctx: CallContext) -> rpc_pb2.AuthUserRevokeRoleResponse:
        return await self.s.auth.user_revoke_role(r, ctx)

    async def RoleAdd(self, r: rpc_pb2.AuthRoleAddRequest, ctx: CallContext) -> rpc_pb2.AuthRoleAddResponse:
        return await self.s.auth.role_add(r, ctx)

    async def RoleGet(self, r: rpc_pb2.AuthRoleGetRequest, ctx: CallContext) -> rpc_pb2.AuthRoleGetResponse:
        return await self.s.auth.role_get(r, ctx)

    async def RoleList(self, r: rpc_pb2.AuthRoleListRequest, ctx: CallContext) -> rpc_pb2.AuthRoleListResponse:
        return await self.s.auth.role_list(r, ctx)

    async def RoleDelete(self, r: rpc_pb2.AuthRoleDeleteRequest, ctx: CallContext) -> rpc_pb2.AuthRoleDeleteResponse:
        return await self.s.auth.role_delete(r, ctx)

    async def RoleGrantPermission(self, r: rpc_pb2.AuthRoleGrantPermissionRequest,
                                  ctx: CallContext) -> rpc_pb2.AuthRoleGrantPermissionResponse:
        return await self.s.auth.role_grant_permission(r, ctx)

    async def RoleRevokePermission(self, r: rpc_pb2.AuthRoleRevokePermissionRequest,
                                   ctx: CallContext) -> rpc_pb2.AuthRoleRevokePermissionResponse:
        return await self.s.auth.role_revoke_permission(r, ctx)
