"""Opening a peer connection (dial + handshake) and reading frames off one."""

from __future__ import annotations

import asyncio
import socket
import ssl

from .errors import TransportError
from .wire import MAX_FRAME, OK_LINE, U32, Handshake

READ_LIMIT = 1 << 20
"""StreamReader buffer limit: big enough that a 4 MiB frame is read without many pause/resume cycles."""


class HandshakeRejected(TransportError):
    """The acceptor answered ``ERR <message>`` (wrong cluster, wrong member, removed member)."""


Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def set_user_timeout(writer: asyncio.StreamWriter, seconds: float) -> None:
    """Have the kernel fail the connection when data it sent stays unacknowledged for ``seconds``.

    Without it a peer host that died (power loss, not a process exit) keeps our
    connection "up" for the ~15 minutes of TCP retransmission, and the link
    heartbeats only fill the send buffer. Linux only; elsewhere a no-op.
    """
    option = getattr(socket, "TCP_USER_TIMEOUT", None)
    sock = writer.get_extra_info("socket")
    if option is None or sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, option, max(1, int(seconds * 1000)))
    except (OSError, AttributeError):
        pass


async def dial(address: tuple[str, int], hello: Handshake, timeout: float,
               user_timeout: float | None = None, ssl_context: ssl.SSLContext | None = None) -> Conn:
    """A connection to ``address`` on which the acceptor has answered OK to ``hello``.

    With ``ssl_context`` the connection is TLS, and the peer's certificate must be
    valid for the address's host. With TLS 1.3 a server that refuses our certificate
    says so only after our side of the handshake is done: the refusal surfaces as
    the answer to ``hello`` failing, still a TransportError from here.
    """
    writer = None
    tls = {} if ssl_context is None else {"ssl": ssl_context, "server_hostname": address[0],
                                          "ssl_handshake_timeout": timeout}
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address[0], address[1], limit=READ_LIMIT, **tls)
            if user_timeout is not None:
                set_user_timeout(writer, user_timeout)
            writer.write(hello.line())
            answer = await reader.readuntil(b"\n")
    except (OSError, EOFError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as err:
        if writer is not None:
            writer.close()
        if isinstance(err, TimeoutError):
            reason = "timed out"
        elif ssl_context is not None and writer is not None and isinstance(err, asyncio.IncompleteReadError):
            # uvloop reports a TLS 1.3 server's refusal of our certificate as a plain close.
            reason = "the peer closed the TLS connection without an answer (does it trust our certificate?)"
        else:
            reason = str(err) or type(err).__name__
        raise TransportError(f"dial {address[0]}:{address[1]}: {reason}") from None
    if answer == OK_LINE:
        return reader, writer
    writer.close()
    if answer.startswith(b"ERR "):
        raise HandshakeRejected(answer[4:].decode("ascii", "replace").strip())
    raise TransportError(f"dial {address[0]}:{address[1]}: bad handshake answer {answer[:80]!r}")


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The next frame's payload; IncompleteReadError at EOF, ValueError on an absurd length."""
    (n,) = U32.unpack(await reader.readexactly(4))
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes exceeds the limit")
    return await reader.readexactly(n) if n else b""
