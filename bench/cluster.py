#!/usr/bin/env python3
"""Three-member clusters of the real etcd and of etcdx, measured in one run, side by side,
with the ratio etcdx/etcd.  The companion of compare.py (one member each).

Scenarios (--scenarios, comma-separated; default put,range,failover):
  put       Put throughput and latency with 1, 64 and 256 clients, 256 B values
            (etcd's Go benchmark tool given all three endpoints).
  range     Single-key Range, linearizable and serializable, 256 clients (Go tool, all endpoints).
  failover  With a steady put load on all members, kill -9 the leader and time (a) until a
            surviving member's Status names a new leader and (b) until the first put sent
            after the kill succeeds; the killed member is restarted and the round repeated
            (--failovers times); median and max are reported.

Both clusters are started with the same flags (etcd's, see CLUSTER_FLAGS), on free loopback
ports, with data dirs in a temporary directory under --data-root (default bench/out, the
real disk); both stay up during put and range, and each workload runs on one right after
the other (order alternating with --repeat).  Before put and range the leader is moved to
m1, the first endpoint, so the 1-client figures always talk to the leader.  A cluster that
fails to start or to form is reported and the other system's figures are kept.
Results go to bench/out/cluster-results-<timestamp>.json, server logs to bench/out/cluster-<timestamp>/.
"""
from __future__ import annotations

import argparse
import collections
import shlex
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import grpc

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import _procs  # noqa: E402
from _procs import ServerCluster, ServerStartError  # noqa: E402
from compare import GO_TOOL, KEY_SIZE, OUT_DIR, RANGE_KEY, VAL_SIZE, _fmt, _get, go_tool, \
    report, representative  # noqa: E402

from etcdx.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402  (bench/_procs put the repo on sys.path)

CLUSTER_FLAGS = ("--name {name} --data-dir {data_dir} --listen-client-urls {client_url} "
                 "--advertise-client-urls {client_url} --listen-peer-urls {peer_url} "
                 "--initial-advertise-peer-urls {peer_url} --initial-cluster {initial_cluster} "
                 "--initial-cluster-state new --initial-cluster-token {token} "
                 "--heartbeat-interval {heartbeat} --election-timeout {election}")
ETCD_CMD = "{etcd} " + CLUSTER_FLAGS
ETCDX_CMD = "{python} -m etcdx.main " + CLUSTER_FLAGS

SIZES = {
    "quick": dict(put1=300, put64=3000, put256=6000, range=6000, failovers=3),
    "full": dict(put1=10000, put64=60000, put256=150000, range=150000, failovers=7),
}

FAILOVER_KEYS = 1000  # the put load cycles over this many keys


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- failover

