"""API worker processes: more processes serving the member's client URLs.

One Python process has one core's worth of CPU for serving clients and
running raft and apply. With ``--api-workers N`` the member's core process
starts N workers; each serves the RPC table (``etcdx.api.rpcs``) on
the same client URLs (``SO_REUSEPORT``: the kernel spreads connections over
them) with ``WorkerHandlers``, which read the backend locally and call the
core for the rest (``etcdx.api.ipc``). The core then serves only its
workers, keeping its CPU for raft and apply (bench/workers.md).

Lifecycle: the core starts the workers once it is ready and waits until
each serves; a worker that dies is started again; on SIGTERM the core stops
its workers before itself. A worker never outlives its core: it asks the
kernel to kill it when its parent dies (PR_SET_PDEATHSIG) and exits as soon
as its connection to the core breaks.

Run as ``python -m etcdx.api.worker --ipc PATH --parent PID --index I``.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any
from urllib.parse import urlsplit

import lmdb

import etcdx
from etcdx.api import frontend_server, ipc
from etcdx.api.handlers import CoreHandlers
from etcdx.api.metrics_http import WorkerMetrics
from etcdx.api.remote import WorkerHandlers, connect
from etcdx.gateway import WorkerState, build_http
from etcdx.server import logs
from etcdx.server.gc_tuning import freeze_boot_objects

log = logging.getLogger("etcdx.api.worker")

START_TIMEOUT = 30.0
STOP_TIMEOUT = 5.0
RESTART_BACKOFF_MAX = 5.0
PR_SET_PDEATHSIG = 1


# -- the worker process -------------------------------------------------------------------

def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass  # not Linux: the broken connection to the core still ends the worker
    if os.getppid() != parent:
        os._exit(1)  # the core died before the request above took effect


async def _serve(path: str, index: int) -> None:
    stopping = False

    def lost() -> None:
        if not stopping:
            log.error("lost the connection to the member's core; exiting", extra={"fields": {"worker": index}})
            logging.shutdown()
            os._exit(1)

    conn, hello = await connect(path, lost)
    remote = WorkerHandlers(conn, hello)
    logs.setup(remote.cfg.log_level, remote.cfg.log_outputs)
    metrics = WorkerMetrics(conn, index, remote.cfg)
    http = build_http(remote, remote.cfg, WorkerState(remote), metrics.routes())
    front = frontend_server.build(remote, remote.cfg, http, stats=metrics.rpc)
    await frontend_server.listen(front, remote.cfg, reuse_port=True)
    freeze_boot_objects()
    await conn.call(ipc.READY, json.dumps([index, os.getpid()]).encode())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with asyncio.TaskGroup() as tasks:
        push = tasks.create_task(metrics.push())
        await stop.wait()
        push.cancel()
    await front.close(grace=1.0)
    stopping = True
    conn.transport.close()
    remote.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="etcdx-api-worker")
    p.add_argument("--ipc", required=True, help="the core's socket")
    p.add_argument("--parent", type=int, required=True, help="the core's pid")
    p.add_argument("--index", type=int, required=True, help="this worker's slot")
    args = p.parse_args(argv)
    _die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the core decides when workers stop
    logs.setup("info", ["stderr"])
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(_serve(args.ipc, args.index))
    return 0


# -- the core's side: starting and keeping the workers --------------------------------------

class WorkerStartError(RuntimeError):
    """A worker exited or did not report serving before the member started serving."""


def _refuse_taken_ports(urls: list[str]) -> None:
    """Fail if anything listens on a client URL already.

    SO_REUSEPORT would let this member share a port with another process of
    the same user (a second member started by mistake) instead of failing as
    etcd does. A socket without SO_REUSEPORT cannot bind next to any
    listener, so this probe finds them; SO_REUSEADDR keeps the previous run's
    TIME_WAIT connections from counting.
    """
    for url in urls:
        parts = urlsplit(url)
        host, port = parts.hostname or "localhost", parts.port or (443 if parts.scheme == "https" else 2379)
        for family, kind, proto, _, addr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(addr)
                except OSError as err:
                    raise WorkerStartError(f"cannot listen for client traffic on {url}: {err.strerror}") from None


class WorkerPool:
    """The member's API workers: started after the core is ready, restarted when one dies."""

    def __init__(self, server: Any, count: int, metrics: Any = None) -> None:
        self.count = count
        self.server = server
        self.listen_urls = list(server.cfg.listen_client_urls)
        self.handler = ipc.CoreHandler(server, CoreHandlers(server), on_ready=self._on_ready, metrics=metrics)
        self._procs: list[asyncio.subprocess.Process | None] = [None] * count
        self._ready = [asyncio.Event() for _ in range(count)]
        self._tasks: list[asyncio.Task] = []
        self._stopping = False
        self._startup: asyncio.Future | None = None

    def _on_ready(self, index: int, pid: int) -> None:
        proc = self._procs[index] if 0 <= index < self.count else None
        if proc is not None and proc.pid == pid:
            self._ready[index].set()
            log.info("API worker serving", extra={"fields": {"worker": index, "pid": pid}})

    async def start(self) -> None:
        """Start every worker and wait until all serve; raises WorkerStartError otherwise."""
        loop = asyncio.get_running_loop()
        _refuse_taken_ports(self.listen_urls)
        await self.handler.start()
        self._startup = loop.create_future()
        self._tasks = [loop.create_task(self._supervise(i)) for i in range(self.count)]
        ready = loop.create_task(asyncio.wait_for(
            asyncio.gather(*(e.wait() for e in self._ready)), START_TIMEOUT))
        try:
            done, _ = await asyncio.wait({ready, self._startup}, return_when=asyncio.FIRST_COMPLETED)
            if ready not in done:
                self._startup.result()  # raises the start failure
            ready.result()
        except (asyncio.TimeoutError, WorkerStartError) as exc:
            ready.cancel()
            await self.stop()
            raise WorkerStartError(str(exc) or "API workers did not start in time") from None
        self._startup = None

    def _command(self, index: int) -> list[str]:
        return [sys.executable, "-m", "etcdx.api.worker", "--ipc", self.handler.path,
                "--parent", str(os.getpid()), "--index", str(index)]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.abspath(etcdx.__file__)))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        return env

    async def _supervise(self, index: int) -> None:
        backoff = 0.5
        while not self._stopping:
            self._ready[index].clear()
            proc = await asyncio.create_subprocess_exec(
                *self._command(index), stdin=subprocess.DEVNULL, env=self._env(), start_new_session=True)
            self._procs[index] = proc
            started = time.monotonic()
            code = await proc.wait()
            self._procs[index] = None
            self._release_stale_readers()
            if self._stopping:
                return
            if self._startup is not None and not self._startup.done() and not self._ready[index].is_set():
                self._startup.set_exception(WorkerStartError(f"API worker {index} exited with code {code} while starting"))
                return
            log.warning("API worker exited; starting it again",
                        extra={"fields": {"worker": index, "pid": proc.pid, "exit-code": code}})
            if time.monotonic() - started > 10 * RESTART_BACKOFF_MAX:
                backoff = 0.5
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RESTART_BACKOFF_MAX)

    def _release_stale_readers(self) -> None:
        """Free the LMDB reader slots of dead processes.

        A worker killed inside a read transaction leaves its slot holding that
        transaction's snapshot, and the writer never reuses a page freed after
        it: the database would grow without bound.
        """
        try:
            self.server.stores.backend.reader_check()
        except lmdb.Error:
            log.warning("could not release stale LMDB readers", exc_info=True)

    async def stop(self) -> None:
        """SIGTERM every worker (they finish in-flight calls), SIGKILL stragglers, then close the socket."""
        self._stopping = True
        procs = [p for p in self._procs if p is not None and p.returncode is None]
        for p in procs:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), STOP_TIMEOUT)
            except asyncio.TimeoutError:
                p.kill()
                await p.wait()
        for t in self._tasks:
            t.cancel()
        for t, result in zip(self._tasks, await asyncio.gather(*self._tasks, return_exceptions=True)):
            if isinstance(result, Exception):
                log.error("API worker supervisor failed", exc_info=result)
        await self.handler.stop()


if __name__ == "__main__":
    sys.exit(main())
