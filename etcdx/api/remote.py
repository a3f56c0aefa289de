"""An API worker's view of its member: the handlers a worker serves the client port with.

``WorkerHandlers`` has a method for every RPC the core serves (the table in
``etcdx.api.rpcs``), so the same gRPC server serves a worker's clients.
Serializable reads (Range, read-only Txn) are answered from the backend
opened read-only in this process. A linearizable read first waits for a
barrier round trip to the core, shared by every read that arrived before the
round trip was sent; once the core replies it has applied everything
committed before the barrier, and since LMDB commits are visible across
processes the local read that follows sees it all. Watch and Snapshot streams
are relayed to the core (it owns the watch hub), everything else is a call to
the core over ``etcdx.api.ipc``, checked here first so a bad request costs the
core nothing.

Auth: the reads answered here are checked here, against the auth state read
in the same LMDB transaction as the data (so check and read see one auth
revision). A JWT is verified here with the member's key; a simple token lives
in the core's memory, so the worker asks the core who it names and remembers
the answer for ``TOKEN_CACHE_SECONDS`` at most (half the token TTL if that is
shorter), and only while the auth revision it was given at is still the
current one: every way a simple token dies early (its user deleted, a
password change, auth disabled) moves the revision, and a token in use is
renewed by the core at least that often, so it cannot expire while cached.
Everything forwarded to the core is checked there, with the caller's context.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import os
from typing import Any, AsyncIterator, Callable

from etcdx.api import context, ipc, validate
from etcdx.api.context import CallContext
from etcdx.api.rpcs import BY_METHOD, RPCS, Kind, Rpc
from etcdx.auth import AuthError, AuthInfo, AuthState, AuthStore, SimpleTokens, checks, identity, parse_token_options
from etcdx.backend import Backend
from etcdx.mvcc import KVStore
from etcdx.pb import rpc_pb2
from etcdx.server import errors, kvops
from etcdx.server.config import Config
from etcdx.server.errors import EtcdError
from etcdx.server.auth_requests import etcd_error
from etcdx.server.headers import Headers
from etcdx.server.kv_requests import read_only_txn_at, txn_all_serializable, txn_has_write

log = logging.getLogger("etcdx.api.remote")

TOKEN_CACHE_SECONDS = 1.0
TOKEN_CACHE_SIZE = 4096
_PUT = ipc.RPC_BASE + BY_METHOD["Put"].index
_DELETE_RANGE = ipc.RPC_BASE + BY_METHOD["DeleteRange"].index


class CoreConnection(ipc.FrameConnection):
    """A worker's connection to its core: calls, relayed streams and the core's notices."""

    def __init__(self, on_lost: Callable[[], None]) -> None:
        super().__init__()
        self._calls: dict[int, asyncio.Future] = {}
        self._streams: dict[int, RemoteStream] = {}
        self._next_id = 0
        self._on_lost = on_lost
        self.term = 0
        self.on_reopen: Callable[[], None] | None = None

    def next_id(self) -> int:
        """An id no outstanding call or open stream has (ids wrap at 2**32)."""
        ident = self._next_id
        while True:
            ident = (ident + 1) & 0xFFFFFFFF
            if ident not in self._calls and ident not in self._streams:
                self._next_id = ident
                return ident

    def call_future(self, method: int, body: bytes) -> asyncio.Future:
        return self._start_call(method, body)[1]

    def _start_call(self, method: int, body: bytes) -> tuple[int, asyncio.Future]:
        if self.transport is None:
            raise ipc.INTERNAL
        ident = self.next_id()
        fut = self._calls[ident] = self._loop.create_future()
        self.send(ipc.CALL, method, ident, body)
        return ident, fut

    async def call(self, method: int, body: bytes = b"") -> bytes:
        """The core's reply; if the caller is cancelled, the reply is dropped on arrival."""
        return await self.call_future(method, body)

    async def call_withdrawable(self, method: int, body: bytes) -> bytes:
        """The core's reply; if the caller is cancelled, the core's call is cancelled too (CLOSE).

        For calls that wait on other clients (Lock, Campaign): the core must
        stop waiting for a caller that left, and withdraw what it did for it.
        """
        ident, fut = self._start_call(method, body)
        try:
            return await fut
        except asyncio.CancelledError:
            if self._calls.pop(ident, None) is not None and self.transport is not None:
                self.send(ipc.CLOSE, 0, ident)
            raise

    def open_stream(self, method: int, first: bytes = b"") -> RemoteStream:
        ident = self.next_id()
        st = self._streams[ident] = RemoteStream(self, ident)
        self.send(ipc.OPEN, method, ident, first)
        return st

    def frame_received(self, kind: int, method: int, ident: int, body: bytes) -> None:
        if kind == ipc.REPLY or kind == ipc.ERROR:
            fut = self._calls.pop(ident, None)
            if fut is not None:
                if not fut.done():
                    if kind == ipc.REPLY:
                        fut.set_result(body)
                    else:
                        fut.set_exception(ipc.decode_error(body))
                return
            st = self._streams.pop(ident, None)
            if st is not None:
                st.finish(ipc.decode_error(body))
        elif kind == ipc.SEND:
            st = self._streams.get(ident)
            if st is not None:
                st.deliver(body)
        elif kind == ipc.END:
            st = self._streams.pop(ident, None)
            if st is not None:
                st.finish(None)
        elif kind == ipc.NOTICE:
            if method == ipc.NOTICE_TERM:
                self.term = ipc.INT64.unpack(body)[0]
            elif method == ipc.NOTICE_REOPEN_BACKEND and self.on_reopen is not None:
                self.on_reopen()
        else:
            log.warning("unexpected frame kind %d from the core", kind)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        for fut in self._calls.values():
            if not fut.done():
                fut.set_exception(ipc.INTERNAL)
        self._calls.clear()
        for st in self._streams.values():
            st.finish(ipc.INTERNAL)
        self._streams.clear()
        self._on_lost()


