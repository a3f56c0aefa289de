"""The Raft consensus core: a pure, deterministic state machine (no I/O, clock or threads).

Hosts drive a ``RawNode``: tick it, step network messages into it, propose,
and run the Ready loop described in ``etcdx.raft.rawnode``. Randomness comes
only from ``Config.rand``, so the same inputs and seed give the same outputs.

Modules, one concept each: ``core`` (the state machine), ``rawnode`` (Ready
and the host API), ``log`` (stable + unstable log), ``storage`` (Storage,
MemoryStorage), ``progress`` and ``tracker`` (the leader's view of followers),
``quorum`` (majority and joint arithmetic), ``confchange`` (membership
transitions), ``read_only`` (ReadIndex), ``codec`` (protobuf wire format).
"""

from etcdx.raft.config import Config
from etcdx.raft.errors import (
    CompactedError,
    ConfChangeError,
    ProposalDropped,
    RaftError,
    SnapOutOfDateError,
    StepLocalMessageError,
    UnavailableError,
)
from etcdx.raft.rawnode import RawNode, Ready, Status
from etcdx.raft.read_only import ReadOnlyOption
from etcdx.raft.storage import MemoryStorage, Storage
from etcdx.raft.types import (
    NONE,
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateType,
)

__all__ = [
    "NONE",
    "CompactedError",
    "ConfChange",
    "ConfChangeError",
    "ConfChangeSingle",
    "ConfChangeTransition",
    "ConfChangeType",
    "ConfChangeV2",
    "ConfState",
    "Config",
    "Entry",
    "EntryType",
    "HardState",
    "MemoryStorage",
    "Message",
    "MessageType",
    "ProposalDropped",
    "RaftError",
    "RawNode",
    "ReadOnlyOption",
    "ReadState",
    "Ready",
    "SnapOutOfDateError",
    "Snapshot",
    "SnapshotMetadata",
    "SoftState",
    "StateType",
    "Status",
    "StepLocalMessageError",
    "Storage",
    "UnavailableError",
]
