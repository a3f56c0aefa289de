"""etcdx's client front end: gRPC over HTTP/2 and HTTP/1.1 on one port.

The interface a service layer uses::

    router = Router()
    router.unary("/etcdserverpb.KV/Put", put)        # put(request: bytes, call: Call) -> bytes | Awaitable[bytes]
    router.stream("/etcdserverpb.Watch/Watch", watch)  # async watch(stream: Stream, call: Call) -> None
    fe = FrontEnd(router, http_handler, max_receive_message_bytes=2 * 1024 * 1024)
    await fe.listen("http://127.0.0.1:2379", reuse_port=True)
    await fe.listen("https://127.0.0.1:2380", ssl=context)
    ...
    await fe.close(grace=5.0)

Handlers deal in serialized messages and raise `RpcError(code, message)` for
gRPC errors; `http_handler(request: HttpRequest, response: HttpResponse)`
serves everything that is not gRPC. Layers, bottom up: `frames` (HTTP/2
frames), `headers` (HPACK with a decoded-block cache), `connection` (the
sans-IO HTTP/2 server connection), `grpc` (gRPC wire rules), `rpc` and
`httpapi` (what handlers see), `http2` and `http1` (asyncio shells),
`server` (listeners and protocol detection).
"""

from etcdx.frontend.grpc import RpcError, StatusCode
from etcdx.frontend.httpapi import HttpHandler, HttpRequest, HttpResponse
from etcdx.frontend.rpc import Call, Router, Stream, StreamClosed, StreamHandler, UnaryHandler
from etcdx.frontend.server import ALPN_PROTOCOLS, FrontEnd

__all__ = [
    "ALPN_PROTOCOLS", "Call", "FrontEnd", "HttpHandler", "HttpRequest", "HttpResponse", "Router",
    "RpcError", "StatusCode", "Stream", "StreamClosed", "StreamHandler", "UnaryHandler",
]
