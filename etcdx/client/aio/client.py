"""The asyncio client, `AsyncClient`, on ``grpc.aio``.

The same programs as the blocking `Client` (see `etcdx.client.ops`), carried
out with awaits; every public call is a coroutine with the same signature as
its blocking twin. Use it from one event loop.
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc
import grpc.aio

from etcdx.pb import rpc_pb2, rpc_pb2_grpc

from .. import auth as _auth
from .. import cluster as _cluster
from .. import kv as _kv
from .. import lease as _lease
from .. import maintenance as _maintenance
from ..concurrency import Isolation, StmState
from ..config import DEFAULT_TIMEOUT, KEEPALIVE_TIME, KEEPALIVE_TIMEOUT, TLS, ClientConfig
from ..endpoints import EndpointPool
from ..errors import (
    ClientClosed,
    ClientError,
    ConnectionFailed,
    ConnectionLost,
    DeadlineExceeded,
    EtcdError,
    MemberTimedOut,
    TxnConflict,
    error_from_rpc,
)
from ..ops import Call, Op, Program, WaitDeleted
from ..retry import Action, attempt_budget, backoff, decide, endpoint_failed
from ..snapshot import SnapshotCheck
from ..txn import range_end_of
from ..types import EventType, KeyLike, SnapshotInfo, to_bytes
from ..watch import WatchSpec
from .concurrency import Election, Lock
from .lease import Lease
from .watch import Watch

P = ParamSpec("P")
R = TypeVar("R")


def _async(program: Callable[P, Program[R]]) -> Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, R]]:
    """A coroutine method of `AsyncClient` that runs ``program`` to its result."""

    @functools.wraps(program)
    async def method(self: AsyncClient, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run(program(*args, **kwargs))

    return method


class _Channels:
    """One ``grpc.aio`` channel per endpoint, opened on first use; stubs cached per service."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._stubs: dict[tuple[str, str], Any] = {}

    def stub(self, endpoint: str, service: str) -> Any:
        key = (endpoint, service)
        stub = self._stubs.get(key)
        if stub is None:
            stub = self._stubs[key] = getattr(rpc_pb2_grpc, f"{service}Stub")(self._channel(endpoint))
        return stub

    def _channel(self, endpoint: str) -> grpc.aio.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = self._open(endpoint)
        return channel

    async def wait_ready(self, endpoint: str, timeout: float | None) -> None:
        """Return once the endpoint's connection is up; raise `ConnectionFailed` if it is down or
        does not come up within ``timeout`` (so a write is never queued on a member that hangs)."""
        channel = self._channel(endpoint)
        state = channel.get_state(try_to_connect=True)
        try:
            async with asyncio.timeout(timeout):
                while state in (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING):
                    await channel.wait_for_state_change(state)
                    state = channel.get_state(try_to_connect=True)
        except TimeoutError:
            pass
        if state is grpc.ChannelConnectivity.SHUTDOWN:
            raise ClientClosed("client is closed")
        if state is not grpc.ChannelConnectivity.READY:
            raise ConnectionFailed(grpc.StatusCode.UNAVAILABLE, f"no connection ({state.name.lower()})", endpoint)

    def _open(self, endpoint: str) -> grpc.aio.Channel:
        target = self.config.endpoint(endpoint)
        credentials = self.config.credentials(target)
        options = self.config.channel_options()
        if credentials is None:
            return grpc.aio.insecure_channel(target.address, options=options)
        return grpc.aio.secure_channel(target.address, credentials, options=options)

    async def close(self) -> None:
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            await channel.close()


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _earliest(*deadlines: float | None) -> float | None:
    known = [d for d in deadlines if d is not None]
    return min(known) if known else None


