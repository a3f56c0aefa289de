"""Per-RPC counters of the client port, as go-grpc-prometheus names them for etcd.

etcd exports ``grpc_server_started_total``, ``grpc_server_handled_total``
(by ``grpc_code``), ``grpc_server_msg_received_total`` and
``grpc_server_msg_sent_total`` for every method, and with ``--metrics
extensive`` the ``grpc_server_handling_seconds`` histogram. Here each
route of the front end's Router is wrapped once, at startup, with its own
``MethodStats``: a call costs a few attribute increments and, for a call
answered through a Future, one done-callback; no label lookup per call.

Each process serving the client port (the core, or every API worker) has
its own ``RpcStats``; ``snapshot`` turns them into plain data that workers
send to the core (``etcdx.api.ipc`` METRICS), and ``RpcCollector`` renders
the sum of any number of snapshots.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import time
from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from etcdx.api.rpcs import RPCS, Kind
from etcdx.frontend import Call, Router, Stream
from etcdx.frontend.grpc import StatusCode, status_of

# grpc-go's names of the status codes (codes.Code.String()), by number
CODE_NAMES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
              "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
              "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated")
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)  # Prometheus' defaults, as etcd's
_TYPES = {Kind.UNARY: "unary", Kind.SERVER_STREAM: "server_stream", Kind.BIDI_STREAM: "bidi_stream"}
_KNOWN_TYPES = {rpc.path: _TYPES[rpc.kind] for rpc in RPCS} | {
    "/grpc.health.v1.Health/Check": "unary", "/grpc.health.v1.Health/Watch": "server_stream"}


def _code(exc: BaseException, call: Call) -> int:
    if isinstance(exc, asyncio.CancelledError):
        deadline = call.deadline
        if deadline is not None and asyncio.get_running_loop().time() >= deadline:
            return StatusCode.DEADLINE_EXCEEDED
        return StatusCode.CANCELLED
    status = status_of(exc)
    return status.code if status is not None else StatusCode.INTERNAL


class MethodStats:
    """One method's counts in this process; ``buckets`` (per bucket, not cumulative) only if timed."""

    __slots__ = ("grpc_type", "started", "handled", "received", "sent", "buckets", "seconds")

    def __init__(self, grpc_type: str, timed: bool) -> None:
        self.grpc_type = grpc_type
        self.started = 0
        self.handled = [0] * len(CODE_NAMES)
        self.received = 0  # stream messages; a unary call's one message counts from started/handled
        self.sent = 0
        self.buckets: list[int] | None = [0] * (len(HANDLING_BUCKETS) + 1) if timed else None
        self.seconds = 0.0

    def observe(self, started: float) -> None:
        took = time.perf_counter() - started
        self.buckets[bisect.bisect_left(HANDLING_BUCKETS, took)] += 1
        self.seconds += took

    def future_done(self, call: Call, fut: asyncio.Future) -> None:
        if fut.cancelled():
            self.handled[_code(asyncio.CancelledError(), call)] += 1
        else:
            exc = fut.exception()
            self.handled[0 if exc is None else _code(exc, call)] += 1

    def timed_future_done(self, call: Call, started: float, fut: asyncio.Future) -> None:
        self.future_done(call, fut)
        self.observe(started)


class RpcStats:
    """The counters of every route of one process's client port."""

    def __init__(self, timed: bool = False) -> None:
        self.timed = timed
        self.methods: dict[str, MethodStats] = {}

    def instrument(self, router: Router) -> None:
        """Wrap every route of ``router`` (once, before it serves) so that its calls are counted."""
        for path, (streaming, handler) in list(router.routes.items()):
            grpc_type = _KNOWN_TYPES.get(path, "bidi_stream" if streaming else "unary")
            stats = self.methods[path] = MethodStats(grpc_type, self.timed)
            wrap = _counted_stream if streaming else (_timed_unary if self.timed else _counted_unary)
            router.routes[path] = (streaming, wrap(handler, stats))

    def snapshot(self) -> dict[str, list[Any]]:
        """Plain data (JSON) for the core: path -> [type, started, received, sent, handled, buckets, seconds]."""
        return {path: [m.grpc_type, m.started, m.received, m.sent, list(m.handled),
                       list(m.buckets) if m.buckets is not None else None, m.seconds]
                for path, m in self.methods.items()}


def _counted_unary(handler: Callable[[bytes, Call], Any], stats: MethodStats) -> Callable[[bytes, Call], Any]:
    done = stats.future_done

    def handle(body: bytes, call: Call) -> Any:
        stats.started += 1
        try:
            result = handler(body, call)
        except BaseException as exc:
            stats.handled[_code(exc, call)] += 1
            raise
        if isinstance(result, asyncio.Future):
            result.add_done_callback(functools.partial(done, call))
            return result
        if isinstance(result, (bytes, bytearray, memoryview)):
            stats.handled[0] += 1
            return result
        return _counted_coroutine(result, stats, call, None)
    return handle


