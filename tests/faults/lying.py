"""A planted bug: a gRPC pass-through that sometimes answers a Range from a stale cache.

`LyingProxy` forwards every etcd RPC to a real member byte for byte (unary
calls, and the Watch and LeaseKeepAlive streams), except that a Range it has
answered in the last ``max_age`` seconds is, with probability
``stale_probability``, answered again from that earlier response instead of
asking the member: the stale read a member would serve if it skipped
ReadIndex, off by a fraction of a second. A harness that cannot tell this
from a correct server would pass vacuously; `tests/integration/test_faults.py`
runs the workload through it and requires the checker to object.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from concurrent import futures

import grpc

STREAMING = {"/etcdserverpb.Watch/Watch", "/etcdserverpb.Lease/LeaseKeepAlive"}
RANGE = "/etcdserverpb.KV/Range"
_DROPPED_METADATA = ("user-agent", "grpc-", ":")


class LyingProxy:
    def __init__(
        self, upstream: str, stale_probability: float = 0.2, min_age: float = 0.02, max_age: float = 0.3, seed: int = 0
    ) -> None:
        self.upstream = upstream
        self.stale_probability = stale_probability
        self.min_age = min_age
        self.max_age = max_age
        self.stale_answers = 0
        self._random = random.Random(seed)
        self._cache: dict[bytes, tuple[float, bytes]] = {}
        self._lock = threading.Lock()
        self._channel = grpc.insecure_channel(upstream)
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=32), handlers=[_Handler(self)])
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LyingProxy:
        self._server.start()
        return self

    def close(self) -> None:
        self._server.stop(grace=None)
        self._channel.close()

    def unary(self, method: str, request: bytes, context: grpc.ServicerContext) -> bytes:
        if method == RANGE:
            with self._lock:
                cached = self._cache.get(request)
                lie = (
                    cached is not None
                    and self.min_age <= time.monotonic() - cached[0] <= self.max_age
                    and self._random.random() < self.stale_probability
                )
                if lie:
                    self.stale_answers += 1
                    return cached[1]
        try:
            response = self._channel.unary_unary(method)(
                request, timeout=context.time_remaining(), metadata=_forwarded(context)
            )
        except grpc.RpcError as e:
            context.abort(e.code(), e.details())
        if method == RANGE:
            with self._lock:
                cached = self._cache.get(request)
                if cached is None or time.monotonic() - cached[0] > self.max_age:
                    self._cache[request] = (time.monotonic(), response)
        return response

    def stream(self, method: str, requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        call = self._channel.stream_stream(method)(requests, metadata=_forwarded(context))
        context.add_callback(call.cancel)
        try:
            yield from call
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.CANCELLED:
                context.abort(e.code(), e.details())


class _Handler(grpc.GenericRpcHandler):
    def __init__(self, proxy: LyingProxy) -> None:
        self.proxy = proxy

    def service(self, details: grpc.HandlerCallDetails):
        method = details.method
        if method in STREAMING:
            return grpc.stream_stream_rpc_method_handler(lambda it, ctx: self.proxy.stream(method, it, ctx))
        return grpc.unary_unary_rpc_method_handler(lambda req, ctx: self.proxy.unary(method, req, ctx))


def _forwarded(context: grpc.ServicerContext) -> tuple[tuple[str, str], ...]:
    return tuple((k, v) for k, v in context.invocation_metadata() if not k.startswith(_DROPPED_METADATA))
