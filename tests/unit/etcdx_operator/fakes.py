"""A fake etcd cluster behind ``MemberAPI``, and a fake driver that runs members in it.

``FakeCluster`` keeps a raft membership (by member id) and *hosts* (by peer
URL: what runs where, with or without data) and answers the operator's calls
the way etcdx does, with etcd's refusals: no leader without a quorum of
running voters, one learner at most, promotion only once the learner caught
up (a joining learner is behind for its first Status), a removed member's
process exits, a removal that would leave too few started members is
refused. Snapshots are a real etcd database (a few keys), so backups verify.

``FakeDriver`` is the local driver's platform in memory: slots are records,
starting a slot starts a host in the cluster. Tests step the real
``Operator`` loop over it with plain calls and a fake clock.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

from etcdx.operator.driver import ActionError, Driver
from etcdx.operator.members import MemberAPIError
from etcdx.operator.model import Health, Process, RaftMember, Slot
from etcdx.operator.spec import ClusterSpec


@dataclass
class Host:
    peer_url: str
    client_url: str = ""
    name: str = ""
    running: bool = False
    started: bool = False
    has_data: bool = False
    version: str = ""
    crashes: bool = False  # every start dies before the member answers


@dataclass
class FakeMember:
    id: int
    name: str
    peer_url: str
    learner: bool
    behind: int = 0  # Status answers on which it still lags the leader


def _snapshot_bytes() -> bytes:
    from etcdx.backend import Backend
    from etcdx.mvcc import KVStore
    from etcdx.snapshot.export import export_backend

    with tempfile.TemporaryDirectory() as d:
        backend = Backend(os.path.join(d, "db"))
        try:
            kv = KVStore(backend)
            for i in range(3):
                with backend.write() as btx:
                    kv.write(btx).put(f"k{i}".encode(), b"v")
            out = io.BytesIO()
            export_backend(backend, out, cluster_version="3.5.0")
        finally:
            backend.close()
    db = out.getvalue()
    return db + hashlib.sha256(db).digest()


class FakeCluster:
    """See the module docstring. Implements ``etcdx.operator.members.MemberAPI``."""

    def __init__(self) -> None:
        self.members: dict[int, FakeMember] = {}
        self.hosts: dict[str, Host] = {}
        self._ids = itertools.count(0x1001)
        self.preferred_leader: int | None = None
        self.revision = 1
        self.calls: list[str] = []
        self._snapshot: bytes | None = None

    # -- the world -------------------------------------------------------------------------------
    def host(self, peer_url: str) -> Host:
        return self.hosts.setdefault(peer_url, Host(peer_url))

    def member_at(self, peer_url: str) -> FakeMember | None:
        return next((m for m in self.members.values() if m.peer_url == peer_url), None)

    def start(self, peer_url: str, client_url: str, name: str, version: str, initial_cluster: str,
              state: str) -> None:
        """A member process starts; it stays up only if etcd would let it."""
        h = self.host(peer_url)
        h.client_url, h.name, h.version, h.started, h.running = client_url, name, version, True, True
        if not h.has_data and state == "new":
            if not self.members:
                for entry in initial_cluster.split(","):
                    n, url = entry.split("=", 1)
                    mid = next(self._ids)
                    self.members[mid] = FakeMember(mid, n, url, False)
            h.has_data = self.member_at(peer_url) is not None
        elif not h.has_data:  # joining: it must have been added, and a leader must send it the data
            m = self.member_at(peer_url)
            if m is not None and self.leader() is not None:
                h.has_data, m.name, m.behind = True, name, 1
        m = self.member_at(peer_url)
        if m is None or not h.has_data or h.crashes:
            h.running = False  # removed, nothing to join, or broken: the process exits

    def stop(self, peer_url: str) -> None:
        self.host(peer_url).running = False

    def wipe(self, peer_url: str) -> None:
        h = self.host(peer_url)
        h.running = h.has_data = h.started = False

    def kill(self, name: str) -> None:
        next(h for h in self.hosts.values() if h.name == name).running = False

    def running_voters(self) -> list[FakeMember]:
        return [m for m in self.members.values() if not m.learner and self.hosts.get(m.peer_url, Host("")).running]

    def leader(self) -> FakeMember | None:
        voters = [m for m in self.members.values() if not m.learner]
        up = self.running_voters()
        if not voters or len(up) < len(voters) // 2 + 1:
            return None
        if self.preferred_leader in {m.id for m in up}:
            return self.members[self.preferred_leader]
        return min(up, key=lambda m: m.id)

    def write(self, n: int = 1) -> None:
        self.revision += n

    # -- MemberAPI -----------------------------------------------------------------------------------
    def _at(self, url: str, call: str) -> FakeMember:
        self.calls.append(f"{call} {url}")
        h = next((h for h in self.hosts.values() if h.client_url == url and h.running), None)
        m = self.member_at(h.peer_url) if h else None
        if m is None:
            raise MemberAPIError(url, call, "UNAVAILABLE", "connection refused")
        return m

    def _need_leader(self, url: str, call: str) -> FakeMember:
        self._at(url, call)
        lead = self.leader()
        if lead is None:
            raise MemberAPIError(url, call, "UNAVAILABLE", "etcdserver: no leader")
        return lead

    def status(self, url: str, timeout: float = 1.0) -> Health:
        m = self._at(url, "Status")
        lead = self.leader()
        index = self.revision + 10
        applied = 0 if m.behind else index
        m.behind = max(m.behind - 1, 0)
        return Health(m.id, lead.id if lead else 0, index, applied, self.revision, m.learner)

    def member_list(self, url: str) -> tuple[RaftMember, ...]:
        self._at(url, "MemberList")
        out = []
        for m in self.members.values():
            h = self.hosts.get(m.peer_url)
            client = (h.client_url,) if h and h.started and h.has_data else ()
            out.append(RaftMember(m.id, m.name, (m.peer_url,), client, m.learner))
        return tuple(out)

    def member_add(self, url: str, peer_urls: list[str], learner: bool) -> tuple[int, tuple[RaftMember, ...]]:
        self._need_leader(url, "MemberAdd")
        if any(m.peer_url in peer_urls for m in self.members.values()):
            raise MemberAPIError(url, "MemberAdd", "FAILED_PRECONDITION", "etcdserver: Peer URLs already exists")
        if learner and any(m.learner for m in self.members.values()):
            raise MemberAPIError(url, "MemberAdd", "FAILED_PRECONDITION", "etcdserver: too many learner members in cluster")
        mid = next(self._ids)
        self.members[mid] = FakeMember(mid, "", peer_urls[0], learner)
        return mid, self.member_list(url)

    def member_remove(self, url: str, member_id: int) -> None:
        self._need_leader(url, "MemberRemove")
        if member_id not in self.members:
            raise MemberAPIError(url, "MemberRemove", "NOT_FOUND", "etcdserver: member not found")
        m = self.members[member_id]
        voters_after = [v for v in self.members.values() if not v.learner and v.id != member_id]
        up_after = [v for v in self.running_voters() if v.id != member_id]
        if not m.learner and len(up_after) < len(voters_after) // 2 + 1:
            raise MemberAPIError(url, "MemberRemove", "FAILED_PRECONDITION",
                                 "etcdserver: re-configuration failed due to not enough started members")
        del self.members[member_id]
        if m.peer_url in self.hosts:
            self.hosts[m.peer_url].running = False  # a removed member exits

    def member_promote(self, url: str, member_id: int) -> None:
        self._need_leader(url, "MemberPromote")
        m = self.members.get(member_id)
        if m is None or not m.learner:
            raise MemberAPIError(url, "MemberPromote", "FAILED_PRECONDITION",
                                 "etcdserver: can only promote a learner member")
        if m.behind:
            raise MemberAPIError(url, "MemberPromote", "FAILED_PRECONDITION",
                                 "etcdserver: can only promote a learner member which is in sync with leader")
        m.learner = False

    def move_leader(self, leader_url: str, to_id: int) -> None:
        lead = self._need_leader(leader_url, "MoveLeader")
        if self._at(leader_url, "MoveLeader").id != lead.id:
            raise MemberAPIError(leader_url, "MoveLeader", "FAILED_PRECONDITION", "etcdserver: not leader")
        self.preferred_leader = to_id

    def alarms(self, url: str) -> tuple[tuple[int, str], ...]:
        self._at(url, "Alarm")
        return ()

    def snapshot(self, url: str, out: IO[bytes]) -> None:
        self._need_leader(url, "Snapshot")
        if self._snapshot is None:
            self._snapshot = _snapshot_bytes()
        out.write(self._snapshot)

    def hash_kv(self, url: str, revision: int = 0) -> tuple[int, int]:
        self._at(url, "HashKV")
        return 0xABC, self.revision


@dataclass
class FakeSlot:
    name: str
    peer_url: str
    client_url: str
    initial_cluster: str = ""
    state: str = "new"


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeDriver(Driver):
    """The local driver's platform in memory (see the module docstring)."""

    def __init__(self, cluster: FakeCluster, clock: FakeClock, backup_dir: str,
                 installed: Sequence[str] = ("0.1.0", "0.2.0")) -> None:
        super().__init__(cluster, clock)
        self.cluster = cluster
        self.records: dict[str, FakeSlot] = {}
        self.is_bootstrapped = False
        self.deletion_requested = False
        self.installed = frozenset(installed)
        self.backup_dir = backup_dir
        self._ports = itertools.count(20000)

    def slots(self, spec: ClusterSpec) -> list[Slot]:
        out = []
        for r in self.records.values():
            h = self.cluster.hosts.get(r.peer_url, Host(r.peer_url))
            process = Process.RUNNING if h.running else Process.EXITED if h.started else Process.ABSENT
            out.append(Slot(r.name, r.peer_url, r.client_url, process, h.has_data, h.version or None))
        return out

    def bootstrapped(self, spec: ClusterSpec) -> bool:
        return self.is_bootstrapped

    def deleting(self, spec: ClusterSpec) -> bool:
        return self.deletion_requested

    def data_left(self, spec: ClusterSpec) -> bool:
        return bool(self.records)

    def installed_versions(self, spec: ClusterSpec) -> frozenset[str]:
        return self.installed

    def backup_destination(self, spec: ClusterSpec) -> str | None:
        return spec.backup.destination if spec.backup else None

    def _new(self, name: str) -> FakeSlot:
        n = next(self._ports)
        return FakeSlot(name, f"http://127.0.0.1:{n}", f"http://127.0.0.1:{n + 10000}")

    def create_slots(self, spec: ClusterSpec, names: Sequence[str], restore_from: str | None) -> None:
        recs = [self._new(n) for n in names]
        initial = ",".join(f"{r.name}={r.peer_url}" for r in recs)
        for r in recs:
            r.initial_cluster = initial
            self.records[r.name] = r
        self.is_bootstrapped = True

    def prepare_slot(self, spec: ClusterSpec, name: str) -> Slot:
        r = self._new(name)
        r.state = "existing"
        self.records[name] = r
        return Slot(name, r.peer_url, r.client_url, Process.ABSENT, False)

    def start(self, spec: ClusterSpec, name: str, version: str, join_cluster: str | None) -> None:
        r = self.records[name]
        if self.cluster.hosts.get(r.peer_url, Host("")).running:
            raise ActionError(f"{name} is already running")
        if join_cluster is not None:
            r.initial_cluster, r.state = join_cluster, "existing"
        self.cluster.start(r.peer_url, r.client_url, name, version, r.initial_cluster, r.state)

    def stop(self, spec: ClusterSpec, name: str) -> None:
        self.cluster.stop(self.records[name].peer_url)

    def retire(self, spec: ClusterSpec, name: str) -> None:
        self.cluster.wipe(self.records.pop(name).peer_url)

    def delete_data(self, spec: ClusterSpec) -> None:
        for r in list(self.records.values()):
            self.cluster.wipe(r.peer_url)
        self.records.clear()
        self.is_bootstrapped = False

    # test handles
    def kill(self, name: str) -> None:
        self.cluster.stop(self.records[name].peer_url)

    def lose_data(self, name: str) -> None:
        h = self.cluster.host(self.records[name].peer_url)
        h.running, h.has_data = False, False
