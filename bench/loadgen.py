#!/usr/bin/env python3
"""A load generator for any etcd v3 gRPC endpoint (etcdx or the real etcd).

Workloads:
  put                      Put requests, fixed-size random value.
  range --consistency l|s  Single-key Range requests, linearizable or serializable.
  watch                    N watchers on a prefix while writers put keys under it;
                           measures how long after the put was acknowledged each
                           watcher sees the event, and events delivered per second.

Every workload reports throughput, latency percentiles (p50/p90/p99/max) and
errors grouped by gRPC status.  `--json` prints one JSON object instead.

The client is Python (grpc.aio): it costs a few hundred microseconds of CPU per
RPC, so on a small machine it can be the bottleneck before the server is.
`--procs` spreads the clients over several processes; see bench/README.md for
its measured ceiling against the real etcd.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from etcdx.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402

# Without these options grpc shares one TCP connection (subchannel) among all
# channels to the same target, which would make --conns meaningless.
_CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


def _target(endpoint: str) -> str:
    for scheme in ("http://", "https://"):
        if endpoint.startswith(scheme):
            return endpoint[len(scheme):]
    return endpoint


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with `prefix` (etcd's GetPrefixRangeEnd)."""
    end = bytearray(prefix)
    for i in range(len(end) - 1, -1, -1):
        if end[i] < 0xFF:
            end[i] += 1
            return bytes(end[: i + 1])
    return b"\x00"


class KeyMaker:
    """Keys are `prefix` + the key number in zero-padded decimal, `key_size` digits wide."""

    def __init__(self, prefix: bytes, key_size: int, key_space: int, sequential: bool, seed: int):
        if key_space > 10 ** key_size:
            raise SystemExit(f"--key-space {key_space} does not fit in --key-size {key_size} digits")
        self.prefix = prefix
        self.key_size = key_size
        self.key_space = key_space
        self.sequential = sequential
        self.rng = random.Random(seed)

    def key(self, op_index: int) -> bytes:
        n = op_index % self.key_space if self.sequential else self.rng.randrange(self.key_space)
        return self.prefix + str(n).zfill(self.key_size).encode()


