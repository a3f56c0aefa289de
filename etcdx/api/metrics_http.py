"""``/metrics``: the member's figures in Prometheus' text format, under etcd's names.

One text per member, whichever process is asked: the core renders it (its
own figures, the peer network's, the process', and the client port's RPC
counts summed over whoever serves the port). With API workers, each worker
sends its RPC counts to the core every ``PUSH_INTERVAL`` seconds (ipc
METRICS); a worker asked for /metrics sends its fresh counts with the
question and relays the core's answer, so the text it serves holds its own
requests up to that moment and other workers' at most ``PUSH_INTERVAL`` old.

``metrics_handler(render)`` is the HttpHandler to mount at ``/metrics`` on
the client port (``CoreMetrics.render`` in the core, ``WorkerMetrics.render``
in a worker); ``CoreMetrics.listen`` serves ``--listen-metrics-urls`` with
the routes it is given (``/metrics``, plus whatever health routes the caller
adds) on a front end of its own that serves no gRPC.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, disable_created_metrics, generate_latest

from etcdx.api import ipc
from etcdx.api.rpc_metrics import RpcCollector, RpcStats
from etcdx.frontend import FrontEnd, HttpHandler, HttpRequest, HttpResponse, Router
from etcdx.frontend.httpapi import not_found
from etcdx.server.config import Config
from etcdx.server.errors import EtcdError
from etcdx.server.metrics import MemberCollector, observe_disk

log = logging.getLogger("etcdx.api.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"  # the format generate_latest writes, as etcd labels it
PUSH_INTERVAL = 1.0  # seconds: how old a worker's counts in the core's text may be
MAX_REQUEST_BYTES = 64 * 1024  # the metrics listener serves no gRPC and needs no request bodies


def metrics_handler(render: Callable[[], Awaitable[bytes]]) -> HttpHandler:
    """An HttpHandler answering any request with the text ``render`` makes (503 if it cannot)."""
    async def serve(request: HttpRequest, response: HttpResponse) -> None:
        try:
            body, status, kind = await render(), 200, CONTENT_TYPE
        except EtcdError as err:
            body, status, kind = f"{err.message}\n".encode(), 503, "text/plain; charset=utf-8"
        response.start(status, [("content-type", kind), ("content-length", str(len(body)))])
        await response.write(body)
        await response.end()
    return serve


def routes_only(routes: Mapping[str, HttpHandler]) -> HttpHandler:
    """An HttpHandler serving exact paths (the query ignored), Go's 404 for anything else."""
    async def serve(request: HttpRequest, response: HttpResponse) -> None:
        handler = routes.get(request.path.partition("?")[0], not_found)
        await handler(request, response)
    return serve


class CoreMetrics:
    """The member's metrics, in the core process."""

    def __init__(self, server: Any, cfg: Config) -> None:
        self.server = server
        self.cfg = cfg
        self.rpc = RpcStats(timed=cfg.metrics == "extensive")  # the core's own client port, if it serves it
        self._member = MemberCollector(server)
        self._workers: dict[int, dict[str, list[Any]]] = {}  # each worker's latest counts
        self._retired: list[dict[str, list[Any]]] = []  # counts of worker processes that were restarted
        self._listener: FrontEnd | None = None
        observe_disk(server)
        disable_created_metrics()  # process-wide: no *_created series, which etcd (Go's client) never has

    def routes(self) -> dict[str, HttpHandler]:
        return {"/metrics": metrics_handler(self.render)}

    async def render(self) -> bytes:
        """The text; read on a thread (the key count walks the key index), the backend held open."""
        sources = [self.rpc.snapshot(), *self._workers.values(), *self._retired]
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self._member)
        registry.register(RpcCollector(lambda: sources, self.rpc.timed))
        backend = self.server.stores.backend

        def text() -> bytes:
            with backend.hold():
                return generate_latest(REGISTRY) + generate_latest(registry)
        return await asyncio.get_running_loop().run_in_executor(None, text)

    async def from_worker(self, body: bytes) -> bytes:
        """ipc METRICS: a worker's counts; the text if it asks for it."""
        msg = json.loads(body)
        index, counts = int(msg["worker"]), msg["rpc"]
        previous = self._workers.get(index)
        if previous is not None and _started(counts) < _started(previous):
            self._retired.append(previous)  # a new process in that slot: keep what the old one counted
        self._workers[index] = counts
        return await self.render() if msg.get("render") else b""

    async def listen(self, routes: Mapping[str, HttpHandler]) -> None:
        """Serve ``routes`` on every ``--listen-metrics-urls`` URL (https ones with the client TLS settings)."""
        if not self.cfg.listen_metrics_urls:
            return
        fe = self._listener = FrontEnd(Router(), routes_only(routes), max_receive_message_bytes=MAX_REQUEST_BYTES)
        tls = self.cfg.client_tls_info()
        for url in self.cfg.listen_metrics_urls:
            if url.startswith(("https://", "unixs://")):
                await fe.listen(url, ssl=tls.server_context(alpn=["h2", "http/1.1"]), verify=tls.check_connection)
            else:
                await fe.listen(url)

    async def close(self) -> None:
        if self._listener is not None:
            await self._listener.close(grace=1.0)
            self._listener = None


def _started(counts: dict[str, list[Any]]) -> int:
    return sum(c[1] for c in counts.values())


class WorkerMetrics:
    """An API worker's RPC counts and its way to the member's text (through the core)."""

    def __init__(self, conn: Any, index: int, cfg: Config) -> None:
        self.conn = conn
        self.index = index
        self.rpc = RpcStats(timed=cfg.metrics == "extensive")

    def routes(self) -> dict[str, HttpHandler]:
        return {"/metrics": metrics_handler(self.render)}

    def _message(self, render: bool) -> bytes:
        return json.dumps({"worker": self.index, "rpc": self.rpc.snapshot(), "render": render}).encode()

    async def render(self) -> bytes:
        return await self.conn.call(ipc.METRICS, self._message(True))

    async def push(self) -> None:
        """Send the counts to the core every PUSH_INTERVAL, until cancelled."""
        while True:
            await asyncio.sleep(PUSH_INTERVAL)
            try:
                await self.conn.call(ipc.METRICS, self._message(False))
            except EtcdError as err:
                log.warning("could not send RPC counts to the core", extra={"fields": {"error": err.message}})
