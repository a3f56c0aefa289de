"""``etcdx``: start one member with etcd's flags.

The entry point sits above both the server (the member) and the API layer
(what serves its clients), and puts them together.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import signal
import sys

from etcdx import __version__
from etcdx.server import config, flagtable, logs
from etcdx.server.gc_tuning import freeze_boot_objects

log = logging.getLogger("etcdx.main")


async def _first_set(*events: asyncio.Event) -> None:
    """Wait until one of ``events`` is set."""
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()


async def serve(cfg: config.Config) -> None:
    # Imported here so that `etcdx --help` stays fast and never touches the data dir.
    from etcdx.api import frontend_server
    from etcdx.api.handlers import CoreHandlers
    from etcdx.api.metrics_http import CoreMetrics
    from etcdx.gateway import CoreState, build_http, health_route
    from etcdx.server.bootstrap import BootError, fetch_cluster, needs_cluster_info
    from etcdx.server.etcdserver import EtcdServer
    from etcdx.wal.errors import CorruptWALError

    server = EtcdServer(cfg)
    try:
        joined = await fetch_cluster(cfg) if needs_cluster_info(cfg) else None
        server.open(joined)
    except CorruptWALError as err:
        log.critical("refusing to start: the WAL is corrupt", extra={"fields": {"error": str(err), "data-dir": cfg.data_dir}})
        raise SystemExit(1) from None
    except BootError as err:
        log.critical("refusing to start", extra={"fields": {"error": str(err), "data-dir": cfg.data_dir}})
        raise SystemExit(1) from None
    await server.start()
    # A new or joining member publishes its name and client URLs through the log first
    # (a restarted one whose attributes did not change has nothing to wait for).
    await _first_set(server.published, server.failed, server.removed)
    if not server.published.is_set():
        await server.stop()
        raise SystemExit(0 if server.removed.is_set() else 1)
    if cfg.experimental_initial_corrupt_check:
        from etcdx.server.corruption import CorruptionError

        try:
            await server.corruption.initial_check()
        except CorruptionError as err:
            log.critical("refusing to serve", extra={"fields": {"error": str(err)}})
            await server.stop()
            raise SystemExit(1) from None
    metrics = CoreMetrics(server, cfg)
    try:  # before the client port: whoever sees the member serve finds its metrics too
        await metrics.listen({**metrics.routes(), **health_route(cfg, CoreState(server))})  # as etcd's metrics URLs
    except OSError as err:
        log.critical("cannot listen for metrics", extra={"fields": {"error": str(err)}})
        await metrics.close()
        await server.stop()
        raise SystemExit(1) from None
    workers = None
    if cfg.api_workers > 0:
        from etcdx.api.worker import WorkerPool, WorkerStartError

        workers = WorkerPool(server, cfg.api_workers, metrics)
        try:
            await workers.start()
        except WorkerStartError as err:
            log.critical("cannot start the API workers", extra={"fields": {"error": str(err)}})
            await metrics.close()
            await server.stop()
            raise SystemExit(1) from None
    front = None
    if workers is None:
        # With workers, only they serve clients: the core's CPU goes to raft and apply.
        handlers = CoreHandlers(server)
        http = build_http(handlers, cfg, CoreState(server), metrics.routes())
        front = frontend_server.build(handlers, cfg, http, stats=metrics.rpc)
        try:
            await frontend_server.listen(front, cfg, reuse_port=False)
        except OSError as err:
            log.critical("cannot listen for client traffic", extra={"fields": {"error": str(err)}})
            await metrics.close()
            await server.stop()
            raise SystemExit(1) from None
    freeze_boot_objects()
    log.info("serving client requests", extra={"fields": {"listen-client-urls": cfg.listen_client_urls,
                                                          "name": cfg.name, "data-dir": cfg.data_dir}})
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await _first_set(stop, server.removed, server.failed)
    log.info("stopping member")
    if workers is not None:
        await workers.stop()
    if front is not None:
        await front.close(grace=1.0)
    await metrics.close()
    await server.stop()
    log.info("stopped member")
    if server.failed.is_set():
        raise SystemExit(1)


def _raise_file_limit() -> None:
    """Every client connection is a file descriptor: allow as many as the hard limit, as Go does
    for etcd, rather than the soft limit a shell hands out (often 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["operator"]:  # `etcdx operator ...`; anything else is a member with etcd's flags
        from etcdx.operator.cli import main as operator_main

        return operator_main(args[1:])
    try:
        cfg, want_version = config.load(argv)
    except config.HelpRequested:
        print(flagtable.usage(), end="")
        return 0
    except config.ConfigError as err:
        print(f"etcdx: {err}", file=sys.stderr)
        return 2
    if want_version:
        print(f"etcdx Version: {__version__}\nAPI Version: 3.5")
        return 0
    try:
        logs.setup(cfg.log_level, cfg.log_outputs)
    except OSError as err:
        print(f"etcdx: cannot open a log output: {err}", file=sys.stderr)
        return 2
    for warning in cfg.load_warnings:
        log.warning(warning)
    log.info("etcd flags etcdx does not support yet (accepted only at etcd's default value)",
             extra={"fields": {"flags": flagtable.unsupported()}})
    _raise_file_limit()
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    runner(serve(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
