"""Snapshot save and restore of N keys, etcd and etcdx in one run.

For each system: a fresh single member is loaded with N keys (big txns), then

- save:    ``etcdctl snapshot save`` against it: wall time, the server's CPU
           time (its whole process tree) and its peak memory during the save
           (VmRSS, and RssAnon, which leaves out mmapped file pages that the
           kernel can drop; sampled every 20 ms);
- restore: the system's own restore of its own snapshot (``etcdctl snapshot
           restore`` for etcd 3.4, ``etcdxutl snapshot restore`` for etcdx):
           wall time, CPU time and peak RSS of the tool;
- boot:    the restored member started and counted (its keys must all be there).

and the migration: ``etcdxutl snapshot restore`` of etcd's snapshot.

    python3 bench/snapshot.py                     # 1,000,000 keys of 100 B
    python3 bench/snapshot.py --keys 100000 --systems etcdx

Data dirs live under bench/out/snapshot-<timestamp>/ (real disk) and are
removed afterwards unless --keep-data. Figures go to stdout and to
bench/out/snapshot-<timestamp>.json. Timings are wall clock on a shared
machine; the CPU seconds are the steadier figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from _procs import REPO_ROOT, Server, descendants  # noqa: E402

from etcdx.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402

OUT_DIR = BENCH_DIR / "out"
TEMPLATE = ("--name {name} --data-dir {data_dir} --listen-client-urls {client_url} --advertise-client-urls "
            "{client_url} --listen-peer-urls {peer_url} --initial-advertise-peer-urls {peer_url} "
            "--initial-cluster {name}={peer_url} --max-txn-ops {txn} --max-request-bytes 10485760")
COMMANDS = {"etcd": "{etcd} " + TEMPLATE, "etcdx": "{python} -m etcdx.main " + TEMPLATE}
RESTORE = {"etcd": ["etcdctl", "snapshot", "restore"],
           "etcdx": [sys.executable, "-m", "etcdx.ctl.etcdxutl", "snapshot", "restore"]}
TIME_FORMAT = "%e %U %S %M"  # wall s, user s, sys s, max RSS KiB


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes, in seconds."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 100.0  # USER_HZ


class MemorySampler:
    """Peak VmRSS and RssAnon (KiB, summed over a process tree) while running."""

    def __init__(self, server: Server, interval: float = 0.02) -> None:
        self.server = server
        self.interval = interval
        self.peak = {"VmRSS": 0, "RssAnon": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            mem = self.server.memory()
            for k in self.peak:
                self.peak[k] = max(self.peak[k], mem.get(k, 0))
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def timed(cmd: list[str], cwd: Path) -> dict:
    """Run ``cmd`` under /usr/bin/time; its wall/CPU seconds and peak RSS."""
    r = subprocess.run(["/usr/bin/time", "-f", TIME_FORMAT, *cmd], capture_output=True, text=True, cwd=cwd,
                       env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin",
                            "PYTHONPATH": str(REPO_ROOT)}, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    wall, user, system, rss = r.stderr.strip().splitlines()[-1].split()
    return {"wall_s": float(wall), "cpu_s": round(float(user) + float(system), 2),
            "peak_rss_mib": round(int(rss) / 1024, 1)}


def load(server: Server, keys: int, value_size: int, per_txn: int) -> None:
    value = b"v" * value_size
    with server.channel() as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for start in range(0, keys, per_txn):
            ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"/registry/bench/%012d" % i, value=value))
                   for i in range(start, min(start + per_txn, keys))]
            kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=300)


def run_system(system: str, args, workdir: Path) -> dict:
    out: dict = {}
    server = Server(system, COMMANDS[system], workdir, values={"txn": str(args.txn)})
    server.start(fresh=True)
    try:
        server.wait_ready(300)
        t0 = time.monotonic()
        load(server, args.keys, args.value_size, args.txn)
        out["load_s"] = round(time.monotonic() - t0, 2)
        snap = workdir / f"{system}.snap.db"
        pids = [server.proc.pid, *descendants(server.proc.pid)]
        cpu0 = cpu_seconds(pids)
        with MemorySampler(server) as mem:
            save = timed(["etcdctl", f"--endpoints={server.endpoint}", "--command-timeout=1h", "snapshot", "save",
                          str(snap)], workdir)
        out["save"] = {"wall_s": save["wall_s"], "server_cpu_s": round(cpu_seconds(pids) - cpu0, 2),
                       "server_peak_rss_mib": round(mem.peak["VmRSS"] / 1024, 1),
                       "server_peak_anon_mib": round(mem.peak["RssAnon"] / 1024, 1),
                       "file_mib": round(snap.stat().st_size / 2**20, 1)}
    finally:
        server.stop()
    out["restore"] = restore_and_boot(system, snap, args, workdir)
    return out


def restore_and_boot(system: str, snap: Path, args, workdir: Path) -> dict:
    """``system``'s restore of ``snap``, then ``system`` started on the result."""
    restored = Server(f"{system}-from-{snap.stem}", COMMANDS[system], workdir, values={"txn": str(args.txn)})
    result = timed([*RESTORE[system], str(snap), "--data-dir", str(restored.data_dir), "--name", restored.name,
                    "--initial-cluster", f"{restored.name}=http://127.0.0.1:{restored.peer_port}",
                    "--initial-advertise-peer-urls", f"http://127.0.0.1:{restored.peer_port}"], workdir)
    restored.start()
    try:
        result["boot_s"] = round(restored.wait_ready(600), 2)
        count = restored.count_keys()
        if count != args.keys:
            raise RuntimeError(f"{restored.label} holds {count} keys, not {args.keys}")
    finally:
        restored.stop()
    return result


