"""The Maintenance service: alarms, status, hashes, defragment, snapshot, move-leader."""

from __future__ import annotations

import asyncio
import queue
import threading

import grpc

from etcdx.api.status import unary
from etcdx.pb import rpc_pb2, rpc_pb2_grpc
from etcdx.server.errors import EtcdError


class MaintenanceService(rpc_pb2_grpc.MaintenanceServicer):
    def __init__(self, server) -> None:
        self.s = server

    @unary
    async def Alarm(self, request: rpc_pb2.AlarmRequest, context) -> rpc_pb2.AlarmResponse:
        return await self.s.alarm(request)

    @unary
    async def Status(self, request: rpc_pb2.StatusRequest, context) -> rpc_pb2.StatusResponse:
        return self.s.status()

    @unary
    async def Defragment(self, request: rpc_pb2.DefragmentRequest, context) -> rpc_pb2.DefragmentResponse:
        return await self.s.defragment()

    @unary
    async def Hash(self, request: rpc_pb2.HashRequest, context) -> rpc_pb2.HashResponse:
        return self.s.hash()

    @unary
    async def HashKV(self, request: rpc_pb2.HashKVRequest, context) -> rpc_pb2.HashKVResponse:
        return self.s.hash_kv(request)

    @unary
    async def MoveLeader(self, request: rpc_pb2.MoveLeaderRequest, context) -> rpc_pb2.MoveLeaderResponse:
        return await self.s.move_leader(request)

    async def Snapshot(self, request: rpc_pb2.SnapshotRequest, context):
        """Stream a point-in-time copy of the backend, produced on a worker thread."""
        chunks: queue.Queue = queue.Queue(maxsize=64)
        done = object()

        def produce() -> None:
            try:
                for item in self.s.snapshot_chunks():
                    chunks.put(item)
                chunks.put(done)
            except BaseException as exc:  # handed to the stream below
                chunks.put(exc)

        threading.Thread(target=produce, name="etcdx-snapshot", daemon=True).start()
        loop = asyncio.get_running_loop()
        header = rpc_pb2.ResponseHeader()
        self.s.header(header)
        while True:
            item = await loop.run_in_executor(None, chunks.get)
            if item is done:
                return
            if isinstance(item, EtcdError):
                await context.abort(grpc.StatusCode[item.code], item.message)
            if isinstance(item, BaseException):
                raise item
            blob, remaining = item
            yield rpc_pb2.SnapshotResponse(header=header, remaining_bytes=remaining, blob=blob)
