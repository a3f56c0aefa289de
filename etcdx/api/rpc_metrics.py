"""Per-RPC counters of the client port, as go-grpc-prometheus names them for etcd.

etcd exports ``grpc_server_started_total``, ``grpc_server_handled_total``
(by ``grpc_code``), ``grpc_server_msg_received_total`` and
``grpc_server_msg_sent_total`` for every method, and with ``--metrics
extensive`` the ``grpc_server_handling_seconds`` histogram. Here each
route of the front end's Router gets its own ``MethodStats`` at startup; a
call costs one increment as it starts and one plain call (the Router's
``on_call_end``) as it ends: no label lookup, no callback on its Future.

Each process serving the client port (the core, or every API worker) has
its own ``RpcStats``; ``snapshot`` turns them into plain data that workers
send to the core (``etcdx.api.ipc`` METRICS), and ``RpcCollector`` renders
the sum of any number of snapshots.
"""

from __future__ import annotations

import bisect
import time
from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from etcdx.api.rpcs import RPCS, Kind
from etcdx.frontend import Call, Router, Stream

# grpc-go's names of the status codes (codes.Code.String()), by number
CODE_NAMES = ("OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound", "AlreadyExists",
              "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted", "OutOfRange",
              "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated")
HANDLING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)  # Prometheus' defaults, as etcd's
_TYPES = {Kind.UNARY: "unary", Kind.SERVER_STREAM: "server_stream", Kind.BIDI_STREAM: "bidi_stream"}
_KNOWN_TYPES = {rpc.path: _TYPES[rpc.kind] for rpc in RPCS} | {
    "/grpc.health.v1.Health/Check": "unary", "/grpc.health.v1.Health/Watch": "server_stream"}


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

    def observe(self, took: float) -> None:
        self.buckets[bisect.bisect_left(HANDLING_BUCKETS, took)] += 1
        self.seconds += took


class RpcStats:
    """The counters of every route of one process's client port.

    A call is counted as started by a thin wrapper around its handler and as
    handled, with its status code, by the Router's ``on_call_end`` hook,
    which the front end calls as it sends the status.
    """

    def __init__(self, timed: bool = False) -> None:
        self.timed = timed
        self.methods: dict[str, MethodStats] = {}
        self._started_at: dict[Call, float] = {}  # only if timed

    def instrument(self, router: Router) -> None:
        """Count the calls of every route of ``router`` (once, before it serves)."""
        for path, (streaming, handler) in list(router.routes.items()):
            grpc_type = _KNOWN_TYPES.get(path, "bidi_stream" if streaming else "unary")
            stats = self.methods[path] = MethodStats(grpc_type, self.timed)
            if streaming:
                wrapped = _counted_stream(handler, stats, self._started_at if self.timed else None)
            else:
                wrapped = _counted_unary(handler, stats, self._started_at if self.timed else None)
            router.routes[path] = (streaming, wrapped)
        router.on_call_end = self._ended

    def _ended(self, call: Call, code: int) -> None:
        stats = self.methods.get(call.method)
        if stats is None or not 0 <= code < len(CODE_NAMES):
            return
        stats.handled[code] += 1
        if self.timed:
            started = self._started_at.pop(call, None)
            if started is not None:
                stats.observe(time.perf_counter() - started)

    def snapshot(self) -> dict[str, list[Any]]:
        """Plain data (JSON) for the core: path -> [type, started, received, sent, handled, buckets, seconds]."""
        return {path: [m.grpc_type, m.started, m.received, m.sent, list(m.handled),
                       list(m.buckets) if m.buckets is not None else None, m.seconds]
                for path, m in self.methods.items()}


def _counted_unary(handler: Callable[[bytes, Call], Any], stats: MethodStats,
                   started_at: dict[Call, float] | None) -> Callable[[bytes, Call], Any]:
    if started_at is None:
        def handle(body: bytes, call: Call) -> Any:
            stats.started += 1
            return handler(body, call)
    else:
        def handle(body: bytes, call: Call) -> Any:
            started_at[call] = time.perf_counter()
            stats.started += 1
            return handler(body, call)
    return handle


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


def _counted_stream(handler: Callable[[Stream, Call], Any], stats: MethodStats,
                    started_at: dict[Call, float] | None) -> Callable[[Stream, Call], Any]:
    async def handle(stream: Stream, call: Call) -> None:
        if started_at is not None:
            started_at[call] = time.perf_counter()
        stats.started += 1
        await handler(_CountedStream(stream, stats), call)
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
