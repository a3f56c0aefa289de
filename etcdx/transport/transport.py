"""The Transport: listens for peers' connections and owns one ``Peer`` per remote member."""

from __future__ import annotations

import asyncio
import logging
import ssl
import struct
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from etcdx.raft.types import Message, MessageType
from etcdx.tls import TLSConfigError, TLSInfo

from . import metrics
from .call import RequestHandler, serve_calls
from .conn import READ_LIMIT, read_frame, set_user_timeout
from .errors import RemoteError, TransportError
from .peer import Peer
from .security import PeerTLS
from .snapshot import receive_snapshot
from .throttle import Throttle
from .wire import (
    OK_LINE,
    Handshake,
    decode_batch,
    error_line,
    parse_handshake,
    parse_url,
)

log = logging.getLogger("etcdx.transport")

_CONN_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, struct.error)


async def _no_request_handler(method: str, payload: bytes) -> bytes:
    raise RemoteError("this member serves no requests")


class Transport:
    """Member-to-member messaging for one member.

    All methods are called on the event loop. Callbacks (``on_messages``,
    ``on_unreachable``, ``on_snapshot_status``) run on the loop too, from the
    transport's own tasks or loop callbacks, never from inside ``send()`` or
    any other method of this class, so they may call ``send()`` and step raft.
    """

    def __init__(self, *, local_id: int, cluster_id: int, listen_urls: list[str],
                 on_messages: Callable[[list[Message]], None],
                 on_unreachable: Callable[[int], None],
                 on_snapshot_status: Callable[[int, bool], None],
                 snapshot_dir: str,
                 open_snapshot: Callable[[], Awaitable[str]] | None = None,
                 request_handler: RequestHandler | None = None,
                 dial_timeout: float = 1.0,
                 conn_timeout: float = 5.0,
                 tls: TLSInfo | None = None) -> None:
        """``dial_timeout`` bounds connect + handshake (etcd's DialTimeout); ``conn_timeout`` is
        the read and write timeout of established connections (etcd's ConnReadTimeout and
        ConnWriteTimeout): a stream with no frame for that long, or a write that cannot drain
        for that long, is closed and redialled. ``tls`` is the peer side's TLS settings
        (``Config.peer_tls_info()``): ``https`` listen URLs are served with them and
        ``https`` peer URLs dialled with them (see ``security.py``)."""
        self.local_id = local_id
        self.cluster_id = cluster_id
        self._listen_urls = list(listen_urls)
        self._on_messages = on_messages
        self._on_unreachable = on_unreachable
        self._on_snapshot_status = on_snapshot_status
        self._snapshot_dir = snapshot_dir
        self._open_snapshot = open_snapshot
        self._request_handler = request_handler or _no_request_handler
        self._dial_timeout = dial_timeout
        self._conn_timeout = conn_timeout
        self._local_label = metrics.id_label(local_id)
        self._tls = PeerTLS(tls)

        self._peers: dict[int, Peer] = {}
        self._removed: set[int] = set()
        self._servers: list[tuple[asyncio.Server, bool]] = []  # (server, serves TLS)
        self._tasks: set[asyncio.Task] = set()
        self._acceptors: set[asyncio.Task] = set()  # asyncio.streams' per-connection callback tasks
        self._inbound: dict[int, set[asyncio.StreamWriter]] = {}  # remote id -> its connections to us
        self._inbound_streams: dict[int, asyncio.StreamWriter] = {}
        self._reject_throttles: dict[tuple[str, int], Throttle] = {}
        self._handshake_throttles: dict[str, Throttle] = {}
        self._receiving_snapshots: set[int] = set()  # raft indexes of snapshots being received
        self._started = False
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind every listen URL and start dialling the peers added so far."""
        if self._started:
            raise RuntimeError("transport already started")
        listen = [(u, parse_url(u)) for u in self._listen_urls]  # ValueError for malformed URLs
        # Contexts first: an https URL without a usable certificate fails here, before anything binds.
        contexts = [self._tls.listen_context(u, self._on_handshake_failure) if a.tls else None for u, a in listen]
        if self._tls.info is not None and (self._tls.info.can_serve or self._tls.info.trusted_ca_file):
            try:
                self._tls.info.client_context()
            except TLSConfigError as err:
                raise ValueError(str(err)) from None
        self._started = True
        try:
            for (_, (host, port, _tls)), ctx in zip(listen, contexts):
                server = await asyncio.start_server(self._accept, host, port, limit=READ_LIMIT, ssl=ctx,
                                                    ssl_handshake_timeout=self._conn_timeout if ctx else None)
                self._servers.append((server, ctx is not None))
        except BaseException:
            await self.stop()
            raise
        for peer in self._peers.values():
            peer.start()

    async def stop(self) -> None:
        """Close listeners and connections and wait for every task; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for server, _ in self._servers:
            server.close()
        for peer in self._peers.values():
            self._tasks.update(peer.close())
        self._peers.clear()
        for w in [w for writers in self._inbound.values() for w in writers]:
            w.close()
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._acceptors, return_exceptions=True)
        for server, _ in self._servers:
            await server.wait_closed()

    @property
    def urls(self) -> list[str]:
        """The URLs actually bound (a listen URL with port 0 gets a free port); valid after start()."""
        out = []
        for server, tls in self._servers:
            scheme = "https" if tls else "http"
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                out.append(f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}")
        return out

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- membership -----------------------------------------------------------------------

    def add_peer(self, peer_id: int, urls: list[str]) -> None:
        """Start sending to ``peer_id``; adding a known peer updates its URLs."""
        if peer_id == self.local_id or peer_id == 0:
            raise ValueError(f"cannot add member {peer_id:x} as a peer of {self.local_id:x}")
        if self._stopped:
            return
        if peer_id in self._peers:
            self._peers[peer_id].update_urls(urls)
            return
        self._removed.discard(peer_id)
        peer = Peer(local_id=self.local_id, cluster_id=self.cluster_id, peer_id=peer_id, urls=urls,
                    on_unreachable=self._on_unreachable, on_snapshot_status=self._on_snapshot_status,
                    open_snapshot=self._open_snapshot, dial_timeout=self._dial_timeout,
                    conn_timeout=self._conn_timeout, spawn=self._spawn, dial_context=self._tls.dial_context)
        self._peers[peer_id] = peer
        if self._started:
            peer.start()

    def update_peer(self, peer_id: int, urls: list[str]) -> None:
        """New URLs for a peer; its connections are redialled if they changed."""
        peer = self._peers.get(peer_id)
        if peer is None:
            self.add_peer(peer_id, urls)
        else:
            peer.update_urls(urls)

    def remove_peer(self, peer_id: int) -> None:
        """Stop sending to ``peer_id``, close its connections both ways and refuse its new ones."""
        peer = self._peers.pop(peer_id, None)
        if peer is not None:
            self._tasks.update(peer.close())
        self._removed.add(peer_id)
        for w in list(self._inbound.get(peer_id, ())):
            w.close()

    # -- sending --------------------------------------------------------------------------

    def send(self, msgs: list[Message]) -> None:
        """Queue ``msgs`` for their ``to`` peers; never blocks, never calls back before returning.

        Per peer, stream messages are delivered in the order given; SNAP messages
        travel on their own connection and may overtake or trail them.
        """
        peers = self._peers
        for m in msgs:
            peer = peers.get(m.to)
            if peer is None:
                if log.isEnabledFor(logging.DEBUG):
                    log.debug("dropped message to unknown peer", extra={"fields": {"peer-id": f"{m.to:x}"}})
            elif m.type == MessageType.SNAP:
                peer.send_snapshot(m)
            else:
                peer.send(m)

    async def call(self, peer_id: int, method: str, payload: bytes, timeout: float) -> bytes:
        """Ask ``peer_id``'s request handler; TransportError if unanswered, RemoteError if it refused."""
        peer = self._peers.get(peer_id)
        if peer is None:
            raise TransportError(f"unknown peer {peer_id:x}")
        return await peer.calls.call(method, payload, timeout)

    def is_active(self, peer_id: int) -> bool:
        """Our stream to the peer is connected and has not failed since."""
        peer = self._peers.get(peer_id)
        return peer is not None and peer.active_since is not None

    def active_since(self, peer_id: int) -> float | None:
        """time.monotonic() when our stream to the peer last came up, None while it is down."""
        peer = self._peers.get(peer_id)
        return None if peer is None else peer.active_since

    # -- accepting ------------------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The connection is served by a task of ours, which stop() may cancel; this callback task
        # itself must end normally (Python 3.11's asyncio.streams errs on a cancelled one).
        acceptor = asyncio.current_task()
        assert acceptor is not None
        self._acceptors.add(acceptor)
        try:
            if self._stopped:
                writer.close()
                return
            await asyncio.wait([self._spawn(self._serve(reader, writer), "etcdx-peer-conn")])
        finally:
            self._acceptors.discard(acceptor)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hello: Handshake | None = None
        try:
            refused = self._tls.refusal(writer.get_extra_info("ssl_object"))
            if refused is not None:
                self._warn_refused_certificate(refused, writer)
                writer.write(error_line(refused))
                return
            try:
                async with asyncio.timeout(self._conn_timeout):
                    hello = parse_handshake(await reader.readuntil(b"\n"))
            except (*_CONN_ERRORS, TimeoutError) as err:
                # Not a member (a port scan, an HTTP probe, a client at the wrong port): say so and close.
                log.debug("dropped peer connection without a valid handshake", extra={"fields": {"error": str(err)}})
                if isinstance(err, ValueError):
                    writer.write(error_line("bad handshake"))
                return
            reason = self._refusal(hello)
            if reason is not None:
                writer.write(error_line(reason))
                return
            self._inbound.setdefault(hello.from_id, set()).add(writer)
            set_user_timeout(writer, self._conn_timeout)
            writer.write(OK_LINE)
            if hello.kind == "stream":
                await self._serve_stream(hello.from_id, reader, writer)
            elif hello.kind == "snapshot":
                await self._serve_snapshot(hello.from_id, reader, writer)
            else:
                await serve_calls(reader, writer, self._request_handler, self._conn_timeout)
        except asyncio.IncompleteReadError:
            pass  # the dialer closed the connection
        except TimeoutError:
            log.info("closed idle peer connection", extra={"fields": {
                "peer-id": metrics.id_label(hello.from_id) if hello else "", "kind": hello.kind if hello else "",
                "timeout-seconds": self._conn_timeout}})
        except _CONN_ERRORS as err:
            log.warning("peer connection failed", extra={"fields": {
                "peer-id": metrics.id_label(hello.from_id) if hello else "", "kind": hello.kind if hello else "",
                "error": str(err) or type(err).__name__}})
        except Exception:
            log.exception("peer connection handler failed", extra={"fields": {
                "peer-id": metrics.id_label(hello.from_id) if hello else "", "kind": hello.kind if hello else ""}})
        finally:
            writer.close()
            if hello is not None:
                conns = self._inbound.get(hello.from_id)
                if conns is not None:
                    conns.discard(writer)
                    if not conns:
                        del self._inbound[hello.from_id]

    def _refusal(self, hello: Handshake) -> str | None:
        """Why this connection must be refused, or None (etcd's checks on the peer handlers)."""
        if hello.cluster_id != self.cluster_id and not (hello.kind == "call" and hello.cluster_id == 0):
            self._warn_rejected("request cluster ID mismatch", hello)
            return "cluster ID mismatch"
        if hello.to_id != self.local_id and hello.to_id != 0:
            self._warn_rejected("request member ID mismatch", hello)
            return "member ID mismatch"
        if hello.from_id in self._removed and hello.kind != "call":
            self._warn_rejected("rejected connection from removed member", hello)
            return "member removed"
        return None

    def _on_handshake_failure(self, err: ssl.SSLError) -> None:
        """A connection to an https listener failed its TLS handshake (asyncio then drops it silently)."""
        held = self._handshake_throttle(err.reason or type(err).__name__)
        if held is not None:
            log.warning("rejected peer connection at the TLS handshake", extra={"fields": {
                "local-member-id": self._local_label, "error": str(err), "suppressed-since-last-warning": held}})

    def _handshake_throttle(self, reason: str) -> int | None:
        if len(self._handshake_throttles) > 1024:  # reasons can quote certificates: keep this bounded
            self._handshake_throttles.clear()
        return self._handshake_throttles.setdefault(reason, Throttle()).allow()

    def _warn_refused_certificate(self, reason: str, writer: asyncio.StreamWriter) -> None:
        held = self._handshake_throttle(reason)
        if held is not None:
            peer = writer.get_extra_info("peername")
            log.warning("rejected peer connection: certificate not allowed", extra={"fields": {
                "local-member-id": self._local_label, "remote-addr": f"{peer[0]}:{peer[1]}" if peer else "",
                "error": reason, "suppressed-since-last-warning": held}})

    def _warn_rejected(self, what: str, hello: Handshake) -> None:
        if len(self._reject_throttles) > 1024:  # ids come from the network: keep this bounded
            self._reject_throttles.clear()
        throttle = self._reject_throttles.setdefault((what, hello.from_id), Throttle())
        held = throttle.allow()
        if held is not None:
            log.warning(what, extra={"fields": {
                "local-member-id": self._local_label, "local-member-cluster-id": f"{self.cluster_id:x}",
                "remote-peer-member-id": metrics.id_label(hello.from_id),
                "remote-peer-cluster-id": f"{hello.cluster_id:x}",
                "requested-member-id": metrics.id_label(hello.to_id), "kind": hello.kind,
                "suppressed-since-last-warning": held}})

    async def _serve_stream(self, from_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A peer redials when it thinks its stream died; an older one still open here is stale.
        old = self._inbound_streams.get(from_id)
        if old is not None:
            old.close()
        self._inbound_streams[from_id] = writer
        received = metrics.received_bytes.labels(From=metrics.id_label(from_id))
        on_messages = self._on_messages
        timeout = self._conn_timeout
        try:
            while True:
                async with asyncio.timeout(timeout):
                    payload = await read_frame(reader)
                received.inc(len(payload) + 4)
                if not payload:
                    continue  # link heartbeat
                batch = decode_batch(payload)
                try:
                    on_messages(batch)
                except Exception:
                    log.exception("on_messages callback failed", extra={"fields": {"peer-id": metrics.id_label(from_id)}})
        finally:
            if self._inbound_streams.get(from_id) is writer:
                del self._inbound_streams[from_id]

    async def _serve_snapshot(self, from_id: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        msg, size = await receive_snapshot((reader, writer), self._snapshot_dir, self._conn_timeout,
                                           self._receiving_snapshots)
        metrics.received_bytes.labels(From=metrics.id_label(from_id)).inc(size)
        log.info("received database snapshot", extra={"fields": {
            "peer-id": metrics.id_label(from_id), "snapshot-index": msg.snapshot.metadata.index, "bytes": size}})
        try:
            self._on_messages([msg])
        except Exception:
            log.exception("on_messages callback failed", extra={"fields": {"peer-id": metrics.id_label(from_id)}})
