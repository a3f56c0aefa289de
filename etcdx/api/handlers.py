"""The core's handler for each RPC: etcd's request checks, then the server's parts.

One method per RPC in ``etcdx.api.rpcs``, named after it, taking the request
(or the stream of them) and the caller's ``CallContext``; every transport that
serves clients (the gRPC server in the core, the worker IPC) calls these.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import AsyncIterator, Awaitable

from etcdx.api import validate
from etcdx.api.context import CallContext
from etcdx.api.watch import serve_watch
from etcdx.pb import rpc_pb2
from etcdx.server.etcdserver import EtcdServer
from etcdx.server.kv_requests import txn_has_write
from etcdx.server.maintenance import CLUSTER_VERSION
from etcdx.snapshot.export import export_backend

SNAPSHOT_CHUNK = 32 * 1024


class CoreHandlers:
    def __init__(self, server: EtcdServer) -> None:
        self.s = server

    # -- KV -----------------------------------------------------------------------------

    async def Range(self, r: rpc_pb2.RangeRequest, ctx: CallContext) -> rpc_pb2.RangeResponse:
        validate.check_range(r)
        return await self.s.kv.range(r)

    async def Put(self, r: rpc_pb2.PutRequest, ctx: CallContext) -> rpc_pb2.PutResponse:
        validate.check_put(r)
        return await self.s.kv.put(r)

    async def DeleteRange(self, r: rpc_pb2.DeleteRangeRequest, ctx: CallContext) -> rpc_pb2.DeleteRangeResponse:
        validate.check_delete(r)
        return await self.s.kv.delete_range(r)

    async def Txn(self, r: rpc_pb2.TxnRequest, ctx: CallContext) -> rpc_pb2.TxnResponse:
        validate.check_txn(r, self.s.cfg.max_txn_ops)
        return await self.s.kv.txn(r)

    async def Compact(self, r: rpc_pb2.CompactionRequest, ctx: CallContext) -> rpc_pb2.CompactionResponse:
        return await self.s.kv.compact(r)

    # The writes again, serialized request in, a Future of the serialized response out:
    # no Task and no response message in the transport (etcdx.api.frontend_server, ipc).

    def raw_Put(self, body: bytes, ctx: CallContext) -> asyncio.Future:
        r = rpc_pb2.PutRequest.FromString(body)
        validate.check_put(r)
        return self.s.kv.put_bytes(r)

    def raw_DeleteRange(self, body: bytes, ctx: CallContext) -> asyncio.Future:
        r = rpc_pb2.DeleteRangeRequest.FromString(body)
        validate.check_delete(r)
        return self.s.kv.delete_range_bytes(r)

    def raw_Txn(self, body: bytes, ctx: CallContext) -> asyncio.Future | Awaitable[bytes]:
        r = rpc_pb2.TxnRequest.FromString(body)
        validate.check_txn(r, self.s.cfg.max_txn_ops)
        if txn_has_write(r):
            return self.s.kv.write_txn_bytes(r)
        return self._read_txn_bytes(r)

    async def _read_txn_bytes(self, r: rpc_pb2.TxnRequest) -> bytes:
        return (await self.s.kv.txn(r)).SerializeToString()

    # -- Watch --------------------------------------------------------------------------

    def Watch(self, requests: AsyncIterator[rpc_pb2.WatchRequest],
              ctx: CallContext) -> AsyncIterator[rpc_pb2.WatchResponse]:
        return serve_watch(self.s, requests, ctx.require_leader)

    # -- Lease --------------------------------------------------------------------------

    async def LeaseGrant(self, r: rpc_pb2.LeaseGrantRequest, ctx: CallContext) -> rpc_pb2.LeaseGrantResponse:
        return await self.s.leases.grant(r)

    async def LeaseRevoke(self, r: rpc_pb2.LeaseRevokeRequest, ctx: CallContext) -> rpc_pb2.LeaseRevokeResponse:
        return await self.s.leases.revoke(r)

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

    async def MemberAdd(self, r: rpc_pb2.MemberAddRequest, ctx: CallContext) -> rpc_pb2.MemberAddResponse:
        return await self.s.cluster.member_add(r)

    async def MemberRemove(self, r: rpc_pb2.MemberRemoveRequest, ctx: CallContext) -> rpc_pb2.MemberRemoveResponse:
        return await self.s.cluster.member_remove(r)

    async def MemberUpdate(self, r: rpc_pb2.MemberUpdateRequest, ctx: CallContext) -> rpc_pb2.MemberUpdateResponse:
        return await self.s.cluster.member_update(r)

    async def MemberList(self, r: rpc_pb2.MemberListRequest, ctx: CallContext) -> rpc_pb2.MemberListResponse:
        return await self.s.cluster.member_list(r)

    async def MemberPromote(self, r: rpc_pb2.MemberPromoteRequest, ctx: CallContext) -> rpc_pb2.MemberPromoteResponse:
        return await self.s.cluster.member_promote(r)

    # -- Maintenance --------------------------------------------------------------------

    async def Alarm(self, r: rpc_pb2.AlarmRequest, ctx: CallContext) -> rpc_pb2.AlarmResponse:
        return await self.s.maintenance.alarm(r)

    async def Status(self, r: rpc_pb2.StatusRequest, ctx: CallContext) -> rpc_pb2.StatusResponse:
        return await self.s.maintenance.status(r)

    async def Defragment(self, r: rpc_pb2.DefragmentRequest, ctx: CallContext) -> rpc_pb2.DefragmentResponse:
        return await self.s.maintenance.defragment(r)

    async def Hash(self, r: rpc_pb2.HashRequest, ctx: CallContext) -> rpc_pb2.HashResponse:
        return await self.s.maintenance.hash(r)

    async def HashKV(self, r: rpc_pb2.HashKVRequest, ctx: CallContext) -> rpc_pb2.HashKVResponse:
        return await self.s.maintenance.hash_kv(r)

    async def MoveLeader(self, r: rpc_pb2.MoveLeaderRequest, ctx: CallContext) -> rpc_pb2.MoveLeaderResponse:
        return await self.s.cluster.move_leader(r)

    async def Snapshot(self, r: rpc_pb2.SnapshotRequest,
                       ctx: CallContext) -> AsyncIterator[rpc_pb2.SnapshotResponse]:
        """The backend as of now in etcd's snapshot format (a bbolt database, ``etcdx.snapshot``),
        in chunks, ending with the SHA-256 of the file, which ``etcdctl snapshot save`` checks,
        as etcd's stream does. Whoever stops reading (a client that went away) closes the
        file at once."""
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
