"""One remote member as this member's sender sees it: raft stream, snapshot slot, calls, health.

The stream is one TCP connection this member dials and only writes to (the
peer's messages come back on the connection the peer dials). A single writer
task per peer takes everything queued since its last write, encodes it as one
frame (or a few of ~4 MiB) and waits for ``drain()``: a slow peer slows only
its own queue, which is bounded; beyond the bound messages are dropped and
raft is told the peer is unreachable, and raft resends from its log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from etcdx.raft.types import Message

from . import metrics
from .call import CallClient
from .conn import Conn, HandshakeRejected, dial
from .errors import TransportError
from .snapshot import send_snapshot
from .throttle import Throttle
from .wire import U32, Address, Handshake, parse_url, take_frame

log = logging.getLogger("etcdx.transport")

MAX_QUEUE = 4096
"""Raft messages waiting for one peer's stream; more are dropped (raft retries from its log)."""

BACKOFF_MIN = 0.05
BACKOFF_MAX = 1.0

_LINK_HEARTBEAT = U32.pack(0)
"""An empty frame, written every conn_timeout/3 so the receiver's read timeout tells a dead link
from a quiet one (etcd's linkHeartbeatMessage)."""

Spawn = Callable[[Coroutine[Any, Any, Any], str], asyncio.Task]


