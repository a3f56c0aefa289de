"""The asyncio shell around one HTTP/1.1 connection, on the `h11` package.

One request at a time: while a request's handler runs the transport stops
reading (pipelined requests wait in the kernel, not in our memory), and the
next cycle starts when the response ended. Keep-alive, chunked responses (no
content-length), `Expect: 100-continue` and HTTP/1.0 framing are h11's.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus
from typing import Any

import h11

from etcdx.frontend.httpapi import HttpRequest, HttpResponse
from etcdx.frontend.options import Options
from etcdx.frontend.rpc import StreamClosed

log = logging.getLogger(__name__)

_MAX_HEAD_BYTES = 64 << 10


def _reason(status: int) -> bytes:
    """The status line's reason phrase, as Go and most servers send it ("200 OK")."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""


class Http1Session(asyncio.Protocol):
    """One client connection speaking HTTP/1.x."""

    def __init__(self, options: Options, loop: asyncio.AbstractEventLoop, transport: asyncio.Transport,
                 peer: Any, peer_certificate: dict | None, on_close: Any = None) -> None:
        self._o = options
        self._loop = loop
        self._transport = transport
        self._peer = peer
        self._peer_cert = peer_certificate
        self._on_close = on_close
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=_MAX_HEAD_BYTES)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._task: asyncio.Task | None = None
        self._response: _Response | None = None
        self._peer_eof = False
        self.tasks: set[asyncio.Task] = set()
        self._lost = False
        self._shutting_down = False
        self._write_paused = False
        self._drain: asyncio.Future | None = None

    # -- asyncio.Protocol ------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._h11.receive_data(data)
        if self._task is not None and len(self._h11.trailing_data[0]) > _MAX_HEAD_BYTES:
            # Pipelined requests wait for the one being answered; bound what waits with them.
            self._transport.pause_reading()
        self._process()

    def eof_received(self) -> bool | None:
        self._h11.receive_data(b"")
        task = self._task
        if task is not None and not task.done():
            # The client half-closed while its request is answered. As in Go's server that
            # ends a streamed answer (a watch; see _Response.write); a sized answer is still
            # written to the half-open connection, which closes after it.
            self._peer_eof = True
            response = self._response
            if response is not None and response.started and response.streamed:
                task.cancel()
                task.add_done_callback(lambda _: self._transport.close())
            return True
        self._process()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._wake()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if self._on_close is not None:
            self._on_close(self)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._wake()

    def _wake(self) -> None:
        d = self._drain
        if d is not None and not d.done():
            d.set_result(None)

    # -- requests --------------------------------------------------------------------

    def _process(self) -> None:
        while self._task is None and not self._lost:
            try:
                ev = self._h11.next_event()
            except h11.RemoteProtocolError as e:
                self._protocol_error(e)
                return
            if ev is h11.NEED_DATA or ev is h11.PAUSED:
                return
            if isinstance(ev, h11.Request):
                self._request = ev
                self._body = bytearray()
                if self._h11.they_are_waiting_for_100_continue:
                    self._send(h11.InformationalResponse(status_code=100, headers=[]))
            elif isinstance(ev, h11.Data):
                if len(self._body) + len(ev.data) > self._o.max_http_body_bytes:
                    self._simple(413, b"request body too large\n", close=True)
                    return
                self._body += ev.data
            elif isinstance(ev, h11.EndOfMessage):
                self._start_handler()
            elif isinstance(ev, h11.ConnectionClosed):
                self._transport.close()
                return

    def _protocol_error(self, e: h11.RemoteProtocolError) -> None:
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            status = e.error_status_hint or 400
            body = f"{status} bad request: {e}\n".encode()
            try:
                self._simple(status, body, close=True)
                return
            except h11.LocalProtocolError:
                pass
        self._transport.close()

    def _send(self, event: Any) -> None:
        data = self._h11.send(event)
        if data and not self._lost:
            self._transport.write(data)

    def _simple(self, status: int, body: bytes, close: bool = False) -> None:
        headers = [("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(body)))]
        if close:
            headers.append(("connection", "close"))
        self._send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))
        self._send(h11.Data(data=body))
        self._send(h11.EndOfMessage())
        if close:
            self._transport.close()

    def _start_handler(self) -> None:
        req = self._request
        assert req is not None
        request = HttpRequest(
            method=req.method.decode("latin-1"),
            path=req.target.decode("latin-1"),
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in req.headers],
            body=bytes(self._body),
            peer=self._peer,
            peer_certificate=self._peer_cert,
            http_version=req.http_version.decode("ascii"),
        )
        self._body = bytearray()
        # Reading goes on while the handler runs, so a client that closes or half-closes
        # ends its request (a watch stream, say) as it would in Go's server.
        response = self._response = _Response(self, request.method == "HEAD")
        self._task = self._loop.create_task(self._run(request, response))
        self.tasks.add(self._task)
        self._task.add_done_callback(self.tasks.discard)

    async def _run(self, request: HttpRequest, response: _Response) -> None:
        try:
            await self._o.http(request, response)
            if not response.started:
                log.error("HTTP handler returned without a response for %s %s", request.method, request.path)
                self._simple(500, b"no response\n", close=True)
            elif not response.ended:
                await response.end()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("HTTP handler failed for %s %s", request.method, request.path)
            if not response.started:
                self._simple(500, b"internal server error\n", close=True)
            else:
                self._transport.close()
        finally:
            self._task = None
            self._response = None
        self._next_cycle()

    def _next_cycle(self) -> None:
        if self._lost:
            return
        if self._shutting_down or self._h11.our_state is not h11.DONE or self._h11.their_state is not h11.DONE:
            self._transport.close()
            return
        self._h11.start_next_cycle()
        self._transport.resume_reading()
        self._process()

    # -- shutdown --------------------------------------------------------------------

    def shutdown(self) -> None:
        """Close now if idle, else after the response in progress."""
        self._shutting_down = True
        if self._task is None and not self._lost:
            self._transport.close()

    def abort(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        if not self._lost:
            self._transport.close()

    @property
    def busy(self) -> bool:
        return self._task is not None


class _Response(HttpResponse):
    def __init__(self, session: Http1Session, head_only: bool) -> None:
        self._s = session
        self._head_only = head_only
        self.started = False
        self.ended = False
        self.streamed = False  # no content-length: the body's end is not known up front

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        if self.started:
            raise RuntimeError("response already started")
        self.started = True
        if self._s._shutting_down:
            headers = [*headers, ("connection", "close")]
        self.streamed = not any(k.lower() == "content-length" for k, _ in headers)
        self._s._send(h11.Response(status_code=status, headers=headers, reason=_reason(status)))

    async def write(self, chunk: bytes) -> None:
        if not self.started:
            raise RuntimeError("write before start")
        s = self._s
        if s._lost or self.ended:
            raise StreamClosed("connection closed")
        if s._peer_eof and self.streamed:
            raise StreamClosed("the client half-closed the connection")
        if chunk and not self._head_only:
            s._send(h11.Data(data=chunk))
        while s._write_paused and not s._lost:
            s._drain = s._loop.create_future()
            await s._drain

    async def end(self, trailers: list[tuple[str, str]] | None = None) -> None:
        if self.ended:
            return
        self.ended = True
        if not self._s._lost:
            # Trailers need chunked framing: an HTTP/1.1 client, a body, no content-length.
            chunked = self.streamed and not self._head_only and self._s._h11.their_http_version == b"1.1"
            self._s._send(h11.EndOfMessage(headers=trailers if trailers and chunked else []))