class AsyncClient:
    """An asyncio etcd v3 client for etcdx and etcd alike; the twin of `Client`.

        async with AsyncClient(["10.0.0.1:2379", "10.0.0.2:2379"]) as client:
            await client.put("greeting", "hello")
            assert (await client.get("greeting")).value == b"hello"

    The arguments are `Client`'s.
    """

    def __init__(
        self,
        endpoints: str | Sequence[str] = "127.0.0.1:2379",
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        user: str | None = None,
        password: str | None = None,
        tls: TLS | None = None,
        require_leader: bool = True,
        keepalive_time: float = KEEPALIVE_TIME,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    ) -> None:
        self.config = ClientConfig.create(
            endpoints, timeout=timeout, user=user, password=password, tls=tls, require_leader=require_leader,
            keepalive_time=keepalive_time, keepalive_timeout=keepalive_timeout,
        )  # fmt: skip
        self._rand = random.Random()
        self._pool = EndpointPool(self.config.endpoints, self._rand)
        self._channels = _Channels(self.config)
        self._auth_lock = asyncio.Lock()
        self._token: str | None = None
        self._owned: set[Any] = set()  # watches and leases to stop at close()
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------
    async def close(self) -> None:
        """Stop every watch and lease keep-alive this client started, and close its connections."""
        if self._closed:
            return
        self._closed = True
        for thing in list(self._owned):
            await thing.close()
        await self._channels.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self._pool.endpoints

    # -- KV ---------------------------------------------------------------------------------
    get = _async(_kv.get)
    get_range = _async(_kv.get_range)
    get_prefix = _async(_kv.get_prefix)
    put = _async(_kv.put)
    delete = _async(_kv.delete)
    delete_range = _async(_kv.delete_range)
    delete_prefix = _async(_kv.delete_prefix)
    txn = _async(_kv.txn)
    compact = _async(_kv.compact)

    # -- leases -----------------------------------------------------------------------------
    lease_grant = _async(_lease.lease_grant)
    lease_revoke = _async(_lease.lease_revoke)
    lease_time_to_live = _async(_lease.lease_time_to_live)
    lease_leases = _async(_lease.lease_leases)
    lease_keepalive_once = _async(_lease.lease_keepalive_once)

    async def lease(self, ttl: int, *, keepalive: bool = True, lease_id: int = 0) -> Lease:
        """Grant a lease of ``ttl`` seconds, kept alive by a task unless ``keepalive`` is False.

        ``async with await client.lease(10) as lease:`` revokes it on exit;
        ``await lease.close()`` only stops the keep-alive.
        """
        grant = await self._run(_lease.lease_grant(ttl, lease_id=lease_id))
        return Lease(self, grant, keepalive=keepalive)

    # -- watch ------------------------------------------------------------------------------
    async def watch(
        self,
        key: KeyLike,
        range_end: KeyLike | None = None,
        *,
        prefix: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        filters: Sequence[str] = (),
        timeout: float | None = None,
    ) -> Watch:
        """`Client.watch`: returns once the watch is established; ``async for`` over it."""
        end = range_end_of(key, range_end, prefix)
        if prefix and not to_bytes(key):
            key = b"\0"
        spec = WatchSpec.create(
            key, end, start_revision=start_revision, prev_kv=prev_kv, progress_notify=progress_notify, filters=filters
        )
        return await Watch.start(self, spec, self._deadline(timeout))

    async def watch_prefix(self, prefix: KeyLike, **options: Any) -> Watch:
        return await self.watch(prefix, prefix=True, **options)

    # -- cluster and maintenance ---------------------------------------------------------------
    member_list = _async(_cluster.member_list)
    member_add = _async(_cluster.member_add)
    member_remove = _async(_cluster.member_remove)
    member_update = _async(_cluster.member_update)
    member_promote = _async(_cluster.member_promote)
    status = _async(_maintenance.status)
    alarms = _async(_maintenance.alarms)
    alarm_disarm = _async(_maintenance.alarm_disarm)
    defragment = _async(_maintenance.defragment)
    hash_kv = _async(_maintenance.hash_kv)

    async def move_leader(self, target_id: int, *, timeout: float | None = None) -> Any:
        """Hand leadership to member ``target_id`` (the call is sent to the current leader)."""
        return await self._run(_maintenance.move_leader(target_id, endpoints=self.endpoints, timeout=timeout))

    async def sync_endpoints(self, *, timeout: float | None = None) -> tuple[str, ...]:
        """Replace the endpoints with every voting member's client URLs (as the cluster lists them)."""
        members = await self.member_list(timeout=timeout)
        urls = [u for m in members if not m.is_learner for u in m.client_urls]
        if urls:
            config = ClientConfig.create(
                urls, timeout=self.config.timeout, user=self.config.user, password=self.config.password,
                tls=self.config.tls, require_leader=self.config.require_leader,
                keepalive_time=self.config.keepalive_time, keepalive_timeout=self.config.keepalive_timeout,
            )  # fmt: skip
            self.config = config
            self._channels.config = config
            self._pool = EndpointPool(urls, self._rand)
        return self.endpoints

    async def snapshot(
        self,
        path: str | os.PathLike[str],
        *,
        progress: Callable[[int, int], None] | None = None,
        endpoint: str | None = None,
        timeout: float | None = None,
    ) -> SnapshotInfo:
        """`Client.snapshot`. File writes are small and sequential; they run on the loop."""
        final = os.fspath(path)
        partial = final + ".part"
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            chosen = endpoint or self._pick()
            await self._ensure_token(deadline)
            check = SnapshotCheck()
            try:
                stream = self._channels.stub(chosen, "Maintenance").Snapshot(
                    rpc_pb2.SnapshotRequest(), timeout=_remaining(deadline), metadata=self._metadata(True)
                )
                with open(partial, "wb") as out:
                    async for chunk in stream:
                        out.write(chunk.blob)
                        check.feed(chunk.blob)
                        if progress is not None:
                            progress(check.received, check.received + chunk.remaining_bytes)
                    out.flush()
                    await asyncio.to_thread(os.fsync, out.fileno())
                check.finish()
            except grpc.RpcError as e:
                _unlink(partial)
                error = error_from_rpc(e, chosen)
                if check.received or not await self._after_error(error, chosen, True, attempt, deadline):
                    raise error from None
                attempt += 1
                continue
            except BaseException:
                _unlink(partial)
                raise
            os.replace(partial, final)
            return SnapshotInfo(final, check.received)

    # -- auth ---------------------------------------------------------------------------------
    authenticate = _async(_auth.authenticate)
    auth_enable = _async(_auth.auth_enable)
    auth_disable = _async(_auth.auth_disable)
    auth_status = _async(_auth.auth_status)
    user_add = _async(_auth.user_add)
    user_get = _async(_auth.user_get)
    user_list = _async(_auth.user_list)
    user_delete = _async(_auth.user_delete)
    user_change_password = _async(_auth.user_change_password)
    user_grant_role = _async(_auth.user_grant_role)
    user_revoke_role = _async(_auth.user_revoke_role)
    role_add = _async(_auth.role_add)
    role_get = _async(_auth.role_get)
    role_list = _async(_auth.role_list)
    role_delete = _async(_auth.role_delete)
    role_grant_permission = _async(_auth.role_grant_permission)
    role_revoke_permission = _async(_auth.role_revoke_permission)

    # -- concurrency ----------------------------------------------------------------------------
    def lock(self, name: KeyLike, *, ttl: int = 60, lease: Lease | None = None) -> Lock:
        """A lock: ``async with client.lock("name") as lock:``; see `Client.lock`."""
        return Lock(self, name, ttl=ttl, lease=lease)

    def election(self, name: KeyLike, *, ttl: int = 60, lease: Lease | None = None) -> Election:
        return Election(self, name, ttl=ttl, lease=lease)

    async def stm(
        self,
        apply: Callable[[Stm], Coroutine[Any, Any, R]],
        *,
        isolation: Isolation = Isolation.SERIALIZABLE,
        retries: int = 20,
        timeout: float | None = None,
    ) -> R:
        """`Client.stm` with an ``async def apply(stm)`` that awaits ``stm.get``."""
        for attempt in range(retries):
            stm = Stm(self, StmState(isolation), timeout)
            result = await apply(stm)
            if await self._run(stm.state.commit(timeout=timeout)):
                return result
            await asyncio.sleep(backoff(attempt, self._rand))
        raise TxnConflict(f"STM transaction conflicted {retries} times")

    # -- running programs ----------------------------------------------------------------------
    async def _run(self, program: Program[R], deadline: float | None = None) -> R:
        """Carry out ``program``'s operations until it returns; errors are thrown into it."""
        if self._closed:
            program.close()
            raise ClientClosed("client is closed")
        try:
            op = next(program)
            while True:
                try:
                    result = await self._execute(op, deadline)
                except ClientError as e:
                    op = program.throw(e)
                else:
                    op = program.send(result)
        except StopIteration as stop:
            return stop.value

    async def _execute(self, op: Op, deadline: float | None) -> Any:
        if isinstance(op, Call):
            return await self._call(op, deadline)
        if isinstance(op, WaitDeleted):
            return await self._wait_deleted(op, deadline)
        raise TypeError(f"unknown operation {op!r}")

    def _deadline(self, timeout: float | None, deadline: float | None = None) -> float | None:
        budget = timeout if timeout is not None else self.config.timeout
        own = None if budget is None else time.monotonic() + budget
        return _earliest(own, deadline)

    async def _call(self, call: Call, outer_deadline: float | None) -> Any:
        deadline = self._deadline(call.timeout, outer_deadline)
        attempt = 0
        reauthenticated = False
        last_error: EtcdError | None = None
        while True:
            endpoint = call.endpoint or self._pick()
            if call.authenticated:
                await self._ensure_token(deadline)
            token = self._token
            remaining = _remaining(deadline)
            if remaining is not None and remaining <= 0:
                # The budget ran out in the backoff: the failure that led to the retry says more
                # (and whether the call may have applied) than a bare deadline would.
                if last_error is not None:
                    raise last_error from None
                raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded before the call", endpoint)
            budget = attempt_budget(remaining, 1 if call.endpoint else len(self.endpoints))
            try:
                if call.idempotent:
                    response = await self._invoke(endpoint, call, budget)
                else:
                    await self._channels.wait_ready(endpoint, budget)
                    response = await self._invoke(endpoint, call, remaining)
            except (grpc.RpcError, ConnectionFailed) as e:
                error = e if isinstance(e, ConnectionFailed) else error_from_rpc(e, endpoint)
                if isinstance(error, DeadlineExceeded) and call.idempotent and budget != remaining:
                    error = MemberTimedOut(error.code, f"no answer within {budget:.1f}s", endpoint)
                can_reauthenticate = self._has_credentials and not reauthenticated  # once per call
                if decide(error, idempotent=call.idempotent, can_reauthenticate=can_reauthenticate) is Action.REAUTHENTICATE:
                    await self._authenticate(deadline, stale=token)
                    reauthenticated = True
                    continue
                if not await self._after_error(error, endpoint, call.idempotent, attempt, deadline):
                    raise error from None
                attempt += 1
                last_error = error
                continue
            self._pool.succeeded(endpoint)
            return response

    async def _after_error(
        self, error: EtcdError, endpoint: str, idempotent: bool, attempt: int, deadline: float | None
    ) -> bool:
        """Note the failure; wait before a retry and return True, or return False to raise."""
        if endpoint_failed(error):
            self._pool.failed(endpoint, time.monotonic())
        if decide(error, idempotent=idempotent, can_reauthenticate=False) is not Action.RETRY:
            return False
        delay = backoff(attempt, self._rand)
        remaining = _remaining(deadline)
        if remaining is not None and remaining <= delay:
            return False
        await asyncio.sleep(delay)
        return True

    async def _invoke(self, endpoint: str, call: Call, timeout: float | None) -> Any:
        method = getattr(self._channels.stub(endpoint, call.service), call.method)
        metadata = self._metadata(call.authenticated)
        if not call.stream:
            return await method(call.request, timeout=timeout, metadata=metadata)
        stream = method(timeout=timeout, metadata=metadata)
        try:
            await stream.write(call.request)
            response = await stream.read()
            if response is grpc.aio.EOF:
                raise ConnectionLost(grpc.StatusCode.UNAVAILABLE, "stream closed before its response", endpoint)
            return response
        finally:
            stream.cancel()

    def _pick(self, avoid: Sequence[str] = ()) -> str:
        return self._pool.pick(time.monotonic(), avoid)

    def _endpoint_ok(self, endpoint: str) -> None:
        self._pool.succeeded(endpoint)

    def _endpoint_down(self, endpoint: str) -> None:
        self._pool.failed(endpoint, time.monotonic())

    # -- auth tokens ------------------------------------------------------------------------------
    @property
    def _has_credentials(self) -> bool:
        return self.config.user is not None

    def _metadata(self, authenticated: bool, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        token = self._token if authenticated else None
        return ((("token", token),) if token else ()) + extra

    async def _ensure_token(self, deadline: float | None) -> None:
        if self._has_credentials and self._token is None:
            await self._authenticate(deadline, stale=None)

    async def _authenticate(self, deadline: float | None, stale: str | None) -> None:
        """Get a new token, unless another task already replaced the ``stale`` one."""
        async with self._auth_lock:
            if self._token is not None and self._token != stale:
                return
            self._token = None
            assert self.config.user is not None and self.config.password is not None
            self._token = await self._run(_auth.authenticate(self.config.user, self.config.password), deadline)

    # -- waiting for a delete (locks, elections) -----------------------------------------------
    async def _wait_deleted(self, op: WaitDeleted, deadline: float | None) -> int:
        watch = await self.watch(op.key, start_revision=op.revision + 1, filters=("noput",), timeout=_remaining(deadline))
        async with watch:
            while True:
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, f"timed out waiting for {op.key!r} to go")
                try:
                    response = await watch.get(timeout=remaining)
                except TimeoutError:
                    continue
                for event in response.events:
                    if event.type is EventType.DELETE:
                        return event.revision


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class Stm:
    """What an STM function sees: ``await stm.get(key)``, buffered ``put``/``delete``."""

    def __init__(self, client: AsyncClient, state: StmState, timeout: float | None) -> None:
        self._client = client
        self.state = state
        self._timeout = timeout

    async def get(self, key: KeyLike) -> bytes | None:
        return await self._client._run(self.state.get(key, timeout=self._timeout))

    def put(self, key: KeyLike, value: KeyLike) -> None:
        self.state.put(key, value)

    def delete(self, key: KeyLike) -> None:
        self.state.delete(key)
