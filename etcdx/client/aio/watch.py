"""`Watch`: a watch that survives member failures, for the asyncio client.

A task owns the gRPC stream: it feeds responses through
`etcdx.client.watch.WatchState` into a queue the caller iterates, and when
the stream breaks it opens a new one on another member from the resume
point. `close()` (or the client's) cancels and awaits the task.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from ..errors import ClientClosed, ClientError, ConnectionLost, DeadlineExceeded, EtcdError, error_from_rpc, error_from_status
from ..retry import Action, backoff, decide, endpoint_failed
from ..types import Event, WatchResponse
from ..watch import Reconnect, WatchSpec, WatchState
from ._tasks import stop_task

if TYPE_CHECKING:
    from .client import AsyncClient

_END = object()


class Watch:
    """``async for`` over `WatchResponse` batches (``await get(timeout)`` to wait with a limit).

    Ends after `close()`; raises `Compacted` (with ``compact_revision``) if the
    revision to resume from was compacted, and `WatchCanceled` or an
    `EtcdError` if the server refuses the watch.
    """

    def __init__(self, client: AsyncClient, spec: WatchSpec) -> None:
        self._client = client
        self._state = WatchState(spec)
        self._items: asyncio.Queue[Any] = asyncio.Queue()
        self._closed = False
        self._created = asyncio.Event()
        self._was_created = False
        self._call: Any = None
        self._write_lock = asyncio.Lock()
        self._endpoint: str | None = None
        self._last_error: BaseException | None = None
        self._finished = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, client: AsyncClient, spec: WatchSpec, deadline: float | None) -> Watch:
        """Start watching; return once a member has created the watch."""
        watch = cls(client, spec)
        client._owned.add(watch)
        watch._task = asyncio.create_task(watch._run(), name="etcdx-watch")
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            await asyncio.wait_for(watch._created.wait(), remaining)
        except TimeoutError:
            pass
        if not watch._was_created:
            error = watch._last_error
            await watch.close()
            if isinstance(error, ClientError) and watch._created.is_set():
                raise error
            raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, f"watch not created in time (last error: {error})")
        return watch

    # -- the caller's side ------------------------------------------------------------------
    @property
    def endpoint(self) -> str | None:
        """The member the watch is streaming from now (None while reconnecting)."""
        return self._endpoint

    @property
    def revision(self) -> int:
        """The revision the watch would resume from: everything before it has been delivered."""
        return self._state.next_revision

    def __aiter__(self) -> AsyncIterator[WatchResponse]:
        return self

    async def __anext__(self) -> WatchResponse:
        try:
            return await self.get()
        except ClientClosed:
            raise StopAsyncIteration from None

    async def get(self, timeout: float | None = None) -> WatchResponse:
        """The next batch; `TimeoutError` after ``timeout`` seconds, `ClientClosed` once closed."""
        if self._finished:
            raise ClientClosed("watch is closed")
        item = await asyncio.wait_for(self._items.get(), timeout)
        if item is _END:
            self._finished = True
            raise ClientClosed("watch is closed")
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        return item

    async def events(self) -> AsyncIterator[Event]:
        """Every event, one at a time."""
        async for response in self:
            for event in response.events:
                yield event

    async def request_progress(self) -> None:
        """Ask the member for a progress notification (it arrives as an empty `WatchResponse`)."""
        call = self._call
        if call is None:
            if self._closed:
                raise ClientClosed("watch is closed")
            raise ConnectionLost(grpc.StatusCode.UNAVAILABLE, "watch is reconnecting")
        async with self._write_lock:
            await call.write(self._state.progress_request())

    async def close(self) -> None:
        """Stop watching and wait for the stream's task. Idempotent."""
        self._closed = True
        self._client._owned.discard(self)
        task, self._task = self._task, None
        await stop_task(task)

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the stream's task ----------------------------------------------------------------------
    async def _run(self) -> None:
        client = self._client
        attempt = 0
        avoid: tuple[str, ...] = ()
        try:
            while not self._closed:
                endpoint = client._pick(avoid)
                token = client._token
                try:
                    await client._ensure_token(client._deadline(None))
                    if await self._stream(endpoint):
                        attempt = 0
                    error: EtcdError = ConnectionLost(grpc.StatusCode.UNAVAILABLE, "watch stream ended", endpoint)
                except grpc.RpcError as e:
                    error = error_from_rpc(e, endpoint)
                except Reconnect as r:
                    error = error_from_status(grpc.StatusCode.UNAVAILABLE, r.reason, endpoint)
                self._last_error = error
                action = decide(error, idempotent=True, can_reauthenticate=client._has_credentials)
                if action is Action.REAUTHENTICATE:
                    await client._authenticate(client._deadline(None), stale=token)
                    continue
                if action is Action.RAISE:
                    self._fail(error)
                    return
                if endpoint_failed(error):
                    client._endpoint_down(endpoint)
                avoid = (endpoint,)
                await asyncio.sleep(backoff(attempt, client._rand))
                attempt += 1
        except ClientError as e:  # Compacted, WatchCanceled, authentication failures
            self._fail(e)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # not expected: hand it to the caller rather than lose it
            self._fail(e)
            raise
        finally:
            self._items.put_nowait(_END)
            self._created.set()

    def _fail(self, error: BaseException) -> None:
        self._last_error = error
        self._items.put_nowait(error)

    async def _stream(self, endpoint: str) -> bool:
        """Run one stream until it ends; True if it delivered anything."""
        client = self._client
        extra = (("hasleader", "true"),) if client.config.require_leader else ()
        call = client._channels.stub(endpoint, "Watch").Watch(metadata=client._metadata(True, *extra))
        self._call, self._endpoint = call, endpoint
        answered = False
        try:
            async with self._write_lock:
                await call.write(self._state.create_request())
            while True:
                response = await call.read()
                if response is grpc.aio.EOF:
                    return answered
                item = self._state.on_response(response)
                answered = True
                if response.created:
                    client._endpoint_ok(endpoint)
                    self._was_created = True
                    self._created.set()
                if item is not None:
                    self._items.put_nowait(item)
        finally:
            self._call = self._endpoint = None
            call.cancel()