def _timed_unary(handler: Callable[[bytes, Call], Any], stats: MethodStats) -> Callable[[bytes, Call], Any]:
    def handle(body: bytes, call: Call) -> Any:
        started = time.perf_counter()
        stats.started += 1
        try:
            result = handler(body, call)
        except BaseException as exc:
            stats.handled[_code(exc, call)] += 1
            stats.observe(started)
            raise
        if isinstance(result, asyncio.Future):
            result.add_done_callback(functools.partial(stats.timed_future_done, call, started))
            return result
        if isinstance(result, (bytes, bytearray, memoryview)):
            stats.handled[0] += 1
            stats.observe(started)
            return result
        return _counted_coroutine(result, stats, call, started)
    return handle


async def _counted_coroutine(coro: Any, stats: MethodStats, call: Call, started: float | None) -> bytes:
    try:
        result = await coro
    except BaseException as exc:
        stats.handled[_code(exc, call)] += 1
        raise
    else:
        stats.handled[0] += 1
        return result
    finally:
        if started is not None:
            stats.observe(started)


class _CountedStream:
    """A Stream that counts the messages it carries."""

    __slots__ = ("_stream", "_stats")

    def __init__(self, stream: Stream, stats: MethodStats) -> None:
        self._stream = stream
        self._stats = stats

    async def recv(self) -> bytes | None:
        body = await self._stream.recv()
        if body is not None:
            self._stats.received += 1
        return body

    async def send(self, body: bytes) -> None:
        await self._stream.send(body)
        self._stats.sent += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _counted_stream(handler: Callable[[Stream, Call], Any], stats: MethodStats) -> Callable[[Stream, Call], Any]:
    async def handle(stream: Stream, call: Call) -> None:
        started = time.perf_counter()
        stats.started += 1
        try:
            await handler(_CountedStream(stream, stats), call)
        except BaseException as exc:
            stats.handled[_code(exc, call)] += 1
            raise
        else:
            stats.handled[0] += 1
        finally:
            if stats.buckets is not None:
                stats.observe(started)
    return handle


class RpcCollector(Collector):
    """The grpc_server_* families: the sum of the snapshots ``sources()`` returns."""

    def __init__(self, sources: Callable[[], Iterable[dict[str, list[Any]]]], timed: bool) -> None:
        self.sources = sources
        self.timed = timed

    def collect(self) -> Iterator[Metric]:
        total: dict[str, list[Any]] = {}
        for snapshot in self.sources():
            for path, (grpc_type, started, received, sent, handled, buckets, seconds) in snapshot.items():
                t = total.get(path)
                if t is None:
                    total[path] = [grpc_type, started, received, sent, list(handled),
                                   list(buckets) if buckets is not None else None, seconds]
                    continue
                t[1] += started
                t[2] += received
                t[3] += sent
                t[4] = [a + b for a, b in zip(t[4], handled)]
                if t[5] is not None and buckets is not None:
                    t[5] = [a + b for a, b in zip(t[5], buckets)]
                t[6] += seconds
        names = ["grpc_method", "grpc_service", "grpc_type"]
        started_f = CounterMetricFamily("grpc_server_started", "Total number of RPCs started on the server.",
                                        labels=names)
        handled_f = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=["grpc_code", *names])
        received_f = CounterMetricFamily("grpc_server_msg_received",
                                         "Total number of RPC stream messages received on the server.", labels=names)
        sent_f = CounterMetricFamily("grpc_server_msg_sent",
                                     "Total number of gRPC stream messages sent by the server.", labels=names)
        seconds_f = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level handled by the server.",
            labels=names)
        for path in sorted(total):
            grpc_type, started, received, sent, handled, buckets, seconds = total[path]
            service, _, method = path[1:].rpartition("/")
            labels = [method, service, grpc_type]
            started_f.add_metric(labels, started)
            for code, count in zip(CODE_NAMES, handled):
                handled_f.add_metric([code, *labels], count)
            if grpc_type == "unary":
                received, sent = started, handled[0]
            received_f.add_metric(labels, received)
            sent_f.add_metric(labels, sent)
            if self.timed and buckets is not None:
                cumulative, running = [], 0
                for bound, count in zip([*map(str, HANDLING_BUCKETS), "+Inf"], buckets):
                    running += count
                    cumulative.append((bound, running))
                seconds_f.add_metric(labels, cumulative, seconds)
        yield from (started_f, handled_f, received_f, sent_f)
        if self.timed:
            yield seconds_f
