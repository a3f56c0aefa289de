"""What the reconcile loop sees, what it can do, and what it reports.

A *slot* is the place where one member runs: on this host a data directory
and a process, on Kubernetes a PersistentVolumeClaim and a pod. The driver
reports slots and what the members answered; the loop joins them with the
cluster's own membership (by peer URL) into ``MemberView``s.

Everything here is plain immutable data: the loop is a function of it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field


class Process(enum.Enum):
    RUNNING = "running"
    EXITED = "exited"   # it ran and is gone (crashed, killed, stopped)
    ABSENT = "absent"   # never started in this slot


@dataclass(frozen=True)
class Slot:
    """The driver's view of one member's place."""

    name: str
    peer_url: str
    client_url: str
    process: Process
    has_data: bool
    version: str | None = None        # what the process runs (or last ran)
    failed_starts: int = 0            # starts in a row that exited before the member ever answered
    unready_since: float | None = None  # running, and not answering since then
    ever_ready: bool = False          # the member in this slot has answered at least once


@dataclass(frozen=True)
class RaftMember:
    """One entry of the cluster's MemberList."""

    id: int
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool


@dataclass(frozen=True)
class Health:
    """What a member answered to Maintenance.Status."""

    member_id: int
    leader_id: int
    raft_index: int
    applied_index: int
    revision: int
    is_learner: bool
    errors: tuple[str, ...] = ()

    @property
    def has_leader(self) -> bool:
        return self.leader_id != 0


@dataclass(frozen=True)
class Backup:
    path: str
    taken_at: float  # seconds since the epoch
    revision: int
    hash: int
    size: int
    member: str = ""


@dataclass(frozen=True)
class Observation:
    now: float
    bootstrapped: bool                        # the cluster was created (so no answer means trouble, not newness)
    slots: tuple[Slot, ...] = ()
    membership: tuple[RaftMember, ...] | None = None  # None: no member answered MemberList
    health: Mapping[str, Health] = field(default_factory=dict)  # by client URL; absent: no answer
    alarms: tuple[str, ...] = ()              # e.g. "NOSPACE on demo-1"
    backups: tuple[Backup, ...] = ()          # oldest first
    installed_versions: frozenset[str] | None = None  # None: the driver runs any version asked
    deleting: bool = False
    data_left: bool = False                   # deleting: anything of the cluster still on disk


@dataclass(frozen=True)
class MemberView:
    """A member as the loop reasons about it: its slot, its membership entry, its health."""

    name: str
    slot: Slot | None
    raft: RaftMember | None
    health: Health | None

    @property
    def id(self) -> int | None:
        return self.raft.id if self.raft else (self.health.member_id if self.health else None)

    @property
    def is_learner(self) -> bool:
        return bool(self.raft and self.raft.is_learner)

    @property
    def is_voter(self) -> bool:
        return self.raft is not None and not self.raft.is_learner

    @property
    def running(self) -> bool:
        return self.slot is not None and self.slot.process is Process.RUNNING

    @property
    def healthy(self) -> bool:
        """Answers, and (a voter) knows a leader."""
        if self.health is None:
            return False
        return self.health.has_leader or self.is_learner

    @property
    def client_urls(self) -> tuple[str, ...]:
        if self.raft and self.raft.client_urls:
            return self.raft.client_urls
        return (self.slot.client_url,) if self.slot else ()


# -- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bootstrap:
    """Create slots for the first members and start them as a new cluster (from a snapshot, if given)."""

    names: tuple[str, ...]
    version: str
    restore_from: str | None = None


@dataclass(frozen=True)
class StartMember:
    """Start the member in its slot: on its data, or (no data) joining the running cluster."""

    name: str
    version: str


@dataclass(frozen=True)
class RestartMember:
    """Stop a running member that does not answer, then start it again on its data."""

    name: str


@dataclass(frozen=True)
class AddMember:
    """Prepare a slot and add it to the cluster as a learner (MemberAdd)."""

    name: str


@dataclass(frozen=True)
class PromoteMember:
    name: str
    id: int


@dataclass(frozen=True)
class RemoveMember:
    """MemberRemove; the member's slot is retired afterwards."""

    id: int
    name: str


@dataclass(frozen=True)
class RetireSlot:
    """Stop whatever runs in a slot whose member left the cluster and delete its data."""

    name: str


@dataclass(frozen=True)
class TransferLeadership:
    from_id: int
    to_id: int
    to_name: str


@dataclass(frozen=True)
class UpgradeMember:
    """Stop the member and start it on its data with another version."""

    name: str
    version: str


@dataclass(frozen=True)
class TakeBackup:
    """Snapshot the store through ``member``, verify it and keep it in the destination."""

    member: str


@dataclass(frozen=True)
class DeleteBackup:
    path: str


@dataclass(frozen=True)
class StopMember:
    name: str


@dataclass(frozen=True)
class DeleteData:
    """Remove every slot's data (and the cluster's certificates): deletion with policy Delete."""


Action = (Bootstrap | StartMember | RestartMember | AddMember | PromoteMember | RemoveMember | RetireSlot
          | TransferLeadership | UpgradeMember | TakeBackup | DeleteBackup | StopMember | DeleteData)


def describe(action: Action | None) -> str:
    """``AddMember(name=demo-3)``: an action in one short line, for logs and status."""
    if action is None:
        return "wait"
    fields = ", ".join(f"{k}={v:x}" if k.endswith("id") and isinstance(v, int) else f"{k}={v}"
                       for k, v in vars(action).items() if v is not None)
    return f"{type(action).__name__}({fields})"


class Phase(str, enum.Enum):
    CREATING = "Creating"
    RUNNING = "Running"          # healthy, and as the spec says
    SCALING = "Scaling"
    UPGRADING = "Upgrading"
    REPAIRING = "Repairing"      # restarting or replacing members
    UNAVAILABLE = "Unavailable"  # no quorum
    FAILED = "Failed"            # cannot go on without a person
    DELETING = "Deleting"
    DELETED = "Deleted"


@dataclass(frozen=True)
class Decision:
    """One step of the loop: at most one action, always a reason."""

    action: Action | None
    reason: str
    phase: Phase
