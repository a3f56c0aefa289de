"""The host's half of the Ready contract: in which order to act on one Ready.

Both hosts of the raft core walk the same plan: the server
(``etcdx.server.raft_driver``, where persisting is an fsync on a worker thread
and messages keep arriving meanwhile) and the simulator (``etcdx.sim``, where a
seeded schedule crashes nodes between any two steps and while a write is on its
way to disk). So the ordering rules the server relies on are the ones the
simulator checks deterministically, not only timed real processes.

The rules:

1. **Persist before you vouch.** Votes, append and heartbeat acks, read-index
   answers and everything a follower or candidate sends speak for state that
   must survive a crash, so they go out only after PERSIST (the snapshot, then
   the entries and hard state, fsynced when ``rd.must_sync``).
2. **A leader replicates while it writes** (raft thesis 10.2.1): its appends,
   heartbeats, snapshots and leadership hand-offs go out *before* its own
   PERSIST, so its fsync and its followers' run in parallel. Its term and vote
   were durable before it could win, and whatever it learns while it writes
   (a commit index counted with its own unwritten copy) leaves it only in a
   later Ready, which the host takes only after ADVANCE, after this write.
3. **Apply only what is durable:** APPLY (restore from the snapshot, then the
   committed entries) comes after PERSIST; committed entries may include
   entries persisted by this very Ready.
4. **Reads after apply:** a ReadIndex answer is served once the state machine
   has applied up to its index, so READ_STATES follows APPLY.
5. **ADVANCE last**, and never call ``ready()`` before it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from etcdx.raft.rawnode import Ready
from etcdx.raft.types import Message, MessageType

# What a leader may send before its own persist (rule 2).
LEADER_EARLY = frozenset({MessageType.APP, MessageType.HEARTBEAT, MessageType.SNAP, MessageType.TIMEOUT_NOW})


class StepKind(enum.Enum):
    SEND = "send"
    PERSIST = "persist"
    APPLY = "apply"
    READ_STATES = "read-states"
    ADVANCE = "advance"


@dataclass(frozen=True, slots=True)
class Step:
    kind: StepKind
    messages: list[Message] = field(default_factory=list)  # for SEND


def must_persist(rd: Ready) -> bool:
    return bool(rd.entries) or rd.hard_state is not None or (rd.snapshot is not None and not rd.snapshot.is_empty())


def plan(rd: Ready, leader: bool) -> list[Step]:
    """The steps for ``rd``, in order; ``leader``: the node is leader as of this Ready."""
    early = [m for m in rd.messages if m.type in LEADER_EARLY] if leader else []
    late = [m for m in rd.messages if m.type not in LEADER_EARLY] if leader else rd.messages
    steps: list[Step] = []
    if early:
        steps.append(Step(StepKind.SEND, early))
    if must_persist(rd):
        steps.append(Step(StepKind.PERSIST))
    if late:
        steps.append(Step(StepKind.SEND, late))
    if rd.committed_entries or (rd.snapshot is not None and not rd.snapshot.is_empty()):
        steps.append(Step(StepKind.APPLY))
    if rd.read_states:
        steps.append(Step(StepKind.READ_STATES))
    steps.append(Step(StepKind.ADVANCE))
    return steps