class RemoteStream:
    """A stream relayed to the core: ``send`` client messages, ``recv`` the core's.

    The core sends ahead at most ``ipc.STREAM_WINDOW`` messages; credit goes
    back as ``recv`` hands messages to the client.
    """

    def __init__(self, conn: CoreConnection, ident: int) -> None:
        self.conn = conn
        self.ident = ident
        self._inbox: collections.deque[bytes] = collections.deque()
        self._end: EtcdError | None | bool = False  # False: open; None: ended cleanly; else the error
        self._wakeup = asyncio.Event()
        self._consumed = 0
        self._closed = False

    def deliver(self, body: bytes) -> None:
        self._inbox.append(body)
        self._wakeup.set()

    def finish(self, err: EtcdError | None) -> None:
        self._end = err
        self._closed = True
        self._wakeup.set()

    def send(self, body: bytes) -> None:
        if not self._closed:
            self.conn.send(ipc.SEND, 0, self.ident, body)

    def half_close(self) -> None:
        if not self._closed:
            self.conn.send(ipc.HALF_CLOSE, 0, self.ident)

    async def recv(self) -> bytes | None:
        """The next message from the core; None once the stream ended; raises the core's error."""
        while not self._inbox:
            if self._end is not False:
                if self._end is None:
                    return None
                raise self._end
            self._wakeup.clear()
            await self._wakeup.wait()
        body = self._inbox.popleft()
        self._consumed += 1
        if self._consumed >= ipc.STREAM_WINDOW // 2 and not self._closed:
            self.conn.send(ipc.CREDIT, 0, self.ident, ipc.INT64.pack(self._consumed))
            self._consumed = 0
        return body

    def close(self) -> None:
        """The client is gone: the core stops its side."""
        if not self._closed:
            self._closed = True
            self.conn._streams.pop(self.ident, None)
            if self.conn.transport is not None:
                self.conn.send(ipc.CLOSE, 0, self.ident)


