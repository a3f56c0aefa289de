"""The host-facing API of the raft core: feed it input, collect a Ready, advance.

The host loop is, synchronously:

    rd = node.ready()
    storage.apply_snapshot(rd.snapshot)       # if rd.snapshot is not None
    storage.append(rd.entries)
    storage.set_hard_state(rd.hard_state)     # if rd.hard_state is not None
    send(rd.messages)                         # only after the above are durable
    apply(rd.committed_entries)               # calling apply_conf_change for conf-change entries
    node.advance(rd)

A Ready hands out everything at most once: call ``advance`` before the next
``ready``. Committed entries may include entries persisted by the same Ready,
which is safe because applying happens after persisting.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdx.raft.codec import conf_change_entry
from etcdx.raft.config import Config
from etcdx.raft.core import Raft
from etcdx.raft.errors import ProposalDropped, RaftError, StepLocalMessageError
from etcdx.raft.progress import Progress
from etcdx.raft.storage import MemoryStorage
from etcdx.raft.types import (
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateType,
)

_LOCAL_ONLY = frozenset(
    {MessageType.HUP, MessageType.BEAT, MessageType.CHECK_QUORUM, MessageType.UNREACHABLE, MessageType.SNAP_STATUS}
)

BOOTSTRAP_INDEX = 1
BOOTSTRAP_TERM = 1


@dataclass
class Ready:
    """What the host must persist, send and apply, in that order."""

    soft_state: SoftState | None = None  # None if unchanged since the last Ready
    hard_state: HardState | None = None  # None if unchanged
    read_states: list[ReadState] = field(default_factory=list)
    entries: list[Entry] = field(default_factory=list)  # append to stable storage BEFORE sending messages
    snapshot: Snapshot | None = None  # persist (before entries) and restore the application from it
    committed_entries: list[Entry] = field(default_factory=list)  # apply in order
    messages: list[Message] = field(default_factory=list)  # send AFTER persisting
    must_sync: bool = False  # entries or term/vote changed: fsync before sending


@dataclass
class Status:
    """A snapshot of the node's state for monitoring and tests; ``progress`` only on the leader."""

    id: int
    hard_state: HardState
    soft_state: SoftState
    applied: int
    progress: dict[int, Progress]
    conf_state: ConfState
    lead_transferee: int


