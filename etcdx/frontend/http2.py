"""The asyncio shell around one HTTP/2 connection: gRPC calls and plain HTTP requests.

An `asyncio.Protocol` that feeds `ServerConnection` and acts on its events.
Output is batched: everything produced while processing one `data_received`
goes out in one `transport.write`, and output produced by completions (a
handler's Future, a stream's send) is written once per loop iteration.

Unary calls cost no Task when the handler returns bytes or a Future. Streaming
calls and HTTP requests run as Tasks owned by this session: they are cancelled
when their stream is reset, their deadline passes or the connection is lost,
and `FrontEnd.close` waits for them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from typing import Any

from etcdx.frontend import frames as fr
from etcdx.frontend import grpc as g
from etcdx.frontend import headers as hd
from etcdx.frontend.connection import (
    DataReceived, GoAwayReceived, PingAcked, RequestReceived, SendReady, ServerConnection, StreamReset,
)
from etcdx.frontend.httpapi import HttpRequest, HttpResponse
from etcdx.frontend.options import Options
from etcdx.frontend.rpc import Call, Stream, StreamClosed

log = logging.getLogger(__name__)

_KEEPALIVE_PING = b"etcdx-ka"


@functools.lru_cache(maxsize=256)
def _status_block(code: int, message: str, trailers_only: bool) -> bytes:
    return hd.encode_status(code, message, with_response_headers=trailers_only)


_OK_TRAILERS_ONLY = hd.GRPC_RESPONSE_HEADERS + hd.GRPC_OK_TRAILERS


class Http2Session(asyncio.Protocol):
    """One client connection speaking HTTP/2 (after the preface was recognised)."""

    def __init__(self, options: Options, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
                 peer: Any, peer_certificate: dict | None, on_close: Any = None) -> None:
        self._o = options
        self._loop = loop
        self._transport = transport
        self._peer = peer
        self._peer_cert = peer_certificate
        self._on_close = on_close
        self.conn = ServerConnection(options.h2, clock=loop.time)
        self.conn.initiate()
        self._calls: dict[int, Call] = {}
        self._exchanges: dict[int, _Exchange] = {}
        self.tasks: set[asyncio.Task] = set()
        self._in_receive = False
        self._write_scheduled = False
        self._write_paused = False
        self._read_paused = False
        self._lost = False
        self._shutting_down = False
        self._routes = options.router.routes
        self._on_call_end = options.router.on_call_end
        self._limit = options.max_receive_message_bytes
        self._last_activity = loop.time()
        self._keepalive_handle: asyncio.TimerHandle | None = None
        self._ping_outstanding = False
        self._arm_keepalive(options.keepalive_interval)
        self._write()

    # -- asyncio.Protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._in_receive = True
        try:
            for ev in self.conn.receive(data):
                t = type(ev)
                if t is RequestReceived:
                    self._on_request(ev)
                elif t is DataReceived:
                    self._on_data(ev)
                elif t is StreamReset:
                    self._on_reset(ev.stream_id)
                elif t is SendReady:
                    self._on_send_ready(ev.stream_id)
                elif t is GoAwayReceived:
                    self._shutting_down = True
                elif t is PingAcked:
                    self._ping_outstanding = False
        finally:
            self._in_receive = False
        self._write()
        self._last_activity = self._loop.time()

    def eof_received(self) -> bool | None:
        return None   # close our side too; in-flight calls are cancelled in connection_lost

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        if self._keepalive_handle is not None:
            self._keepalive_handle.cancel()
        for call in list(self._calls.values()):
            self._abort(call, None)
        for ex in list(self._exchanges.values()):
            ex.cancel()
        self._exchanges.clear()
        if self._on_close is not None:
            self._on_close(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._read_paused:
            self._read_paused = False
            self._transport.resume_reading()
        for call in list(self._calls.values()):
            if call._stream is not None:
                call._stream._wake_sender()
        for ex in list(self._exchanges.values()):
            ex.wake()

    # -- output ----------------------------------------------------------------------

    def _write(self) -> None:
        self._write_scheduled = False
        if self._lost:
            return
        data = self.conn.data_to_send()
        if data:
            self._transport.write(data)
            if self._write_paused and self._transport.get_write_buffer_size() > self._o.write_buffer_cap:
                if not self._read_paused:      # a peer that makes us answer but does not read
                    self._read_paused = True
                    self._transport.pause_reading()
        if self.conn.closed or (self._shutting_down and not self.busy):
            self._transport.close()

    def want_write(self) -> None:
        """Write pending output at the end of this loop iteration (once)."""
        if not self._in_receive and not self._write_scheduled:
            self._write_scheduled = True
            self._loop.call_soon(self._write)

    # -- requests --------------------------------------------------------------------

    def _on_request(self, ev: RequestReceived) -> None:
        head = ev.head
        sid = ev.stream_id
        if not head.is_grpc:
            ex = _Exchange(self, sid, head)
            self._exchanges[sid] = ex
            if ev.end_stream:
                ex.begin()
            return
        deadline = None
        if ev.timeout is not None:
            try:
                deadline = self._loop.time() + g.parse_timeout(ev.timeout)
            except ValueError:
                self._send_status(sid, g.malformed_timeout(ev.timeout), False)
                return
        route = self._routes.get(head.path)
        if route is None:
            self._send_status(sid, g.unknown_path(head.path, self._o.router.services), False)
            return
        encoding = head.grpc_encoding
        if encoding is not None and not (encoding == "gzip" and self._o.accept_gzip):
            self._send_status(sid, g.no_decompressor(encoding), False)
            return
        call = Call(head.path, head.metadata, self._peer, self._peer_cert, deadline, sid)
        call._encoding = encoding
        call._streaming, call._handler = route
        call._reader = g.MessageReader(self._limit)
        self._calls[sid] = call
        if deadline is not None:
            call._timer = self._loop.call_at(deadline, self._expire, call)
        if call._streaming:
            call._stream = _GrpcStream(self, call)
            task = self._loop.create_task(self._run_stream(call))
            call._task = task
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        if ev.end_stream:
            self._on_end_of_request(call)

    def _on_data(self, ev: DataReceived) -> None:
        sid = ev.stream_id
        call = self._calls.get(sid)
        if call is None:
            ex = self._exchanges.get(sid)
            if ex is not None:
                ex.on_data(ev)
            else:
                self.conn.consumed(sid, ev.flow_length)
            return
        try:
            messages = call._reader.feed(ev.data) if ev.data else ()
            if messages:
                messages = [g.decompress(m, call._encoding, self._limit) if compressed else m
                            for compressed, m in messages]
        except g.RpcError as e:
            self.conn.consumed(sid, ev.flow_length)
            self._abort(call, e)
            return
        if call._streaming:
            call._stream._deliver(messages, ev.flow_length, ev.end_stream)
            return
        self.conn.consumed(sid, ev.flow_length)
        if messages and call._handler is not None:
            self._invoke_unary(call, messages[0])
        elif ev.end_stream:
            self._on_end_of_request(call)

    def _on_end_of_request(self, call: Call) -> None:
        if call._streaming:
            call._stream._deliver((), 0, True)
        elif call._handler is not None:
            if call._reader.partial:
                self._abort(call, g.RpcError(g.StatusCode.INTERNAL, "grpc: request ended inside a message"))
            else:
                self._abort(call, g.NO_REQUEST_MESSAGE)

    def _on_reset(self, sid: int) -> None:
        call = self._calls.get(sid)
        if call is not None:
            self._abort(call, None)
            return
        ex = self._exchanges.pop(sid, None)
        if ex is not None:
            ex.cancel()

    def _on_send_ready(self, sid: int) -> None:
        call = self._calls.get(sid)
        if call is not None and call._stream is not None:
            call._stream._wake_sender()
            return
        ex = self._exchanges.get(sid)
        if ex is not None:
            ex.wake()

    # -- unary calls -----------------------------------------------------------------

    def _invoke_unary(self, call: Call, message: bytes) -> None:
        handler, call._handler = call._handler, None
        try:
            result = handler(message, call)
        except Exception as e:
            status = g.status_of(e)
            if status is None:
                log.exception("handler for %s failed", call.method)
            self._abort(call, status or g.INTERNAL)
            return
        if isinstance(result, (bytes, bytearray, memoryview)):
            self._reply(call, result)
            return
        if asyncio.isfuture(result):
            fut = result
        elif asyncio.iscoroutine(result):
            fut = self._loop.create_task(result)
            call._task = fut
            self.tasks.add(fut)
            fut.add_done_callback(self.tasks.discard)
        else:
            log.error("handler for %s returned %s, not bytes or an awaitable", call.method, type(result).__name__)
            self._abort(call, g.INTERNAL)
            return
        fut.add_done_callback(functools.partial(self._unary_done, call))

    def _unary_done(self, call: Call, fut: asyncio.Future) -> None:
        if fut.cancelled():
            if not call.done:
                self._abort(call, g.RpcError(g.StatusCode.CANCELLED, "context canceled"))
                self.want_write()
            return
        exc = fut.exception()
        status = g.status_of(exc) if exc is not None else None
        if call.done:
            if exc is not None and status is None:
                log.error("handler for %s failed after the call ended", call.method, exc_info=exc)
            return
        if exc is None:
            self._reply(call, fut.result())
        elif status is not None:
            self._abort(call, status)
        else:
            log.error("handler for %s failed", call.method, exc_info=exc)
            self._abort(call, g.INTERNAL)
        self.want_write()

    def _reply(self, call: Call, message: bytes) -> None:
        if len(message) > self._o.max_send_message_bytes:
            self._abort(call, g.too_large_to_send(len(message), self._o.max_send_message_bytes))
            return
        self._finish(call, g.StatusCode.OK)
        sid = call.stream_id
        conn = self.conn
        conn.send_headers(sid, hd.GRPC_RESPONSE_HEADERS)
        conn.send_data(sid, g.frame_message(message))
        conn.send_trailers(sid, hd.GRPC_OK_TRAILERS)

    # -- streaming calls -------------------------------------------------------------

    async def _run_stream(self, call: Call) -> None:
        stream = call._stream
        try:
            await call._handler(stream, call)
        except asyncio.CancelledError:
            if not call.done:
                self._abort(call, g.SERVER_SHUTDOWN)
                self.want_write()
                raise
            return
        except StreamClosed:
            if not call.done:
                raise
            return
        except Exception as e:
            status = g.status_of(e)
            if status is None:
                log.exception("stream handler for %s failed", call.method)
            self._abort(call, status or g.INTERNAL)
        else:
            if not call.done:
                self._finish(call, g.StatusCode.OK)
                if stream.headers_sent:
                    self.conn.send_trailers(call.stream_id, hd.GRPC_OK_TRAILERS)
                else:
                    self.conn.send_headers(call.stream_id, _OK_TRAILERS_ONLY, end_stream=True)
        self.want_write()

    # -- ending calls ----------------------------------------------------------------

    def _finish(self, call: Call, code: int) -> None:
        """``call`` ends with status ``code`` (the router's ``on_call_end`` hears of it)."""
        call.done = True
        self._calls.pop(call.stream_id, None)
        if call._timer is not None:
            call._timer.cancel()
            call._timer = None
        if self._on_call_end is not None:
            self._on_call_end(call, code)

    def _send_status(self, sid: int, err: g.RpcError, headers_sent: bool) -> None:
        if headers_sent:
            self.conn.send_trailers(sid, _status_block(err.code, err.message, False))
        else:
            self.conn.send_headers(sid, _status_block(err.code, err.message, True), end_stream=True)

    def _abort(self, call: Call, status: g.RpcError | None) -> None:
        """End the call early: send ``status`` (None: the stream is gone), run cancel callbacks."""
        if call.done:
            return
        self._finish(call, status.code if status is not None else g.StatusCode.CANCELLED)
        stream = call._stream
        if status is not None and not self._lost:
            self._send_status(call.stream_id, status, stream is not None and stream.headers_sent)
        call._fire_cancel()
        task = call._task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if stream is not None:
            stream._wake_sender()
            stream._wake_receiver()

    def _expire(self, call: Call) -> None:
        call._timer = None
        self._abort(call, g.DEADLINE_EXCEEDED)
        self.want_write()

    # -- keepalive and shutdown ------------------------------------------------------

    def _arm_keepalive(self, delay: float) -> None:
        if self._o.keepalive_interval > 0:
            self._keepalive_handle = self._loop.call_later(delay, self._keepalive)

    def _keepalive(self) -> None:
        """etcd's --grpc-keepalive-interval/-timeout: ping an idle client, drop it if silent."""
        if self._lost:
            return
        now = self._loop.time()
        if self._ping_outstanding and now - self._last_activity >= self._o.keepalive_timeout:
            self._transport.abort()
            return
        idle = now - self._last_activity
        if idle >= self._o.keepalive_interval and not self._ping_outstanding:
            self._ping_outstanding = True
            self.conn.ping(_KEEPALIVE_PING)
            self._write()
            self._arm_keepalive(self._o.keepalive_timeout)
        elif self._ping_outstanding:
            self._arm_keepalive(self._o.keepalive_timeout)
        else:
            self._arm_keepalive(self._o.keepalive_interval - idle)

    def shutdown(self) -> None:
        """GOAWAY: finish the calls in flight, accept no new ones, close when idle."""
        if self._lost:
            return
        self._shutting_down = True
        self.conn.close()
        self._write()

    def abort(self) -> None:
        """Cancel every call in flight (UNAVAILABLE) and close the connection."""
        for call in list(self._calls.values()):
            self._abort(call, g.SERVER_SHUTDOWN)
        for ex in list(self._exchanges.values()):
            ex.cancel()
        self._exchanges.clear()
        self._write()
        if not self._lost:
            self._transport.close()

    @property
    def busy(self) -> bool:
        """Calls or HTTP requests in flight, or response bytes still waiting for window."""
        return bool(self._calls or self._exchanges or self.conn.open_streams)


class _GrpcStream(Stream):
    """`Stream` of one streaming call on an HTTP/2 connection."""

    __slots__ = ("_s", "_call", "_inbox", "_inbox_bytes", "_deferred", "_ended", "_recv_waiter",
                 "_send_waiter", "headers_sent")

    def __init__(self, session: Http2Session, call: Call) -> None:
        self._s = session
        self._call = call
        self._inbox: deque[bytes] = deque()
        self._inbox_bytes = 0
        self._deferred = 0            # flow-control credit held back while the inbox is full
        self._ended = False
        self._recv_waiter: asyncio.Future | None = None
        self._send_waiter: asyncio.Future | None = None
        self.headers_sent = False

    def _deliver(self, messages: Any, flow: int, end_stream: bool) -> None:
        for m in messages:
            self._inbox.append(m)
            self._inbox_bytes += len(m)
        if self._inbox_bytes < self._s._o.stream_inbox_bytes:
            self._s.conn.consumed(self._call.stream_id, flow + self._deferred)
            self._deferred = 0
        else:
            self._deferred += flow
        if end_stream:
            self._ended = True
        if messages or end_stream:
            self._wake_receiver()

    def _wake_receiver(self) -> None:
        w = self._recv_waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _wake_sender(self) -> None:
        w = self._send_waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def recv(self) -> bytes | None:
        while not self._inbox:
            if self._ended or self._call.done:
                return None
            self._recv_waiter = self._s._loop.create_future()
            await self._recv_waiter
        m = self._inbox.popleft()
        self._inbox_bytes -= len(m)
        if self._deferred and self._inbox_bytes < self._s._o.stream_inbox_bytes:
            self._s.conn.consumed(self._call.stream_id, self._deferred)
            self._deferred = 0
            self._s.want_write()
        return m

    async def send(self, message: bytes) -> None:
        call = self._call
        s = self._s
        if call.done:
            raise StreamClosed(call.method)
        limit = s._o.max_send_message_bytes
        if len(message) > limit:
            raise g.too_large_to_send(len(message), limit)
        conn = s.conn
        sid = call.stream_id
        if not self.headers_sent:
            self.headers_sent = True
            conn.send_headers(sid, hd.GRPC_RESPONSE_HEADERS)
        conn.send_data(sid, g.frame_message(message))
        s.want_write()
        low_water = s._o.h2.send_low_water
        while not call.done:
            queued = conn.pending_bytes(sid) >= low_water
            if not queued and not s._write_paused:
                return
            if queued:
                conn.want_ready(sid)
            self._send_waiter = s._loop.create_future()
            await self._send_waiter
        raise StreamClosed(call.method)


class _Exchange(HttpResponse):
    """A plain HTTP request over HTTP/2 (curl, a browser, a health probe speaking h2)."""

    def __init__(self, session: Http2Session, sid: int, head: hd.RequestHead) -> None:
        self._s = session
        self._sid = sid
        self._head = head
        self._body = bytearray()
        self._task: asyncio.Task | None = None
        self._waiter: asyncio.Future | None = None
        self._started = False
        self._ended = False
        self._too_large = False

    def on_data(self, ev: DataReceived) -> None:
        self._s.conn.consumed(self._sid, ev.flow_length)
        if len(self._body) + len(ev.data) > self._s._o.max_http_body_bytes:
            self._too_large = True
        elif not self._too_large:
            self._body += ev.data
        if ev.end_stream:
            self.begin()

    def begin(self) -> None:
        """The request is complete: run the HTTP handler."""
        if self._too_large:
            self._simple(413, b"request body too large\n")
            return
        h = self._head
        request = HttpRequest(method=h.method, path=h.path,
                              headers=[("host", h.authority)] + list(h.headers) if h.authority else list(h.headers),
                              body=bytes(self._body), peer=self._s._peer, peer_certificate=self._s._peer_cert,
                              http_version="2")
        self._task = self._s._loop.create_task(self._run(request))
        self._s.tasks.add(self._task)
        self._task.add_done_callback(self._s.tasks.discard)

    async def _run(self, request: HttpRequest) -> None:
        try:
            await self._s._o.http(request, self)
            if not self._started:
                log.error("HTTP handler returned without a response for %s %s", request.method, request.path)
                self._simple(500, b"no response\n")
            elif not self._ended:
                await self.end()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("HTTP handler failed for %s %s", request.method, request.path)
            if not self._started:
                self._simple(500, b"internal server error\n")
            else:
                self._s.conn.reset_stream(self._sid, fr.INTERNAL_ERROR)
                self._done()
        self._s.want_write()

    def _simple(self, status: int, body: bytes) -> None:
        self.start(status, [("content-type", "text/plain; charset=utf-8"),
                                     ("content-length", str(len(body)))])
        self._s.conn.send_data(self._sid, body, end_stream=True)
        self._done()
        self._s.want_write()

    def _done(self) -> None:
        self._ended = True
        self._s._exchanges.pop(self._sid, None)

    # HttpResponse
    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        if self._started:
            raise RuntimeError("response already started")
        self._started = True
        self._s.conn.send_headers(self._sid, hd.encode_response(status, headers))
        self._s.want_write()

    async def write(self, chunk: bytes) -> None:
        if not self._started:
            raise RuntimeError("write before start")
        if self._ended:
            raise StreamClosed(self._head.path)
        if not chunk:
            return
        conn = self._s.conn
        conn.send_data(self._sid, chunk)
        self._s.want_write()
        low_water = self._s._o.h2.send_low_water
        while not self._ended:
            queued = conn.pending_bytes(self._sid) >= low_water
            if not queued and not self._s._write_paused:
                return
            if queued:
                conn.want_ready(self._sid)
            self._waiter = self._s._loop.create_future()
            await self._waiter

    async def end(self, trailers: list[tuple[str, str]] | None = None) -> None:
        if self._ended:
            return
        if trailers:
            self._s.conn.send_trailers(self._sid, hd.encode(
                [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in trailers]))
        else:
            self._s.conn.send_data(self._sid, b"", end_stream=True)
        self._done()
        self._s.want_write()

    def wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def cancel(self) -> None:
        self._ended = True
        self.wake()
        if self._task is not None and not self._task.done():
            self._task.cancel()