class WorkerHandlers:
    """The RPC handlers of a worker; see the module docstring."""

    def __init__(self, conn: CoreConnection, hello: dict[str, Any]) -> None:
        self.conn = conn
        self.cfg = Config(**hello["cfg"])
        self.member_id: int = hello["member_id"]
        self.cluster_id: int = hello["cluster_id"]
        conn.term = hello["term"]
        self.db_dir: str = hello["db_dir"]
        tokens = parse_token_options(self.cfg.auth_token, simple_ttl=self.cfg.auth_token_ttl)
        # JWTs (and "no tokens") are checked here; simple tokens only the core knows.
        self._local_tokens = None if isinstance(tokens, SimpleTokens) else tokens
        self._simple_tokens: collections.OrderedDict[str, tuple[AuthInfo, float]] = collections.OrderedDict()
        self._token_cache_seconds = min(TOKEN_CACHE_SECONDS, self.cfg.auth_token_ttl / 2)
        self._open_backend()
        conn.on_reopen = self._reopen_backend
        self.headers = Headers(self.cluster_id, self.member_id, lambda: conn.term,
                               lambda: self.kv.current_revision)
        self._loop = asyncio.get_running_loop()
        self._barrier_group: list[asyncio.Future] = []
        self._barrier_in_flight = False
        self._barrier_timeout = 2 * (5.0 + 2 * self.cfg.election_timeout / 1000.0)  # twice the core's request timeout
        served = set(hello["rpcs"])  # what the core serves: a worker serves no more
        for rpc in RPCS:
            if rpc.method not in served:
                if hasattr(type(self), rpc.method):
                    setattr(self, rpc.method, None)
            elif rpc.kind is Kind.UNARY and not hasattr(self, rpc.method):
                setattr(self, rpc.method, self._forwarder(rpc))

    # -- the local backend --------------------------------------------------------------

    def _open_backend(self) -> None:
        self.backend = Backend(self.db_dir, readonly=True)
        self.kv = KVStore(self.backend)
        self.auth = AuthStore(self.backend)

    def _reopen_backend(self) -> None:
        """The core swapped the backend file (defragment, snapshot): read the new one from now on.

        Reads run synchronously on this loop, so no read transaction is open here.
        """
        self.backend.close()
        self._open_backend()

    def close(self) -> None:
        self.backend.close()

    # -- reads ----------------------------------------------------------------------------

    async def linearizable_barrier(self) -> None:
        """Return once the core has applied everything committed before this call.

        Reads that arrive while a barrier is in flight wait for the next one:
        the one in flight may have been answered by the core before their writes.
        """
        fut = self._loop.create_future()
        self._barrier_group.append(fut)
        if not self._barrier_in_flight:
            self._barrier_in_flight = True
            self._loop.call_soon(self._send_barrier)
        await fut

    def _send_barrier(self) -> None:
        group, self._barrier_group = self._barrier_group, []
        try:
            call = self.conn.call_future(ipc.BARRIER, b"")
        except EtcdError as err:
            call = self._loop.create_future()
            call.set_exception(err)

        def expire() -> None:
            # The core answers within its request timeout; this only keeps a
            # lost answer from stalling every later read of this worker.
            if not call.done():
                call.set_exception(errors.TIMEOUT)

        timer = self._loop.call_later(self._barrier_timeout, expire)

        def done(call: asyncio.Future) -> None:
            timer.cancel()
            err = call.exception()
            for fut in group:
                if not fut.done():
                    if err is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(err)
            if self._barrier_group:
                self._send_barrier()
            else:
                self._barrier_in_flight = False

        call.add_done_callback(done)

    async def Range(self, r: rpc_pb2.RangeRequest, ctx: CallContext) -> rpc_pb2.RangeResponse:
        validate.check_range(r)
        if not r.serializable:
            await self.linearizable_barrier()
        info = await self._identify(ctx) if ctx.token or ctx.cert_cn else None
        resp = rpc_pb2.RangeResponse()
        with self.backend.read() as rtx:
            state = self.auth.state(rtx)
            if state.enabled:
                _checked(checks.check_range, state, info, r)
            kvops.do_range(kvops.ReadView(self.kv, rtx), r, resp)
            if info is not None:
                _checked(checks.recheck_revision, state, info)
        self.headers.fill(resp.header)
        return resp

    async def Txn(self, r: rpc_pb2.TxnRequest, ctx: CallContext) -> rpc_pb2.TxnResponse:
        validate.check_txn(r, self.cfg.max_txn_ops)
        if txn_has_write(r):
            return await self._forward(BY_METHOD["Txn"], r, ctx)
        if not txn_all_serializable(r):
            await self.linearizable_barrier()
        info = await self._identify(ctx) if ctx.token or ctx.cert_cn else None
        with self.backend.read() as rtx:
            state = self.auth.state(rtx)
            if state.enabled:
                _checked(checks.check_txn, state, info, r, _no_lease_keys)
            resp = read_only_txn_at(rtx, self.kv, r)
            if info is not None:
                _checked(checks.recheck_revision, state, info)
        self.headers.fill(resp.header)
        return resp

    # -- who ------------------------------------------------------------------------------

    async def _identify(self, ctx: CallContext) -> AuthInfo | None:
        """Who the caller is, as the core would say (``AuthRequests.identify``)."""
        state = self.auth.state()
        if not ctx.token:
            if self.cfg.client_cert_auth:
                return identity.from_common_name(state, ctx.cert_cn)
            return None
        if self._local_tokens is not None:
            return _checked(identity.from_token, state, self._local_tokens, ctx.token)
        return await self._simple_token(ctx.token, state)

    async def _simple_token(self, token: str, state: AuthState) -> AuthInfo:
        cache = self._simple_tokens
        now = self._loop.time()
        hit = cache.get(token)
        if hit is not None and hit[1] > now and hit[0].revision == state.revision:
            return hit[0]
        info = ipc.decode_auth_info(await self.conn.call(ipc.TOKEN, token.encode()))
        cache[token] = (info, now + self._token_cache_seconds)
        cache.move_to_end(token)
        while len(cache) > TOKEN_CACHE_SIZE:
            cache.popitem(last=False)
        return info

    # -- checked here, answered by the core -----------------------------------------------

    async def Put(self, r: rpc_pb2.PutRequest, ctx: CallContext) -> rpc_pb2.PutResponse:
        validate.check_put(r)
        return await self._forward(BY_METHOD["Put"], r, ctx)

    async def DeleteRange(self, r: rpc_pb2.DeleteRangeRequest, ctx: CallContext) -> rpc_pb2.DeleteRangeResponse:
        validate.check_delete(r)
        return await self._forward(BY_METHOD["DeleteRange"], r, ctx)

    # Writes the core checks and answers: bytes straight through, a Future of the reply
    # bytes back (no Task, no parsing here; etcdx.api.frontend_server's fast path).

    def raw_Put(self, body: bytes, ctx: CallContext) -> asyncio.Future:
        return self.conn.call_future(_PUT, context.encode(ctx, body))

    def raw_DeleteRange(self, body: bytes, ctx: CallContext) -> asyncio.Future:
        return self.conn.call_future(_DELETE_RANGE, context.encode(ctx, body))

    async def _forward(self, rpc: Rpc, r: Any, ctx: CallContext) -> Any:
        body = context.encode(ctx, r.SerializeToString())
        return rpc.response.FromString(await self.conn.call(ipc.RPC_BASE + rpc.index, body))

    def _forwarder(self, rpc: Rpc) -> Callable[[Any, CallContext], Any]:
        async def forward(r: Any, ctx: CallContext) -> Any:
            return await self._forward(rpc, r, ctx)
        forward.__name__ = rpc.method
        return forward

    # -- streams ------------------------------------------------------------------------

    async def LeaseKeepAlive(self, requests: AsyncIterator[rpc_pb2.LeaseKeepAliveRequest], ctx: CallContext
                             ) -> AsyncIterator[rpc_pb2.LeaseKeepAliveResponse]:
        async for r in requests:
            ttl = ipc.INT64.unpack(await self.conn.call(ipc.KEEPALIVE, ipc.INT64.pack(r.ID)))[0]
            resp = rpc_pb2.LeaseKeepAliveResponse(ID=r.ID, TTL=ttl)
            self.headers.fill(resp.header)
            yield resp

    def Watch(self, requests: AsyncIterator[rpc_pb2.WatchRequest],
              ctx: CallContext) -> AsyncIterator[rpc_pb2.WatchResponse]:
        return self._relay(BY_METHOD["Watch"], requests, ctx)

    def Snapshot(self, r: rpc_pb2.SnapshotRequest, ctx: CallContext) -> AsyncIterator[rpc_pb2.SnapshotResponse]:
        return self._relay(BY_METHOD["Snapshot"], r, ctx)

    # -- Lock and Election: run by the core (etcdx.api.concurrency_services) --------------

    async def Lock(self, r: Any, ctx: CallContext) -> Any:
        return await self._forward_withdrawable(BY_METHOD["Lock"], r, ctx)

    async def Campaign(self, r: Any, ctx: CallContext) -> Any:
        return await self._forward_withdrawable(BY_METHOD["Campaign"], r, ctx)

    def Observe(self, r: Any, ctx: CallContext) -> AsyncIterator[Any]:
        return self._relay(BY_METHOD["Observe"], r, ctx)

    async def _forward_withdrawable(self, rpc: Rpc, r: Any, ctx: CallContext) -> Any:
        body = context.encode(ctx, r.SerializeToString())
        return rpc.response.FromString(await self.conn.call_withdrawable(ipc.RPC_BASE + rpc.index, body))

    async def _relay(self, rpc: Rpc, arg: Any, ctx: CallContext) -> AsyncIterator[Any]:
        """A streaming RPC run by the core's handler, relayed in order with its flow control."""
        bidi = rpc.kind is Kind.BIDI_STREAM
        first = context.encode(ctx, b"" if bidi else arg.SerializeToString())
        stream = self.conn.open_stream(ipc.RPC_BASE + rpc.index, first)
        pump = self._loop.create_task(_pump(arg, stream)) if bidi else None
        try:
            while True:
                body = await stream.recv()
                if body is None:
                    return
                yield rpc.response.FromString(body)
        finally:
            if pump is not None:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            stream.close()


def _checked(check: Callable[..., Any], *args: Any) -> Any:
    """One of the auth package's checks or lookups, its refusal as etcd's error."""
    try:
        return check(*args)
    except AuthError as err:
        raise etcd_error(err) from None


def _no_lease_keys(lease_id: int) -> list[bytes]:
    return []  # a read-only txn attaches nothing to a lease


async def _pump(requests: AsyncIterator[Any], stream: RemoteStream) -> None:
    """The client's messages to the core, then its half-close."""
    async for req in requests:
        stream.send(req.SerializeToString())
    stream.half_close()


async def connect(path: str, on_lost: Callable[[], None]) -> tuple[CoreConnection, dict[str, Any]]:
    """Connect to the core at ``path`` and fetch what a worker needs to serve (HELLO)."""
    loop = asyncio.get_running_loop()
    short, fd = ipc.short_path(path)
    try:
        _, conn = await loop.create_unix_connection(lambda: CoreConnection(on_lost), short)
    finally:
        if fd is not None:
            os.close(fd)
    hello = json.loads(await conn.call(ipc.HELLO))
    return conn, hello
