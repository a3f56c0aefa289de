"""Helpers for the transport tests: members with recording callbacks, waiting on conditions, raw peers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Self

import uvloop

from etcdx.raft.types import Entry, Message, MessageType
from etcdx.transport import Transport
from etcdx.transport.wire import OK_LINE, Handshake, parse_handshake

CLUSTER = 0x1000


def run(scenario: Callable[[], Awaitable[None]], *, loop: str = "uvloop", timeout: float = 10.0) -> None:
    """Run one async scenario on a fresh event loop (uvloop, as members do, unless ``loop="asyncio"``)."""
    factory = uvloop.new_event_loop if loop == "uvloop" else asyncio.new_event_loop

    async def bounded() -> None:
        async with asyncio.timeout(timeout):
            await scenario()

    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(bounded())


async def eventually(cond: Callable[[], bool], what: str, timeout: float = 2.0) -> None:
    """Wait until ``cond()`` holds, polling; fail with ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not cond():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.005)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def url(port: int, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{port}"


def app(frm: int, to: int, index: int, size: int = 16) -> Message:
    """A distinguishable MsgApp from ``frm`` to ``to``."""
    return Message(type=MessageType.APP, to=to, from_=frm, term=3, log_term=3, index=index, commit=index,
                   entries=[Entry(term=3, index=index + 1, data=index.to_bytes(8, "big") * (size // 8))])


class Member:
    """A Transport whose callbacks record what they were told; it listens on https when given ``tls``."""

    def __init__(self, member_id: int, snapshot_dir: str, *, port: int = 0, cluster_id: int = CLUSTER,
                 **kwargs) -> None:
        scheme = "https" if kwargs.get("tls") is not None else "http"
        self.id = member_id
        self.received: list[Message] = []
        self.batches = 0
        self.unreachable: list[int] = []
        self.snapshot_status: list[tuple[int, bool]] = []
        self.transport = Transport(local_id=member_id, cluster_id=cluster_id, listen_urls=[url(port, scheme)],
                                   on_messages=self._on_messages, on_unreachable=self.unreachable.append,
                                   on_snapshot_status=lambda peer, ok: self.snapshot_status.append((peer, ok)),
                                   snapshot_dir=snapshot_dir, **kwargs)

    def _on_messages(self, batch: list[Message]) -> None:
        self.batches += 1
        self.received.extend(batch)

    def from_(self, sender: int) -> list[Message]:
        return [m for m in self.received if m.from_ == sender]

    @property
    def url(self) -> str:
        return self.transport.urls[0]

    async def __aenter__(self) -> Self:
        await self.transport.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.transport.stop()


def mesh(*members: Member) -> None:
    for m in members:
        for other in members:
            if other is not m:
                m.transport.add_peer(other.id, [other.url])


class RawPeer:
    """A hand-written acceptor: answers handshakes with OK and then does whatever the test needs.

    ``read=False`` leaves the connections unread (a peer that stopped reading);
    otherwise it reads and discards until EOF. It records every handshake and
    sets ``closed`` events as the dialer's connections reach EOF.
    """

    def __init__(self, *, read: bool = True) -> None:
        self.read = read
        self.handshakes: list[Handshake] = []
        self.eofs = 0
        self.writers: list[asyncio.StreamWriter] = []
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None
        self._server.close()
        for w in self.writers:
            w.close()
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        assert self._server is not None
        return url(self._server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            self.handshakes.append(parse_handshake(await reader.readuntil(b"\n")))
            writer.write(OK_LINE)
            if not self.read:
                writer.transport.pause_reading()
                await asyncio.Event().wait()  # until the server closes
            while await reader.read(1 << 16):
                pass
            self.eofs += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
