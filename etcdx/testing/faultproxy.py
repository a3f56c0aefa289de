"""A fault-injecting TCP proxy in front of one member's peer port.

Every member of a proxied `Cluster` advertises its proxy's URL instead of its
own peer URL, so every byte another member sends it, or receives from it over
a connection that member dialled, passes through `FaultProxy`. The proxy runs
an asyncio loop in a background thread, so synchronous tests drive it with
plain calls that return once the change is in force.

Who sent a connection is read from its first bytes:

* etcdx: the ASCII line ``ETCDX-PEER/1 <kind> from=<16 hex> to=<16 hex> cluster=<16 hex>``;
* etcd 3.4: an HTTP/1.1 request whose headers carry ``X-Server-From: <hex id>``
  (raft streams, pipelined messages and snapshots; probes and version checks
  carry no sender and count as unknown).

Rules are per directed link (from_id, to_id) and apply per byte direction: at
the proxy of X, a connection dialled by S carries S→X bytes from client to
server and X→S bytes back (etcd streams A's messages to B in the response of a
connection B dialled; etcdx sends them over a connection A dialled). A blocked
direction's bytes are discarded; a connection that lost bytes that way is
closed at `heal()`, so framed streams start again cleanly instead of resuming
mid-frame. Rules about a link whose sender is unknown do not apply, except
that `isolate(X)` cuts everything through X's own proxy.

`FaultNetwork` maps link rules onto every member's proxy, so callers say
``net.partition([a], [b, c])`` without thinking about directions.
"""

from __future__ import annotations

import asyncio
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

SNIFF_TIMEOUT = 5.0
SNIFF_LIMIT = 16 * 1024
CALL_TIMEOUT = 10.0

_ETCDX_HELLO = re.compile(rb"^ETCDX-PEER/1 (\S+) from=([0-9a-fA-F]{16}) to=([0-9a-fA-F]{16}) cluster=([0-9a-fA-F]{16})")
_HTTP_METHOD = re.compile(rb"^(GET|POST|PUT|HEAD|DELETE|OPTIONS|PATCH) ")
_SERVER_FROM = re.compile(rb"\r\nX-Server-From: *([0-9a-fA-F]+)\r\n", re.IGNORECASE)
_RAFT_TO = re.compile(rb"\r\nX-Raft-To: *([0-9a-fA-F]+)\r\n", re.IGNORECASE)

# Wildcard in a rule's link: any member.
ANY = None


@dataclass(eq=False)
class _Connection:
    """One client connection and its upstream; ``sender`` None when unknown."""

    sender: int | None
    kind: str
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    lost_bytes: bool = False  # some bytes were discarded by a block
    tasks: list[asyncio.Task] = field(default_factory=list)
    pipes_done: int = 0

    def abort(self, reset: bool = True) -> None:
        for w in (self.client, self.upstream):
            if w is None:
                continue
            sock = w.get_extra_info("socket")
            if reset and sock is not None:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                except OSError:
                    pass
            w.transport.abort()


