"""What every driver shares: observing a cluster and carrying out an action.

A driver owns *slots* (where members run) and implements the abstract
methods below for its platform: processes and directories on this host
(``local``), pods and PersistentVolumeClaims on Kubernetes (``kube``).
Everything that goes through the members themselves (probing them, the
membership calls, leadership moves, backups) is here, once, over a
``MemberAPI``.
"""

from __future__ import annotations

import abc
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

from etcdx.operator import backups
from etcdx.operator.members import MemberAPI, MemberAPIError
from etcdx.operator.model import (
    Action,
    AddMember,
    Bootstrap,
    DeleteBackup,
    DeleteData,
    Health,
    Observation,
    Process,
    PromoteMember,
    RaftMember,
    RemoveMember,
    RestartMember,
    RetireSlot,
    Slot,
    StartMember,
    StopMember,
    TakeBackup,
    TransferLeadership,
    UpgradeMember,
)
from etcdx.operator.reconcile import join, leader_of
from etcdx.operator.spec import ClusterSpec

log = logging.getLogger("etcdx.operator")

PROBE_TIMEOUT = 1.0


class ActionError(RuntimeError):
    """An action could not be carried out; the loop logs it and looks again."""


@dataclasses.dataclass
class _Track:
    """What the driver remembers about a slot between observations."""

    starts_since_ready: int = 0
    ever_ready: bool = False
    unready_since: float | None = None


def initial_cluster_for_join(membership: Sequence[RaftMember], name: str, peer_url: str) -> str:
    """``--initial-cluster`` for a member joining ``membership`` (which already lists it, nameless)."""
    entries = []
    for m in membership:
        member_name = name if peer_url in m.peer_urls else m.name
        if not member_name:
            continue  # another added member that has not started: not needed to join
        entries += [f"{member_name}={u}" for u in m.peer_urls]
    return ",".join(entries)


