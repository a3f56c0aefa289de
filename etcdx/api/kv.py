"""The KV service: Range, Put, DeleteRange, Txn, Compact."""

from __future__ import annotations

from etcdx.api import validate
from etcdx.api.status import unary
from etcdx.pb import rpc_pb2, rpc_pb2_grpc


class KVService(rpc_pb2_grpc.KVServicer):
    def __init__(self, server) -> None:
        self.s = server

    @unary
    async def Range(self, request: rpc_pb2.RangeRequest, context) -> rpc_pb2.RangeResponse:
        validate.check_range(request)
        return await self.s.range(request)

    @unary
    async def Put(self, request: rpc_pb2.PutRequest, context) -> rpc_pb2.PutResponse:
        validate.check_put(request)
        return await self.s.put(request)

    @unary
    async def DeleteRange(self, request: rpc_pb2.DeleteRangeRequest, context) -> rpc_pb2.DeleteRangeResponse:
        validate.check_delete(request)
        return await self.s.delete_range(request)

    @unary
    async def Txn(self, request: rpc_pb2.TxnRequest, context) -> rpc_pb2.TxnResponse:
        validate.check_txn(request, self.s.cfg.max_txn_ops)
        return await self.s.txn(request)

    @unary
    async def Compact(self, request: rpc_pb2.CompactionRequest, context) -> rpc_pb2.CompactionResponse:
        return await self.s.compact(request)
