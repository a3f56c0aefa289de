"""`Watch`: a watch that survives member failures, for the blocking client.

A background thread owns the gRPC stream: it feeds responses through
`etcdx.client.watch.WatchState` into a queue the caller iterates, and when
the stream breaks it opens a new one on another member from the resume
point. The thread is stopped and joined by `close()` (or the client's).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc

from etcdx.pb import rpc_pb2

from ..errors import (
    ClientClosed,
    ClientError,
    ConnectionLost,
    DeadlineExceeded,
    EtcdError,
    error_from_rpc,
    error_from_status,
)
from ..retry import Action, backoff, decide, endpoint_failed
from ..types import Event, WatchResponse
from ..watch import Reconnect, WatchSpec, WatchState

if TYPE_CHECKING:
    from .client import Client

_END = object()


class _Requests:
    """The request side of one stream: an iterator gRPC reads from, fed by `put`."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[rpc_pb2.WatchRequest | None] = queue.SimpleQueue()

    def put(self, request: rpc_pb2.WatchRequest) -> None:
        self._queue.put(request)

    def close(self) -> None:
        self._queue.put(None)

    def __iter__(self) -> _Requests:
        return self

    def __next__(self) -> rpc_pb2.WatchRequest:
        item = self._queue.get()
        if item is None:
            raise StopIteration
        return item


class Watch:
    """Iterate for `WatchResponse` batches (``get(timeout)`` to wait with a limit).

    The iteration ends after `close()`; it raises `Compacted` (with
    ``compact_revision``) if the revision to resume from was compacted, and
    `WatchCanceled` or an `EtcdError` if the server refuses the watch.
    """

    def __init__(self, client: Client, spec: WatchSpec) -> None:
        self._client = client
        self._state = WatchState(spec)
        self._items: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._closed = threading.Event()
        self._created = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._requests: _Requests | None = None
        self._endpoint: str | None = None
        self._last_error: BaseException | None = None
        self._was_created = False
        self._finished = False
        self._thread = threading.Thread(target=self._run, name="etcdx-watch", daemon=True)

    @classmethod
    def start(cls, client: Client, spec: WatchSpec, deadline: float | None) -> Watch:
        """Start watching; return once a member has created the watch."""
        watch = cls(client, spec)
        client._owned.add(watch)
        watch._thread.start()
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        created = watch._created.wait(remaining)
        if not watch._was_created:
            error = watch._last_error
            watch.close()
            if isinstance(error, BaseException) and not created:
                raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, f"watch not created: {error}") from error
            if isinstance(error, BaseException):
                raise error
            raise DeadlineExceeded(grpc.StatusCode.DEADLINE_EXCEEDED, "watch not created in time")
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

    def __iter__(self) -> Iterator[WatchResponse]:
        return self

    def __next__(self) -> WatchResponse:
        try:
            return self._next(None)
        except ClientClosed:
            raise StopIteration from None

    def get(self, timeout: float | None = None) -> WatchResponse:
        """The next batch; `TimeoutError` after ``timeout`` seconds, `ClientClosed` once closed."""
        return self._next(timeout)

    def events(self) -> Iterator[Event]:
        """Every event, one at a time."""
        for response in self:
            yield from response.events

    def _next(self, timeout: float | None) -> WatchResponse:
        if self._finished:
            raise ClientClosed("watch is closed")
        try:
            item = self._items.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no watch response within {timeout}s") from None
        if item is _END:
            self._finished = True
            raise ClientClosed("watch is closed")
        if isinstance(item, BaseException):
            self._finished = True
            raise item
        return item

    def request_progress(self) -> None:
        """Ask the member for a progress notification (it arrives as an empty `WatchResponse`)."""
        with self._lock:
            if self._requests is None:
                raise ClientClosed("watch is not connected") if self._closed.is_set() else ConnectionLost(
                    grpc.StatusCode.UNAVAILABLE, "watch is reconnecting"
                )
            self._requests.put(self._state.progress_request())

    def close(self) -> None:
        """Stop watching and join the stream's thread. Idempotent."""
        self._closed.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the stream's thread --------------------------------------------------------------------
    def _run(self) -> None:
        client = self._client
        attempt = 0
        avoid: tuple[str, ...] = ()
        try:
            while not self._closed.is_set():
                endpoint = client._pick(avoid)
                token = client._token
                try:
                    client._ensure_token(client._deadline(None))
                    if self._stream(endpoint):
                        attempt = 0
                    error: EtcdError = ConnectionLost(grpc.StatusCode.UNAVAILABLE, "watch stream ended", endpoint)
                except grpc.RpcError as e:
                    if self._closed.is_set():
                        return
                    error = error_from_rpc(e, endpoint)
                except Reconnect as r:
                    error = error_from_status(grpc.StatusCode.UNAVAILABLE, r.reason, endpoint)
                self._last_error = error
                action = decide(error, idempotent=True, can_reauthenticate=client._has_credentials)
                if action is Action.REAUTHENTICATE:
                    client._authenticate(client._deadline(None), stale=token)
                    continue
                if action is Action.RAISE:
                    self._fail(error)
                    return
                if endpoint_failed(error):
                    client._endpoint_down(endpoint)
                avoid = (endpoint,)
                if self._closed.wait(backoff(attempt, client._rand)):
                    return
                attempt += 1
        except ClientError as e:  # Compacted, WatchCanceled, authentication failures
            self._fail(e)
        except BaseException as e:  # not expected: hand it to the caller rather than lose it
            self._fail(e)
            raise
        finally:
            self._items.put(_END)
            self._created.set()

    def _fail(self, error: BaseException) -> None:
        self._last_error = error
        self._items.put(error)

    def _stream(self, endpoint: str) -> bool:
        """Run one stream until it ends; True if it delivered anything."""
        client = self._client
        requests = _Requests()
        requests.put(self._state.create_request())
        extra = (("hasleader", "true"),) if client.config.require_leader else ()
        call = client._channels.stub(endpoint, "Watch").Watch(requests, metadata=client._metadata(True, *extra))
        with self._lock:
            self._call, self._requests, self._endpoint = call, requests, endpoint
        if self._closed.is_set():
            call.cancel()
        answered = False
        try:
            for response in call:
                item = self._state.on_response(response)
                answered = True
                if response.created:
                    client._endpoint_ok(endpoint)
                    self._was_created = True
                    self._created.set()
                if item is not None:
                    self._items.put(item)
        finally:
            with self._lock:
                self._call = self._requests = self._endpoint = None
            requests.close()
            call.cancel()
        return answered
