"""The Lease service: grant, revoke, the keep-alive stream, time-to-live and listing."""

from __future__ import annotations

import grpc

from etcdx.api.status import unary
from etcdx.pb import rpc_pb2, rpc_pb2_grpc
from etcdx.server.errors import EtcdError


class LeaseService(rpc_pb2_grpc.LeaseServicer):
    def __init__(self, server) -> None:
        self.s = server

    @unary
    async def LeaseGrant(self, request: rpc_pb2.LeaseGrantRequest, context) -> rpc_pb2.LeaseGrantResponse:
        return await self.s.lease_grant(request)

    @unary
    async def LeaseRevoke(self, request: rpc_pb2.LeaseRevokeRequest, context) -> rpc_pb2.LeaseRevokeResponse:
        return await self.s.lease_revoke(request)

    @unary
    async def LeaseTimeToLive(self, request: rpc_pb2.LeaseTimeToLiveRequest, context) -> rpc_pb2.LeaseTimeToLiveResponse:
        return await self.s.lease_time_to_live(request)

    @unary
    async def LeaseLeases(self, request: rpc_pb2.LeaseLeasesRequest, context) -> rpc_pb2.LeaseLeasesResponse:
        return await self.s.lease_leases()

    async def LeaseKeepAlive(self, request_iterator, context):
        """One response per request, in order; an unknown lease answers TTL 0 as etcd does."""
        try:
            async for req in request_iterator:
                ttl = await self.s.lease_renew(req.ID)
                resp = rpc_pb2.LeaseKeepAliveResponse(ID=req.ID, TTL=ttl)
                self.s.header(resp.header)
                yield resp
        except EtcdError as err:
            await context.abort(grpc.StatusCode[err.code], err.message)