def table(results: dict) -> str:
    rows = [("save: etcdctl wall s", ("save", "wall_s")), ("save: server CPU s", ("save", "server_cpu_s")),
            ("save: server peak RSS MiB", ("save", "server_peak_rss_mib")),
            ("save: server peak anon MiB", ("save", "server_peak_anon_mib")),
            ("snapshot file MiB", ("save", "file_mib")),
            ("restore: wall s", ("restore", "wall_s")), ("restore: CPU s", ("restore", "cpu_s")),
            ("restore: peak RSS MiB", ("restore", "peak_rss_mib")), ("restored member: boot s", ("restore", "boot_s"))]
    systems = [s for s in ("etcd", "etcdx") if s in results]
    lines = [f"{'metric':32}" + "".join(f"{s:>12}" for s in systems) + ("       ratio" if len(systems) == 2 else "")]
    for label, (part, key) in rows:
        values = [results[s][part][key] for s in systems]
        line = f"{label:32}" + "".join(f"{v:>12}" for v in values)
        if len(values) == 2 and values[0]:
            line += f"{values[1] / values[0]:>12.2f}"
        lines.append(line)
    if "migration" in results:
        m = results["migration"]
        lines.append(f"etcdxutl restore of etcd's snapshot: {m['wall_s']} s wall, {m['cpu_s']} s CPU, "
                     f"{m['peak_rss_mib']:.0f} MiB peak RSS, boot {m['boot_s']} s")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--keys", type=int, default=1_000_000)
    p.add_argument("--value-size", type=int, default=100)
    p.add_argument("--txn", type=int, default=5000, help="puts per txn while loading")
    p.add_argument("--systems", default="etcd,etcdx")
    p.add_argument("--keep-data", action="store_true")
    args = p.parse_args(argv)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = OUT_DIR / f"snapshot-{stamp}"
    workdir.mkdir(parents=True)
    results: dict = {"keys": args.keys, "value_size": args.value_size}
    try:
        for system in args.systems.split(","):
            print(f"{system}: loading {args.keys} keys, saving, restoring ...", flush=True)
            results[system] = run_system(system, args, workdir)
        if "etcd" in results and "etcdx" in results:
            results["migration"] = restore_and_boot("etcdx", workdir / "etcd.snap.db", args, workdir)
    finally:
        if not args.keep_data:
            shutil.rmtree(workdir, ignore_errors=True)
    print(table(results))
    (OUT_DIR / f"snapshot-{stamp}.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