class Peer:
    """What this member sends to one peer, and whether that peer is reachable (its health)."""

    def __init__(self, *, local_id: int, cluster_id: int, peer_id: int, urls: list[str],
                 on_unreachable: Callable[[int], None], on_snapshot_status: Callable[[int, bool], None],
                 open_snapshot: Callable[[], Awaitable[str]] | None,
                 dial_timeout: float, conn_timeout: float, spawn: Spawn,
                 dial_context: Callable[[Address], ssl.SSLContext | None] = lambda address: None) -> None:
        self.peer_id = peer_id
        self.label = metrics.id_label(peer_id)
        self._local_id = local_id
        self._local_label = metrics.id_label(local_id)
        self._cluster_id = cluster_id
        self._addresses = _addresses(urls)
        self._address_index = 0
        self._on_unreachable = on_unreachable
        self._on_snapshot_status = on_snapshot_status
        self._open_snapshot = open_snapshot
        self._dial_timeout = dial_timeout
        self._conn_timeout = conn_timeout
        self._spawn = spawn
        self._dial_context = dial_context

        self.queue: deque[Message] = deque()
        self._wake = asyncio.Event()
        self._failing = False  # the stream failed and is not back: sends are dropped, not queued
        self._broken = False  # the current stream connection was closed by the peer
        self._beat_due = False
        self._beat_handle: asyncio.TimerHandle | None = None
        self._active_since: float | None = None
        self._unreachable_scheduled = False
        self._closed = False
        self._task: asyncio.Task | None = None
        self._snapshot_task: asyncio.Task | None = None
        self._dial_throttle = Throttle()
        self._drop_throttle = Throttle()
        self._sent_bytes = metrics.sent_bytes.labels(To=self.label)
        self._sent_failures = metrics.sent_failures.labels(To=self.label)
        self.calls = CallClient(self._dial, self.label)

    # -- called by Transport ------------------------------------------------------------

    def start(self) -> None:
        self._task = self._spawn(self._run(), f"etcdx-stream-{self.label}")

    @property
    def active_since(self) -> float | None:
        return self._active_since

    def send(self, m: Message) -> None:
        q = self.queue
        if self._failing:
            self._drop(1)
        elif len(q) >= MAX_QUEUE:
            self._drop(1)
            held = self._drop_throttle.allow()
            if held is not None:
                log.warning("dropped internal raft message since sending buffer is full", extra={"fields": {
                    "peer-id": self.label, "queue-size": MAX_QUEUE, "dropped-since-last-warning": held}})
        else:
            q.append(m)
            self._wake.set()

    def send_snapshot(self, m: Message) -> None:
        if self._open_snapshot is None or self._snapshot_task is not None:
            log.warning("dropped snapshot message", extra={"fields": {
                "peer-id": self.label, "reason": "no snapshot source" if self._open_snapshot is None
                else "a snapshot is already being sent to this peer"}})
            asyncio.get_running_loop().call_soon(self._report_snapshot, False)
            return
        self._snapshot_task = self._spawn(self._send_snapshot(m), f"etcdx-snapshot-{self.label}")

    def update_urls(self, urls: list[str]) -> None:
        addresses = _addresses(urls)
        if set(addresses) == set(self._addresses):
            return
        self._addresses = addresses
        self._address_index = 0
        self._broken = True  # redial at a current address
        self._wake.set()
        self.calls.reset()

    def close(self) -> list[asyncio.Task]:
        """Stop everything for this peer (it was removed, or the transport stops); returns tasks to await."""
        self._closed = True
        self.queue.clear()
        tasks = [t for t in (self._task, self._snapshot_task) if t is not None]
        for t in tasks:
            t.cancel()
        tasks += self.calls.close()
        if self._active_since is not None:
            self._active_since = None
            metrics.active_peers.labels(Local=self._local_label, Remote=self.label).dec()
        return tasks

    # -- the stream -----------------------------------------------------------------------

    async def _dial(self, kind: str) -> Conn:
        address = self._addresses[self._address_index % len(self._addresses)]
        try:
            return await dial(address, Handshake(kind, self._local_id, self.peer_id, self._cluster_id),
                              self._dial_timeout, user_timeout=self._conn_timeout,
                              ssl_context=self._dial_context(address))
        except TransportError:
            self._address_index += 1  # try the peer's next URL next time
            raise

    async def _run(self) -> None:
        backoff = BACKOFF_MIN
        while True:
            try:
                reader, writer = await self._dial("stream")
            except TransportError as err:
                self._fail(err)
            else:
                backoff = BACKOFF_MIN
                self._fail(await self._stream(reader, writer))
            await asyncio.sleep(random.uniform(backoff / 2, backoff))
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _stream(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Exception:
        """Write the queue to this connection until it fails; returns why it failed."""
        self._broken = False
        self._failing = False
        self._became_active()
        loop = asyncio.get_running_loop()
        watcher = asyncio.create_task(self._watch_close(reader), name=f"etcdx-stream-watch-{self.label}")
        self._beat_handle = loop.call_later(self._conn_timeout / 3, self._tick)
        try:
            await self._write_loop(writer)  # only ends by raising
        except TimeoutError:
            failure: Exception = TransportError("write timed out (peer not reading)")
        except OSError as err:
            failure = err
        except Exception as err:
            log.exception("raft stream writer failed", extra={"fields": {"peer-id": self.label}})
            failure = err
        finally:
            self._beat_handle.cancel()
            watcher.cancel()
            writer.close()
            await asyncio.gather(watcher, return_exceptions=True)
        return failure

    async def _write_loop(self, writer: asyncio.StreamWriter) -> None:
        q = self.queue
        wake = self._wake
        timeout = self._conn_timeout
        carry: bytes | None = None  # encoded, popped, and not yet written: lost with the connection
        while True:
            if self._broken:
                raise ConnectionResetError("stream closed by peer")
            if q or carry is not None:
                frame, carry = take_frame(q, carry)
            elif self._beat_due:
                frame = _LINK_HEARTBEAT
            else:
                wake.clear()
                await wake.wait()
                continue
            self._beat_due = False
            writer.write(frame)
            self._sent_bytes.inc(len(frame))
            async with asyncio.timeout(timeout):
                await writer.drain()

    async def _watch_close(self, reader: asyncio.StreamReader) -> None:
        """The acceptor never writes on a stream: any read result means the connection is gone."""
        try:
            await reader.read(1)
        except (OSError, asyncio.IncompleteReadError):
            pass
        self._broken = True
        self._wake.set()

    def _tick(self) -> None:
        # Unconditional, as etcd's: a frame every conn_timeout/3 whatever else is written.
        self._beat_due = True
        self._wake.set()
        self._beat_handle = asyncio.get_running_loop().call_later(self._conn_timeout / 3, self._tick)

    def _fail(self, err: Exception) -> None:
        dropped = len(self.queue)
        self.queue.clear()
        if dropped:
            self._sent_failures.inc(dropped)
        if self._active_since is not None:
            self._became_inactive(err)
        else:
            held = self._dial_throttle.allow()
            if held is not None:
                what = "peer rejected the connection" if isinstance(err, HandshakeRejected) else "failed to connect to peer"
                log.warning(what, extra={"fields": {"peer-id": self.label, "error": str(err),
                                                    "suppressed-since-last-warning": held}})
        if not self._failing:
            self._failing = True
            self._report_unreachable()

    def _drop(self, n: int) -> None:
        self._sent_failures.inc(n)
        self._report_unreachable()

    def _report_unreachable(self) -> None:
        # Never from inside send(): raft must not be re-entered while its Ready is being handled.
        if not self._unreachable_scheduled:
            self._unreachable_scheduled = True
            asyncio.get_running_loop().call_soon(self._fire_unreachable)

    def _fire_unreachable(self) -> None:
        self._unreachable_scheduled = False
        if self._closed:
            return
        try:
            self._on_unreachable(self.peer_id)
        except Exception:
            log.exception("on_unreachable callback failed", extra={"fields": {"peer-id": self.label}})

    def _became_active(self) -> None:
        self._active_since = time.monotonic()
        metrics.active_peers.labels(Local=self._local_label, Remote=self.label).inc()
        log.info("peer became active", extra={"fields": {"peer-id": self.label}})

    def _became_inactive(self, err: Exception) -> None:
        self._active_since = None
        metrics.active_peers.labels(Local=self._local_label, Remote=self.label).dec()
        metrics.disconnected_peers.labels(Local=self._local_label, Remote=self.label).inc()
        log.warning("peer became inactive", extra={"fields": {"peer-id": self.label, "error": str(err)}})

    # -- snapshots ------------------------------------------------------------------------

    async def _send_snapshot(self, m: Message) -> None:
        index = m.snapshot.metadata.index if m.snapshot is not None else 0
        path: str | None = None
        ok = False
        started = time.monotonic()
        try:
            conn = await self._dial("snapshot")
            try:
                path = await self._open_snapshot()
                sent = await send_snapshot(conn, m, path, self._conn_timeout)
            finally:
                conn[1].close()
            self._sent_bytes.inc(sent)
            ok = True
            log.info("sent database snapshot", extra={"fields": {
                "peer-id": self.label, "snapshot-index": index, "bytes": sent,
                "took-seconds": round(time.monotonic() - started, 3)}})
        except Exception as err:  # noqa: BLE001 - whatever went wrong, raft hears "snapshot failed" and retries
            log.warning("failed to send database snapshot", extra={"fields": {
                "peer-id": self.label, "snapshot-index": index, "error": str(err) or type(err).__name__}})
        finally:
            self._snapshot_task = None
            if path is not None:
                _remove(path)
        self._report_snapshot(ok)

    def _report_snapshot(self, ok: bool) -> None:
        if self._closed:
            return
        try:
            self._on_snapshot_status(self.peer_id, ok)
        except Exception:
            log.exception("on_snapshot_status callback failed", extra={"fields": {"peer-id": self.label}})


def _addresses(urls: list[str]) -> list[Address]:
    if not urls:
        raise ValueError("a peer needs at least one URL")
    return [parse_url(u) for u in urls]


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        log.warning("failed to remove sent snapshot file", extra={"fields": {"path": path, "error": str(err)}})
