#!/usr/bin/env python3
"""Runs the same workloads against the real etcd and against etcdx and prints each figure
side by side with the ratio etcdx/etcd.  Both servers are up during the put/range/watch
scenarios and each workload runs on one right after the other (the machine is shared and
its load drifts); the bulk scenario runs on a fresh server per system, one after the other.

Scenarios (--scenarios, comma-separated; default put,range,watch,auth,tls,bulk):
  put      Put throughput and latency with 1, 64 and 256 clients (etcd's Go benchmark tool).
  range    Single-key Range, linearizable and serializable, 256 clients (Go tool).
  auth     Put (64 clients) and Range (256 clients) as a user that is not root, with a simple
           token on every request and a key-range grant checked (Go tool, --user); auth is
           turned on for the scenario and off after it.
  tls      Put (64 clients) and Range (256 clients) over mutual TLS: a second server per system
           on an https client URL with --client-cert-auth (ECDSA P-256 certificates made for
           the run), the Go tool presenting a client certificate.
  watch    Watch delivery latency at a fixed put rate, and events/s unthrottled (bench/loadgen.py).
  loadgen  Put and serializable Range at 64 clients driven by bench/loadgen.py (the Python client).
  bulk     Load --keys keys of 256 B, then RSS and data-dir size, SIGTERM, restart, time to
           the first successful Range, and the key count after the restart.

Each server starts on a fresh data dir on free loopback ports.  Throughput and
latency come from etcd's Go tool at bench/out/benchmark when it exists (build it with
/work/shared/tools/build-etcd-benchmark.sh bench/out/benchmark), else from loadgen.py.
Results go to bench/out/results-<timestamp>.json as well.  Three-member clusters (put,
range and leader failover) are measured by bench/cluster.py, which reuses this file's tools.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import _procs  # noqa: E402
from _procs import Server, ServerStartError, run_tool  # noqa: E402

OUT_DIR = BENCH_DIR / "out"
GO_TOOL = OUT_DIR / "benchmark"
LOADGEN = BENCH_DIR / "loadgen.py"

_FLAGS = ("--name {name} --data-dir {data_dir} --listen-client-urls {client_url} "
          "--advertise-client-urls {client_url} --listen-peer-urls {peer_url} "
          "--initial-advertise-peer-urls {peer_url} --initial-cluster {name}={peer_url}")
ETCD_CMD = "{etcd} " + _FLAGS
ETCDX_CMD = "{python} -m etcdx.main " + _FLAGS

VAL_SIZE = 256
KEY_SIZE = 8
RANGE_KEY = "bench-range-key"
AUTH_USER, AUTH_PASSWORD = "bench", "benchpw"

# Per scenario: totals for --quick and for a full run.
SIZES = {
    "quick": dict(put1=300, put64=3000, put256=6000, range=6000, watch_lat=200, watch_rate=100,
                  watch_watchers=20, watch_thru=500, keys=20000, loadgen=3000),
    "full": dict(put1=10000, put64=60000, put256=150000, range=150000, watch_lat=2000, watch_rate=200,
                 watch_watchers=50, watch_thru=4000, keys=1000000, loadgen=30000),
}


# ----------------------------------------------------------------------------- tools

def parse_go_benchmark(out: str) -> dict:
    """Figures from the Summary / Latency distribution / Error distribution of etcd's Go tool."""
    res: dict = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m:
        res["throughput"] = float(m.group(1))
    m = re.search(r"Total:\s+([\d.]+) secs", out)
    if m:
        res["elapsed_s"] = float(m.group(1))
    for name, key in (("Slowest", "max_ms"), ("Average", "mean_ms")):
        m = re.search(rf"{name}:\s+([\d.]+) secs", out)
        if m:
            res[key] = float(m.group(1)) * 1000
    for pct, secs in re.findall(r"^\s*([\d.]+)% in ([\d.]+) secs", out, re.M):
        res[f"p{pct.replace('.', '')}_ms"] = float(secs) * 1000
    errs = {}
    if "Error distribution" in out:
        for n, msg in re.findall(r"^\s*\[(\d+)\]\s+(.+)$", out.split("Error distribution", 1)[1], re.M):
            errs[msg.strip()] = int(n)
    res["errors"] = errs
    return res


