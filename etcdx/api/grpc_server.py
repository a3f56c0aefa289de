"""The client-facing gRPC server (grpcio): every RPC in ``etcdx.api.rpcs`` that the handler object serves.

Handlers raise ``EtcdError``; here it becomes a gRPC status with etcd's code
and message. Anything else is a bug: it is logged with its traceback and the
client gets INTERNAL.
"""

from __future__ import annotations

import logging
from typing import Any, AsyncIterator, Callable
from urllib.parse import urlsplit

import grpc

from etcdx.api.context import NO_CONTEXT, CallContext
from etcdx.api.rpcs import SERVICES, Kind, Rpc, served
from etcdx.api.watch import GRPC_OVERHEAD_BYTES
from etcdx.server.errors import EtcdError

log = logging.getLogger("etcdx.api")

MAX_SEND_BYTES = 2**31 - 1
INTERNAL_MESSAGE = "etcdserver: internal error"


def listen_address(url: str) -> str:
    """host:port for grpc from a client URL (http://host:port)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 2379)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException, rpc: Rpc) -> None:
    if isinstance(exc, EtcdError):
        await context.abort(grpc.StatusCode[exc.code], exc.message)
    log.error("unexpected error in %s", rpc.path, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)


def call_context(context: grpc.aio.ServicerContext) -> CallContext:
    """The caller as grpcio knows it: the auth token from the metadata, the certificate's CN."""
    token = ""
    for key, value in context.invocation_metadata() or ():
        if key == "token":
            token = value
    cn = context.auth_context().get("x509_common_name")
    if not token and not cn:
        return NO_CONTEXT
    return CallContext(token, cn[0].decode() if cn else "")


def _unary(rpc: Rpc, fn: Callable[[Any, CallContext], Any]) -> Callable:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            return await fn(request, call_context(context))
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, rpc)
    return handle


def _stream(rpc: Rpc, fn: Callable[[Any, CallContext], AsyncIterator[Any]]) -> Callable:
    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            async for resp in fn(request, call_context(context)):
                yield resp
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort(context, exc, rpc)
    return handle


def generic_handlers(handlers: object) -> list[grpc.GenericRpcHandler]:
    """grpcio handlers, one per service, for every RPC ``handlers`` serves."""
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = {s: {} for s in SERVICES}
    for rpc in served(handlers):
        fn = getattr(handlers, rpc.method)
        args = dict(request_deserializer=rpc.request.FromString, response_serializer=rpc.response.SerializeToString)
        if rpc.kind is Kind.UNARY:
            h = grpc.unary_unary_rpc_method_handler(_unary(rpc, fn), **args)
        elif rpc.kind is Kind.SERVER_STREAM:
            h = grpc.unary_stream_rpc_method_handler(_stream(rpc, fn), **args)
        else:
            h = grpc.stream_stream_rpc_method_handler(_stream(rpc, fn), **args)
        by_service[rpc.service][rpc.method] = h
    return [grpc.method_handlers_generic_handler(s, methods) for s, methods in by_service.items() if methods]


def build(handlers: object, listen_urls: list[str], *, max_request_bytes: int,
          reuseport: bool = False) -> grpc.aio.Server:
    """The gRPC server for ``handlers`` on ``listen_urls``; ``reuseport`` lets API worker
    processes share the client port (the kernel spreads connections over them)."""
    options = [
        ("grpc.max_receive_message_length", max_request_bytes + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        ("grpc.so_reuseport", 1 if reuseport else 0),
        # etcd's server keepalive enforcement: clients may ping every 5 s.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 0),
    ]
    g = grpc.aio.server(options=options)
    g.add_generic_rpc_handlers(generic_handlers(handlers))
    for url in listen_urls:
        addr = listen_address(url)
        if g.add_insecure_port(addr) == 0:
            raise OSError(f"cannot listen for client traffic on {url}")
    return g
