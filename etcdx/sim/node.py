"""One simulated member: a disk that survives crashes and a process that does not.

The disk is the ``MemoryStorage`` the raft core reads; the host writes to it
only what a ``Ready`` asks to persist, so a crash loses exactly what the host
had not persisted yet. Everything else (the raft core, the key-value state,
pending reads) is the process and is rebuilt from the disk on restart.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field

from etcdx.raft import Config, RawNode
from etcdx.raft.storage import MemoryStorage
from etcdx.raft.types import ConfState, StateType
from etcdx.sim.kv import KVStore


class CrashPoint(enum.Enum):
    """Where in the host loop (persist, send, apply, advance) an armed crash strikes.

    ``AFTER_VOTE`` waits for a Ready that grants a vote and strikes once it is sent:
    the moment a node that forgot its vote would do the most harm.
    """

    BEFORE_PERSIST = "before-persist"
    BEFORE_SEND = "before-send"
    MID_SEND = "mid-send"
    BEFORE_APPLY = "before-apply"
    BEFORE_ADVANCE = "before-advance"
    AFTER_VOTE = "after-vote"


@dataclass(slots=True)
class ReadWait:
    """A ReadIndex answer waiting for the state machine to catch up with ``index``."""

    index: int
    op_id: int
    key: str


@dataclass(slots=True)
class SimNode:
    id: int
    disk: MemoryStorage
    raw: RawNode | None = None
    kv: KVStore = field(default_factory=KVStore)
    conf_state: ConfState = field(default_factory=ConfState)
    role: StateType = StateType.FOLLOWER
    lead: int = 0
    term: int = 0
    reads: list[ReadWait] = field(default_factory=list)
    crash_at: CrashPoint | None = None
    paused_until: int = 0
    clock_stalled_until: int = 0
    removed: bool = False
    applied_since_snapshot: int = 0
    # A Ready whose write is on its way to disk, and the steps left after it.
    writing: object | None = None

    @property
    def alive(self) -> bool:
        return self.raw is not None

    def start(
        self, rng: random.Random, election_tick: int, pre_vote: bool, max_msg_size: int
    ) -> RawNode:
        """Boot the process from what is on disk."""
        snap = self.disk.snapshot()
        hs, cs = self.disk.initial_state()
        self.kv = KVStore.restore(snap.data)
        self.kv.applied = snap.metadata.index
        self.conf_state = cs
        self.role, self.lead, self.term = StateType.FOLLOWER, 0, hs.term
        self.reads = []
        self.applied_since_snapshot = 0
        self.raw = RawNode(
            Config(
                id=self.id,
                storage=self.disk,
                election_tick=election_tick,
                heartbeat_tick=1,
                applied=snap.metadata.index,
                pre_vote=pre_vote,
                max_size_per_msg=max_msg_size,
                rand=random.Random(rng.getrandbits(64)),
            )
        )
        return self.raw

    def stop(self) -> None:
        """Lose the process: the raft core, the state machine and pending reads."""
        self.raw = None
        self.reads = []
        self.writing = None  # a write not yet on disk is lost with the process
        self.crash_at = None
        self.paused_until = 0
        self.clock_stalled_until = 0
        self.role, self.lead = StateType.FOLLOWER, 0
