"""The Cluster service. Membership changes arrive with the replicated cluster; a
single member answers MemberList and refuses changes it cannot make."""

from __future__ import annotations

from etcdx.api.status import unary
from etcdx.pb import rpc_pb2, rpc_pb2_grpc


class ClusterService(rpc_pb2_grpc.ClusterServicer):
    def __init__(self, server) -> None:
        self.s = server

    @unary
    async def MemberList(self, request: rpc_pb2.MemberListRequest, context) -> rpc_pb2.MemberListResponse:
        return self.s.member_list()
