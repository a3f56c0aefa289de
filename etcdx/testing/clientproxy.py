"""A TCP proxy in front of a member's client port that can lose responses.

The fault that matters most to a client's retry logic is the one in which
a request *was applied* but its answer never arrived: retrying a put then
writes it twice. `ClientProxy` makes exactly that happen, on demand:

    proxy = ClientProxy(member.client_port).start()
    client = Client([proxy.endpoint])
    proxy.lose_responses(1)      # the next response's connection is reset instead
    client.put("k", "v")         # applied by the member; the client sees the connection drop
    proxy.block()                # reset every connection, and new ones, until unblock()

It reads the HTTP/2 frames the member sends back; when a response begins (a
HEADERS frame on a request's stream) while a loss is armed, it resets both
connections instead of passing the frame on. Everything else is copied
unchanged. The proxy runs an asyncio loop in a background thread; its
methods are plain calls that return once the change is in force.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

CALL_TIMEOUT = 10.0
_FRAME_HEADER = 9
_HEADERS = 0x1


class ClientProxy:
    """Listens on a free loopback port (``endpoint``) and forwards to ``upstream_port``."""

    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.responses_lost = 0
        self.connections = 0  # accepted and forwarded
        self._armed = 0
        self._blocked = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="etcdx-clientproxy", daemon=True)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ClientProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def lose_responses(self, count: int = 1) -> None:
        """Reset the connection instead of delivering each of the next ``count`` responses."""
        self._run(lambda: setattr(self, "_armed", self._armed + count))

    def block(self) -> None:
        """Reset every open connection and every new one until `unblock` (the member looks down)."""

        def apply() -> None:
            self._blocked = True
            for w in list(self._writers):
                _reset(w)

        self._run(apply)

    def unblock(self) -> None:
        self._run(lambda: setattr(self, "_blocked", False))

    def armed(self) -> int:
        """Losses still to come."""
        return self._run(lambda: self._armed)

    def close(self) -> None:
        """Stop listening, reset every connection, stop the thread. Idempotent."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                _reset(w)
            handlers = list(self._handlers)
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

        try:
            self._call(shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> ClientProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT)

    def _run(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()

        return self._call(wrapper())

    async def _handle(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._proxy(reader, client)
        finally:
            self._handlers.discard(task)

    async def _proxy(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        if self._blocked:
            _reset(client)
            return
        try:
            up_reader, upstream = await asyncio.open_connection(*self.upstream)
        except OSError:
            _reset(client)
            return
        if self._blocked:  # blocked while we were connecting
            _reset(client)
            _reset(upstream)
            return
        self._writers |= {client, upstream}
        self.connections += 1

        def drop() -> None:
            _reset(client)
            _reset(upstream)

        pipes = [
            asyncio.ensure_future(self._copy(reader, upstream)),
            asyncio.ensure_future(self._responses(up_reader, client, drop)),
        ]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pipes:
                p.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            drop()
            self._writers -= {client, upstream}

    @staticmethod
    async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()

    async def _responses(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, drop: Callable[[], None]) -> None:
        """Copy the member's HTTP/2 frames, whole, dropping the connection at an armed response."""
        buf = b""
        while data := await reader.read(65536):
            buf += data
            out = bytearray()
            while len(buf) >= _FRAME_HEADER:
                length = int.from_bytes(buf[:3], "big")
                if len(buf) < _FRAME_HEADER + length:
                    break
                frame_type, stream_id = buf[3], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                if frame_type == _HEADERS and stream_id != 0 and self._armed:
                    self._armed -= 1
                    self.responses_lost += 1
                    if out:
                        writer.write(bytes(out))
                    drop()
                    return
                out += buf[: _FRAME_HEADER + length]
                buf = buf[_FRAME_HEADER + length :]
            if out:
                writer.write(bytes(out))
                await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST, as a crashed peer or a cut cable would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()
