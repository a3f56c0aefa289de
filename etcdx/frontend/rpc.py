"""What a gRPC handler sees: the Router it is registered with, its Call and, if streaming, its Stream.

Handlers receive and return *serialized* messages (bytes): protobuf parsing
and serialising is the service's business, so a service can skip it where it
can (a forwarded put) and this package needs no generated code.

Unary handlers are called synchronously from the connection's input
processing and may return the response bytes, a Future of them or a
coroutine (which then runs as a Task). Streaming handlers run as one Task per
call. A handler ends a call with an error by raising `RpcError` (or failing its
Future with it); any other exception is logged and answered INTERNAL.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

log = logging.getLogger(__name__)


class Call:
    """One RPC's context.

    ``metadata`` holds the request's regular headers less gRPC's reserved
    ones (content-type, te, grpc-timeout, grpc-encoding...; lower-case names; values
    of ``-bin`` headers base64-decoded to bytes; for a repeated header the last
    value). ``deadline`` is in ``loop.time()`` terms. Cancel callbacks run once,
    when the client resets the stream, the deadline passes, the connection is
    lost or the server shuts down before the call ended; not after it ended.
    """

    __slots__ = ("method", "metadata", "peer", "peer_certificate", "deadline",
                 "stream_id", "done", "_callbacks", "_task", "_timer", "_stream", "_reader",
                 "_encoding", "_handler", "_streaming")

    def __init__(self, method: str, metadata: Mapping[str, Any], peer: Any,
                 peer_certificate: dict | None, deadline: float | None, stream_id: int) -> None:
        self.method = method
        self.metadata = metadata
        self.peer = peer
        self.peer_certificate = peer_certificate
        self.deadline = deadline
        self.stream_id = stream_id
        self.done = False
        self._callbacks: list[Callable[[], None]] | None = None
        self._task = None
        self._timer = None
        self._stream = None
        self._reader = None
        self._encoding: str | None = None
        self._handler = None
        self._streaming = False

    def add_cancel_callback(self, cb: Callable[[], None]) -> None:
        """Run ``cb`` if the call is cancelled (see the class docstring)."""
        if self._callbacks is None:
            self._callbacks = [cb]
        else:
            self._callbacks.append(cb)

    def _fire_cancel(self) -> None:
        callbacks, self._callbacks = self._callbacks, None
        for cb in callbacks or ():
            try:
                cb()
            except Exception:
                log.exception("cancel callback of %s failed", self.method)

    def __repr__(self) -> str:
        return f"<Call {self.method} stream {self.stream_id} from {self.peer}>"


class Stream:
    """The message channel of a streaming call (server-, client- or bidi-streaming).

    `recv` returns the next request message, or None once the client
    half-closed. `send` returns when the message is within flow control (the
    peer's windows plus a low-water mark of queued bytes), so a slow client
    slows the handler instead of growing memory. After the call ended or was
    cancelled, `send` raises `StreamClosed`.
    """

    async def recv(self) -> bytes | None:
        raise NotImplementedError

    async def send(self, message: bytes) -> None:
        raise NotImplementedError


class StreamClosed(Exception):
    """The stream ended (reset, deadline, connection lost) before this send."""


UnaryHandler = Callable[[bytes, Call], "bytes | Awaitable[bytes]"]
StreamHandler = Callable[[Stream, Call], Awaitable[None]]


class Router:
    """Handlers by full method path ("/etcdserverpb.KV/Put").

    ``on_call_end(call, code)``, if set before the front end serves, is called
    once per call as it ends, with the gRPC status code sent (CANCELLED for a
    call whose stream went away): one plain call per RPC for metrics, where a
    done-callback on each handler's Future would cost a loop turn.
    """

    def __init__(self) -> None:
        self.routes: dict[str, tuple[bool, Callable[..., Any]]] = {}
        self.services: set[str] = set()
        self.on_call_end: Callable[[Call, int], None] | None = None

    def unary(self, path: str, handler: UnaryHandler) -> None:
        self._add(path, False, handler)

    def stream(self, path: str, handler: StreamHandler) -> None:
        self._add(path, True, handler)

    def _add(self, path: str, streaming: bool, handler: Callable[..., Any]) -> None:
        if not path.startswith("/") or path.count("/") != 2:
            raise ValueError(f"method path must be /package.Service/Method, not {path!r}")
        if path in self.routes:
            raise ValueError(f"{path} already has a handler")
        self.routes[path] = (streaming, handler)
        self.services.add(path[1:path.rindex("/")])
