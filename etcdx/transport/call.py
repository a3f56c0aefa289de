"""Request/response calls between members, pipelined over one connection per peer.

Lease keep-alives forwarded to the leader arrive at a high rate, so a call
must not cost a connection or a round trip of its own: many calls share one
``call`` connection, are told apart by request id, and everything queued in
one loop pass goes out in one write.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable

from etcdx.tls import TLSInfo

from .conn import Conn, dial, read_frame
from .errors import RemoteError, TransportError
from .security import PeerTLS
from .wire import (
    CALL_ERROR,
    CALL_OK,
    Handshake,
    decode_call_request,
    decode_call_response,
    encode_call_request,
    encode_call_response,
    parse_url,
)

log = logging.getLogger("etcdx.transport")

RequestHandler = Callable[[str, bytes], Awaitable[bytes]]

MAX_IN_FLIGHT = 4096
"""Requests served concurrently per connection; beyond it the server stops reading (TCP back-pressure)."""

WRITE_BUFFER_HIGH = 4 << 20
"""Unsent bytes above which a caller or server waits for the socket to drain."""

_READ_ERRORS = (OSError, asyncio.IncompleteReadError, ValueError, struct.error, UnicodeDecodeError)


class _Batcher:
    """Coalesces the frames written in one loop pass into one ``write``."""

    __slots__ = ("_loop", "_out", "_writer")

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    def write(self, data: bytes) -> None:
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(data)

    def _flush(self) -> None:
        out, self._out = self._out, []
        if not self._writer.transport.is_closing():
            self._writer.write(b"".join(out))

    async def drain_if_full(self, timeout: float) -> None:
        if self._writer.transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
            async with asyncio.timeout(timeout):
                await self._writer.drain()


class _CallConn:
    __slots__ = ("closed", "out", "pending", "reader", "reader_task", "writer")

    def __init__(self, conn: Conn) -> None:
        self.reader, self.writer = conn
        self.out = _Batcher(self.writer)
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.closed = False
        self.reader_task: asyncio.Task[None] | None = None

    async def read_responses(self) -> None:
        reason = "call connection closed by peer"
        try:
            while True:
                request_id, status, payload = decode_call_response(await read_frame(self.reader))
                fut = self.pending.pop(request_id, None)
                if fut is None or fut.done():
                    continue  # the caller timed out
                if status == CALL_OK:
                    fut.set_result(payload)
                else:
                    fut.set_exception(RemoteError(payload.decode("utf-8", "replace")))
        except _READ_ERRORS as err:
            reason = f"call connection lost: {err or type(err).__name__}"
        finally:
            self.close(reason)

    def close(self, reason: str) -> None:
        self.closed = True
        self.writer.close()
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(TransportError(reason))


class CallClient:
    """Calls to one peer; the connection is dialled on first use and again after it breaks."""

    def __init__(self, dial_peer: Callable[[str], Awaitable[Conn]], peer_label: str) -> None:
        self._dial_peer = dial_peer
        self._peer_label = peer_label
        self._conn: _CallConn | None = None
        self._dialing: asyncio.Task[_CallConn] | None = None
        self._next_id = 1
        self._closed = False

    async def call(self, method: str, payload: bytes, timeout: float) -> bytes:
        if self._closed:
            raise TransportError(f"peer {self._peer_label} was removed")
        conn = None
        request_id = 0
        try:
            async with asyncio.timeout(timeout):
                conn = self._conn
                if conn is None or conn.closed:
                    conn = await self._connect()
                request_id = self._next_id
                self._next_id += 1
                fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
                conn.pending[request_id] = fut
                conn.out.write(encode_call_request(request_id, method, payload))
                await conn.out.drain_if_full(timeout)
                return await fut
        except TimeoutError:
            raise TransportError(f"call {method} to peer {self._peer_label} timed out after {timeout}s") from None
        except OSError as err:
            raise TransportError(f"call {method} to peer {self._peer_label}: {err}") from None
        finally:
            if conn is not None:
                conn.pending.pop(request_id, None)

    async def _connect(self) -> _CallConn:
        if self._dialing is None:
            self._dialing = asyncio.create_task(self._open(), name=f"etcdx-call-dial-{self._peer_label}")
            self._dialing.add_done_callback(_consume_exception)
        # shield: one caller's timeout must not cancel the dial the others wait on
        return await asyncio.shield(self._dialing)

    async def _open(self) -> _CallConn:
        try:
            conn = _CallConn(await self._dial_peer("call"))
            conn.reader_task = asyncio.create_task(conn.read_responses(), name=f"etcdx-call-{self._peer_label}")
            self._conn = conn
            return conn
        finally:
            self._dialing = None

    def reset(self) -> None:
        """Drop the current connection (peer URLs changed); calls in flight fail."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close("peer URLs changed")
            if conn.reader_task is not None:
                conn.reader_task.cancel()

    def close(self) -> list[asyncio.Task]:
        """Fail every call in flight and refuse new ones; returns the tasks to wait for."""
        self._closed = True
        tasks = []
        if self._dialing is not None:
            self._dialing.cancel()
            tasks.append(self._dialing)
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close(f"peer {self._peer_label} was removed")
            if conn.reader_task is not None:
                conn.reader_task.cancel()
                tasks.append(conn.reader_task)
        return tasks