class Driver(abc.ABC):
    """Observe → act for one cluster; see the module docstring."""

    def __init__(self, api: MemberAPI, clock: Callable[[], float] = time.time) -> None:
        self.api = api
        self.clock = clock
        self._tracks: dict[str, _Track] = {}
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="probe")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    # -- the platform ------------------------------------------------------------------------
    @abc.abstractmethod
    def slots(self, spec: ClusterSpec) -> list[Slot]:
        """Every slot of this cluster (the tracking fields are filled in by ``observe``)."""

    @abc.abstractmethod
    def bootstrapped(self, spec: ClusterSpec) -> bool: ...

    @abc.abstractmethod
    def deleting(self, spec: ClusterSpec) -> bool: ...

    @abc.abstractmethod
    def data_left(self, spec: ClusterSpec) -> bool: ...

    def installed_versions(self, spec: ClusterSpec) -> frozenset[str] | None:
        return None

    @abc.abstractmethod
    def create_slots(self, spec: ClusterSpec, names: Sequence[str], restore_from: str | None) -> None:
        """Slots for a new cluster's members (data restored from ``restore_from``), marked bootstrapped."""

    @abc.abstractmethod
    def prepare_slot(self, spec: ClusterSpec, name: str) -> Slot:
        """A slot for a member about to be added (so its peer URL is known before MemberAdd)."""

    @abc.abstractmethod
    def start(self, spec: ClusterSpec, name: str, version: str, join_cluster: str | None) -> None:
        """Run the member; ``join_cluster`` is ``--initial-cluster`` for a slot joining a running cluster."""

    @abc.abstractmethod
    def stop(self, spec: ClusterSpec, name: str) -> None: ...

    @abc.abstractmethod
    def retire(self, spec: ClusterSpec, name: str) -> None:
        """Stop the slot's member and delete the slot with its data."""

    @abc.abstractmethod
    def delete_data(self, spec: ClusterSpec) -> None: ...

    @abc.abstractmethod
    def backup_destination(self, spec: ClusterSpec) -> str | None: ...

    # -- observing ----------------------------------------------------------------------------
    def _probe(self, urls: Sequence[str]) -> dict[str, Health]:
        def one(url: str) -> Health | None:
            try:
                return self.api.status(url, timeout=PROBE_TIMEOUT)
            except MemberAPIError:
                return None
        futures = {url: self._pool.submit(one, url) for url in dict.fromkeys(urls)}
        return {url: h for url, f in futures.items() if (h := f.result()) is not None}

    def observe(self, spec: ClusterSpec) -> Observation:
        now = self.clock()
        bootstrapped = self.bootstrapped(spec)
        slots = self.slots(spec)
        health = self._probe([s.client_url for s in slots if s.process is Process.RUNNING])
        membership = self._membership(health)
        if membership is not None:  # members that are not ours answer too, or not
            others = [u for m in membership for u in m.client_urls if u not in health]
            health.update(self._probe(others))
        slots = [self._tracked(s, health, now) for s in slots]
        deleting = self.deleting(spec)
        obs = Observation(
            now=now, bootstrapped=bootstrapped, slots=tuple(slots), membership=membership, health=health,
            installed_versions=self.installed_versions(spec), deleting=deleting,
            data_left=self.data_left(spec) if deleting else False)
        dest = self.backup_destination(spec)
        alarms = self._alarms(obs) if membership is not None else ()
        return dataclasses.replace(obs, alarms=alarms,
                                   backups=backups.list_backups(dest, spec.name) if dest else ())

    def _membership(self, health: dict[str, Health]) -> tuple[RaftMember, ...] | None:
        """MemberList from the leader if it answered, else from any member that did."""
        leaders = {h.leader_id for h in health.values() if h.has_leader}
        ordered = sorted(health, key=lambda u: health[u].member_id not in leaders)
        for url in ordered:
            try:
                return self.api.member_list(url)
            except MemberAPIError:
                continue
        return None

    def _alarms(self, obs: Observation) -> tuple[str, ...]:
        views = join(obs)
        names = {v.id: v.name for v in views if v.id is not None}
        for url in self._healthy_urls(obs):
            try:
                return tuple(f"{alarm} on {names.get(mid, f'{mid:x}')}" for mid, alarm in self.api.alarms(url))
            except MemberAPIError:
                continue
        return ()

    def _tracked(self, slot: Slot, health: dict[str, Health], now: float) -> Slot:
        t = self._tracks.setdefault(slot.name, _Track())
        if slot.client_url in health:
            t.starts_since_ready, t.ever_ready, t.unready_since = 0, True, None
        elif slot.process is Process.RUNNING:
            t.unready_since = t.unready_since if t.unready_since is not None else now
        else:
            t.unready_since = None
        failed = t.starts_since_ready if slot.process is Process.EXITED else max(t.starts_since_ready - 1, 0)
        return dataclasses.replace(slot, failed_starts=failed, unready_since=t.unready_since,
                                   ever_ready=t.ever_ready or slot.ever_ready)

    def _started(self, name: str) -> None:
        t = self._tracks.setdefault(name, _Track())
        t.starts_since_ready += 1
        t.unready_since = self.clock()

    # -- acting --------------------------------------------------------------------------------
    @staticmethod
    def _healthy_urls(obs: Observation, exclude: int | None = None) -> list[str]:
        """Client URLs of answering members, the leader first."""
        views = join(obs)
        leader = leader_of(views)
        ordered = ([leader] if leader else []) + [v for v in views if v is not leader]
        return [u for v in ordered if v.healthy and v.id != exclude for u in v.client_urls[:1]]

    def _through_members(self, obs: Observation, call: Callable[[str], object], exclude: int | None = None):
        """``call`` at the leader, else at the next answering member; the last error if all fail."""
        urls = self._healthy_urls(obs, exclude)
        if not urls:
            raise ActionError("no member answers")
        last: MemberAPIError | None = None
        for url in urls:
            try:
                return call(url)
            except MemberAPIError as err:
                last = err
                if err.code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
                    break
        raise ActionError(str(last))

    def _url_of(self, obs: Observation, name: str) -> str:
        for v in join(obs):
            if v.name == name and v.client_urls:
                return v.slot.client_url if v.slot else v.client_urls[0]
        raise ActionError(f"no client URL known for {name}")

    def act(self, spec: ClusterSpec, action: Action, obs: Observation) -> str:
        """Carry out ``action``; returns what was done, raises ``ActionError``/``MemberAPIError`` if it failed."""
        match action:
            case Bootstrap(names=names, version=version, restore_from=source):
                self.create_slots(spec, names, source)
                for name in names:
                    self.start(spec, name, version, None)
                    self._started(name)
                return f"started {len(names)} member(s)"
            case StartMember(name=name, version=version):
                slot = next(s for s in obs.slots if s.name == name)
                join_cluster = None
                if slot.process is Process.ABSENT and not slot.has_data and obs.membership is not None:
                    join_cluster = initial_cluster_for_join(obs.membership, name, slot.peer_url)
                self.start(spec, name, version, join_cluster)
                self._started(name)
                return f"started {name} ({version})"
            case RestartMember(name=name):
                slot = next(s for s in obs.slots if s.name == name)
                self.stop(spec, name)
                self.start(spec, name, slot.version or spec.version, None)
                self._started(name)
                return f"restarted {name}"
            case UpgradeMember(name=name, version=version):
                self.stop(spec, name)
                self.start(spec, name, version, None)
                self._started(name)
                return f"{name} now runs {version}"
            case AddMember(name=name):
                slot = self.prepare_slot(spec, name)
                try:
                    member_id, _ = self._through_members(
                        obs, lambda url: self.api.member_add(url, [slot.peer_url], True))
                except ActionError:
                    self.retire(spec, name)  # refused: the slot would only be retired next turn
                    raise
                return f"added {name} as learner {member_id:x}"
            case PromoteMember(id=member_id, name=name):
                self._through_members(obs, lambda url: self.api.member_promote(url, member_id))
                return f"promoted {name}"
            case RemoveMember(id=member_id, name=name):
                self._through_members(obs, lambda url: self.api.member_remove(url, member_id), exclude=member_id)
                return f"removed {name} ({member_id:x})"
            case RetireSlot(name=name):
                self.retire(spec, name)
                self._tracks.pop(name, None)
                return f"retired {name}"
            case TransferLeadership(from_id=from_id, to_id=to_id, to_name=to_name):
                leader_url = next(v.client_urls[0] for v in join(obs) if v.id == from_id and v.client_urls)
                self.api.move_leader(leader_url, to_id)
                return f"leadership moved to {to_name}"
            case TakeBackup(member=name):
                dest = self.backup_destination(spec)
                if dest is None:
                    raise ActionError("no backup destination")
                b = backups.take_backup(self.api, self._url_of(obs, name), dest, spec.name, name, self.clock())
                return f"backup {b.path} at revision {b.revision}, hash {b.hash:x}, verified"
            case DeleteBackup(path=path):
                backups.delete_backup(path)
                return f"deleted backup {path}"
            case StopMember(name=name):
                self.stop(spec, name)
                return f"stopped {name}"
            case DeleteData():
                self.delete_data(spec)
                return "deleted the members' data"
        raise TypeError(f"unknown action {action!r}")