def go_tool(endpoint: str, clients: int, conns: int, sub: list[str], timeout: float) -> dict:
    cmd = [str(GO_TOOL), "--endpoints", endpoint, "--clients", str(clients), "--conns", str(conns),
           "--precise", *sub]
    load_before = os.getloadavg()[0]
    code, out, timed_out = run_tool(cmd, timeout)
    res = parse_go_benchmark(out)
    res["load_avg_1m"] = [load_before, os.getloadavg()[0]]
    res.update({"tool": "go", "command": shlex.join(cmd), "exit_code": code, "timed_out": timed_out})
    if code != 0 or "throughput" not in res:
        res["failure"] = ("timed out" if timed_out else f"exit code {code}") + ": " + out[-800:]
    return res


def loadgen(endpoint: str, workload: str, opts: list[str], timeout: float) -> dict:
    cmd = [sys.executable, str(LOADGEN), workload, "--endpoints", endpoint, "--json", *opts]
    load_before = os.getloadavg()[0]
    code, out, timed_out = run_tool(cmd, timeout)
    res: dict = {"load_avg_1m": [load_before, os.getloadavg()[0]]}
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            res = json.loads(line)
            break
    if res:
        lat = res.get("latency", {})
        res.update({k: v for k, v in lat.items() if k.endswith("_ms")})
    res.update({"tool": "loadgen", "command": shlex.join(cmd), "exit_code": code, "timed_out": timed_out})
    if code != 0 or "throughput" not in res:
        res["failure"] = ("timed out" if timed_out else f"exit code {code}") + ": " + out[-800:]
    return res


def with_cpu(srv: Server, total: int, run) -> dict:
    """``run()``'s result with the server's CPU per request (all its processes, from /proc)."""
    before = srv.cpu_seconds()
    res = run()
    res["server_cpu_us_per_req"] = (srv.cpu_seconds() - before) * 1e6 / total
    return res


# ----------------------------------------------------------------------------- scenarios

