"""The local channel between a member's core process and its API worker processes.

API workers (``etcdx.api.worker``) serve the member's client port: they
answer serializable reads from the backend themselves (LMDB allows many
reader processes) and hand everything else to the core over one Unix domain
socket each. This module is both ends' framing and the core's side.

Wire format: a stream of frames, each ``HEADER`` (body length, kind, method,
id) then the body. Frames are collected per event-loop iteration and written
with one ``write`` call, so under load many requests and replies share a
syscall. One connection is one ordered byte stream, which the protocol relies
on: a notice the core queues before a reply reaches the worker before it.

- ``CALL`` (worker → core): ``method`` names an RPC of ``etcdx.api.rpcs``
  (``RPC_BASE + rpc.index``) or one of the worker's own control calls, with a
  serialized protobuf request (an RPC's preceded by its caller's context,
  ``etcdx.api.context``); answered by ``REPLY`` (the response bytes) or
  ``ERROR`` (code, message), carrying the same id. The core runs each call as
  its own task through the same handlers as its own gRPC server, so calls
  from all workers meet in the core's batching (group commit, shared
  ReadIndex rounds).
- ``OPEN`` / ``SEND`` / ``HALF_CLOSE`` / ``CLOSE`` / ``CREDIT`` / ``END``: a
  streaming RPC (Watch, Snapshot) relayed to the core's handler. Messages the
  core sends on a stream are flow-controlled by credits the worker returns
  as its client consumes them, so a slow watch client holds back the core's
  watch stream exactly as it would a local one.
  A worker withdraws a call whose caller left with ``CLOSE`` on the call's
  id (Lock and Campaign wait on other clients); the core cancels it and
  does not answer.
- ``NOTICE`` (core → worker): the raft term changed, or the backend file was
  swapped (defragment) and readers must reopen it.
- ``STATE`` (a control call): the leader and the active alarms, for the
  worker's /health, /livez and /readyz.
- ``TOKEN`` (a control call): who a simple auth token names. Simple tokens
  live in the core's memory; the reply is the user and the auth revision
  the core looked the token up at (``encode_auth_info``), or etcd's error.
- ``METRICS`` (a control call): the worker's RPC counts (JSON,
  ``etcdx.api.metrics_http``); the reply is empty, or the member's /metrics
  text if the worker asked for it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import socket
import struct
from typing import Any, AsyncIterator, Awaitable, Callable

from etcdx.api import context
from etcdx.api.context import CallContext
from etcdx.api.rpcs import RPCS, Kind, Rpc, served
from etcdx.auth import AuthInfo
from etcdx.pb import rpc_pb2
from etcdx.server.errors import REQUEST_CANCELED, EtcdError

log = logging.getLogger("etcdx.ipc")

HEADER = struct.Struct("<IBBI")  # body length, kind, method, id
MAX_BODY = 1 << 31  # larger than any gRPC message the client port accepts
SOCKET_NAME = "api.sock"
STREAM_WINDOW = 64  # messages the core may send on one stream ahead of the worker's client
TERM_PUSH_INTERVAL = 0.1  # seconds

# frame kinds
CALL, REPLY, ERROR, OPEN, SEND, HALF_CLOSE, CLOSE, CREDIT, END, NOTICE = range(1, 11)

# CALL methods: the worker's control calls, then the RPCs (RPC_BASE + Rpc.index)
HELLO, READY, BARRIER, KEEPALIVE, TOKEN = range(1, 6)
STATE = 6  # what /health asks: the leader and the active alarms (JSON, etcdx.gateway.state)
METRICS = 7  # a worker's RPC counts in; the member's /metrics text out if asked
RPC_BASE = 16
assert RPC_BASE + len(RPCS) < 256, "a CALL's method is one byte"

# NOTICE methods
NOTICE_TERM, NOTICE_REOPEN_BACKEND = 1, 2

INT64 = struct.Struct("<q")
UINT64 = struct.Struct("<Q")


def encode_auth_info(info: AuthInfo) -> bytes:
    return UINT64.pack(info.revision) + info.username.encode()


def decode_auth_info(body: bytes) -> AuthInfo:
    return AuthInfo(body[UINT64.size:].decode(), UINT64.unpack_from(body)[0])


def member_state(server: Any) -> dict[str, Any]:
    """The core's answer to STATE: the leader's id (0: none known) and the active alarms' names."""
    return {"leader": server.driver.node.lead,
            "alarms": [rpc_pb2.AlarmType.Name(alarm) for _, alarm in server.stores.alarms.get()]}


