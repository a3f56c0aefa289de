"""The Cluster service: membership changes go through the raft log as conf changes."""

from __future__ import annotations

from etcdx.api.status import unary
from etcdx.pb import rpc_pb2, rpc_pb2_grpc


class ClusterService(rpc_pb2_grpc.ClusterServicer):
    def __init__(self, server) -> None:
        self.s = server

    @unary
    async def MemberAdd(self, request: rpc_pb2.MemberAddRequest, context) -> rpc_pb2.MemberAddResponse:
        return await self.s.member_add(request)

    @unary
    async def MemberRemove(self, request: rpc_pb2.MemberRemoveRequest, context) -> rpc_pb2.MemberRemoveResponse:
        return await self.s.member_remove(request)

    @unary
    async def MemberUpdate(self, request: rpc_pb2.MemberUpdateRequest, context) -> rpc_pb2.MemberUpdateResponse:
        return await self.s.member_update(request)

    @unary
    async def MemberPromote(self, request: rpc_pb2.MemberPromoteRequest, context) -> rpc_pb2.MemberPromoteResponse:
        return await self.s.member_promote(request)

    @unary
    async def MemberList(self, request: rpc_pb2.MemberListRequest, context) -> rpc_pb2.MemberListResponse:
        if request.linearizable:
            await self.s.linearizable_barrier()
        return self.s.member_list()
