"""`FrontEnd`: listeners that serve gRPC (HTTP/2) and HTTP/1.1 on the same port.

Each accepted connection first gets a `_Sniffer` protocol. Over TLS the ALPN
choice decides (h2, else HTTP/1.1); in plaintext, and over TLS without ALPN,
the first bytes do: HTTP/2's connection preface (`PRI * HTTP/2.0...`) or
anything else, which is HTTP/1.x. The sniffer then hands the transport to an
`Http2Session` or `Http1Session` with `transport.set_protocol`, so after the
first bytes the sniffer costs nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl as ssl_module
from typing import Any, Callable
from urllib.parse import urlsplit

from etcdx.frontend import frames as fr
from etcdx.frontend.connection import ConnectionSettings
from etcdx.frontend.http1 import Http1Session
from etcdx.frontend.http2 import Http2Session
from etcdx.frontend.httpapi import HttpHandler, not_found
from etcdx.frontend.options import Options
from etcdx.frontend.rpc import Router

log = logging.getLogger(__name__)

ALPN_PROTOCOLS = ["h2", "http/1.1"]


class FrontEnd:
    """gRPC and HTTP on client URLs; see the package docstring for the interface.

    ``max_receive_message_bytes`` is the gRPC receive limit (etcd: the
    request size limit + 512 KiB). Keepalive: the server pings a client idle
    for ``keepalive_interval`` seconds and drops it if nothing arrives within
    ``keepalive_timeout``; clients may ping every ``min_ping_interval``
    seconds (``ping_without_calls``: also with no call in flight), and more
    than ``max_ping_strikes`` early pings end the connection (grpc-go's rule).
    """

    def __init__(self, router: Router, http: HttpHandler | None = None, *,
                 max_receive_message_bytes: int,
                 max_send_message_bytes: int = 2**31 - 1,
                 max_http_body_bytes: int | None = None,
                 max_concurrent_streams: int = 4096,
                 keepalive_interval: float = 7200.0,
                 keepalive_timeout: float = 20.0,
                 min_ping_interval: float = 5.0,
                 max_ping_strikes: int = 2,
                 ping_without_calls: bool = True,
                 accept_gzip: bool = True,
                 initial_window_size: int = 1 << 20,
                 connection_window: int = 16 << 20) -> None:
        self.options = Options(
            router=router,
            http=http or not_found,
            max_receive_message_bytes=max_receive_message_bytes,
            max_send_message_bytes=max_send_message_bytes,
            max_http_body_bytes=max_http_body_bytes if max_http_body_bytes is not None else max_receive_message_bytes,
            accept_gzip=accept_gzip,
            keepalive_interval=keepalive_interval,
            keepalive_timeout=keepalive_timeout,
            h2=ConnectionSettings(
                max_concurrent_streams=max_concurrent_streams,
                initial_window_size=initial_window_size,
                connection_window=connection_window,
                min_ping_interval=min_ping_interval,
                max_ping_strikes=max_ping_strikes,
                ping_without_calls=ping_without_calls,
            ),
        )
        self._servers: list[asyncio.base_events.Server] = []
        self._sessions: set[Http2Session | Http1Session | _Sniffer] = set()
        self._closing = False
        self._idle: asyncio.Event | None = None

    async def listen(self, url: str, *, ssl: ssl_module.SSLContext | None = None,
                     verify: Callable[[ssl_module.SSLObject], str | None] | None = None,
                     reuse_port: bool = False, backlog: int = 1024) -> Any:
        """Serve ``url`` (http://host:port, https://host:port, unix://path or unixs://path).

        https needs ``ssl``; ALPN (h2, http/1.1) is set on it. A context that an
        ``sni_callback`` swaps in needs the same ALPN protocols. ``verify`` runs
        after each TLS handshake: a reason it returns closes the connection
        (checks OpenSSL does not make, such as an allowed common name). Returns
        the bound address ((host, port) or the socket path), useful with port 0.
        """
        loop = asyncio.get_running_loop()
        parts = urlsplit(url)
        scheme = parts.scheme
        tls = scheme in ("https", "unixs")
        if tls and ssl is None:
            raise ValueError(f"{url}: TLS needs an ssl context")
        if not tls:
            ssl = None
        if ssl is not None:
            ssl.set_alpn_protocols(ALPN_PROTOCOLS)
        factory = lambda: _Sniffer(self, loop, verify)  # noqa: E731
        if scheme in ("unix", "unixs"):
            path = parts.netloc + parts.path
            if os.path.exists(path):
                os.unlink(path)
            server = await loop.create_unix_server(factory, path, ssl=ssl, backlog=backlog)
        elif scheme in ("http", "https"):
            host = parts.hostname or "localhost"
            port = parts.port if parts.port is not None else (443 if tls else 2379)
            server = await loop.create_server(factory, host, port, ssl=ssl, reuse_port=reuse_port or None,
                                              backlog=backlog)
            for sock in server.sockets:
                if sock.family in (socket.AF_INET, socket.AF_INET6):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            raise ValueError(f"unsupported listen URL {url!r}")
        self._servers.append(server)
        return server.sockets[0].getsockname()

    async def close(self, grace: float) -> None:
        """Stop listening, send GOAWAY, let calls in flight finish within ``grace`` seconds,
        then cancel what is left (UNAVAILABLE) and close every connection."""
        self._closing = True
        for server in self._servers:
            server.close()
        for session in list(self._sessions):
            session.shutdown()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(s.busy for s in self._sessions) and loop.time() < deadline:
            self._idle = asyncio.Event()
            try:
                await asyncio.wait_for(self._idle.wait(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                break
        tasks = [t for s in list(self._sessions) for t in s.tasks]
        for session in list(self._sessions):
            session.abort()
        if tasks:
            await asyncio.wait(tasks, timeout=max(1.0, grace))
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()

    # -- sessions ----------------------------------------------------------------------

    def _register(self, session: Any) -> None:
        self._sessions.add(session)

    def _unregister(self, session: Any) -> None:
        self._sessions.discard(session)
        self._poke()

    def _poke(self) -> None:
        if self._idle is not None and not any(s.busy for s in self._sessions):
            self._idle.set()

    @property
    def connections(self) -> int:
        return len(self._sessions)


class _Sniffer(asyncio.Protocol):
    """The first protocol of every connection: picks HTTP/2 or HTTP/1.1, then steps aside."""

    tasks: set = frozenset()  # type: ignore[assignment]
    busy = False

    def __init__(self, fe: FrontEnd, loop: asyncio.AbstractEventLoop,
                 verify: Callable[[ssl_module.SSLObject], str | None] | None = None) -> None:
        self._fe = fe
        self._loop = loop
        self._verify = verify
        self._buf = b""
        self._transport: asyncio.Transport | None = None
        self._peer: Any = None
        self._cert: dict | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._peer = transport.get_extra_info("peername")
        sslobj = transport.get_extra_info("ssl_object")
        if self._fe._closing:
            transport.close()
            return
        if sslobj is not None and self._verify is not None:
            refused = self._verify(sslobj)
            if refused:
                log.warning("refused a TLS client", extra={"fields": {"peer": str(self._peer), "reason": refused}})
                transport.close()
                return
        self._fe._register(self)
        if sslobj is not None:
            self._cert = sslobj.getpeercert() or None
            alpn = sslobj.selected_alpn_protocol()
            if alpn == "h2":
                self._switch(Http2Session)
            elif alpn == "http/1.1":
                self._switch(Http1Session)

    def data_received(self, data: bytes) -> None:
        self._buf += data
        n = min(len(self._buf), len(fr.PREFACE))
        if self._buf[:n] == fr.PREFACE[:n]:
            if n == len(fr.PREFACE):
                self._switch(Http2Session)
            return
        self._switch(Http1Session)

    def _switch(self, kind: type) -> None:
        fe = self._fe
        transport = self._transport
        fe._sessions.discard(self)
        session = kind(fe.options, self._loop, transport, self._peer, self._cert, on_close=fe._unregister)
        fe._register(session)
        transport.set_protocol(session)
        if self._buf:
            buf, self._buf = self._buf, b""
            session.data_received(buf)

    def connection_lost(self, exc: Exception | None) -> None:
        self._fe._sessions.discard(self)

    def shutdown(self) -> None:
        if self._transport is not None:
            self._transport.close()

    abort = shutdown