class Runner:
    def __init__(self, args):
        self.args = args
        self.sizes = dict(SIZES["quick" if args.quick else "full"])
        if args.keys:
            self.sizes["keys"] = args.keys
        self.use_go = args.tool == "go" or (args.tool == "auto" and GO_TOOL.exists())
        if args.tool == "go" and not GO_TOOL.exists():
            raise SystemExit(f"{GO_TOOL} missing: /work/shared/tools/build-etcd-benchmark.sh {GO_TOOL}")
        self.timeout = args.workload_timeout
        self.workdir: Path | None = None
        self._tls_twins: dict[str, Server] = {}
        self._tls_files = None

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def put(self, srv: Server, clients: int, conns: int, total: int, flags: list[str] = ()) -> dict:
        """Puts of fresh keys; ``flags`` go to the Go tool before the command (--user, TLS files)."""
        if self.use_go:
            return with_cpu(srv, total, lambda: go_tool(
                srv.endpoint, clients, conns, [*flags, "put", "--key-size", str(KEY_SIZE), "--val-size",
                                               str(VAL_SIZE), "--total", str(total), "--sequential-keys",
                                               "--key-space-size", str(total)], self.timeout))
        return with_cpu(srv, total, lambda: loadgen(srv.endpoint, "put", self._py_opts(clients, conns, total) +
                                                    ["--sequential-keys", "--key-space", str(total)], self.timeout))

    def range(self, srv: Server, consistency: str, clients: int, conns: int, total: int,
              flags: list[str] = ()) -> dict:
        if self.use_go:
            return with_cpu(srv, total, lambda: go_tool(
                srv.endpoint, clients, conns, [*flags, "range", RANGE_KEY, "--consistency", consistency,
                                               "--total", str(total)], self.timeout))
        return with_cpu(srv, total, lambda: loadgen(srv.endpoint, "range", self._py_opts(clients, conns, total) +
                                                    ["--consistency", consistency, "--key", RANGE_KEY], self.timeout))

    def _py_opts(self, clients, conns, total) -> list[str]:
        procs = 2 if clients >= 64 else 1  # one Python process tops out near 9-10k RPC/s
        return ["--clients", str(clients), "--conns", str(conns), "--total", str(total), "--procs", str(procs),
                "--key-size", str(KEY_SIZE), "--val-size", str(VAL_SIZE)]

    # A scenario returns {workload id: result dict}.
    def scenario_put(self, srv: Server) -> dict:
        s = self.sizes
        return {
            "put_c1": self.put(srv, 1, 1, s["put1"]),
            "put_c64": self.put(srv, 64, 8, s["put64"]),
            "put_c256": self.put(srv, 256, 16, s["put256"]),
        }

    def scenario_range(self, srv: Server) -> dict:
        srv.put(RANGE_KEY.encode(), b"v" * VAL_SIZE)
        s = self.sizes
        return {
            "range_l_c256": self.range(srv, "l", 256, 16, s["range"]),
            "range_s_c256": self.range(srv, "s", 256, 16, s["range"]),
        }

    def scenario_auth(self, srv: Server) -> dict:
        if not self.use_go:
            raise RuntimeError("the auth scenario needs etcd's Go benchmark tool (it logs in with --user)")
        s = self.sizes
        user = ["--user", f"{AUTH_USER}:{AUTH_PASSWORD}"]
        srv.put(RANGE_KEY.encode(), b"v" * VAL_SIZE)
        srv.auth_on(AUTH_USER, AUTH_PASSWORD)
        try:
            return {
                "auth_put_c64": self.put(srv, 64, 8, s["put64"], flags=user),
                "auth_range_l_c256": self.range(srv, "l", 256, 16, s["range"], flags=user),
                "auth_range_s_c256": self.range(srv, "s", 256, 16, s["range"], flags=user),
            }
        finally:
            srv.auth_off(AUTH_PASSWORD)

    def scenario_tls(self, srv: Server) -> dict:
        if not self.use_go:
            raise RuntimeError("the tls scenario needs etcd's Go benchmark tool (--cacert/--cert/--key)")
        twin = self._tls_twin(srv)
        s, tls = self.sizes, twin.tool_flags()
        twin.put(RANGE_KEY.encode(), b"v" * VAL_SIZE)
        return {
            "tls_put_c64": self.put(twin, 64, 8, s["put64"], flags=tls),
            "tls_range_l_c256": self.range(twin, "l", 256, 16, s["range"], flags=tls),
        }

    def _tls_twin(self, srv: Server) -> Server:
        """The same system serving https with client-certificate auth, started on first use."""
        twin = self._tls_twins.get(srv.label)
        if twin is None:
            from etcdx.testing.tls import make_tls_files

            if self._tls_files is None:
                self._tls_files = make_tls_files(self.workdir / "tls")
            twin = Server(srv.label + "-tls", srv.template, self.workdir, tls=self._tls_files)
            self._tls_twins[srv.label] = twin
            twin.start(fresh=True)
            twin.wait_ready(self.args.start_timeout)
        elif not twin.running():
            twin.start()
            twin.wait_ready(self.args.start_timeout)
        return twin

    def scenario_watch(self, srv: Server) -> dict:
        s = self.sizes
        common = ["--clients", "8", "--conns", "4", "--key-size", str(KEY_SIZE), "--val-size", str(VAL_SIZE),
                  "--watch-wait", "30"]
        lat = loadgen(srv.endpoint, "watch", common + [
            "--total", str(s["watch_lat"]), "--rate", str(s["watch_rate"]), "--watchers", str(s["watch_watchers"]),
            "--prefix", "__bench_watch_lat/"], self.timeout)
        thru = loadgen(srv.endpoint, "watch", common + [
            "--total", str(s["watch_thru"]), "--watchers", "50", "--watch-streams", "10",
            "--prefix", "__bench_watch_thru/"], self.timeout)
        return {"watch_latency": lat, "watch_throughput": thru}

    def scenario_loadgen(self, srv: Server) -> dict:
        n = self.sizes["loadgen"]
        srv.put(RANGE_KEY.encode(), b"v" * VAL_SIZE)
        base = ["--clients", "64", "--conns", "8", "--total", str(n), "--key-size", str(KEY_SIZE),
                "--val-size", str(VAL_SIZE)]
        return {
            "py_put_c64": loadgen(srv.endpoint, "put", base + ["--sequential-keys", "--key-space", str(n)],
                                  self.timeout),
            "py_range_s_c64": loadgen(srv.endpoint, "range", base + ["--consistency", "s", "--key", RANGE_KEY],
                                      self.timeout),
        }

    def scenario_bulk(self, srv: Server) -> dict:
        """Fresh server, --keys puts of 256 B, then memory, disk, restart time."""
        n = self.sizes["keys"]
        res: dict = {"keys_requested": n}
        srv.start(fresh=True)
        res["fresh_start_s"] = srv.wait_ready(self.args.start_timeout)
        res["idle_memory_kib"] = srv.memory()
        self.log(f"  bulk: loading {n} keys of {VAL_SIZE} B into {srv.label}")
        t0 = time.monotonic()
        if self.use_go:
            load = go_tool(srv.endpoint, 256, 16, ["put", "--key-size", str(KEY_SIZE), "--val-size", str(VAL_SIZE),
                                                   "--total", str(n), "--sequential-keys", "--key-space-size", str(n)],
                           self.args.bulk_timeout)
        else:
            load = loadgen(srv.endpoint, "put", ["--clients", "256", "--conns", "16", "--procs", "2",
                                                 "--total", str(n), "--sequential-keys", "--key-space", str(n),
                                                 "--key-size", str(KEY_SIZE), "--val-size", str(VAL_SIZE)],
                           self.args.bulk_timeout)
        res["load"] = load
        res["load_wall_s"] = time.monotonic() - t0
        if not srv.running():
            raise ServerStartError(f"{srv.label} died during the bulk load\n{srv.log_tail()}")
        res["keys_loaded"] = srv.count_keys()
        time.sleep(1.0)  # let a just-finished batch settle before reading memory and disk
        res["memory_kib"] = srv.memory()
        res["data_dir_bytes"] = _procs.dir_size_bytes(srv.data_dir)
        res["data_dir_apparent_bytes"] = _procs.dir_apparent_bytes(srv.data_dir)
        code, res["stop_s"] = srv.stop(signal.SIGTERM, timeout=60)
        res["stop_exit_code"] = code
        res["data_dir_bytes_after_stop"] = _procs.dir_size_bytes(srv.data_dir)
        srv.start()
        res["restart_s"] = srv.wait_ready(self.args.start_timeout)
        res["memory_after_restart_kib"] = srv.memory()
        t0 = time.monotonic()
        res["keys_after_restart"] = srv.count_keys()
        res["count_all_keys_s"] = time.monotonic() - t0
        res["memory_after_count_kib"] = srv.memory()
        return res

    # ------------------------------------------------------------------------- per system

    def run_all(self, systems: dict[str, str], workdir: Path) -> list[dict]:
        """Runs every scenario on every system, interleaved.

        The machine is shared, so background load drifts over minutes: each online
        workload runs on one system right after the other (order alternating between
        repetitions), so a pair of figures is measured under the same conditions.
        The bulk scenario needs a fresh server each and runs system after system.
        """
        outs = {label: {"label": label, "template": t, "workloads": {}, "runs": {}, "failures": {}}
                for label, t in systems.items()}
        self.workdir = workdir
        servers = {label: Server(label, t, workdir) for label, t in systems.items()}
        for label, srv in servers.items():
            outs[label]["command"] = shlex.join(srv.command())
        online = [s for s in self.args.scenarios if s != "bulk"]
        try:
            if online:
                for label, srv in servers.items():  # one at a time: start time is a figure too
                    try:
                        srv.start(fresh=True)
                        outs[label]["start_s"] = srv.wait_ready(self.args.start_timeout)
                        outs[label]["idle_memory_kib"] = srv.memory()
                    except ServerStartError as exc:
                        outs[label]["failures"]["start"] = str(exc)
                        self.log(f"  {label} failed to start: {exc}")
                        srv.stop(signal.SIGKILL, timeout=10)
                for name in online:
                    for rep in range(self.args.repeat):
                        order = list(servers) if rep % 2 == 0 else list(reversed(servers))
                        for label in order:
                            self._run_scenario(name, rep, servers[label], outs[label])
                for out in outs.values():
                    for wid, runs in out["runs"].items():
                        out["workloads"][wid] = representative(wid, runs)
                for srv in [*servers.values(), *self._tls_twins.values()]:
                    srv.stop(signal.SIGTERM, timeout=30)
            if "bulk" in self.args.scenarios:
                for label, template in systems.items():
                    if label not in self.args.bulk_systems:
                        continue
                    self._run_bulk(label, template, workdir, outs[label])
        finally:
            for srv in [*servers.values(), *self._tls_twins.values()]:
                srv.stop(signal.SIGKILL, timeout=10)
                if not self.args.keep_data:
                    shutil.rmtree(srv.data_dir, ignore_errors=True)
        return list(outs.values())

    def _run_scenario(self, name: str, rep: int, srv: Server, out: dict) -> None:
        label = srv.label
        if "start" in out["failures"]:
            return
        try:
            if not srv.running():
                self.log(f"  {label} is not running (exit code {srv.proc.returncode}); restarting it for {name}")
                out["failures"].setdefault("crashed", f"before {name}: {srv.log_tail()}")
                srv.start()
                srv.wait_ready(self.args.start_timeout)
            self.log(f"{label}: {name}" + (f" (repetition {rep + 1}/{self.args.repeat})" if self.args.repeat > 1 else ""))
            results = getattr(self, f"scenario_{name}")(srv)
        except Exception as exc:  # a scenario that breaks must not stop the others
            out["failures"][name] = f"{type(exc).__name__}: {exc}"
            self.log(f"  {name} failed: {exc}")
            return
        for wid, r in results.items():
            self._print_line(label, wid, r)
            out["runs"].setdefault(wid, []).append(r)

    def _run_bulk(self, label: str, template: str, workdir: Path, out: dict) -> None:
        self.log(f"{label}: bulk")
        bulk_srv = Server(label + "-bulk", template, workdir)
        try:
            out["bulk"] = self.scenario_bulk(bulk_srv)
            self._print_bulk(label, out["bulk"])
        except Exception as exc:
            out["failures"]["bulk"] = f"{type(exc).__name__}: {exc}"
            self.log(f"  bulk failed: {exc}")
        finally:
            bulk_srv.stop(signal.SIGKILL, timeout=10)
            if not self.args.keep_data:
                shutil.rmtree(bulk_srv.data_dir, ignore_errors=True)

    def _print_line(self, label: str, wid: str, r: dict) -> None:
        if "failure" in r:
            self.log(f"  {wid}: FAILED {r['failure'][:300]}")
        elif wid.startswith("watch"):
            d = r.get("delivery_after_send", {})
            self.log(f"  {wid}: {r.get('events_per_sec', 0):.0f} events/s, delivery p50 {d.get('p50_ms', 0):.2f} ms"
                     f" p99 {d.get('p99_ms', 0):.2f} ms, missing {r.get('events_missing')}")
        else:
            self.log(f"  {wid}: {r['throughput']:.0f} req/s, p50 {r.get('p50_ms', 0):.2f} ms, "
                     f"p99 {r.get('p99_ms', 0):.2f} ms, errors {sum(r.get('errors', {}).values())}, "
                     f"machine load {r['load_avg_1m'][0]:.1f}->{r['load_avg_1m'][1]:.1f}")

    def _print_bulk(self, label: str, b: dict) -> None:
        self.log(f"  bulk: {b['keys_loaded']} keys, {b['load'].get('throughput', 0):.0f} puts/s, "
                 f"RSS {b['memory_kib'].get('VmRSS', 0) / 1024:.0f} MiB, "
                 f"data dir {b['data_dir_bytes'] / 2**20:.0f} MiB, restart {b['restart_s']:.2f} s")


