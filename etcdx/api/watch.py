"""The Watch service: many watchers multiplexed on one bidirectional stream.

Control responses (created, canceled, progress) and event responses leave
the stream in the order etcd promises: a watcher's "created" before its
events, events in revision order, whole revisions per response (split into
fragments only for watchers that asked for it).

With auth on, a watch is checked once, when created, with the stream's
credentials: a refusal is not a stream error but a response that cancels
the watch as it is created (``watch_id`` -1, the error as ``cancel_reason``),
as in etcd; the stream stays open.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import AsyncIterator

from etcdx.auth import checks
from etcdx.auth import errors as auth_errors
from etcdx.pb import rpc_pb2
from etcdx.server.auth_requests import NO_CREDENTIALS, Credentials
from etcdx.server.errors import EtcdError

log = logging.getLogger("etcdx.api.watch")

GRPC_OVERHEAD_BYTES = 512 * 1024  # etcd's allowance for gRPC framing beyond --max-request-bytes
DUPLICATE_WATCH_ID = "mvcc: duplicate watch ID provided on the WatchStream"
COMPACTED_REASON = "etcdserver: mvcc: required revision has been compacted"
PROGRESS_RETRY = 0.1  # seconds between checks whether a requested progress notification may go


@dataclass(eq=False)
class _StreamWatcher:
    id: int
    watcher: object
    progress_notify: bool
    fragment: bool
    sent_since_tick: bool = False


class WatchStream:
    """The watchers of one gRPC stream and the queue of what is to be sent on it.

    Runs entirely on the event loop thread: the hub calls ``on_ready`` from
    ``notify``/``sync_unsynced``, which the server calls on that thread.
    """

    def __init__(self, server) -> None:
        self.s = server
        self.hub = server.hub
        self.watchers: dict[int, _StreamWatcher] = {}
        self.next_id = 0
        self.control: list[rpc_pb2.WatchResponse] = []
        self.ready: set[int] = set()
        self.progress_pending = False
        self.error: Exception | None = None  # ends the stream (e.g. "no leader")
        self.wakeup = asyncio.Event()
        self.max_bytes = server.cfg.max_request_bytes + GRPC_OVERHEAD_BYTES

    def _header(self, h: rpc_pb2.ResponseHeader, revision: int) -> None:
        self.s.headers.fill(h, revision)

    def _push(self, resp: rpc_pb2.WatchResponse) -> None:
        self.control.append(resp)
        self.wakeup.set()

    async def authorize(self, c: rpc_pb2.WatchCreateRequest, creds: Credentials) -> bool:
        """Whether the stream's caller may watch ``c``'s range; if not, the refusal is queued."""
        auth = self.s.auth
        if not auth.state.enabled and not creds.token and not creds.cert_cn:
            return True
        try:
            auth.check(checks.check_watch_create, await auth.identify(creds), c)
        except EtcdError as err:
            refusal = err
        else:
            return True
        resp = rpc_pb2.WatchResponse(watch_id=-1, created=True, canceled=True,
                                     cancel_reason=auth_errors.watch_cancel_reason(refusal))
        self._header(resp.header, self.hub.revision)
        self._push(resp)
        return False

    def create(self, c: rpc_pb2.WatchCreateRequest) -> None:
        rev = self.hub.revision
        wid = c.watch_id
        if wid != 0 and wid in self.watchers:
            resp = rpc_pb2.WatchResponse(watch_id=-1, created=True, canceled=True, cancel_reason=DUPLICATE_WATCH_ID)
            self._header(resp.header, rev)
            self._push(resp)
            return
        if wid == 0:
            while self.next_id in self.watchers:
                self.next_id += 1
            wid = self.next_id
            self.next_id += 1
        filters = set(c.filters)
        resp = rpc_pb2.WatchResponse(watch_id=wid, created=True)
        self._header(resp.header, rev)
        self._push(resp)
        sw = _StreamWatcher(wid, None, c.progress_notify, c.fragment)
        self.watchers[wid] = sw

        def on_ready(wid: int = wid) -> None:
            self.ready.add(wid)
            self.wakeup.set()

        sw.watcher = self.hub.watch(
            c.key, c.range_end, start_revision=c.start_revision, prev_kv=c.prev_kv,
            no_put=rpc_pb2.WatchCreateRequest.NOPUT in filters,
            no_delete=rpc_pb2.WatchCreateRequest.NODELETE in filters, on_ready=on_ready)
        if 0 < c.start_revision <= rev:
            self.s.kick_watch_sync()

    def cancel(self, wid: int) -> None:
        sw = self.watchers.pop(wid, None)
        if sw is None:
            return
        self.hub.cancel(sw.watcher)
        self.ready.discard(wid)
        resp = rpc_pb2.WatchResponse(watch_id=wid, canceled=True)
        self._header(resp.header, self.hub.revision)
        self._push(resp)

    def progress_all(self) -> None:
        """A requested progress notification, for all the stream's watchers.

        It promises that every event up to its revision was delivered, so it is
        sent by ``drain`` after the events already buffered, and only once no
        watcher of the stream is still catching up from the past (etcd 3.5.8+;
        etcd 3.4 answered at once and could overtake events, etcd-io/etcd#15220).
        """
        self.progress_pending = True
        self.wakeup.set()

    def end(self, err: Exception) -> None:
        """End the stream with ``err`` (the member lost its leader and the client asked to know)."""
        self.error = err
        self.wakeup.set()

    def _caught_up(self) -> bool:
        """Every watcher is synced with nothing left to take."""
        synced = self.hub.progress()
        return all(sw.watcher in synced for sw in self.watchers.values())

    def progress_tick(self) -> None:
        """Periodic progress notification to synced watchers that asked for it and saw no events."""
        synced = self.hub.progress()
        for sw in self.watchers.values():
            if sw.progress_notify and not sw.sent_since_tick and sw.watcher in synced:
                resp = rpc_pb2.WatchResponse(watch_id=sw.id)
                self._header(resp.header, synced[sw.watcher])
                self._push(resp)
            sw.sent_since_tick = False

    def close(self) -> None:
        for sw in self.watchers.values():
            self.hub.cancel(sw.watcher)
        self.watchers.clear()

    def drain(self) -> list[rpc_pb2.WatchResponse]:
        """Everything ready to send, control responses first."""
        out, self.control = self.control, []
        ready, self.ready = self.ready, set()
        for wid in sorted(ready):
            sw = self.watchers.get(wid)
            if sw is None:
                continue
            for batch in sw.watcher.take():
                if batch.compact_revision:
                    resp = rpc_pb2.WatchResponse(watch_id=wid, canceled=True,
                                                 compact_revision=batch.compact_revision,
                                                 cancel_reason=COMPACTED_REASON)
                    # etcd leaves this header's revision 0: the watcher never reached a revision.
                    self.s.headers.fill_without_revision(resp.header)
                    out.append(resp)
                    self.watchers.pop(wid, None)
                    self.hub.cancel(sw.watcher)
                    break
                if not batch.events:
                    continue
                sw.sent_since_tick = True
                resp = rpc_pb2.WatchResponse(watch_id=wid)
                resp.events.extend(batch.events)
                self._header(resp.header, batch.revision)
                if sw.fragment and len(batch.events) > 1 and resp.ByteSize() >= self.max_bytes:
                    out.extend(self._fragments(resp))
                else:
                    out.append(resp)
        if self.progress_pending and self._caught_up():
            self.progress_pending = False
            resp = rpc_pb2.WatchResponse(watch_id=-1)
            self._header(resp.header, self.hub.revision)
            out.append(resp)
        return out

    def _fragments(self, resp: rpc_pb2.WatchResponse) -> list[rpc_pb2.WatchResponse]:
        parts: list[rpc_pb2.WatchResponse] = []
        cur = rpc_pb2.WatchResponse(header=resp.header, watch_id=resp.watch_id, fragment=True)
        size = cur.ByteSize()
        for ev in resp.events:
            es = ev.ByteSize() + 8
            if cur.events and size + es > self.max_bytes:
                parts.append(cur)
                cur = rpc_pb2.WatchResponse(header=resp.header, watch_id=resp.watch_id, fragment=True)
                size = cur.ByteSize()
            cur.events.append(ev)
            size += es
        cur.fragment = False
        parts.append(cur)
        return parts


async def serve_watch(server, requests: AsyncIterator[rpc_pb2.WatchRequest],
                      creds: Credentials = NO_CREDENTIALS, *,
                      require_leader: bool = False) -> AsyncIterator[rpc_pb2.WatchResponse]:
    """One Watch stream: the client's requests in, responses out, until the client goes away.

    A client that half-closes still gets events until it cancels the call; a
    failure reading its requests ends the stream with that error.
    ``require_leader`` (gRPC metadata hasleader): refused without a leader, and
    ended with "no leader" if the member loses it for a while (``LeaderMonitor``).
    """
    stream = WatchStream(server)
    stop_watching = server.leader_monitor.register(stream.end) if require_leader else None
    loop = asyncio.get_running_loop()
    reader = loop.create_task(_read(requests, stream, creds))
    reader.add_done_callback(lambda _: stream.wakeup.set())
    ticker = loop.create_task(_tick(stream, server.cfg.watch_progress_notify_interval))
    try:
        while True:
            if stream.progress_pending:
                # A watcher may finish catching up without an event to wake us.
                try:
                    await asyncio.wait_for(stream.wakeup.wait(), PROGRESS_RETRY)
                except asyncio.TimeoutError:
                    pass
            else:
                await stream.wakeup.wait()
            stream.wakeup.clear()
            if stream.error is not None:
                raise stream.error
            if reader.done() and not reader.cancelled() and reader.exception() is not None:
                raise reader.exception()
            for resp in stream.drain():
                yield resp
    finally:
        if stop_watching is not None:
            stop_watching()
        for task in (reader, ticker):
            task.cancel()
        await asyncio.gather(reader, ticker, return_exceptions=True)
        stream.close()


async def _read(requests: AsyncIterator[rpc_pb2.WatchRequest], stream: WatchStream, creds: Credentials) -> None:
    async for req in requests:
        kind = req.WhichOneof("request_union")
        if kind == "create_request":
            if await stream.authorize(req.create_request, creds):
                stream.create(req.create_request)
        elif kind == "cancel_request":
            stream.cancel(req.cancel_request.watch_id)
        elif kind == "progress_request":
            stream.progress_all()


async def _tick(stream: WatchStream, interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        stream.progress_tick()
