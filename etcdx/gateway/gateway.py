"""The JSON gateway: etcd's v3 RPCs as ``POST /v3/<path>`` with JSON bodies.

Each request is answered by the same handler object the gRPC router serves
(``CoreHandlers`` in the core, ``WorkerHandlers`` in an API worker), called by
method name with a ``CallContext`` whose token is the ``Authorization``
header, as etcd's gateway forwards it. Answers follow etcd 3.4's grpc-gateway:

- success: 200, ``application/json``, ``Grpc-Metadata-Content-Type:
  application/grpc`` (the gRPC response header it relays), the message in
  proto3 JSON (``etcdx.gateway.protojson``);
- an RPC error: the HTTP status for its gRPC code,
  ``{"error":m,"message":m,"code":c}``, chunked, then the trailer
  ``Grpc-Trailer-Content-Type: application/grpc`` (the gRPC trailer it relays);
- a body that does not decode: 400, code 3, Go's decoder text, no trailer;
- streams (Watch, LeaseKeepAlive, Snapshot, Observe): every JSON value of the
  body is one request message, up to the first that does not decode (a bad
  first one is 500, code 2); the request side then ends, as grpc-gateway
  half-closes; each response is a chunk ``{"result":...}`` and a newline, sent
  as it comes; an error ends the stream with
  ``{"error":{"grpc_code":..,"http_code":..,"message":..,"http_status":..}}``
  (its HTTP status if nothing was sent yet).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from http import HTTPStatus
from typing import Any

from etcdx.api.context import NO_CONTEXT, CallContext
from etcdx.api.rpcs import Kind
from etcdx.frontend.grpc import StatusCode
from etcdx.frontend.httpapi import HttpRequest, HttpResponse
from etcdx.frontend.rpc import StreamClosed
from etcdx.gateway import protojson, routes
from etcdx.gateway.replies import Replier
from etcdx.server.errors import EtcdError

log = logging.getLogger("etcdx.gateway")

JSON = "application/json"
_OK_HEADERS = [("Content-Type", JSON), ("Grpc-Metadata-Content-Type", "application/grpc")]
_ERROR_HEADERS = [("Content-Type", JSON), ("Trailer", "Grpc-Trailer-Content-Type")]
_ERROR_TRAILERS = [("Grpc-Trailer-Content-Type", "application/grpc")]
_INTERNAL = EtcdError("INTERNAL", "grpc: internal server error")

# grpc-gateway v1's HTTP status for each gRPC code
HTTP_STATUS = {
    StatusCode.OK: 200, StatusCode.CANCELLED: 408, StatusCode.UNKNOWN: 500, StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.DEADLINE_EXCEEDED: 504, StatusCode.NOT_FOUND: 404, StatusCode.ALREADY_EXISTS: 409,
    StatusCode.PERMISSION_DENIED: 403, StatusCode.UNAUTHENTICATED: 401, StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.FAILED_PRECONDITION: 412, StatusCode.ABORTED: 409, StatusCode.OUT_OF_RANGE: 400,
    StatusCode.UNIMPLEMENTED: 501, StatusCode.INTERNAL: 500, StatusCode.UNAVAILABLE: 503,
    StatusCode.DATA_LOSS: 500,
}


def _code(err: EtcdError) -> StatusCode:
    try:
        return StatusCode[err.code]
    except KeyError:
        return StatusCode.UNKNOWN


def error_body(err: EtcdError) -> bytes:
    m = protojson.go_string(err.message)
    return f'{{"error":{m},"message":{m},"code":{_code(err).value}}}'.encode()


def stream_error_chunk(err: EtcdError) -> bytes:
    code = _code(err)
    status = HTTP_STATUS.get(code, 500)
    return (f'{{"error":{{"grpc_code":{code.value},"http_code":{status},'
            f'"message":{protojson.go_string(err.message)},"http_status":"{HTTPStatus(status).phrase}"}}}}').encode()


def call_context(request: HttpRequest) -> CallContext:
    """The caller as etcd sees a gateway call.

    grpc-gateway forwards ``Authorization`` as "authorization" metadata and
    ``Grpc-Metadata-<Name>`` headers as "<name>"; etcd takes the token from
    "token" first, then "authorization", and honours "hasleader". A client
    certificate names nobody here: etcd's gateway calls the member with the
    member's own (``etcdx.gateway.access`` refuses a named one when that matters).
    """
    token = request.header("grpc-metadata-token") or request.header("authorization") or ""
    require_leader = request.header("grpc-metadata-hasleader") == "true"
    if not token and not require_leader:
        return NO_CONTEXT
    return CallContext(token, "", require_leader)


class Gateway:
    """Serves ``/v3/...`` and ``/v3beta/...`` for one handler object."""

    def __init__(self, handlers: object, replier: Replier) -> None:
        self.handlers = handlers
        self.reply = replier
        self.routes = routes.table(handlers)
        self.known = routes.known_paths()

    def owns(self, path: str) -> bool:
        return path.startswith(routes.PREFIXES)

    async def __call__(self, request: HttpRequest, response: HttpResponse, path: str) -> None:
        route = self.routes.get(path)
        if request.method != "POST" and path in self.known:
            await self.reply.error(request, response, 405, "Method Not Allowed")
            return
        if route is None or request.method != "POST":
            await self.reply.error(request, response, 404, "Not Found")
            return
        fn = getattr(self.handlers, route.method)
        ctx = call_context(request)
        if route.kind is Kind.UNARY:
            await self._unary(request, response, route, fn, ctx)
        else:
            await self._stream(request, response, route, fn, ctx)

    async def _bad_request(self, request: HttpRequest, response: HttpResponse, err: protojson.JsonError) -> None:
        body = error_body(EtcdError("INVALID_ARGUMENT", str(err)))
        await self.reply.whole(request, response, 400, [("Content-Type", JSON)], body)

    async def _unary(self, request: HttpRequest, response: HttpResponse, route: routes.Route,
                     fn: Any, ctx: CallContext) -> None:
        try:
            msg = protojson.parse(protojson.first_value(request.body), route.request)
        except protojson.JsonError as err:
            await self._bad_request(request, response, err)
            return
        try:
            result = await fn(msg, ctx)
        except EtcdError as err:
            await self._rpc_error(request, response, err)
            return
        except Exception:
            log.exception("gateway call %s failed", route.method)
            await self._rpc_error(request, response, _INTERNAL)
            return
        await self.reply.whole(request, response, 200, _OK_HEADERS, protojson.dumps(result).encode())

    async def _rpc_error(self, request: HttpRequest, response: HttpResponse, err: EtcdError) -> None:
        self.reply.start(request, response, HTTP_STATUS.get(_code(err), 500), _ERROR_HEADERS)
        try:
            await response.write(error_body(err))
            await response.end(_ERROR_TRAILERS)
        except StreamClosed:
            pass  # the client went away first

    async def _stream(self, request: HttpRequest, response: HttpResponse, route: routes.Route,
                      fn: Any, ctx: CallContext) -> None:
        if route.kind is Kind.BIDI_STREAM:
            messages, err = protojson.messages(request.body, route.request)
            if err is not None and not messages:
                # grpc-gateway sends the first message before it streams: its failure fails the call.
                await self.reply.whole(request, response, 500, [("Content-Type", JSON)],
                                       error_body(EtcdError("UNKNOWN", str(err))))
                return
        else:
            try:
                messages = [protojson.parse(protojson.first_value(request.body), route.request)]
            except protojson.JsonError as err:
                await self._bad_request(request, response, err)
                return
        arg = _iterate(messages) if route.kind is Kind.BIDI_STREAM else messages[0]
        started = False
        results: AsyncIterator[Any] = fn(arg, ctx)
        try:
            try:
                async for result in results:
                    if not started:
                        started = True
                        self.reply.start(request, response, 200, _OK_HEADERS)
                    await response.write(b'{"result":' + protojson.dumps(result).encode() + b"}\n")
            finally:
                await results.aclose()
        except StreamClosed:
            return  # the client went away
        except EtcdError as err:
            await self._stream_error(request, response, started, err)
            return
        except Exception:
            log.exception("gateway stream %s failed", route.method)
            await self._stream_error(request, response, started, _INTERNAL)
            return
        if not started:
            # Nothing came: no gRPC response header to relay either.
            self.reply.start(request, response, 200, [("Content-Type", JSON)])
        await response.end()

    async def _stream_error(self, request: HttpRequest, response: HttpResponse, started: bool,
                            err: EtcdError) -> None:
        if not started:
            self.reply.start(request, response, HTTP_STATUS.get(_code(err), 500), [("Content-Type", JSON)])
        try:
            await response.write(stream_error_chunk(err))
            await response.end()
        except StreamClosed:
            pass  # the client went away first


async def _iterate(messages: list[Any]) -> AsyncIterator[Any]:
    for m in messages:
        yield m