def _consume_exception(task: asyncio.Task) -> None:
    if not task.cancelled():
        task.exception()  # reported to the callers that awaited it; do not warn "never retrieved"


async def serve_calls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      handler: RequestHandler, write_timeout: float) -> None:
    """Serve the requests of one ``call`` connection until it closes; each request runs as its own task."""
    out = _Batcher(writer)
    tasks: set[asyncio.Task[None]] = set()

    async def serve(request_id: int, method: str, payload: bytes) -> None:
        try:
            response = encode_call_response(request_id, CALL_OK, await handler(method, payload))
        except RemoteError as err:
            response = encode_call_response(request_id, CALL_ERROR, err.message.encode())
        except Exception:
            log.exception("request handler failed", extra={"fields": {"method": method}})
            response = encode_call_response(request_id, CALL_ERROR, b"internal error")
        out.write(response)

    try:
        while True:
            request_id, method, payload = decode_call_request(await read_frame(reader))
            task = asyncio.create_task(serve(request_id, method, payload))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if len(tasks) >= MAX_IN_FLIGHT:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            await out.drain_if_full(write_timeout)
    finally:
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def fetch(urls: list[str], method: str, payload: bytes, *, local_id: int = 0, cluster_id: int = 0,
                timeout: float = 5.0, tls: TLSInfo | None = None) -> bytes:
    """One call to the first of ``urls`` that answers, for a member that does not know the ids yet.

    Dials with ``to=0`` (and ``cluster=0`` unless given), which acceptors allow for calls
    only. A RemoteError is an answer and is raised at once; other failures move on to
    the next URL, each URL getting an equal share of ``timeout`` (the last one the rest).
    ``https`` URLs are dialled with the peer TLS settings ``tls``, as a Transport would.
    """
    addresses = [parse_url(u) for u in urls]
    security = PeerTLS(tls)
    if not addresses:
        raise ValueError("fetch needs at least one URL")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    hello = Handshake("call", local_id, 0, cluster_id)
    failures: list[str] = []
    for i, address in enumerate(addresses):
        remaining = deadline - loop.time()
        if remaining <= 0:
            failures.append(f"{address[0]}:{address[1]}: no time left")
            continue
        budget = remaining if i == len(addresses) - 1 else min(remaining, timeout / len(addresses))
        try:
            async with asyncio.timeout(budget):
                reader, writer = await dial(address, hello, budget, ssl_context=security.dial_context(address))
                try:
                    writer.write(encode_call_request(1, method, payload))
                    _, status, body = decode_call_response(await read_frame(reader))
                finally:
                    writer.close()
        except (TransportError, TimeoutError, *_READ_ERRORS) as err:
            failures.append(f"{address[0]}:{address[1]}: {err or type(err).__name__}")
            continue
        if status == CALL_OK:
            return body
        raise RemoteError(body.decode("utf-8", "replace"))
    raise TransportError(f"fetch {method}: no peer answered ({'; '.join(failures)})")