# ----------------------------------------------------------------------------- report

def representative(wid: str, runs: list[dict]) -> dict:
    """The median run of a workload's repetitions, ranked by its main figure.

    With two runs this is the better one.  Failed runs rank last.  Main figure:
    delivery p50 for the fixed-rate watch, throughput for everything else.
    """
    def goodness(r: dict) -> float:
        if "failure" in r:
            return float("-inf")
        if wid == "watch_latency":
            return -(_get(r, "delivery_after_send.p50_ms") or float("inf"))
        return r.get("throughput", 0.0)

    ranked = sorted(runs, key=goodness, reverse=True)
    chosen = dict(ranked[(len(ranked) - 1) // 2])
    chosen["repetitions"] = len(runs)
    return chosen


def _get(d: dict, path: str):
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _mib(kib):
    return None if kib is None else kib / 1024


ROWS = [
    # (metric label, path in a system's result, transform)
    ("put 1 client: req/s", "workloads.put_c1.throughput", None),
    ("put 1 client: p50 ms", "workloads.put_c1.p50_ms", None),
    ("put 1 client: p99 ms", "workloads.put_c1.p99_ms", None),
    ("put 1 client: server CPU us/req", "workloads.put_c1.server_cpu_us_per_req", None),
    ("put 64 clients: req/s", "workloads.put_c64.throughput", None),
    ("put 64 clients: p50 ms", "workloads.put_c64.p50_ms", None),
    ("put 64 clients: p99 ms", "workloads.put_c64.p99_ms", None),
    ("put 64 clients: server CPU us/req", "workloads.put_c64.server_cpu_us_per_req", None),
    ("put 256 clients: req/s", "workloads.put_c256.throughput", None),
    ("put 256 clients: p50 ms", "workloads.put_c256.p50_ms", None),
    ("put 256 clients: p99 ms", "workloads.put_c256.p99_ms", None),
    ("put 256 clients: server CPU us/req", "workloads.put_c256.server_cpu_us_per_req", None),
    ("range linearizable 256c: req/s", "workloads.range_l_c256.throughput", None),
    ("range linearizable 256c: p99 ms", "workloads.range_l_c256.p99_ms", None),
    ("range linearizable 256c: server CPU us/req", "workloads.range_l_c256.server_cpu_us_per_req", None),
    ("range serializable 256c: req/s", "workloads.range_s_c256.throughput", None),
    ("range serializable 256c: p99 ms", "workloads.range_s_c256.p99_ms", None),
    ("range serializable 256c: server CPU us/req", "workloads.range_s_c256.server_cpu_us_per_req", None),
    ("put 64 clients, user token: req/s", "workloads.auth_put_c64.throughput", None),
    ("put 64 clients, user token: server CPU us/req", "workloads.auth_put_c64.server_cpu_us_per_req", None),
    ("range linearizable 256c, user token: req/s", "workloads.auth_range_l_c256.throughput", None),
    ("range linearizable 256c, user token: server CPU us/req",
     "workloads.auth_range_l_c256.server_cpu_us_per_req", None),
    ("range serializable 256c, user token: req/s", "workloads.auth_range_s_c256.throughput", None),
    ("range serializable 256c, user token: server CPU us/req",
     "workloads.auth_range_s_c256.server_cpu_us_per_req", None),
    ("put 64 clients, mutual TLS: req/s", "workloads.tls_put_c64.throughput", None),
    ("put 64 clients, mutual TLS: server CPU us/req", "workloads.tls_put_c64.server_cpu_us_per_req", None),
    ("range linearizable 256c, mutual TLS: req/s", "workloads.tls_range_l_c256.throughput", None),
    ("range linearizable 256c, mutual TLS: server CPU us/req",
     "workloads.tls_range_l_c256.server_cpu_us_per_req", None),
    ("watch delivery (fixed rate): p50 ms", "workloads.watch_latency.delivery_after_send.p50_ms", None),
    ("watch delivery (fixed rate): p99 ms", "workloads.watch_latency.delivery_after_send.p99_ms", None),
    ("watch events missing", "workloads.watch_latency.events_missing", None),
    ("watch unthrottled: events/s", "workloads.watch_throughput.events_per_sec", None),
    ("watch unthrottled: delivery p99 ms", "workloads.watch_throughput.delivery_after_send.p99_ms", None),
    ("loadgen put 64c: req/s", "workloads.py_put_c64.throughput", None),
    ("loadgen put 64c: p99 ms", "workloads.py_put_c64.p99_ms", None),
    ("loadgen range s 64c: req/s", "workloads.py_range_s_c64.throughput", None),
    ("start (empty) to first Range: s", "start_s", None),
    ("idle RSS (empty): MiB", "idle_memory_kib.VmRSS", _mib),
    ("bulk keys loaded", "bulk.keys_loaded", None),
    ("bulk load (256 clients): puts/s", "bulk.load.throughput", None),
    ("bulk load: p99 ms", "bulk.load.p99_ms", None),
    ("bulk load wall time: s", "bulk.load_wall_s", None),
    ("RSS after bulk load: MiB", "bulk.memory_kib.VmRSS", _mib),
    ("  of which anonymous: MiB", "bulk.memory_kib.RssAnon", _mib),
    ("data dir after bulk load: MiB", "bulk.data_dir_bytes", lambda b: b / 2**20),
    ("SIGTERM to exit: s", "bulk.stop_s", None),
    ("restart to first Range: s", "bulk.restart_s", None),
    ("RSS after restart: MiB", "bulk.memory_after_restart_kib.VmRSS", _mib),
    ("keys after restart", "bulk.keys_after_restart", None),
    ("count all keys after restart: s", "bulk.count_all_keys_s", None),
]


def mean_load(sysres: dict) -> float | None:
    """Mean 1-minute load average seen at the start and end of this system's load runs."""
    runs = list(sysres.get("workloads", {}).values()) + [_get(sysres, "bulk.load") or {}]
    loads = [x for r in runs for x in r.get("load_avg_1m", [])]
    return sum(loads) / len(loads) if loads else None


def table_rows(systems: list[dict]) -> list[dict]:
    rows = []
    for label, path, fn in ROWS:
        vals = []
        for sysres in systems:
            v = _get(sysres, path)
            if v is not None and fn is not None:
                v = fn(v)
            w = _get(sysres, path.rsplit(".", 1)[0]) if path.startswith("workloads.") else None
            if isinstance(w, dict) and "failure" in w:
                v = None
            vals.append(v)
        if all(v is None for v in vals):
            continue
        ratios = [v / vals[0] if vals[0] and v is not None else None for v in vals[1:]]
        rows.append({"metric": label, "values": vals, "ratios": ratios})
    loads = [mean_load(s) for s in systems]
    if any(v is not None for v in loads):
        rows.append({"metric": "machine load avg 1m during runs", "values": loads,
                     "ratios": [None] * (len(loads) - 1)})
    return rows


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, int):
        return f"{v:,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def format_table(rows: list[dict], labels: list[str]) -> str:
    head = ["metric", *labels] + [f"ratio {other}/{labels[0]}" for other in labels[1:]]
    body = [[r["metric"], *(_fmt(v) for v in r["values"]), *(_fmt(x) for x in r["ratios"])] for r in rows]
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in enumerate(zip(head, widths)))]
    lines.append("  ".join("-" * w for w in widths))
    for row in body:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))
    return "\n".join(lines)