@dataclass
class ProxyStats:
    connections: int = 0
    unknown_senders: int = 0
    bytes_forwarded: int = 0
    bytes_discarded: int = 0
    connections_dropped: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class FaultProxy:
    """An inbound proxy for one member: listens on `port`, forwards to `upstream_port`.

    ``member_id`` is the id of the member behind it (the `Cluster` sets it once
    the member has told its id); rules cannot apply before it is known.
    """

    def __init__(self, upstream_port: int, name: str = "", member_id: int | None = None, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.name = name
        self.member_id = member_id
        self.stats = ProxyStats()
        self._blocked: set[tuple[int | None, int | None]] = set()
        self._delays: dict[tuple[int | None, int | None], tuple[float, float]] = {}
        self._connections: set[_Connection] = set()
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"faultproxy-{name}", daemon=True)
        self.port = 0

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> FaultProxy:
        self._thread.start()
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop listening, abort every connection and stop the loop thread. Idempotent."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for conn in list(self._connections):
                conn.abort(reset=False)
                for t in conn.tasks:
                    t.cancel()
            await asyncio.sleep(0)

        try:
            self._call(shutdown())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(CALL_TIMEOUT)
            if not self._thread.is_alive():
                self._loop.close()

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CALL_TIMEOUT)

    def _run(self, fn: Callable[[], Any]) -> Any:
        async def wrapper() -> Any:
            return fn()

        return self._call(wrapper())

    # -- faults -------------------------------------------------------------------
    def block(self, from_id: int | None, to_id: int | None) -> None:
        """Discard every byte ``from_id`` sends ``to_id`` (None: any member)."""
        self._run(lambda: self._blocked.add((from_id, to_id)))

    def unblock(self, from_id: int | None, to_id: int | None) -> None:
        """Stop discarding on that link; connections that lost bytes stay until `heal`."""
        self._run(lambda: self._blocked.discard((from_id, to_id)))

    def partition(self, group_a: Iterable[int], group_b: Iterable[int]) -> None:
        """Block both directions between every member of ``group_a`` and of ``group_b``."""
        group_a, group_b = list(group_a), list(group_b)

        def apply() -> None:
            for a in group_a:
                for b in group_b:
                    self._blocked |= {(a, b), (b, a)}

        self._run(apply)

    def isolate(self, member_id: int) -> None:
        """Cut ``member_id`` off from every other member, both ways."""
        self._run(lambda: self._blocked.update({(member_id, ANY), (ANY, member_id)}))

    def delay(self, from_id: int | None, to_id: int | None, seconds: float, jitter: float = 0.0) -> None:
        """Hold bytes on the link for ``seconds`` ± ``jitter`` (order kept)."""
        self._run(lambda: self._delays.__setitem__((from_id, to_id), (seconds, jitter)))

    def drop_connections(self, from_id: int | None = ANY, to_id: int | None = ANY) -> int:
        """Reset (RST) the connections carrying the link now; returns how many."""

        def apply() -> int:
            doomed = [c for c in self._connections if self._carries(c, from_id, to_id)]
            for conn in doomed:
                conn.abort()
            self.stats.connections_dropped += len(doomed)
            return len(doomed)

        return self._run(apply)

    def heal(self) -> None:
        """Clear every rule; close connections whose bytes were being discarded."""

        def apply() -> None:
            self._blocked.clear()
            self._delays.clear()
            doomed = [c for c in self._connections if c.lost_bytes]
            for conn in doomed:
                conn.abort()
            self.stats.connections_dropped += len(doomed)

        self._run(apply)

    def rules(self) -> dict[str, Any]:
        """The rules in force (for logs)."""
        return self._run(lambda: {"blocked": sorted(self._blocked, key=str), "delays": dict(self._delays)})

    def senders(self) -> list[tuple[int | None, str]]:
        """(sender id, kind) of each open connection."""
        return self._run(lambda: [(c.sender, c.kind) for c in self._connections])

    # -- rules --------------------------------------------------------------------
    def _link_blocked(self, frm: int | None, to: int | None) -> bool:
        b = self._blocked
        if not b:
            return False
        if frm is not None and to is not None and (frm, to) in b:
            return True
        # Wildcards come from isolate(): at X's own proxy an unknown sender is
        # still another member, so (None, X) and (X, None) match it.
        return (frm, ANY) in b or (ANY, to) in b

    def _link_delay(self, frm: int | None, to: int | None) -> float:
        if not self._delays:
            return 0.0
        for link in ((frm, to), (frm, ANY), (ANY, to), (ANY, ANY)):
            if link in self._delays:
                seconds, jitter = self._delays[link]
                return max(0.0, seconds + self._random.uniform(-jitter, jitter))
        return 0.0

    def _carries(self, conn: _Connection, from_id: int | None, to_id: int | None) -> bool:
        me = self.member_id
        links = [(conn.sender, me), (me, conn.sender)]
        return any((from_id is ANY or from_id == f) and (to_id is ANY or to_id == t) for f, t in links)

    # -- connections ----------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, client: asyncio.StreamWriter) -> None:
        head, sender, kind = await self._sniff(reader)
        conn = _Connection(sender, kind, client)
        self.stats.connections += 1
        self.stats.unknown_senders += sender is None
        self.stats.by_kind[kind] = self.stats.by_kind.get(kind, 0) + 1
        try:
            up_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream_port), SNIFF_TIMEOUT
            )
        except (OSError, TimeoutError):
            client.transport.abort()
            return
        conn.upstream = upstream
        self._connections.add(conn)
        # The member id may be learned after the connection opened (members
        # dial each other before the cluster has told us their ids).
        conn.tasks = [
            asyncio.ensure_future(self._pipe(conn, head, reader, upstream, lambda: (conn.sender, self.member_id))),
            asyncio.ensure_future(self._pipe(conn, b"", up_reader, client, lambda: (self.member_id, conn.sender))),
        ]
        try:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        finally:
            self._connections.discard(conn)
            conn.abort(reset=False)

    async def _sniff(self, reader: asyncio.StreamReader) -> tuple[bytes, int | None, str]:
        """The first bytes, and the sender and kind of connection they show."""
        head = b""
        deadline = time.monotonic() + SNIFF_TIMEOUT
        while len(head) < SNIFF_LIMIT:
            if head.startswith(b"ETCDX-PEER/") and b"\n" in head:
                m = _ETCDX_HELLO.match(head)
                return head, (int(m.group(2), 16) if m else None), (m.group(1).decode() if m else "etcdx?")
            if _HTTP_METHOD.match(head) and b"\r\n\r\n" in head:
                headers = head[: head.index(b"\r\n\r\n") + 2]
                m = _SERVER_FROM.search(headers)
                path = headers.split(b" ", 2)[1].decode(errors="replace")
                return head, (int(m.group(1), 16) if m else None), _http_kind(path)
            if head and not (b"ETCDX-PEER/".startswith(head[:11]) or _could_be_http(head)):
                return head, None, "unknown"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(reader.read(4096), remaining)
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            head += chunk
        return head, None, "unknown"

    async def _pipe(
        self,
        conn: _Connection,
        head: bytes,
        reader: asyncio.StreamReader,
        dest: asyncio.StreamWriter,
        link: Callable[[], tuple[int | None, int | None]],
    ) -> None:
        """Copy one direction, applying the link's rules to each chunk as it is read."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        last_due = 0.0

        def admit(data: bytes) -> None:
            nonlocal last_due
            frm, to = link()
            if self._link_blocked(frm, to):
                conn.lost_bytes = True
                self.stats.bytes_discarded += len(data)
                return
            now = time.monotonic()
            last_due = max(last_due, now + self._link_delay(frm, to))
            queue.put_nowait((last_due, data))

        async def write() -> None:
            while True:
                item = await queue.get()
                if item is None:
                    if dest.can_write_eof():
                        dest.write_eof()
                    return
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                dest.write(data)
                self.stats.bytes_forwarded += len(data)
                await dest.drain()

        writer = asyncio.ensure_future(write())
        try:
            if head:
                admit(head)
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                admit(data)
            queue.put_nowait(None)
            await writer
        except (OSError, asyncio.IncompleteReadError):
            conn.abort(reset=False)
        finally:
            writer.cancel()
            conn.pipes_done += 1
            if conn.pipes_done == 2:
                conn.abort(reset=False)


def _could_be_http(head: bytes) -> bool:
    word = head.split(b" ", 1)[0]
    return any(m.startswith(word) for m in (b"GET", b"POST", b"PUT", b"HEAD", b"DELETE", b"OPTIONS", b"PATCH"))


def _http_kind(path: str) -> str:
    """etcd's peer endpoints, by path: stream, pipeline (messages), snapshot, probe, ..."""
    if path.startswith("/raft/stream/"):
        return "stream:" + path.split("/")[3]
    if path.startswith("/raft/snapshot"):
        return "snapshot"
    if path.startswith("/raft/probing"):
        return "probing"
    if path.startswith("/raft"):
        return "pipeline"
    return "http:" + path.split("?")[0]