def socket_path(data_dir: str) -> str:
    return os.path.join(data_dir, "member", SOCKET_NAME)


def short_path(path: str) -> tuple[str, int | None]:
    """A path to ``path`` that fits in ``sockaddr_un`` (108 bytes), and the fd to close afterwards.

    Long data-dir paths are reached through ``/proc/self/fd/<dir fd>/``.
    """
    if len(os.fsencode(path)) < 100:
        return path, None
    directory, name = os.path.split(path)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{name}", fd


def encode_error(err: EtcdError) -> bytes:
    return err.code.encode() + b"\0" + err.message.encode()


def decode_error(body: bytes) -> EtcdError:
    code, _, message = body.partition(b"\0")
    return EtcdError(code.decode(), message.decode())


INTERNAL = EtcdError("INTERNAL", "etcdserver: internal error")


class FrameConnection(asyncio.Protocol):
    """Frame parsing and per-iteration write batching; subclasses handle frames."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                try:
                    sock.setsockopt(socket.SOL_SOCKET, opt, 4 << 20)
                except OSError:
                    pass

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        off, end = 0, len(buf)
        unpack = HEADER.unpack_from
        hsize = HEADER.size
        frames = []
        while end - off >= hsize:
            size, kind, method, ident = unpack(buf, off)
            if size > MAX_BODY:
                self.transport.abort()
                return
            stop = off + hsize + size
            if stop > end:
                break
            frames.append((kind, method, ident, bytes(buf[off + hsize:stop])))
            off = stop
        if off:
            del buf[:off]
        for frame in frames:
            self.frame_received(*frame)

    def frame_received(self, kind: int, method: int, ident: int, body: bytes) -> None:
        raise NotImplementedError

    def send(self, kind: int, method: int, ident: int, body: bytes = b"") -> None:
        self._out.append(HEADER.pack(len(body), kind, method, ident))
        if body:
            self._out.append(body)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_scheduled = False
        out, self._out = self._out, []
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))


class CoreHandler:
    """The core's side: serves every worker connection on the member's socket.

    ``handlers`` is the core's handler object (``etcdx.api.handlers``), which
    answers the RPCs workers forward; ``on_ready(index, pid)`` is called when a
    worker reports it is serving; ``metrics`` (``metrics_http.CoreMetrics``)
    takes the workers' RPC counts.
    """

    def __init__(self, server: Any, handlers: Any, on_ready: Callable[[int, int], None],
                 metrics: Any = None) -> None:
        self.server = server
        self.handlers = handlers
        self.on_ready = on_ready
        self.metrics = metrics
        # CALL method -> the handler's raw_<Method> (serialized in, Future of serialized out)
        self.raw = {RPC_BASE + rpc.index: getattr(handlers, "raw_" + rpc.method)
                    for rpc in RPCS if callable(getattr(handlers, "raw_" + rpc.method, None))}
        self.connections: set[_CoreConnection] = set()
        self._unix_server: asyncio.AbstractServer | None = None
        self._term_task: asyncio.Task | None = None
        self.path = socket_path(server.data_dir)
        server.on_backend_swap.append(self.backend_swapped)

    async def start(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        path, fd = short_path(self.path)
        try:
            self._unix_server = await asyncio.get_running_loop().create_unix_server(
                lambda: _CoreConnection(self), path)
        finally:
            if fd is not None:
                os.close(fd)
        os.chmod(self.path, 0o600)
        self._term_task = asyncio.get_running_loop().create_task(self._push_term())

    async def _push_term(self) -> None:
        """Workers that only serve local reads hear of a new term within TERM_PUSH_INTERVAL."""
        while True:
            await asyncio.sleep(TERM_PUSH_INTERVAL)
            term = self.server.driver.node.term
            for conn in list(self.connections):
                if conn.term != term:
                    conn.flush()

    def hello(self) -> dict[str, Any]:
        s = self.server
        return {"cfg": dataclasses.asdict(s.cfg), "member_id": s.member_id, "cluster_id": s.cluster_id,
                "term": s.driver.node.term, "db_dir": s.db_dir,
                "rpcs": [rpc.method for rpc in served(self.handlers)]}

    def backend_swapped(self) -> None:
        """Every worker reopens the backend before it reads anything the core answers after this."""
        for conn in list(self.connections):
            conn.send(NOTICE, NOTICE_REOPEN_BACKEND, 0)

    async def stop(self) -> None:
        if self.backend_swapped in self.server.on_backend_swap:
            self.server.on_backend_swap.remove(self.backend_swapped)
        if self._term_task is not None:
            self._term_task.cancel()
            try:
                await self._term_task
            except asyncio.CancelledError:
                pass
        if self._unix_server is not None:
            self._unix_server.close()
        for conn in list(self.connections):
            conn.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


class _CoreStream:
    """One relayed stream on the core: the client's messages in, the handler's out."""

    def __init__(self, conn: _CoreConnection, sid: int, rpc: Rpc, handler: Callable[[Any], AsyncIterator[Any]]) -> None:
        self.conn = conn
        self.sid = sid
        self.rpc = rpc
        self.handler = handler
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.credit = STREAM_WINDOW
        self.credited = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def requests(self) -> AsyncIterator[Any]:
        while True:
            item = await self.inbox.get()
            if item is None:
                return
            yield self.rpc.request.FromString(item)

    async def run(self, ctx: CallContext, first: bytes) -> None:
        conn, sid = self.conn, self.sid
        try:
            arg = self.requests() if self.rpc.kind is Kind.BIDI_STREAM else self.rpc.request.FromString(first)
            gen = self.handler(arg, ctx)
            try:
                async for resp in gen:
                    while self.credit <= 0:
                        self.credited.clear()
                        await self.credited.wait()
                    self.credit -= 1
                    conn.send(SEND, 0, sid, resp.SerializeToString())
            finally:
                await gen.aclose()
            conn.send(END, 0, sid)
        except asyncio.CancelledError:
            raise
        except EtcdError as err:
            conn.send(ERROR, 0, sid, encode_error(err))
        except Exception:
            log.exception("relayed stream %s failed", self.rpc.path)
            conn.send(ERROR, 0, sid, encode_error(INTERNAL))
        finally:
            conn.streams.pop(sid, None)


class _CoreConnection(FrameConnection):
    def __init__(self, handler: CoreHandler) -> None:
        super().__init__()
        self.handler = handler
        self.server = handler.server
        self.streams: dict[int, _CoreStream] = {}
        self.tasks: set[asyncio.Task] = set()
        self.calls: dict[int, asyncio.Task] = {}  # calls running as tasks, by id: a CLOSE cancels one
        self.pending: dict[int, asyncio.Future] = {}  # raw calls awaiting their answer
        self.term = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.handler.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.handler.connections.discard(self)
        self.transport = None
        for t in list(self.tasks):
            t.cancel()
        for fut in list(self.pending.values()):
            fut.cancel()  # the worker is gone: withdraw what it proposed
        self.pending.clear()
        for st in list(self.streams.values()):
            if st.task is not None:
                st.task.cancel()
        self.streams.clear()

    def close(self) -> None:
        if self.transport is not None:
            self.flush()
            self.transport.close()

    def flush(self) -> None:
        term = self.server.driver.node.term
        if term != self.term:
            self.term = term
            self._out.insert(0, HEADER.pack(INT64.size, NOTICE, NOTICE_TERM, 0) + INT64.pack(term))
        super().flush()

    def _spawn(self, coro: Awaitable[None], ident: int) -> None:
        task = self._loop.create_task(coro)
        self.tasks.add(task)
        self.calls[ident] = task
        task.add_done_callback(functools.partial(self._call_done, ident))

    def _call_done(self, ident: int, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        if self.calls.get(ident) is task:
            del self.calls[ident]

    def frame_received(self, kind: int, method: int, ident: int, body: bytes) -> None:
        if kind == CALL:
            raw = self.handler.raw.get(method)
            if raw is not None:
                self._call_raw(raw, ident, body)
            else:
                self._spawn(self._call(method, ident, body), ident)
        elif kind == SEND:
            st = self.streams.get(ident)
            if st is not None:
                st.inbox.put_nowait(body)
        elif kind == CREDIT:
            st = self.streams.get(ident)
            if st is not None:
                st.credit += INT64.unpack(body)[0]
                st.credited.set()
        elif kind == OPEN:
            rpc = _rpc(method)
            handler = getattr(self.handler.handlers, rpc.method, None) if rpc is not None else None
            if handler is None or rpc.kind is Kind.UNARY:
                self.send(ERROR, 0, ident, encode_error(INTERNAL))
                return
            ctx, first = context.decode(body)
            st = self.streams[ident] = _CoreStream(self, ident, rpc, handler)
            if rpc.kind is Kind.BIDI_STREAM and first:
                st.inbox.put_nowait(bytes(first))
            st.task = self._loop.create_task(st.run(ctx, bytes(first)))
        elif kind == HALF_CLOSE:
            st = self.streams.get(ident)
            if st is not None:
                st.inbox.put_nowait(None)
        elif kind == CLOSE:
            st = self.streams.pop(ident, None)
            if st is not None and st.task is not None:
                st.task.cancel()
            call = self.calls.pop(ident, None)
            if call is not None:
                call.cancel()
        else:
            log.warning("unexpected frame kind %d from an API worker", kind)

    def _call_raw(self, raw: Callable[[bytes, CallContext], Any], ident: int, body: bytes) -> None:
        """An RPC with a ``raw_`` handler: answered from a Future's callback, no Task per call."""
        ctx, message = context.decode(body)
        try:
            result = raw(bytes(message), ctx)
        except EtcdError as err:
            self.send(ERROR, 0, ident, encode_error(err))
            return
        except Exception:
            # Never out of frame_received: that would break the worker's connection (and the worker).
            log.exception("API worker call failed")
            self.send(ERROR, 0, ident, encode_error(INTERNAL))
            return
        if isinstance(result, bytes):
            self.send(REPLY, 0, ident, result)
            return
        fut = asyncio.ensure_future(result)
        self.pending[ident] = fut
        fut.add_done_callback(functools.partial(self._raw_done, ident))

    def _raw_done(self, ident: int, fut: asyncio.Future) -> None:
        self.pending.pop(ident, None)
        if self.transport is None:
            return
        if fut.cancelled():
            self.send(ERROR, 0, ident, encode_error(REQUEST_CANCELED))
            return
        err = fut.exception()
        if err is None:
            self.send(REPLY, 0, ident, fut.result())
        elif isinstance(err, EtcdError):
            self.send(ERROR, 0, ident, encode_error(err))
        else:
            log.error("API worker call failed", exc_info=err)
            self.send(ERROR, 0, ident, encode_error(INTERNAL))

    async def _call(self, method: int, ident: int, body: bytes) -> None:
        try:
            out = await self._answer(method, body)
        except EtcdError as err:
            self.send(ERROR, 0, ident, encode_error(err))
        except asyncio.CancelledError:
            if asyncio.current_task().cancelling():
                raise  # the worker is gone
            # A future this call shared with others was cancelled under it: the
            # worker still waits for an answer.
            self.send(ERROR, 0, ident, encode_error(REQUEST_CANCELED))
        except Exception:
            log.exception("API worker call %d failed", method)
            self.send(ERROR, 0, ident, encode_error(INTERNAL))
        else:
            self.send(REPLY, 0, ident, out)

    async def _answer(self, method: int, body: bytes) -> bytes:
        handlers = self.handler.handlers
        if method == HELLO:
            return json.dumps(self.handler.hello()).encode()
        if method == READY:
            index, pid = json.loads(body)
            self.handler.on_ready(index, pid)
            return b""
        if method == BARRIER:
            await self.server.linearizable_barrier()
            return b""
        if method == KEEPALIVE:
            return INT64.pack(await self.server.leases.renew(INT64.unpack(body)[0]))
        if method == TOKEN:
            info = await self.server.auth.identify(CallContext(token=body.decode(errors="replace")))
            if info is None:
                raise INTERNAL  # a worker asks only about a token it was given
            return encode_auth_info(info)
        if method == STATE:
            return json.dumps(member_state(self.server)).encode()
        if method == METRICS:
            if self.handler.metrics is None:
                raise INTERNAL
            return await self.handler.metrics.from_worker(body)
        rpc = _rpc(method)
        fn = getattr(handlers, rpc.method, None) if rpc is not None and rpc.kind is Kind.UNARY else None
        if fn is None:
            raise INTERNAL
        ctx, message = context.decode(body)
        return (await fn(rpc.request.FromString(message), ctx)).SerializeToString()


def _rpc(method: int) -> Rpc | None:
    index = method - RPC_BASE
    return RPCS[index] if 0 <= index < len(RPCS) else None
