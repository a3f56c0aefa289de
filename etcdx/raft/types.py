"""The values that flow in and out of the raft core.

These are plain slotted dataclasses rather than protobuf messages: the core
creates and inspects millions of them, and attribute access on a dataclass is
the cheapest thing Python offers. ``etcdx.raft.codec`` gives them a protobuf
wire encoding for the transport and the WAL-independent snapshot metadata.

They are shared by every layer that talks about the replicated log (the core,
the WAL, the transport, the server), so they live in the lowest of them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NONE = 0
"""The id that means "no node" (no leader, no vote)."""


class EntryType(enum.IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1  # payload: an encoded ConfChange (single change, V1 semantics)
    CONF_CHANGE_V2 = 2  # payload: an encoded ConfChangeV2 (joint consensus)


class MessageType(enum.IntEnum):
    # Local messages: never sent over the network.
    HUP = 0  # start an election
    BEAT = 1  # leader: send heartbeats
    PROP = 2  # a proposal (forwarded to the leader by followers)
    # Network messages.
    APP = 3
    APP_RESP = 4
    VOTE = 5
    VOTE_RESP = 6
    SNAP = 7
    HEARTBEAT = 8
    HEARTBEAT_RESP = 9
    UNREACHABLE = 10  # local: the transport could not reach a peer
    SNAP_STATUS = 11  # local: outcome of sending a snapshot
    CHECK_QUORUM = 12  # local
    TRANSFER_LEADER = 13
    TIMEOUT_NOW = 14
    READ_INDEX = 15
    READ_INDEX_RESP = 16
    PRE_VOTE = 17
    PRE_VOTE_RESP = 18


class StateType(enum.IntEnum):
    FOLLOWER = 0
    CANDIDATE = 1
    LEADER = 2
    PRE_CANDIDATE = 3


class ConfChangeType(enum.IntEnum):
    ADD_NODE = 0
    REMOVE_NODE = 1
    UPDATE_NODE = 2
    ADD_LEARNER_NODE = 3


class ConfChangeTransition(enum.IntEnum):
    AUTO = 0  # simple change if possible, else joint with automatic leave
    JOINT_IMPLICIT = 1  # joint, left automatically
    JOINT_EXPLICIT = 2  # joint, left by an explicit empty ConfChangeV2


@dataclass(slots=True)
class Entry:
    term: int = 0
    index: int = 0
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(slots=True)
class HardState:
    """What must be on stable storage before a message that depends on it is sent."""

    term: int = 0
    vote: int = NONE
    commit: int = 0

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == NONE and self.commit == 0


@dataclass(slots=True)
class ConfState:
    voters: list[int] = field(default_factory=list)
    learners: list[int] = field(default_factory=list)
    voters_outgoing: list[int] = field(default_factory=list)  # non-empty while joint
    learners_next: list[int] = field(default_factory=list)
    auto_leave: bool = False


@dataclass(slots=True)
class SnapshotMetadata:
    conf_state: ConfState = field(default_factory=ConfState)
    index: int = 0
    term: int = 0


@dataclass(slots=True)
class Snapshot:
    """A point-in-time image of the application state; ``data`` is opaque to raft."""

    data: bytes = b""
    metadata: SnapshotMetadata = field(default_factory=SnapshotMetadata)

    def is_empty(self) -> bool:
        return self.metadata.index == 0


@dataclass(slots=True)
class ConfChangeSingle:
    type: ConfChangeType = ConfChangeType.ADD_NODE
    node_id: int = NONE


@dataclass(slots=True)
class ConfChange:
    """A single membership change (one voter or learner added, removed or updated)."""

    type: ConfChangeType = ConfChangeType.ADD_NODE
    node_id: int = NONE
    context: bytes = b""
    id: int = 0


@dataclass(slots=True)
class ConfChangeV2:
    """Several changes at once; more than one voter change goes through joint consensus.

    An empty ``changes`` list asks to leave a joint configuration.
    """

    transition: ConfChangeTransition = ConfChangeTransition.AUTO
    changes: list[ConfChangeSingle] = field(default_factory=list)
    context: bytes = b""


@dataclass(slots=True)
class Message:
    type: MessageType = MessageType.HUP
    to: int = NONE
    from_: int = NONE
    term: int = 0
    log_term: int = 0
    index: int = 0
    entries: list[Entry] = field(default_factory=list)
    commit: int = 0
    snapshot: Snapshot | None = None
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""


@dataclass(slots=True)
class SoftState:
    """Volatile state worth reporting (not persisted): who leads and in what role we are."""

    lead: int = NONE
    raft_state: StateType = StateType.FOLLOWER


@dataclass(slots=True)
class ReadState:
    """A ReadIndex answer: reads tagged ``request_ctx`` may be served once applied >= index."""

    index: int = 0
    request_ctx: bytes = b""
