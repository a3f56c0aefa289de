"""The nemesis: faults on a schedule drawn from `random.Random(seed)`.

One fault at a time: a recovery gap, then a fault held for 1-3 s, then its
recovery. Which fault, its target (the leader, or a member drawn at random),
how long it is held and the gaps all come from the seed; what "the leader" is
depends on the run. With one member only process faults apply: kill -9 and
restart on the same data dir (also a second kill while the member boots),
SIGSTOP/SIGCONT of the member and its worker processes. With several members (proxied)
also: leader-targeted kills and pauses, isolating the leader or a member, a
partial partition (two members that cannot talk, both reaching the third),
one-way partitions around the leader, delays on every link, and connection
resets.

The nemesis runs on the main thread: members it restarts then get
`setpriv --pdeathsig` and die with the test process.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

from support.cluster import Cluster, ClusterMember
from support.procs import MemberStartError

from .history import FaultRecord, History

PROCESS_FAULTS = ("kill", "kill_leader", "pause", "pause_leader", "double_kill")
NETWORK_FAULTS = ("isolate_leader", "isolate", "partial", "one_way_from_leader", "one_way_to_leader", "delay", "reset")
GAP = (0.5, 1.5)
HOLD = (1.0, 3.0)
RESTART_TIMEOUT = 30.0


class MemberRestartError(RuntimeError):
    """A member killed by the nemesis did not come back (a finding, not a harness error)."""


class Nemesis:
    def __init__(self, cluster: Cluster, history: History, seed: int, log: Callable[[str], None] = lambda s: None) -> None:
        self.cluster = cluster
        self.history = history
        self.rng = random.Random(seed)
        self.log = log
        several = len(cluster.members) > 1
        self.kinds = PROCESS_FAULTS + (NETWORK_FAULTS if several and cluster.net is not None else ())
        if not several:
            self.kinds = ("kill", "pause", "double_kill")
        self._paused: list[list[int]] = []

    def run(self, until: float) -> None:
        """Inject faults until ``until`` (history time), then leave everything healed."""
        try:
            while True:
                gap_end = self.history.now() + self.rng.uniform(*GAP)
                time.sleep(max(0.0, min(gap_end, until) - self.history.now()))
                if gap_end >= until:
                    return
                kind = self.rng.choice(self.kinds)
                hold = self.rng.uniform(*HOLD)
                getattr(self, "_" + kind)(hold, until)
        finally:
            self.heal_all()

    # -- targets ----------------------------------------------------------------------------
    def _leader(self) -> ClusterMember:
        try:
            return self.cluster.leader(timeout=3.0)
        except TimeoutError:
            return self._any()

    def _any(self) -> ClusterMember:
        return self.rng.choice(self.cluster.members)

    def _begin(self, kind: str, target: str, note: str = "") -> FaultRecord:
        record = FaultRecord(kind, target, self.history.now(), note=note)
        self.history.faults.append(record)
        self.log(f"fault {record}")
        return record

    def _hold(self, hold: float, until: float) -> None:
        time.sleep(max(0.0, min(hold, until - self.history.now() + 0.5)))

    # -- process faults ---------------------------------------------------------------------
    def _kill(self, hold: float, until: float, m: ClusterMember | None = None, kind: str = "kill") -> None:
        m = m or self._any()
        record = self._begin(kind, m.name)
        self.history.kills.setdefault(m.name, []).append(record.start)
        m.kill()
        self._hold(hold, until)
        self._restart(m)
        record.end = self.history.now()

    def _double_kill(self, hold: float, until: float) -> None:
        """Kill -9, start, and kill -9 again while it boots (replaying its WAL), then restart."""
        m = self._any()
        record = self._begin("double_kill", m.name)
        kills = self.history.kills.setdefault(m.name, [])
        kills.append(record.start)
        m.kill()
        self._hold(hold / 2, until)
        m.start(wait=False)
        booting = self.rng.uniform(0.05, 1.0)
        time.sleep(booting)
        kills.append(self.history.now())
        m.kill()
        record.note = f"second kill {booting:.2f}s into the restart"
        self._hold(hold / 2, until)
        self._restart(m)
        record.end = self.history.now()

    def _kill_leader(self, hold: float, until: float) -> None:
        self._kill(hold, until, self._leader(), "kill_leader")

    def _restart(self, m: ClusterMember) -> None:
        m.start(wait=False)
        try:
            m.wait_ready(RESTART_TIMEOUT)
        except MemberStartError as e:
            raise MemberRestartError(f"{m.name} did not restart after kill -9: {e}") from None

    def _pause(self, hold: float, until: float, m: ClusterMember | None = None, kind: str = "pause") -> None:
        m = m or self._any()
        if not m.is_running():
            return
        pids = _process_tree(m.pid)
        record = self._begin(kind, m.name, note=f"{len(pids)} processes")
        self._paused.append(pids)
        _signal_all(pids, signal.SIGSTOP)
        self._hold(hold, until)
        _signal_all(pids, signal.SIGCONT)
        self._paused.remove(pids)
        record.end = self.history.now()

    def _pause_leader(self, hold: float, until: float) -> None:
        self._pause(hold, until, self._leader(), "pause_leader")

    # -- network faults ---------------------------------------------------------------------
    def _network(self, kind: str, target: str, apply: Callable[[], None], hold: float, until: float) -> None:
        record = self._begin(kind, target)
        apply()
        self._hold(hold, until)
        self.cluster.net.heal()
        record.end = self.history.now()

    def _isolate_leader(self, hold: float, until: float) -> None:
        leader = self._leader()
        self._network("isolate_leader", leader.name, lambda: self.cluster.net.isolate(leader), hold, until)

    def _isolate(self, hold: float, until: float) -> None:
        m = self._any()
        self._network("isolate", m.name, lambda: self.cluster.net.isolate(m), hold, until)

    def _partial(self, hold: float, until: float) -> None:
        a, b = self.rng.sample(self.cluster.members, 2)
        self._network("partial", f"{a.name}-/-{b.name}", lambda: self.cluster.net.partition([a], [b]), hold, until)

    def _others(self, m: ClusterMember) -> list[ClusterMember]:
        return [o for o in self.cluster.members if o is not m]

    def _one_way_from_leader(self, hold: float, until: float) -> None:
        leader = self._leader()
        self._network(
            "one_way_from_leader", f"{leader.name}->*", lambda: self.cluster.net.one_way([leader], self._others(leader)), hold, until
        )

    def _one_way_to_leader(self, hold: float, until: float) -> None:
        leader = self._leader()
        self._network(
            "one_way_to_leader", f"*->{leader.name}", lambda: self.cluster.net.one_way(self._others(leader), [leader]), hold, until
        )

    def _delay(self, hold: float, until: float) -> None:
        seconds = self.rng.uniform(0.05, 0.4)
        jitter = seconds / 2
        self._network(
            "delay", f"all links {seconds * 1000:.0f}±{jitter * 1000:.0f}ms",
            lambda: self.cluster.net.delay(None, None, seconds, jitter), hold, until,
        )  # fmt: skip

    def _reset(self, hold: float, until: float) -> None:
        m = self._any()
        record = self._begin("reset", m.name)
        dropped = self.cluster.net.drop_connections(m, None) + self.cluster.net.drop_connections(None, m)
        record.note = f"{dropped} connections"
        record.end = self.history.now()

    # -- recovery ---------------------------------------------------------------------------
    def heal_all(self) -> None:
        """Resume paused members, heal the network, restart dead members."""
        for pids in self._paused:
            _signal_all(pids, signal.SIGCONT)
        self._paused.clear()
        if self.cluster.net is not None:
            self.cluster.net.heal()
        for m in self.cluster.members:
            if not m.is_running():
                self._restart(m)


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (etcdx's API workers are children of the member)."""
    pids, i = [pid], 0
    while i < len(pids):
        try:
            tasks = Path(f"/proc/{pids[i]}/task")
            for task in tasks.iterdir():
                pids += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
        i += 1
    return pids


def _signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
