"""The client port on etcdx's own front end (``etcdx.frontend``): every RPC the handler object serves.

Each RPC of ``etcdx.api.rpcs`` that the handler object has a method for is
registered under its gRPC path, adapted from bytes to messages. A handler
object may offer a faster form of a unary RPC as ``raw_<Method>(body, ctx)``
taking the serialized request and returning the serialized response or a
Future of it (no Task, no parsing it does not need): a worker forwarding a put
to the core uses it. Handlers raise etcd's ``EtcdError``, which the front end
turns into the gRPC status directly.

HTTP requests on the same port (the JSON gateway, /health, /metrics) go to an
``HttpHandler``; without one they get 404. Given an ``RpcStats``, every route
counts its calls (``etcdx.api.rpc_metrics``).
"""

from __future__ import annotations

import functools
import logging
from typing import Any, AsyncIterator, Callable

from etcdx.api import grpc_health
from etcdx.api.context import NO_CONTEXT, CallContext, common_name
from etcdx.api.rpc_metrics import RpcStats
from etcdx.api.rpcs import Kind, Rpc, parse as parse_request, served
from etcdx.api.watch import GRPC_OVERHEAD_BYTES
from etcdx.frontend import Call, FrontEnd, Router, Stream
from etcdx.frontend.httpapi import HttpHandler
from etcdx.server.config import Config, parse_duration

log = logging.getLogger("etcdx.api")


def call_context(call: Call) -> CallContext:
    """The caller as the front end knows it: the auth token, the certificate's common name."""
    metadata = call.metadata
    token = metadata.get("token") or metadata.get("authorization", "")  # etcd's gRPC takes either
    cert = call.peer_certificate
    require_leader = metadata.get("hasleader") == "true"
    if not token and cert is None and not require_leader:
        return NO_CONTEXT
    return CallContext(token if isinstance(token, str) else token.decode(), common_name(cert), require_leader)


def router(handlers: object) -> Router:
    """A Router with every RPC ``handlers`` serves, and gRPC's Health service."""
    r = Router()
    grpc_health.register(r)
    for rpc in served(handlers):
        raw = getattr(handlers, "raw_" + rpc.method, None)
        fn = getattr(handlers, rpc.method)
        if rpc.kind is Kind.UNARY:
            r.unary(rpc.path, _raw_unary(raw) if raw is not None else _unary(rpc, fn))
        elif rpc.kind is Kind.SERVER_STREAM:
            r.stream(rpc.path, _server_stream(rpc, fn))
        else:
            r.stream(rpc.path, _bidi_stream(rpc, fn))
    return r


def _raw_unary(raw: Callable[[bytes, CallContext], Any]) -> Callable[[bytes, Call], Any]:
    def handle(body: bytes, call: Call) -> Any:
        return raw(body, call_context(call))
    return handle


def _unary(rpc: Rpc, fn: Callable[[Any, CallContext], Any]) -> Callable[[bytes, Call], Any]:
    parse, serialize = functools.partial(parse_request, rpc.request), rpc.response.SerializeToString

    async def handle(body: bytes, call: Call) -> bytes:
        return serialize(await fn(parse(body), call_context(call)))
    return handle


def _server_stream(rpc: Rpc, fn: Callable[[Any, CallContext], AsyncIterator[Any]]) -> Callable:
    parse, serialize = functools.partial(parse_request, rpc.request), rpc.response.SerializeToString

    async def handle(stream: Stream, call: Call) -> None:
        body = await stream.recv()
        if body is None:
            return
        responses = fn(parse(body), call_context(call))
        try:
            async for resp in responses:
                await stream.send(serialize(resp))
        finally:
            await responses.aclose()
    return handle


def _bidi_stream(rpc: Rpc, fn: Callable[[AsyncIterator[Any], CallContext], AsyncIterator[Any]]) -> Callable:
    parse, serialize = functools.partial(parse_request, rpc.request), rpc.response.SerializeToString

    async def handle(stream: Stream, call: Call) -> None:
        async def requests() -> AsyncIterator[Any]:
            while (body := await stream.recv()) is not None:
                yield parse(body)

        responses = fn(requests(), call_context(call))
        try:
            async for resp in responses:
                await stream.send(serialize(resp))
        finally:
            await responses.aclose()
    return handle


def build(handlers: object, cfg: Config, http: HttpHandler | None = None,
          stats: RpcStats | None = None) -> FrontEnd:
    """The front end for ``handlers`` with the member's limits and keepalive settings."""
    interval = parse_duration(cfg.grpc_keepalive_interval)
    routes = router(handlers)
    if stats is not None:
        stats.instrument(routes)
    return FrontEnd(
        routes, http,
        max_receive_message_bytes=cfg.max_request_bytes + GRPC_OVERHEAD_BYTES,
        max_concurrent_streams=min(cfg.max_concurrent_streams, 2**31 - 1),
        keepalive_interval=interval if interval > 0 else float("inf"),
        keepalive_timeout=parse_duration(cfg.grpc_keepalive_timeout),
        min_ping_interval=parse_duration(cfg.grpc_keepalive_min_time))


async def listen(fe: FrontEnd, cfg: Config, *, reuse_port: bool) -> None:
    """Listen on every client URL; https and unixs ones serve the member's TLS settings."""
    tls = cfg.client_tls_info()
    for url in cfg.listen_client_urls:
        if url.startswith(("https://", "unixs://")):
            ctx = tls.server_context(alpn=["h2", "http/1.1"])
            await fe.listen(url, ssl=ctx, verify=tls.check_connection, reuse_port=reuse_port)
        else:
            await fe.listen(url, reuse_port=reuse_port)