@dataclass
class Tally:
    """Latencies (seconds) of successful requests and the errors of failed ones."""

    latencies: list[float] = field(default_factory=list)
    errors: Counter = field(default_factory=Counter)
    started: float = 0.0
    finished: float = 0.0

    def record_error(self, exc: BaseException) -> None:
        if isinstance(exc, grpc.aio.AioRpcError):
            self.errors[f"{exc.code().name}: {exc.details()}"] += 1
        else:
            self.errors[f"{type(exc).__name__}: {exc}"] += 1


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty list)."""
    if not sorted_values:
        return 0.0
    rank = max(1, int(round(p / 100.0 * len(sorted_values) + 0.5 - 1e-9)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def latency_summary(latencies: list[float]) -> dict:
    """Latency figures in milliseconds."""
    s = sorted(latencies)
    ms = 1000.0
    return {
        "count": len(s),
        "mean_ms": (sum(s) / len(s) * ms) if s else 0.0,
        "p50_ms": percentile(s, 50) * ms,
        "p90_ms": percentile(s, 90) * ms,
        "p99_ms": percentile(s, 99) * ms,
        "p999_ms": percentile(s, 99.9) * ms,
        "max_ms": (s[-1] * ms) if s else 0.0,
    }


class OpBudget:
    """Hands out operation numbers until --total are issued or --duration has passed."""

    def __init__(self, total: int | None, duration: float | None, rate: float | None = None):
        self.total = total
        self.duration = duration
        self.rate = rate
        self.issued = 0
        self.deadline = None
        self.t0 = 0.0

    def start(self) -> None:
        self.t0 = time.perf_counter()
        if self.duration is not None:
            self.deadline = self.t0 + self.duration

    async def pace(self, i: int) -> None:
        """With --rate, waits until op i is due (ops are spread evenly over time)."""
        if self.rate:
            delay = self.t0 + i / self.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

    def next(self) -> int | None:
        if self.total is not None and self.issued >= self.total:
            return None
        if self.deadline is not None and time.perf_counter() >= self.deadline:
            return None
        i = self.issued
        self.issued += 1
        return i


async def _open_channels(args) -> list[grpc.aio.Channel]:
    targets = [_target(e) for e in args.endpoints.split(",") if e]
    channels = [
        grpc.aio.insecure_channel(targets[i % len(targets)], options=_CHANNEL_OPTIONS)
        for i in range(args.conns)
    ]
    try:
        await asyncio.wait_for(asyncio.gather(*(c.channel_ready() for c in channels)), args.connect_timeout)
    except asyncio.TimeoutError:
        await _close_channels(channels)
        raise SystemExit(f"could not connect to {args.endpoints} within {args.connect_timeout}s")
    return channels


async def _close_channels(channels) -> None:
    await asyncio.gather(*(c.close() for c in channels), return_exceptions=True)


async def _run_clients(args, channels, make_request) -> Tally:
    """Runs --clients request loops over the channels; `make_request(stub, i)` issues op i."""
    tally = Tally()
    budget = OpBudget(args.total, args.duration, args.rate)
    stubs = [rpc_pb2_grpc.KVStub(c) for c in channels]
    perf = time.perf_counter

    async def client(stub) -> None:
        while True:
            i = budget.next()
            if i is None:
                return
            await budget.pace(i)
            t0 = perf()
            try:
                await make_request(stub, i)
            except grpc.aio.AioRpcError as exc:
                tally.record_error(exc)
                continue
            tally.latencies.append(perf() - t0)

    budget.start()
    tally.started = perf()
    async with asyncio.TaskGroup() as tg:
        for c in range(args.clients):
            tg.create_task(client(stubs[c % len(stubs)]))
    tally.finished = perf()
    return tally


def _value(args) -> bytes:
    return random.Random(args.seed + 1).randbytes(args.val_size)


async def run_put(args) -> dict:
    keys = KeyMaker(args.prefix.encode(), args.key_size, args.key_space, args.sequential_keys, args.seed)
    value = _value(args)
    timeout = args.timeout

    async def put(stub, i):
        await stub.Put(rpc_pb2.PutRequest(key=keys.key(i), value=value), timeout=timeout)

    channels = await _open_channels(args)
    try:
        tally = await _run_clients(args, channels, put)
    finally:
        await _close_channels(channels)
    return _report("put", args, tally)


async def run_range(args) -> dict:
    serializable = args.consistency == "s"
    timeout = args.timeout
    channels = await _open_channels(args)
    try:
        if args.key is not None:
            fixed = args.key.encode()
            if args.put_first:
                await rpc_pb2_grpc.KVStub(channels[0]).Put(
                    rpc_pb2.PutRequest(key=fixed, value=_value(args)), timeout=timeout)

            def key_of(_i):
                return fixed
        else:
            keys = KeyMaker(args.prefix.encode(), args.key_size, args.key_space, args.sequential_keys, args.seed)
            key_of = keys.key

        async def get(stub, i):
            await stub.Range(rpc_pb2.RangeRequest(key=key_of(i), serializable=serializable), timeout=timeout)

        tally = await _run_clients(args, channels, get)
    finally:
        await _close_channels(channels)
    return _report(f"range-{args.consistency}", args, tally)


async def run_watch(args) -> dict:
    """Watchers on a prefix, writers putting under it; delivery latency = event arrival - put ack."""
    perf = time.perf_counter
    prefix = args.prefix.encode() or b"__loadgen_watch/"
    keys = KeyMaker(prefix, args.key_size, args.key_space, args.sequential_keys, args.seed)
    value = _value(args)
    channels = await _open_channels(args)
    acked_at: dict[int, float] = {}        # revision -> when its put was acknowledged
    sent_at: dict[int, float] = {}         # revision -> when its put was sent
    arrivals: list[tuple[int, float]] = []  # (revision, arrival time), one per watcher per event
    created = 0
    all_created = asyncio.Event()
    writes_done = asyncio.Event()
    expected_events = None
    all_delivered = asyncio.Event()
    watch_errors: Counter = Counter()
    n_streams = min(args.watch_streams or args.watchers, args.watchers)

    def check_delivered():
        if expected_events is not None and len(arrivals) >= expected_events:
            all_delivered.set()

    async def stream(s: int, n_watchers: int) -> None:
        nonlocal created
        stub = rpc_pb2_grpc.WatchStub(channels[s % len(channels)])
        requests: asyncio.Queue = asyncio.Queue()
        for _ in range(n_watchers):
            requests.put_nowait(rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(key=prefix, range_end=prefix_end(prefix))))

        async def request_iter():
            while True:
                item = await requests.get()
                if item is None:
                    return
                yield item

        call = stub.Watch(request_iter())
        try:
            async for resp in call:
                if resp.created:
                    created += 1
                    if created == args.watchers:
                        all_created.set()
                if resp.canceled:
                    watch_errors[f"canceled: {resp.cancel_reason}"] += 1
                if resp.events:
                    now = perf()
                    arrivals.extend((ev.kv.mod_revision, now) for ev in resp.events)
                    check_delivered()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                watch_errors[f"{exc.code().name}: {exc.details()}"] += 1
        except asyncio.CancelledError:
            call.cancel()
            raise

    put_tally = Tally()

    async def writers() -> None:
        nonlocal expected_events
        await all_created.wait()
        budget = OpBudget(args.total, args.duration, args.rate)
        stubs = [rpc_pb2_grpc.KVStub(c) for c in channels]

        async def writer(stub):
            while True:
                i = budget.next()
                if i is None:
                    return
                await budget.pace(i)
                t0 = perf()
                try:
                    resp = await stub.Put(rpc_pb2.PutRequest(key=keys.key(i), value=value), timeout=args.timeout)
                except grpc.aio.AioRpcError as exc:
                    put_tally.record_error(exc)
                    continue
                t1 = perf()
                acked_at[resp.header.revision] = t1
                sent_at[resp.header.revision] = t0
                put_tally.latencies.append(t1 - t0)

        budget.start()
        put_tally.started = perf()
        async with asyncio.TaskGroup() as tg:
            for c in range(args.clients):
                tg.create_task(writer(stubs[c % len(stubs)]))
        put_tally.finished = perf()
        expected_events = len(acked_at) * args.watchers
        check_delivered()
        writes_done.set()

    try:
        stream_tasks = []
        per_stream = [args.watchers // n_streams + (1 if s < args.watchers % n_streams else 0) for s in range(n_streams)]
        for s, n in enumerate(per_stream):
            stream_tasks.append(asyncio.create_task(stream(s, n)))
        try:
            await asyncio.wait_for(all_created.wait(), args.connect_timeout)
        except asyncio.TimeoutError:
            raise SystemExit(f"only {created}/{args.watchers} watchers were created")
        await writers()
        try:
            await asyncio.wait_for(all_delivered.wait(), args.watch_wait)
        except asyncio.TimeoutError:
            pass
        last_arrival = perf()
        for t in stream_tasks:
            t.cancel()
        await asyncio.gather(*stream_tasks, return_exceptions=True)
    finally:
        await _close_channels(channels)

    after_ack = []
    after_send = []
    early = 0
    ours = 0
    for rev, t in arrivals:
        ack = acked_at.get(rev)
        if ack is None:
            continue  # an event from someone else's write under the prefix
        ours += 1
        if t < ack:
            early += 1  # the event overtook the put response inside this client
        after_ack.append(max(0.0, t - ack))
        after_send.append(t - sent_at[rev])
    if arrivals:
        last_arrival = max(t for _, t in arrivals)
    expected = len(acked_at) * args.watchers
    span = max(1e-9, last_arrival - put_tally.started)
    report = _report("watch", args, put_tally)
    report["puts"] = report.pop("latency")
    report["put_throughput"] = report.pop("throughput")
    report.update({
        "watchers": args.watchers,
        "watch_streams": n_streams,
        "events_expected": expected,
        "events_received": ours,
        "events_missing": max(0, expected - ours),
        "events_before_put_ack": early,
        "events_per_sec": ours / span,
        "delivery_after_ack": latency_summary(after_ack),
        "delivery_after_send": latency_summary(after_send),
        "throughput": ours / span,
        "latency": latency_summary(after_ack),
    })
    report["errors"] = dict(Counter(report["errors"]) + watch_errors)
    return report


def _report(workload: str, args, tally: Tally) -> dict:
    elapsed = max(1e-9, tally.finished - tally.started)
    ok = len(tally.latencies)
    cpu = time.process_time() - _CPU_AT_START
    return {
        "workload": workload,
        "endpoints": args.endpoints,
        "clients": args.clients,
        "conns": args.conns,
        "procs": getattr(args, "procs", 1),
        "key_size": args.key_size,
        "val_size": args.val_size,
        "requests_ok": ok,
        "requests_failed": sum(tally.errors.values()),
        "elapsed_s": elapsed,
        "throughput": ok / elapsed,
        "latency": latency_summary(tally.latencies),
        "errors": dict(tally.errors),
        # CPU this client process spent (setup included): its own cost per request,
        # so 1e6 / client_cpu_us_per_req is the most one core of this client can issue.
        "client_cpu_s": cpu,
        "client_cpu_us_per_req": cpu / max(1, ok + sum(tally.errors.values())) * 1e6,
        "_raw": tally.latencies,
    }


_CPU_AT_START = time.process_time()

WORKLOADS = {"put": run_put, "range": run_range, "watch": run_watch}


def _install_loop() -> None:
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _child(args, queue) -> None:
    _install_loop()
    try:
        queue.put(asyncio.run(WORKLOADS[args.workload](args)))
    except BaseException as exc:  # reported to the parent, which fails the run
        queue.put({"fatal": f"{type(exc).__name__}: {exc}"})


def _split(n: int | None, parts: int, k: int) -> int | None:
    if n is None:
        return None
    return n // parts + (1 if k < n % parts else 0)


def run_multiprocess(args) -> dict:
    """Splits clients, connections and --total over --procs processes and merges their results."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = []
    for k in range(args.procs):
        part = argparse.Namespace(**vars(args))
        part.clients = max(1, _split(args.clients, args.procs, k))
        part.conns = max(1, _split(args.conns, args.procs, k))
        part.total = _split(args.total, args.procs, k)
        part.rate = args.rate / args.procs if args.rate else None
        part.seed = args.seed + 1000 * k
        procs.append(ctx.Process(target=_child, args=(part, queue), daemon=True))
    for p in procs:
        p.start()
    try:
        results = [queue.get() for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        raise SystemExit("; ".join(fatal))
    raw = [x for r in results for x in r["_raw"]]
    errors: Counter = Counter()
    for r in results:
        errors.update(r["errors"])
    elapsed = max(r["elapsed_s"] for r in results)
    merged = dict(results[0])
    merged.update({
        "clients": args.clients,
        "conns": args.conns,
        "procs": args.procs,
        "requests_ok": len(raw),
        "requests_failed": sum(errors.values()),
        "elapsed_s": elapsed,
        "throughput": sum(r["throughput"] for r in results),
        "latency": latency_summary(raw),
        "errors": dict(errors),
        "client_cpu_s": sum(r["client_cpu_s"] for r in results),
    })
    merged["client_cpu_us_per_req"] = merged["client_cpu_s"] / max(1, len(raw) + sum(errors.values())) * 1e6
    return merged


def format_report(r: dict) -> str:
    lines = [f"{r['workload']}: {r['endpoints']}  clients={r['clients']} conns={r['conns']} procs={r['procs']}"
             f"  key={r['key_size']}B value={r['val_size']}B"]
    if r["workload"] == "watch":
        p = r["puts"]
        lines.append(f"  puts:      {r['requests_ok']} ok, {r['put_throughput']:.1f}/s, "
                     f"p50 {p['p50_ms']:.2f} ms, p99 {p['p99_ms']:.2f} ms")
        lines.append(f"  watchers:  {r['watchers']} on {r['watch_streams']} streams; "
                     f"events {r['events_received']}/{r['events_expected']} "
                     f"({r['events_missing']} missing), {r['events_per_sec']:.1f} events/s")
        lines.append(f"             {r['events_before_put_ack']} events arrived before their put's response "
                     "(counted as 0 ms after the ack)")
        s = r["delivery_after_send"]
        lines.append(f"  since put sent ms: mean {s['mean_ms']:.2f}  p50 {s['p50_ms']:.2f}  p90 {s['p90_ms']:.2f}  "
                     f"p99 {s['p99_ms']:.2f}  p99.9 {s['p999_ms']:.2f}  max {s['max_ms']:.2f}")
        label = "since put ack"
    else:
        lines.append(f"  requests:  {r['requests_ok']} ok, {r['requests_failed']} failed in {r['elapsed_s']:.2f} s")
        lines.append(f"  throughput: {r['throughput']:.1f} req/s  (client CPU {r['client_cpu_us_per_req']:.0f} us/req)")
        label = "latency"
    lat = r["latency"]
    lines.append(f"  {label} ms: mean {lat['mean_ms']:.2f}  p50 {lat['p50_ms']:.2f}  p90 {lat['p90_ms']:.2f}  "
                 f"p99 {lat['p99_ms']:.2f}  p99.9 {lat['p999_ms']:.2f}  max {lat['max_ms']:.2f}")
    for err, n in sorted(r["errors"].items(), key=lambda kv: -kv[1]):
        lines.append(f"  error x{n}: {err}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("load")
    g.add_argument("--endpoints", default="127.0.0.1:2379", help="comma-separated host:port (http:// allowed)")
    g.add_argument("--clients", type=int, default=1, help="concurrent request loops (default 1)")
    g.add_argument("--conns", type=int, default=1, help="gRPC connections the clients share (default 1)")
    g.add_argument("--procs", type=int, default=1, help="client processes (put and range only; default 1)")
    stop = g.add_mutually_exclusive_group()
    stop.add_argument("--total", type=int, help="requests to issue (default 10000 unless --duration)")
    stop.add_argument("--duration", type=float, help="seconds to run instead of --total")
    g.add_argument("--rate", type=float, help="cap on requests (watch: puts) per second, over all clients")
    g.add_argument("--key-size", type=int, default=8, help="digits of the key number after --prefix (default 8)")
    g.add_argument("--val-size", type=int, default=256, help="value bytes (default 256)")
    g.add_argument("--key-space", type=int, default=100000, help="distinct keys (default 100000)")
    g.add_argument("--sequential-keys", action="store_true", help="key number = op number mod key space")
    g.add_argument("--prefix", default="", help="key prefix (watch default: __loadgen_watch/)")
    g.add_argument("--timeout", type=float, default=30.0, help="per-request deadline, seconds")
    g.add_argument("--connect-timeout", type=float, default=10.0)
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--json", action="store_true", help="print one JSON object")
    sub = p.add_subparsers(dest="workload", required=True)
    sub.add_parser("put", parents=[common], help="Put requests")
    r = sub.add_parser("range", parents=[common], help="single-key Range requests")
    r.add_argument("--consistency", choices=["l", "s"], default="l", help="l: linearizable, s: serializable")
    r.add_argument("--key", help="read this one key every time (default: keys from the key space)")
    r.add_argument("--put-first", action="store_true", help="put --key once before reading it")
    w = sub.add_parser("watch", parents=[common], help="watch delivery latency and events/s")
    w.add_argument("--watchers", type=int, default=100, help="watchers on the prefix (default 100)")
    w.add_argument("--watch-streams", type=int, default=0, help="Watch streams they share (default: one each)")
    w.add_argument("--watch-wait", type=float, default=30.0,
                   help="seconds to wait for outstanding events after the last put (default 30)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.total is None and args.duration is None:
        args.total = 10000
    if args.clients < 1 or args.conns < 1 or args.procs < 1:
        raise SystemExit("--clients, --conns and --procs must be >= 1")
    if args.procs > 1:
        if args.workload == "watch":
            raise SystemExit("--procs applies to put and range only")
        report = run_multiprocess(args)
    else:
        _install_loop()
        report = asyncio.run(WORKLOADS[args.workload](args))
    report.pop("_raw", None)
    if args.json:
        print(json.dumps(report))
    else:
        print(format_report(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