class RawNode:
    """A raft node driven synchronously by its host; see the module docstring for the loop."""

    def __init__(self, config: Config) -> None:
        self.raft = Raft(config)
        self._prev_soft = self.raft.soft_state()
        self._prev_hard = self.raft.hard_state()

    @staticmethod
    def bootstrap(storage: MemoryStorage, peers: list[int]) -> None:
        """Give a fresh storage its initial membership (voters ``peers``).

        The membership is written as a snapshot at index 1, term 1 with empty
        data, and the hard state as term 1, commit 1. So the first leader's
        log starts at index 2, and a member added later (with empty storage)
        learns the initial membership from that snapshot rather than from
        entries nobody has. Hosts must treat empty snapshot data as the empty
        application state. Every initial member bootstraps with the same
        peers; members added later start from empty storage.
        """
        if storage.last_index() != 0 or not storage.initial_state()[0].is_empty():
            raise RaftError("can only bootstrap an empty storage")
        snap, hs = RawNode.bootstrap_state(peers)
        storage.apply_snapshot(snap)
        storage.set_hard_state(hs)

    @staticmethod
    def bootstrap_state(peers: list[int]) -> tuple[Snapshot, HardState]:
        """The snapshot and hard state ``bootstrap`` writes, for storages other than MemoryStorage."""
        if not peers:
            raise RaftError("must bootstrap with at least one peer")
        cs = ConfState(voters=sorted(set(peers)))
        snap = Snapshot(metadata=SnapshotMetadata(conf_state=cs, index=BOOTSTRAP_INDEX, term=BOOTSTRAP_TERM))
        return snap, HardState(term=BOOTSTRAP_TERM, commit=BOOTSTRAP_INDEX)

    @property
    def id(self) -> int:
        return self.raft.id

    # Cheap accessors for hot paths (``status()`` builds a whole snapshot of the node).

    @property
    def term(self) -> int:
        return self.raft.term

    @property
    def lead(self) -> int:
        """The leader this node knows of, NONE (0) if none."""
        return self.raft.lead

    @property
    def commit(self) -> int:
        return self.raft.log.committed

    @property
    def raft_state(self) -> StateType:
        return self.raft.state

    def tick(self) -> None:
        """Advance logical time by one tick (election and heartbeat timeouts count ticks)."""
        self.raft.tick()

    def campaign(self) -> None:
        """Start an election now (a pre-election first if pre-vote is on)."""
        self.raft.step(Message(type=MessageType.HUP, from_=self.raft.id))

    def propose(self, data: bytes) -> None:
        """Propose ``data`` for the log; raises ProposalDropped if it cannot be taken now."""
        self.raft.step(Message(type=MessageType.PROP, from_=self.raft.id, entries=[Entry(data=data)]))

    def propose_many(self, datas: list[bytes]) -> None:
        """Propose several entries at once: one message, one append, cheaper per entry."""
        if datas:
            ents = [Entry(data=d) for d in datas]
            self.raft.step(Message(type=MessageType.PROP, from_=self.raft.id, entries=ents))

    def propose_conf_change(self, cc: ConfChange | ConfChangeV2) -> None:
        """Propose a membership change. The leader turns it into an empty entry if another
        change is still unapplied (or it does not fit the joint/non-joint state)."""
        self.raft.step(Message(type=MessageType.PROP, from_=self.raft.id, entries=[conf_change_entry(cc)]))

    def apply_conf_change(self, cc: ConfChange | ConfChangeV2) -> ConfState:
        """Make a committed conf change take effect; the host calls it when applying the entry."""
        return self.raft.apply_conf_change(cc)

    def step(self, m: Message) -> None:
        """Handle a message from the network.

        A forwarded proposal that cannot be taken is dropped silently: its
        proposer is on another node and learns through its own timeout.
        """
        if m.type in _LOCAL_ONLY:
            raise StepLocalMessageError(f"{m.type.name} is a local message")
        try:
            self.raft.step(m)
        except ProposalDropped:
            if m.type != MessageType.PROP:
                raise

    def read_index(self, request_ctx: bytes) -> None:
        """Ask for a linearizable read point; the answer arrives in ``Ready.read_states``
        tagged with ``request_ctx`` (which must be unique). Dropped if no leader is known."""
        self.raft.step(Message(type=MessageType.READ_INDEX, from_=self.raft.id, entries=[Entry(data=request_ctx)]))

    def transfer_leader(self, transferee: int) -> None:
        """Ask the leader to hand leadership to ``transferee`` (forwarded if we are a follower)."""
        self.raft.step(Message(type=MessageType.TRANSFER_LEADER, from_=transferee))

    def report_unreachable(self, id: int) -> None:
        """The transport failed to send to ``id``: stop optimistic replication to it."""
        self.raft.step(Message(type=MessageType.UNREACHABLE, from_=id))

    def report_snapshot(self, id: int, failed: bool) -> None:
        """The outcome of sending a snapshot to ``id``; replication resumes by probing."""
        self.raft.step(Message(type=MessageType.SNAP_STATUS, from_=id, reject=failed))

    def has_ready(self) -> bool:
        r = self.raft
        log = r.log
        if r.msgs or r.read_states or r.append_pending:
            return True
        if log.unstable.entries or log.has_pending_snapshot() or log.has_next_committed_entries():
            return True
        if r.lead != self._prev_soft.lead or r.state != self._prev_soft.raft_state:
            return True
        p = self._prev_hard
        return r.term != p.term or r.vote != p.vote or log.committed != p.commit

    def ready(self) -> Ready:
        """Everything to persist, send and apply since the last Ready."""
        r = self.raft
        log = r.log
        r.flush_appends()
        rd = Ready(
            read_states=r.read_states,
            entries=log.unstable_entries(),
            snapshot=log.unstable.snapshot,
            committed_entries=log.next_committed_entries(),
            messages=r.msgs,
        )
        r.msgs = []
        r.read_states = []
        if r.lead != self._prev_soft.lead or r.state != self._prev_soft.raft_state:
            rd.soft_state = self._prev_soft = r.soft_state()
        p = self._prev_hard
        if r.term != p.term or r.vote != p.vote or log.committed != p.commit:
            rd.hard_state = self._prev_hard = r.hard_state()
            rd.must_sync = r.term != p.term or r.vote != p.vote
        rd.must_sync = rd.must_sync or bool(rd.entries)
        if rd.committed_entries:
            log.applying_to(rd.committed_entries[-1].index)
        return rd

    def advance(self, rd: Ready) -> None:
        """The host persisted and applied ``rd``."""
        r = self.raft
        log = r.log
        if rd.snapshot is not None:
            log.stable_snap_to(rd.snapshot.metadata.index)
            if rd.snapshot.metadata.index > log.applied:
                log.applied_to(rd.snapshot.metadata.index)
        if rd.entries:
            last = rd.entries[-1]
            log.stable_to(last.index, last.term)
        if rd.committed_entries:
            log.applied_to(rd.committed_entries[-1].index)
            r.reduce_uncommitted_size(rd.committed_entries)
        r.maybe_auto_leave_joint()

    def status(self) -> Status:
        r = self.raft
        progress: dict[int, Progress] = {}
        if r.state == StateType.LEADER:
            progress = {i: pr.clone() for i, pr in r.trk.progress.items()}
        return Status(
            id=r.id,
            hard_state=r.hard_state(),
            soft_state=r.soft_state(),
            applied=r.log.applied,
            progress=progress,
            conf_state=r.trk.conf_state(),
            lead_transferee=r.lead_transferee,
        )