def report(results: list[dict], rows: list[dict], systems: list[str], path, *, failure_tail: int, meta: dict) -> int:
    """Print the table and each failure (its last ``failure_tail`` characters), save the
    results as JSON at ``path`` with ``meta``; the exit code: 1 if anything failed."""
    print()
    print(format_table(rows, systems))
    for r in results:
        for name, why in r["failures"].items():
            print(f"\n{r['label']} {name} FAILED: {why if len(why) < failure_tail else '...' + why[-failure_tail:]}")
    with open(path, "w") as f:
        json.dump({**meta, "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
                   "systems": results, "table": rows}, f, indent=1)
    print(f"\nresults: {path}")
    return 0 if not any(r["failures"] for r in results) else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small totals (a smoke run of a minute or two)")
    p.add_argument("--scenarios", default="put,range,watch,auth,tls,bulk",
                   help="comma-separated: put,range,watch,auth,tls,loadgen,bulk "
                        "(default put,range,watch,auth,tls,bulk)")
    p.add_argument("--keys", type=int, help="keys for the bulk scenario (default 1,000,000; --quick 20,000)")
    p.add_argument("--systems", default="etcd,etcdx",
                   help="which servers, in order; ratios are against the first (default etcd,etcdx). "
                        "etcdx-wN is etcdx with --api-workers N")
    p.add_argument("--bulk-systems", help="run the bulk scenario on these systems only (default: all)")
    p.add_argument("--tool", choices=["auto", "go", "py"], default="auto",
                   help="put/range load: etcd's Go tool (bench/out/benchmark) or loadgen.py (default: go if built)")
    p.add_argument("--repeat", type=int, default=1,
                   help="run each put/range/watch workload N times per system, alternating the order; "
                        "the table shows the median run (the better one for N=2)")
    p.add_argument("--start-timeout", type=float, default=300.0, help="seconds to wait for the first Range")
    p.add_argument("--workload-timeout", type=float, default=600.0, help="seconds per put/range/watch run")
    p.add_argument("--bulk-timeout", type=float, default=1800.0, help="seconds for the bulk load")
    p.add_argument("--baseline", metavar="RESULTS_JSON",
                   help="take etcd's figures from an earlier results file instead of running etcd again "
                        "(saves time; the ratios then span two runs)")
    p.add_argument("--keep-data", action="store_true", help="keep the data dirs under bench/out/")
    p.add_argument("--etcd-cmd", default=ETCD_CMD, help=argparse.SUPPRESS)
    p.add_argument("--etcdx-cmd", default=ETCDX_CMD, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    known = {"put", "range", "watch", "auth", "tls", "loadgen", "bulk"}
    if set(args.scenarios) - known:
        raise SystemExit(f"unknown scenarios {sorted(set(args.scenarios) - known)}; known: {sorted(known)}")
    systems = [s for s in args.systems.split(",") if s]
    templates = {"etcd": args.etcd_cmd, "etcdx": args.etcdx_cmd}
    for label in systems:
        m = re.fullmatch(r"etcdx-w(\d+)", label)
        if m:
            templates[label] = args.etcdx_cmd + f" --api-workers {m.group(1)}"
    if set(systems) - set(templates):
        raise SystemExit("--systems takes etcd, etcdx and etcdx-wN")
    args.bulk_systems = set(args.bulk_systems.split(",")) if args.bulk_systems else set(systems)

    runner = Runner(args)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    workdir = OUT_DIR / f"run-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    runner.log(f"scenarios {','.join(args.scenarios)}; load tool: {'etcd Go benchmark' if runner.use_go else 'loadgen.py'}"
               f"; sizes {runner.sizes}; logs in {workdir}")
    results = []
    baseline = {}
    if args.baseline:
        with open(args.baseline) as f:
            baseline = {r["label"]: r for r in json.load(f)["systems"]}
        baseline = {k: dict(v, from_baseline=args.baseline) for k, v in baseline.items() if k == "etcd"}
        if "etcd" not in baseline:
            raise SystemExit(f"{args.baseline} has no etcd results")
        runner.log(f"etcd figures from {args.baseline}")
    try:
        fresh = runner.run_all({label: templates[label] for label in systems if label not in baseline}, workdir)
        by_label = {r["label"]: r for r in fresh}
        results = [baseline.get(label) or by_label[label] for label in systems]
    except KeyboardInterrupt:
        runner.log("interrupted; servers stopped")
        raise
    finally:
        _procs._kill_all_groups()

    return report(results, table_rows(results), systems, OUT_DIR / f"results-{stamp}.json", failure_tail=2000, meta={
        "started": stamp, "quick": args.quick, "repeat": args.repeat, "scenarios": args.scenarios,
        "sizes": runner.sizes, "load_tool": "go" if runner.use_go else "loadgen"})


if __name__ == "__main__":
    sys.exit(main())
