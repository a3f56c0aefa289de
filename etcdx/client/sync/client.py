"""The blocking client, `Client`, on gRPC's synchronous API.

It runs the programs of `etcdx.client` (see `etcdx.client.ops`): each public
call below is one of them, carried out here with blocking gRPC calls, retries
and failover. Safe to share between threads.
"""

from __future__ import annotations

import functools
import os
import random
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import grpc

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


def _sync(program: Callable[P, Program[R]]) -> Callable[Concatenate[Client, P], R]:
    """A method of `Client` that runs ``program`` to its result."""

    @functools.wraps(program)
    def method(self: Client, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(program(*args, **kwargs))

    return method


_STATES = {state.value[0]: state for state in grpc.ChannelConnectivity}
_PENDING = (grpc.ChannelConnectivity.IDLE, grpc.ChannelConnectivity.CONNECTING)


def _connectivity_probe(channel: grpc.Channel) -> Any:
    """gRPC's core channel, which reports and waits for connectivity without a thread.

    The public way (``subscribe``) runs a polling thread per channel that races
    with ``close()``; this is the call that thread makes. None if a future
    grpcio lacks it: callers then skip the check.
    """
    core = getattr(channel, "_channel", None)
    if hasattr(core, "check_connectivity_state") and hasattr(core, "watch_connectivity_state"):
        return core
    return None


class _Channels:
    """One gRPC channel per endpoint, opened on first use; stubs cached per service."""

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._channels: dict[str, grpc.Channel] = {}
        self._stubs: dict[tuple[str, str], Any] = {}

    def stub(self, endpoint: str, service: str) -> Any:
        key = (endpoint, service)
        stub = self._stubs.get(key)
        if stub is None:
            with self._lock:
                stub = self._stubs[key] = getattr(rpc_pb2_grpc, f"{service}Stub")(self._channel(endpoint))
        return stub

    def _channel(self, endpoint: str) -> grpc.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = self._open(endpoint)
        return channel

    def wait_ready(self, endpoint: str, timeout: float | None) -> None:
        """Return once the endpoint's connection is up; raise `ConnectionFailed` if it is down or
        does not come up within ``timeout`` (so a write is never queued on a member that hangs)."""
        with self._lock:
            core = _connectivity_probe(self._channel(endpoint))
        if core is None:
            return
        deadline = None if timeout is None else time.time() + timeout
        try:
            state = _STATES[core.check_connectivity_state(True)]
            while state in _PENDING and (deadline is None or time.time() < deadline):
                core.watch_connectivity_state(state.value[0], time.time() + 0.5 if deadline is None else deadline)
                state = _STATES[core.check_connectivity_state(True)]
        except ValueError:  # the channel was closed meanwhile
            raise ClientClosed("client is closed") from None
        if state is not grpc.ChannelConnectivity.READY:
            raise ConnectionFailed(grpc.StatusCode.UNAVAILABLE, f"no connection ({state.name.lower()})", endpoint)

    def _open(self, endpoint: str) -> grpc.Channel:
        target = self.config.endpoint(endpoint)
        credentials = self.config.credentials(target)
        options = self.config.channel_options()
        if credentials is None:
            return grpc.insecure_channel(target.address, options=options)
        return grpc.secure_channel(target.address, credentials, options=options)

    def close(self) -> None:
        with self._lock:
            channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            channel.close()


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.monotonic()


def _earliest(*deadlines: float | None) -> float | None:
    known = [d for d in deadlines if d is not None]
    return min(known) if known else None


class Client:
    """A blocking etcd v3 client for etcdx and etcd alike.

        with Client(["10.0.0.1:2379", "10.0.0.2:2379"]) as client:
            client.put("greeting", "hello")
            assert client.get("greeting").value == b"hello"

    ``endpoints``: ``host:port`` or ``http(s)://host:port`` (a list, or one
    comma-separated string). Calls are balanced round-robin over them and fail
    over when a member is unreachable or has no leader. ``timeout`` is each
    call's time budget in seconds, retries included (None: no limit), unless a
    call passes its own. ``user``/``password`` authenticate (the token is
    renewed when it expires); ``tls`` sets up TLS and client certificates.
    ``require_leader`` makes watches move to another member when theirs loses
    its leader.
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
        self._pool_lock = threading.Lock()
        self._pool = EndpointPool(self.config.endpoints, self._rand)
        self._channels = _Channels(self.config)
        self._auth_lock = threading.Lock()
        self._token: str | None = None
        self._owned: weakref.WeakSet[Any] = weakref.WeakSet()  # watches and leases to stop at close()
        self._closed = False

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Stop every watch and lease keep-alive this client started, and close its connections."""
        if self._closed:
            return
        self._closed = True
        for thing in list(self._owned):
            thing.close()
        self._channels.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def endpoints(self) -> tuple[str, ...]:
        return self._pool.endpoints

    # -- KV ---------------------------------------------------------------------------------
    get = _sync(_kv.get)
    get_range = _sync(_kv.get_range)
    get_prefix = _sync(_kv.get_prefix)
    put = _sync(_kv.put)
    delete = _sync(_kv.delete)
    delete_range = _sync(_kv.delete_range)
    delete_prefix = _sync(_kv.delete_prefix)
    txn = _sync(_kv.txn)
    compact = _sync(_kv.compact)

    # -- leases -----------------------------------------------------------------------------
    lease_grant = _sync(_lease.lease_grant)
    lease_revoke = _sync(_lease.lease_revoke)
    lease_time_to_live = _sync(_lease.lease_time_to_live)
    lease_leases = _sync(_lease.lease_leases)
    lease_keepalive_once = _sync(_lease.lease_keepalive_once)

    def lease(self, ttl: int, *, keepalive: bool = True, lease_id: int = 0) -> Lease:
        """Grant a lease of ``ttl`` seconds, kept alive in the background unless ``keepalive`` is False.

        ``with client.lease(10) as lease:`` revokes it on exit; ``lease.close()``
        only stops the keep-alive.
        """
        grant = self._run(_lease.lease_grant(ttl, lease_id=lease_id))
        return Lease(self, grant, keepalive=keepalive)

    # -- watch ------------------------------------------------------------------------------
    def watch(
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
        """Watch a key (or a range, or a prefix) from ``start_revision`` (0: from now on).

        Returns once the watch is established (within ``timeout``). Iterate over
        it for `WatchResponse` batches; it resumes on another member after a
        failure without losing or repeating an event, and raises `Compacted`
        if the revision it must resume from was compacted. ``filters``:
        "noput", "nodelete".
        """
        end = range_end_of(key, range_end, prefix)
        if prefix and not to_bytes(key):
            key = b"\0"
        spec = WatchSpec.create(
            key, end, start_revision=start_revision, prev_kv=prev_kv, progress_notify=progress_notify, filters=filters
        )
        return Watch.start(self, spec, self._deadline(timeout))

    def watch_prefix(self, prefix: KeyLike, **options: Any) -> Watch:
        return self.watch(prefix, prefix=True, **options)

    # -- cluster and maintenance ---------------------------------------------------------------
    member_list = _sync(_cluster.member_list)
    member_add = _sync(_cluster.member_add)
    member_remove = _sync(_cluster.member_remove)
    member_update = _sync(_cluster.member_update)
    member_promote = _sync(_cluster.member_promote)
    status = _sync(_maintenance.status)
    alarms = _sync(_maintenance.alarms)
    alarm_disarm = _sync(_maintenance.alarm_disarm)
    defragment = _sync(_maintenance.defragment)
    hash_kv = _sync(_maintenance.hash_kv)

    def move_leader(self, target_id: int, *, timeout: float | None = None) -> Any:
        """Hand leadership to member ``target_id`` (the call is sent to the current leader)."""
        return self._run(_maintenance.move_leader(target_id, endpoints=self.endpoints, timeout=timeout))

    def sync_endpoints(self, *, timeout: float | None = None) -> tuple[str, ...]:
        """Replace the endpoints with every voting member's client URLs (as the cluster lists them)."""
        members = self.member_list(timeout=timeout)
        urls = [u for m in members if not m.is_learner for u in m.client_urls]
        if urls:
            config = ClientConfig.create(
                urls, timeout=self.config.timeout, user=self.config.user, password=self.config.password,
                tls=self.config.tls, require_leader=self.config.require_leader,
                keepalive_time=self.config.keepalive_time, keepalive_timeout=self.config.keepalive_timeout,
            )  # fmt: skip
            with self._pool_lock:
                self.config = config
                self._channels.config = config
                self._pool = EndpointPool(urls, self._rand)
        return self.endpoints

    def snapshot(
        self,
        path: str | os.PathLike[str],
        *,
        progress: Callable[[int, int], None] | None = None,
        endpoint: str | None = None,
        timeout: float | None = None,
    ) -> SnapshotInfo:
        """Save a member's backend to ``path`` (written to ``path.part``, checked, fsynced, renamed).

        ``progress(received_bytes, total_bytes)`` is called after each chunk.
        ``timeout`` bounds the whole transfer (default: no limit).
        """
        final = os.fspath(path)
        partial = final + ".part"
        deadline = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            chosen = endpoint or self._pick()
            self._ensure_token(deadline)
            check = SnapshotCheck()
            try:
                stream = self._channels.stub(chosen, "Maintenance").Snapshot(
                    rpc_pb2.SnapshotRequest(), timeout=_remaining(deadline), metadata=self._metadata(True)
                )
                with open(partial, "wb") as out:
                    for chunk in stream:
                        out.write(chunk.blob)
                        check.feed(chunk.blob)
                        if progress is not None:
                            progress(check.received, check.received + chunk.remaining_bytes)
                    out.flush()
                    os.fsync(out.fileno())
                check.finish()
            except grpc.RpcError as e:
                _unlink(partial)
                error = error_from_rpc(e, chosen)
                if check.received or not self._after_error(error, chosen, True, attempt, deadline):
                    raise error from None
                attempt += 1
                continue
            except BaseException:
                _unlink(partial)
                raise
            os.replace(partial, final)
            return SnapshotInfo(final, check.received)

    # -- auth ---------------------------------------------------------------------------------
    authenticate = _sync(_auth.authenticate)
    auth_enable = _sync(_auth.auth_enable)
    auth_disable = _sync(_auth.auth_disable)
    auth_status = _sync(_auth.auth_status)
    user_add = _sync(_auth.user_add)
    user_get = _sync(_auth.user_get)
    user_list = _sync(_auth.user_list)
    user_delete = _sync(_auth.user_delete)
    user_change_password = _sync(_auth.user_change_password)
    user_grant_role = _sync(_auth.user_grant_role)
    user_revoke_role = _sync(_auth.user_revoke_role)
    role_add = _sync(_auth.role_add)
    role_get = _sync(_auth.role_get)
    role_list = _sync(_auth.role_list)
    role_delete = _sync(_auth.role_delete)
    role_grant_permission = _sync(_auth.role_grant_permission)
    role_revoke_permission = _sync(_auth.role_revoke_permission)

    # -- concurrency ----------------------------------------------------------------------------
    def lock(self, name: KeyLike, *, ttl: int = 60, lease: Lease | None = None) -> Lock:
        """A lock (acquire with ``with`` or `Lock.acquire`); see `etcdx.client.concurrency`.

        Without ``lease`` the lock takes its own lease of ``ttl`` seconds, kept
        alive while held and revoked on release.
        """
        return Lock(self, name, ttl=ttl, lease=lease)

    def election(self, name: KeyLike, *, ttl: int = 60, lease: Lease | None = None) -> Election:
        """An election to campaign in, or to observe."""
        return Election(self, name, ttl=ttl, lease=lease)

    def stm(
        self,
        apply: Callable[[Stm], R],
        *,
        isolation: Isolation = Isolation.SERIALIZABLE,
        retries: int = 20,
        timeout: float | None = None,
    ) -> R:
        """Run ``apply(stm)`` until its reads and writes commit atomically; returns its result.

        ``apply`` reads with ``stm.get(key)`` and writes with ``stm.put``/``stm.delete``;
        the writes are applied in one txn only if nothing it read changed meanwhile,
        otherwise ``apply`` runs again on fresh data (at most ``retries`` times,
        then `TxnConflict`). It must not have other side effects.
        """
        for attempt in range(retries):
            stm = Stm(self, StmState(isolation), timeout)
            result = apply(stm)
            if self._run(stm.state.commit(timeout=timeout)):
                return result
            time.sleep(backoff(attempt, self._rand))
        raise TxnConflict(f"STM transaction conflicted {retries} times")

    # -- running programs ----------------------------------------------------------------------
    def _run(self, program: Program[R], deadline: float | None = None) -> R:
        """Carry out ``program``'s operations until it returns; errors are thrown into it."""
        if self._closed:
            program.close()
            raise ClientClosed("client is closed")
        try:
            op = next(program)
            while True:
                try:
                    result = self._execute(op, deadline)
                except ClientError as e:
                    op = program.throw(e)
                else:
                    op = program.send(result)
        except StopIteration as stop:
            return stop.value

    def _execute(self, op: Op, deadline: float | None) -> Any:
        if isinstance(op, Call):
            return self._call(op, deadline)
        if isinstance(op, WaitDeleted):
            return self._wait_deleted(op, deadline)
        raise TypeError(f"unknown operation {op!r}")

    def _deadline(self, timeout: float | None, deadline: float | None = None) -> float | None:
        budget = timeout if timeout is not None else self.config.timeout
        own = None if budget is None else time.monotonic() + budget
        return _earliest(own, deadline)

    def _call(self, call: Call, outer_deadline: float | None) -> Any:
        deadline = self._deadline(call.timeout, outer_deadline)
        attempt = 0
        reauthenticated = False
        last_error: EtcdError | None = None
        while True:
            endpoint = call.endpoint or self._pick()
            if call.authenticated:
                self._ensure_token(deadline)
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
                    response = self._invoke(endpoint, call, budget)
                else:
                    self._channels.wait_ready(endpoint, budget)
                    response = self._invoke(endpoint, call, remaining)
            except (grpc.RpcError, ConnectionFailed) as e:
                error = e if isinstance(e, ConnectionFailed) else error_from_rpc(e, endpoint)
                if isinstance(error, DeadlineExceeded) and call.idempotent and budget != remaining:
                    error = MemberTimedOut(error.code, f"no answer within {budget:.1f}s", endpoint)
                can_reauthenticate = self._has_credentials and not reauthenticated  # once per call
                if decide(error, idempotent=call.idempotent, can_reauthenticate=can_reauthenticate) is Action.REAUTHENTICATE:
                    self._authenticate(deadline, stale=token)
                    reauthenticated = True
                    continue
                if not self._after_error(error, endpoint, call.idempotent, attempt, deadline):
                    raise error from None
                attempt += 1
                last_error = error
                continue
            self._endpoint_ok(endpoint)
            return response

    def _after_error(self, error: EtcdError, endpoint: str, idempotent: bool, attempt: int, deadline: float | None) -> bool:
        """Note the failure; wait before a retry and return True, or return False to raise."""
        if endpoint_failed(error):
            self._endpoint_down(endpoint)
        if decide(error, idempotent=idempotent, can_reauthenticate=False) is not Action.RETRY:
            return False
        delay = backoff(attempt, self._rand)
        remaining = _remaining(deadline)
        if remaining is not None and remaining <= delay:
            return False
        time.sleep(delay)
        return True

    def _invoke(self, endpoint: str, call: Call, timeout: float | None) -> Any:
        method = getattr(self._channels.stub(endpoint, call.service), call.method)
        metadata = self._metadata(call.authenticated)
        if not call.stream:
            return method(call.request, timeout=timeout, metadata=metadata)
        answered = threading.Event()

        def requests() -> Any:
            yield call.request
            answered.wait()  # half-closing before the answer could end the stream unanswered

        responses = method(requests(), timeout=timeout, metadata=metadata)
        try:
            for response in responses:
                return response
            raise ConnectionLost(grpc.StatusCode.UNAVAILABLE, "stream closed before its response", endpoint)
        finally:
            answered.set()
            responses.cancel()

    def _pick(self, avoid: Sequence[str] = ()) -> str:
        with self._pool_lock:
            return self._pool.pick(time.monotonic(), avoid)

    def _endpoint_ok(self, endpoint: str) -> None:
        with self._pool_lock:
            self._pool.succeeded(endpoint)

    def _endpoint_down(self, endpoint: str) -> None:
        with self._pool_lock:
            self._pool.failed(endpoint, time.monotonic())

    # -- auth tokens ------------------------------------------------------------------------------
    @property
    def _has_credentials(self) -> bool:
        return self.config.user is not None

    def _metadata(self, authenticated: bool, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
        token = self._token if authenticated else None
        return ((("token", token),) if token else ()) + extra

    def _ensure_token(self, deadline: float | None) -> None:
        if self._has_credentials and self._token is None:
            self._authenticate(deadline, stale=None)

    def _authenticate(self, deadline: float | None, stale: str | None) -> None:
        """Get a new token, unless another thread already replaced the ``stale`` one."""
        with self._auth_lock:
            if self._token is not None and self._token != stale:
                return
            self._token = None
            assert self.config.user is not None and self.config.password is not None
            self._token = self._run(_auth.authenticate(self.config.user, self.config.password), deadline)

    # -- waiting for a delete (locks, elections) -----------------------------------------------
    def _wait_deleted(self, op: WaitDeleted, deadline: float | None) -> int:
        with self.watch(op.key, start_revision=op.revision + 1, filters=("noput",), timeout=_remaining(deadline)) as w:
            while True:
                remaining = _remaining(deadline)
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, f"timed out waiting for {op.key!r} to go")
                try:
                    response = w.get(timeout=remaining)
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
    """What an STM function sees: reads through the transaction, buffered writes."""

    def __init__(self, client: Client, state: StmState, timeout: float | None) -> None:
        self._client = client
        self.state = state
        self._timeout = timeout

    def get(self, key: KeyLike) -> bytes | None:
        return self._client._run(self.state.get(key, timeout=self._timeout))

    def put(self, key: KeyLike, value: KeyLike) -> None:
        self.state.put(key, value)

    def delete(self, key: KeyLike) -> None:
        self.state.delete(key)