class PutLoad:
    """Puts of 256 B at a fixed rate, round-robin over the endpoints, each with its own deadline.

    Open loop: a put that hangs (its member lost the leader) does not hold back the next one,
    so the first success after a kill is seen within one period of it becoming possible.
    Every put's (sent, done, endpoint, error or None) is recorded, times from time.monotonic().
    """

    def __init__(self, endpoints: list[str], rate: float, deadline: float):
        opts = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
                ("grpc.max_reconnect_backoff_ms", 100), ("grpc.use_local_subchannel_pool", 1)]
        self.channels = [grpc.insecure_channel(ep, options=opts) for ep in endpoints]
        self.stubs = [(ep, rpc_pb2_grpc.KVStub(ch)) for ep, ch in zip(endpoints, self.channels)]
        self.period = 1.0 / rate
        self.deadline = deadline
        self.records: list[tuple[float, float, str, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="put-load", daemon=True)
        self._value = b"v" * VAL_SIZE

    def __enter__(self) -> PutLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        time.sleep(min(self.deadline, 0.5))  # let the last puts' callbacks land
        for ch in self.channels:
            ch.close()

    def _run(self) -> None:
        i = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            ep, stub = self.stubs[i % len(self.stubs)]
            req = rpc_pb2.PutRequest(key=f"__bench_failover/{i % FAILOVER_KEYS:06d}".encode(), value=self._value)
            sent = time.monotonic()
            fut = stub.Put.future(req, timeout=self.deadline)
            fut.add_done_callback(lambda f, sent=sent, ep=ep: self._done(f, sent, ep))
            i += 1
            next_at += self.period
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def _done(self, fut, sent: float, ep: str) -> None:
        done = time.monotonic()
        err = None
        if fut.cancelled():
            err = "cancelled"
        elif fut.exception() is not None:
            exc = fut.exception()
            err = f"{exc.code().name}: {exc.details()}"
        self.records.append((sent, done, ep, err))

    def first_success_sent_after(self, t: float) -> float | None:
        done = [d for s, d, _, err in list(self.records) if s >= t and err is None]
        return min(done) if done else None

    def successes_between(self, t0: float, t1: float) -> int:
        return sum(1 for s, d, _, err in list(self.records) if err is None and t0 <= d < t1)


def failover_round(cluster: ServerCluster, rate: float, settle: float, timeout: float) -> dict:
    """One kill -9 of the leader under a steady put load; see the module docstring."""
    leader, ids = cluster.leader(timeout)
    old_id = ids[leader.name]
    survivors = [m for m in cluster.members if m is not leader]
    res: dict = {"killed": leader.name}
    channels = {m.name: m.channel() for m in survivors}
    status_stubs = {name: rpc_pb2_grpc.MaintenanceStub(ch) for name, ch in channels.items()}
    try:
        with PutLoad(cluster.endpoints, rate, deadline=2.0) as load:
            t_settle = time.monotonic()
            time.sleep(settle)
            res["puts_ok_before_kill"] = load.successes_between(t_settle, time.monotonic())
            if res["puts_ok_before_kill"] == 0:
                raise RuntimeError(f"no put succeeded in the {settle}s before the kill")
            t_kill = time.monotonic()
            leader.stop(signal.SIGKILL, timeout=10)
            res["kill_s"] = time.monotonic() - t_kill
            deadline = t_kill + timeout
            new_leader_at = first_put_at = None
            while time.monotonic() < deadline and (new_leader_at is None or first_put_at is None):
                if new_leader_at is None:
                    for name, stub in status_stubs.items():
                        try:
                            st = stub.Status(rpc_pb2.StatusRequest(), timeout=0.2)
                        except grpc.RpcError:
                            continue
                        if st.leader not in (0, old_id):
                            new_leader_at = time.monotonic()
                            res["new_leader"] = next((n for n, i in ids.items() if i == st.leader), f"{st.leader:x}")
                            res["reported_by"] = name
                            break
                if first_put_at is None:
                    first_put_at = load.first_success_sent_after(t_kill)
                time.sleep(0.005)
        after = [err for s, d, ep, err in load.records if s >= t_kill and (first_put_at is None or d <= first_put_at)]
        res["put_errors_after_kill"] = dict(collections.Counter(e for e in after if e))
    finally:
        for ch in channels.values():
            ch.close()
    if new_leader_at is not None:
        res["new_leader_s"] = new_leader_at - t_kill
    if first_put_at is not None:
        res["first_put_s"] = first_put_at - t_kill
    if new_leader_at is None or first_put_at is None:
        res["failure"] = f"no {'new leader' if new_leader_at is None else 'successful put'} within {timeout}s"
    # Bring the killed member back on its data dir, and wait until the cluster agrees on a leader.
    leader.start()
    res["rejoin_s"] = leader.wait_ready(timeout)
    cluster.leader(timeout)
    return res


def summarize_failover(rounds: list[dict]) -> dict:
    out: dict = {"rounds": rounds, "rounds_ok": sum(1 for r in rounds if "failure" not in r)}
    for key in ("new_leader_s", "first_put_s"):
        vals = [r[key] for r in rounds if key in r]
        if vals:
            out[f"{key}_median"] = statistics.median(vals)
            out[f"{key}_max"] = max(vals)
    return out


# ----------------------------------------------------------------------------- runner

class Runner:
    def __init__(self, args):
        self.args = args
        self.sizes = dict(SIZES["quick" if args.quick else "full"])
        if args.failovers is not None:
            self.sizes["failovers"] = args.failovers

    def put(self, cluster: ServerCluster, clients: int, conns: int, total: int) -> dict:
        return go_tool(",".join(cluster.endpoints), clients, conns,
                       ["put", "--key-size", str(KEY_SIZE), "--val-size", str(VAL_SIZE), "--total", str(total),
                        "--sequential-keys", "--key-space-size", str(total)], self.args.workload_timeout)

    def range(self, cluster: ServerCluster, consistency: str, total: int) -> dict:
        return go_tool(",".join(cluster.endpoints), 256, 16,
                       ["range", RANGE_KEY, "--consistency", consistency, "--total", str(total)],
                       self.args.workload_timeout)

    def scenario_put(self, cluster: ServerCluster) -> dict:
        s = self.sizes
        return {"put_c1": self.put(cluster, 1, 1, s["put1"]),
                "put_c64": self.put(cluster, 64, 8, s["put64"]),
                "put_c256": self.put(cluster, 256, 16, s["put256"])}

    def scenario_range(self, cluster: ServerCluster) -> dict:
        cluster.members[0].put(RANGE_KEY.encode(), b"v" * VAL_SIZE)
        return {"range_l_c256": self.range(cluster, "l", self.sizes["range"]),
                "range_s_c256": self.range(cluster, "s", self.sizes["range"])}

    def run_all(self, systems: dict[str, str], workdir: Path, data_root: Path) -> list[dict]:
        outs = {label: {"label": label, "template": t, "workloads": {}, "runs": {}, "failures": {}}
                for label, t in systems.items()}
        clusters = {label: ServerCluster(label, t, workdir, size=self.args.size, data_root=data_root)
                    for label, t in systems.items()}
        for label, c in clusters.items():
            outs[label]["commands"] = [shlex.join(m.command()) for m in c.members]
        try:
            for label, c in clusters.items():  # one at a time: start time is a figure too
                self._start(c, outs[label])
            up = [label for label in clusters if "start" not in outs[label]["failures"]]
            online = [s for s in self.args.scenarios if s != "failover"]
            for label in up:
                if online:
                    self._lead_with_first(clusters[label], outs[label])
            for name in online:
                for rep in range(self.args.repeat):
                    for label in (up if rep % 2 == 0 else list(reversed(up))):
                        self._run_scenario(name, rep, clusters[label], outs[label])
            for out in outs.values():
                for wid, runs in out["runs"].items():
                    out["workloads"][wid] = representative(wid, runs)
            if "failover" in self.args.scenarios:
                for label in up:
                    self._run_failover(clusters[label], outs[label])
        finally:
            for c in clusters.values():
                c.stop(signal.SIGKILL, timeout=10)
        return list(outs.values())

    def _start(self, c: ServerCluster, out: dict) -> None:
        log(f"{c.label}: starting {len(c.members)} members")
        try:
            start_s = c.start(self.args.start_timeout)
            c.verify(self.args.start_timeout)
            out["start_s"] = start_s
            out["idle_memory_kib"] = sum(m.memory().get("VmRSS", 0) for m in c.members)
            log(f"  {c.label}: all members ready after {out['start_s']:.2f}s")
        except (ServerStartError, grpc.RpcError) as exc:
            msg = exc.details() if isinstance(exc, grpc.RpcError) else str(exc)
            out["failures"]["start"] = f"{msg}\n{c.log_tails()}"
            log(f"  {c.label} cluster failed to start: {msg.splitlines()[0] if msg else exc!r}")
            c.stop(signal.SIGKILL, timeout=10)

    def _lead_with_first(self, c: ServerCluster, out: dict) -> None:
        """Leader on m1, the Go tool's first endpoint (its only one with one connection)."""
        try:
            c.move_leader(c.members[0], self.args.start_timeout)
            out["leader_for_put_range"] = c.members[0].name
        except (ServerStartError, grpc.RpcError) as exc:
            out["leader_for_put_range"] = None
            log(f"  {c.label}: could not move the leader to m1 ({exc}); the 1-client figures may talk to a follower")

    def _run_scenario(self, name: str, rep: int, c: ServerCluster, out: dict) -> None:
        try:
            dead = [m.label for m in c.members if not m.running()]
            if dead:
                raise ServerStartError(f"members not running: {dead}\n{c.log_tails()}")
            log(f"{c.label}: {name}" + (f" (repetition {rep + 1}/{self.args.repeat})" if self.args.repeat > 1 else ""))
            results = getattr(self, f"scenario_{name}")(c)
        except Exception as exc:  # a scenario that breaks must not stop the others
            out["failures"][name] = f"{type(exc).__name__}: {exc}"
            log(f"  {name} failed: {exc}")
            return
        for wid, r in results.items():
            if "failure" in r:
                log(f"  {wid}: FAILED {r['failure'][:300]}")
            else:
                log(f"  {wid}: {r['throughput']:.0f} req/s, p50 {r.get('p50_ms', 0):.2f} ms, "
                    f"p99 {r.get('p99_ms', 0):.2f} ms, errors {sum(r.get('errors', {}).values())}")
            out["runs"].setdefault(wid, []).append(r)

    def _run_failover(self, c: ServerCluster, out: dict) -> None:
        rounds = []
        log(f"{c.label}: failover, {self.sizes['failovers']} rounds")
        for i in range(self.sizes["failovers"]):
            try:
                r = failover_round(c, self.args.failover_rate, self.args.failover_settle, self.args.failover_timeout)
            except Exception as exc:  # e.g. the killed member does not come back: no more rounds
                out["failures"]["failover"] = f"round {i + 1}: {type(exc).__name__}: {exc}\n{c.log_tails()}"
                log(f"  round {i + 1} failed: {exc}")
                break
            rounds.append(r)
            log(f"  round {i + 1}: killed {r['killed']}; new leader {r.get('new_leader', '-')} after "
                f"{_fmt(r.get('new_leader_s'))} s, first put after {_fmt(r.get('first_put_s'))} s"
                + (f"; {r['failure']}" if "failure" in r else ""))
        out["failover"] = summarize_failover(rounds)


# ----------------------------------------------------------------------------- report

ROWS = [
    ("cluster start to all members ready: s", "start_s", None),
    ("idle RSS, all members: MiB", "idle_memory_kib", lambda k: k / 1024),
    ("put 1 client: req/s", "workloads.put_c1.throughput", None),
    ("put 1 client: p50 ms", "workloads.put_c1.p50_ms", None),
    ("put 1 client: p99 ms", "workloads.put_c1.p99_ms", None),
    ("put 64 clients: req/s", "workloads.put_c64.throughput", None),
    ("put 64 clients: p99 ms", "workloads.put_c64.p99_ms", None),
    ("put 256 clients: req/s", "workloads.put_c256.throughput", None),
    ("put 256 clients: p99 ms", "workloads.put_c256.p99_ms", None),
    ("range linearizable 256c: req/s", "workloads.range_l_c256.throughput", None),
    ("range linearizable 256c: p99 ms", "workloads.range_l_c256.p99_ms", None),
    ("range serializable 256c: req/s", "workloads.range_s_c256.throughput", None),
    ("range serializable 256c: p99 ms", "workloads.range_s_c256.p99_ms", None),
    ("failover kill to new leader: median s", "failover.new_leader_s_median", None),
    ("failover kill to new leader: max s", "failover.new_leader_s_max", None),
    ("failover kill to first put: median s", "failover.first_put_s_median", None),
    ("failover kill to first put: max s", "failover.first_put_s_max", None),
    ("failover rounds completed", "failover.rounds_ok", None),
]


def table_rows(systems: list[dict]) -> list[dict]:
    rows = []
    for label, path, fn in ROWS:
        vals = []
        for sysres in systems:
            v = _get(sysres, path)
            if path.startswith("workloads.") and "failure" in (_get(sysres, path.rsplit(".", 1)[0]) or {}):
                v = None
            vals.append(fn(v) if v is not None and fn else v)
        if all(v is None for v in vals):
            continue
        ratios = [v / vals[0] if vals[0] and v is not None else None for v in vals[1:]]
        rows.append({"metric": label, "values": vals, "ratios": ratios})
    loads = []
    for sysres in systems:
        xs = [x for r in sysres.get("workloads", {}).values() for x in r.get("load_avg_1m", [])]
        loads.append(sum(xs) / len(xs) if xs else None)
    if any(v is not None for v in loads):
        rows.append({"metric": "machine load avg 1m during runs", "values": loads, "ratios": [None] * (len(loads) - 1)})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small totals and 3 failovers (a smoke run of a minute or two)")
    p.add_argument("--scenarios", default="put,range,failover", help="comma-separated: put,range,failover")
    p.add_argument("--systems", default="etcd,etcdx",
                   help="which clusters, in order; ratios are against the first (default etcd,etcdx)")
    p.add_argument("--size", type=int, default=3, help="members per cluster (default 3)")
    p.add_argument("--heartbeat-interval", type=int, default=100, help="ms, passed to every member (etcd's default 100)")
    p.add_argument("--election-timeout", type=int, default=1000, help="ms, passed to every member (etcd's default 1000)")
    p.add_argument("--failovers", type=int, help="failover rounds per system (default 7; --quick 3)")
    p.add_argument("--failover-rate", type=float, default=200.0, help="puts/s of the load during failover (default 200)")
    p.add_argument("--failover-settle", type=float, default=1.0, help="seconds of load before each kill (default 1)")
    p.add_argument("--failover-timeout", type=float, default=30.0,
                   help="seconds to wait for a new leader / a successful put after a kill (default 30)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each put/range workload N times per system, alternating the order; the median run counts")
    p.add_argument("--start-timeout", type=float, default=120.0, help="seconds for a cluster to start and agree on a leader")
    p.add_argument("--workload-timeout", type=float, default=600.0, help="seconds per put/range run")
    p.add_argument("--data-root", default=str(OUT_DIR),
                   help="the members' data dirs go in a temporary directory under this one (default bench/out)")
    p.add_argument("--keep-data", action="store_true", help="keep the data dirs")
    p.add_argument("--etcd-cmd", default=ETCD_CMD, help=argparse.SUPPRESS)
    p.add_argument("--etcdx-cmd", default=ETCDX_CMD, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    known = {"put", "range", "failover"}
    if set(args.scenarios) - known:
        raise SystemExit(f"unknown scenarios {sorted(set(args.scenarios) - known)}; known: {sorted(known)}")
    systems = [s for s in args.systems.split(",") if s]
    timing = {"heartbeat": str(args.heartbeat_interval), "election": str(args.election_timeout)}
    templates = {"etcd": args.etcd_cmd, "etcdx": args.etcdx_cmd}
    if not systems or set(systems) - set(templates):
        raise SystemExit("--systems takes etcd and etcdx")
    if {"put", "range"} & set(args.scenarios) and not GO_TOOL.exists():
        raise SystemExit(f"{GO_TOOL} missing: /work/shared/tools/build-etcd-benchmark.sh {GO_TOOL}")

    runner = Runner(args)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    workdir = OUT_DIR / f"cluster-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    Path(args.data_root).mkdir(parents=True, exist_ok=True)
    data_root = Path(tempfile.mkdtemp(prefix=f"cluster-data-{stamp}-", dir=args.data_root))
    log(f"{args.size} members per system; scenarios {','.join(args.scenarios)}; sizes {runner.sizes}; "
        f"logs in {workdir}, data in {data_root}")
    try:
        results = runner.run_all({label: templates[label].format_map(_Partial(timing)) for label in systems},
                                 workdir, data_root)
    except KeyboardInterrupt:
        log("interrupted; servers stopped")
        raise
    finally:
        _procs._kill_all_groups()
        if not args.keep_data:
            shutil.rmtree(data_root, ignore_errors=True)

    return report(results, table_rows(results), systems, OUT_DIR / f"cluster-results-{stamp}.json",
                  failure_tail=3000, meta={"started": stamp, "quick": args.quick, "repeat": args.repeat,
                                           "size": args.size, "scenarios": args.scenarios, "sizes": runner.sizes,
                                           "timing_ms": timing})


class _Partial(dict):
    """format_map helper: fills the timing placeholders, leaves the per-member ones for _procs."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


if __name__ == "__main__":
    sys.exit(main())