MemberRef = Any  # a member id (int) or anything `FaultNetwork`'s resolver maps to one


class FaultNetwork:
    """Link rules applied to every member's proxy at once.

    ``resolve`` turns what callers pass (a `Member`, a name, an id) into a
    member id; `Cluster.net` resolves its own members.
    """

    def __init__(self, proxies: Callable[[], Iterable[FaultProxy]], resolve: Callable[[MemberRef], int]) -> None:
        self._proxies = proxies
        self._resolve = resolve

    def _ids(self, refs: Iterable[MemberRef]) -> list[int]:
        return [self._resolve(r) for r in refs]

    def _each(self, method: str, *args: Any) -> list[Any]:
        return [getattr(p, method)(*args) for p in self._proxies()]

    def block(self, frm: MemberRef, to: MemberRef) -> None:
        """One-way: bytes ``frm`` sends ``to`` are discarded."""
        self._each("block", self._resolve(frm), self._resolve(to))

    def one_way(self, senders: Iterable[MemberRef], receivers: Iterable[MemberRef]) -> None:
        """Every sender's bytes to every receiver are discarded; the other way works."""
        for s in self._ids(senders):
            for r in self._ids(receivers):
                self._each("block", s, r)

    def partition(self, group_a: Iterable[MemberRef], group_b: Iterable[MemberRef]) -> None:
        """No bytes between the two groups either way."""
        self._each("partition", self._ids(group_a), self._ids(group_b))

    def isolate(self, member: MemberRef) -> None:
        self._each("isolate", self._resolve(member))

    def delay(self, frm: MemberRef | None, to: MemberRef | None, seconds: float, jitter: float = 0.0) -> None:
        """Delay the link (either end None: any member)."""
        f = None if frm is None else self._resolve(frm)
        t = None if to is None else self._resolve(to)
        self._each("delay", f, t, seconds, jitter)

    def drop_connections(self, frm: MemberRef | None = None, to: MemberRef | None = None) -> int:
        f = None if frm is None else self._resolve(frm)
        t = None if to is None else self._resolve(to)
        return sum(self._each("drop_connections", f, t))

    def heal(self) -> None:
        self._each("heal")
