"""One fault-injection run: cluster, workload, nemesis, then the checks.

`run(kind, members, seed, duration)` returns a `Report`. The run directory
(members' data and logs, and ``history.pickle`` with a readable
``history.pickle.txt``) is kept when the run found something or could not
decide, and removed otherwise unless ``keep``. A saved history can be checked
again with ``python3 -m tests.faults --recheck <run dir>/history.pickle``.

After the schedule the nemesis heals everything; clients stop; one
linearizable range per member (recorded like any other read) must then
succeed, and gives the final revision, which every watcher must reach: a
cluster that stays unavailable after healing, or a watch that never catches
up, is a finding too.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from support.cluster import Cluster
from support.procs import fast_tmp_root

from etcdx.check.etcd_ops import Range, RangeResult
from etcdx.check.watch import prefix_range_end
from etcdx.pb import rpc_pb2, rpc_pb2_grpc

from .checks import check_history
from .history import History, key_value
from .nemesis import MemberRestartError, Nemesis
from .workload import DEADLINE, PREFIXES, Client, WatchClient, channel

FINAL_READ_TIMEOUT = 30.0
WATCH_CATCH_UP_TIMEOUT = 15.0
CLIENT_JOIN_TIMEOUT = 30.0
FINAL_CLIENT_ID = 1000


class HarnessError(RuntimeError):
    """The harness itself failed (a client thread crashed): not a finding about the server."""


@dataclass
class Report:
    kind: str
    members: int
    seed: int
    duration: float
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    operations: int = 0  # operations in the linearizability check
    ok_operations: int = 0  # acknowledged, of every type
    serializable_reads: int = 0
    watch_events: int = 0
    progress_notifications: int = 0  # answers to the watchers' progress requests
    faults: list[str] = field(default_factory=list)
    linearizable: bool | None = None
    explanation: str = ""
    violations: list[str] = field(default_factory=list)
    checker_seconds: float = 0.0
    wall_seconds: float = 0.0
    run_dir: Path | None = None
    history_path: Path | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    @property
    def inconclusive(self) -> bool:
        return not self.violations and self.linearizable is None

    @property
    def result(self) -> str:
        if self.violations:
            return "VIOLATION"
        return "inconclusive" if self.linearizable is None else "ok"

    def line(self) -> str:
        per10k = self.checker_seconds / max(self.operations, 1) * 10_000
        return (
            f"seed {self.seed}: {self.kind} x{self.members} {self.duration:g}s: {self.result}, "
            f"{self.operations} ops checked ({self.ok_operations} acknowledged, {self.serializable_reads} serializable, "
            f"{self.watch_events} watch events, {self.progress_notifications} progress notifications), {len(self.faults)} faults, "
            f"checker {self.checker_seconds:.2f}s ({per10k:.2f}s/10k ops), wall {self.wall_seconds:.0f}s"
        )

    def details(self) -> str:
        lines = [self.line(), "faults:"] + [f"  {f}" for f in self.faults]
        lines.append("operations: " + ", ".join(f"{t} {dict(c)}" for t, c in sorted(self.counts.items())))
        for v in self.violations:
            lines.append("VIOLATION " + v)
        if self.history_path:
            lines.append(f"history saved to {self.history_path} (and .txt); run dir {self.run_dir}")
        return "\n".join(lines)


def run(
    kind: str,
    members: int,
    seed: int,
    duration: float,
    base_dir: str | Path | None = None,
    clients: int | None = None,
    extra_args: Sequence[str] = (),
    checker_timeout: float = 120.0,
    faults: bool = True,
    front: Callable[[str], str] | None = None,
    keep: bool = False,
    log: Callable[[str], None] = lambda s: None,
) -> Report:
    """One seeded run; see the module docstring.

    ``front`` maps a member's endpoint to the one clients use (a test puts a
    lying shim there); ``faults=False`` runs the workload without the nemesis.
    """
    started = time.monotonic()
    root = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix=f"faults-{kind}{members}-s{seed}-", dir=fast_tmp_root()))
    root.mkdir(parents=True, exist_ok=True)
    report = Report(kind, members, seed, duration, run_dir=root)
    history = History(stale_progress_known=kind == "etcd")
    cluster = Cluster(kind, root, size=members, extra_args=extra_args, proxied=members > 1)
    stop_clients, stop_watchers = threading.Event(), threading.Event()
    workers: list[Client] = []
    watchers: list[WatchClient] = []
    final_revision: int | None = None
    try:
        cluster.start()
        history.start = time.monotonic()
        endpoint = front or (lambda e: e)
        watchers = [WatchClient(m.name, endpoint(m.endpoint), history, stop_watchers) for m in cluster.members]
        n = clients or max(4, 2 * members)
        workers = [
            Client(i, cluster.members[i % members].name, endpoint(cluster.members[i % members].endpoint), history, seed * 1000 + i, stop_clients)
            for i in range(n)
        ]  # fmt: skip
        for t in [*watchers, *workers]:
            t.start()
        try:
            if faults:
                Nemesis(cluster, history, seed, log).run(until=duration)
            else:
                time.sleep(duration)
        except MemberRestartError as e:
            report.violations.append(str(e))
        stop_clients.set()
        for t in workers:
            t.join(CLIENT_JOIN_TIMEOUT)
        final_revision = _final_reads(cluster, history, endpoint, report)
        if final_revision is not None:
            _wait_for_watchers(watchers, final_revision, report)
    finally:
        stop_clients.set()
        stop_watchers.set()
        for w in watchers:
            w.close()
        cluster.close()
    errors = [f"{t.name}: {t.error!r}" for t in [*workers, *watchers] if t.error is not None]
    if errors:
        raise HarnessError("; ".join(errors))

    report.counts = {t: dict(c) for t, c in history.counts.items()}
    report.operations = len(history.operations)
    report.ok_operations = history.ok_operations()
    report.serializable_reads = len(history.serializable)
    report.watch_events = sum(w.events for w in watchers)
    report.progress_notifications = sum(w.progress_notifications for w in watchers)
    report.faults = [str(f) for f in history.faults]
    verdict = check_history(history, timeout=checker_timeout, final_revision=final_revision)
    report.linearizable, report.explanation = verdict.linearizable, verdict.explanation
    report.violations += verdict.violations
    report.checker_seconds = verdict.seconds
    if report.violations or report.inconclusive or keep:
        report.history_path = root / "history.pickle"
        history.save(report.history_path)
    else:
        shutil.rmtree(root, ignore_errors=True)
    report.wall_seconds = time.monotonic() - started
    return report


def _final_reads(cluster: Cluster, history: History, endpoint: Callable[[str], str], report: Report) -> int | None:
    """A linearizable range of every prefix on each member, retried until it succeeds; the highest revision."""
    highest = None
    for number, m in enumerate(cluster.members):
        ch = channel(endpoint(m.endpoint))
        kv = rpc_pb2_grpc.KVStub(ch)
        deadline = time.monotonic() + FINAL_READ_TIMEOUT
        try:
            for prefix in PREFIXES:
                while True:
                    call = history.now()
                    try:
                        resp = kv.Range(
                            rpc_pb2.RangeRequest(key=prefix.encode(), range_end=_prefix_end(prefix)), timeout=DEADLINE
                        )
                        break
                    except grpc.RpcError as e:
                        if time.monotonic() > deadline:
                            report.violations.append(
                                f"{m.name} still fails linearizable reads {FINAL_READ_TIMEOUT:g}s after healing: {e.code().name} {e.details()}"
                            )
                            return highest
                        time.sleep(0.2)
                kvs = {kv_.key.decode(): key_value(kv_) for kv_ in resp.kvs}
                history.record("final_range", FINAL_CLIENT_ID + number, Range(prefix), call, RangeResult(kvs, resp.header.revision))
                highest = max(highest or 0, resp.header.revision)
        finally:
            ch.close()
    return highest


def _prefix_end(prefix: str) -> bytes:
    return prefix_range_end(prefix).encode()


def _wait_for_watchers(watchers: list[WatchClient], final_revision: int, report: Report) -> None:
    deadline = time.monotonic() + WATCH_CATCH_UP_TIMEOUT
    while time.monotonic() < deadline and any(w.last_revision < final_revision for w in watchers):
        time.sleep(0.05)
    for w in watchers:
        if w.last_revision < final_revision:
            report.violations.append(
                f"watch on {w.member} stalled at revision {w.last_revision} "
                f"{WATCH_CATCH_UP_TIMEOUT:g}s after the final revision {final_revision} was read"
            )


def recheck(path: str | Path, timeout: float | None = None) -> str:
    """Check a saved history again (e.g. after fixing the checker); a one-line verdict and the violations."""
    history = History.load(path)
    verdict = check_history(history, timeout=timeout)
    head = f"{path}: {len(history.operations)} ops, checker {verdict.seconds:.2f}s, linearizable={verdict.linearizable}"
    return "\n".join([head, *verdict.violations]) if verdict.violations else head

