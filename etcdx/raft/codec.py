"""Protobuf wire encoding of the raft values (``etcdx/pb/raft.proto``).

The core works on dataclasses; this module converts at the edges: the
transport encodes Messages, the WAL may encode Entries and HardStates, and
conf-change entries carry an encoded ConfChange(V2) as their data.
"""

from __future__ import annotations

from etcdx.pb import raft_pb2 as pb
from etcdx.raft.types import (
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
    Snapshot,
    SnapshotMetadata,
)


def _entry_to_pb(e: Entry) -> pb.Entry:
    return pb.Entry(term=e.term, index=e.index, type=e.type, data=e.data)


# Indexing a tuple is several times cheaper than calling the enum, and entries are the bulk.
_ENTRY_TYPES = tuple(EntryType)


def _entry_from_pb(p: pb.Entry) -> Entry:
    return Entry(p.term, p.index, _ENTRY_TYPES[p.type], p.data)


def _conf_state_to_pb(cs: ConfState) -> pb.ConfState:
    return pb.ConfState(
        voters=cs.voters,
        learners=cs.learners,
        voters_outgoing=cs.voters_outgoing,
        learners_next=cs.learners_next,
        auto_leave=cs.auto_leave,
    )


def _conf_state_from_pb(p: pb.ConfState) -> ConfState:
    return ConfState(
        voters=list(p.voters),
        learners=list(p.learners),
        voters_outgoing=list(p.voters_outgoing),
        learners_next=list(p.learners_next),
        auto_leave=p.auto_leave,
    )


def _snapshot_to_pb(s: Snapshot) -> pb.Snapshot:
    md = s.metadata
    return pb.Snapshot(
        data=s.data,
        metadata=pb.SnapshotMetadata(conf_state=_conf_state_to_pb(md.conf_state), index=md.index, term=md.term),
    )


def _snapshot_from_pb(p: pb.Snapshot) -> Snapshot:
    md = p.metadata
    return Snapshot(
        data=p.data,
        metadata=SnapshotMetadata(conf_state=_conf_state_from_pb(md.conf_state), index=md.index, term=md.term),
    )


def encode_entry(e: Entry) -> bytes:
    return _entry_to_pb(e).SerializeToString()


def decode_entry(b: bytes) -> Entry:
    return _entry_from_pb(pb.Entry.FromString(b))


def encode_hard_state(hs: HardState) -> bytes:
    return pb.HardState(term=hs.term, vote=hs.vote, commit=hs.commit).SerializeToString()


def decode_hard_state(b: bytes) -> HardState:
    p = pb.HardState.FromString(b)
    return HardState(term=p.term, vote=p.vote, commit=p.commit)


def encode_conf_state(cs: ConfState) -> bytes:
    return _conf_state_to_pb(cs).SerializeToString()


def decode_conf_state(b: bytes) -> ConfState:
    return _conf_state_from_pb(pb.ConfState.FromString(b))


def encode_snapshot(s: Snapshot) -> bytes:
    return _snapshot_to_pb(s).SerializeToString()


def decode_snapshot(b: bytes) -> Snapshot:
    return _snapshot_from_pb(pb.Snapshot.FromString(b))


def encode_message(m: Message) -> bytes:
    p = pb.Message(
        type=m.type,
        to=m.to,
        term=m.term,
        log_term=m.log_term,
        index=m.index,
        commit=m.commit,
        reject=m.reject,
        reject_hint=m.reject_hint,
        context=m.context,
    )
    setattr(p, "from", m.from_)  # "from" is a Python keyword
    add = p.entries.add  # cheaper per entry than building pb.Entry objects and a list
    for e in m.entries:
        add(term=e.term, index=e.index, type=e.type, data=e.data)
    if m.snapshot is not None:
        p.snapshot.CopyFrom(_snapshot_to_pb(m.snapshot))
    return p.SerializeToString()


def decode_message(b: bytes) -> Message:
    p = pb.Message.FromString(b)
    return Message(
        type=MessageType(p.type),
        to=p.to,
        from_=getattr(p, "from"),
        term=p.term,
        log_term=p.log_term,
        index=p.index,
        entries=[Entry(e.term, e.index, _ENTRY_TYPES[e.type], e.data) for e in p.entries],
        commit=p.commit,
        snapshot=_snapshot_from_pb(p.snapshot) if p.HasField("snapshot") else None,
        reject=p.reject,
        reject_hint=p.reject_hint,
        context=p.context,
    )


def encode_conf_change(cc: ConfChange | ConfChangeV2) -> bytes:
    """The data of a CONF_CHANGE (V1) or CONF_CHANGE_V2 entry."""
    if isinstance(cc, ConfChange):
        return pb.ConfChange(type=cc.type, node_id=cc.node_id, context=cc.context, id=cc.id).SerializeToString()
    return pb.ConfChangeV2(
        transition=cc.transition,
        changes=[pb.ConfChangeSingle(type=c.type, node_id=c.node_id) for c in cc.changes],
        context=cc.context,
    ).SerializeToString()


def decode_conf_change(entry: Entry) -> ConfChange | ConfChangeV2:
    """The change carried by a conf-change entry, V1 or V2 according to its type."""
    if entry.type == EntryType.CONF_CHANGE:
        p = pb.ConfChange.FromString(entry.data)
        return ConfChange(type=ConfChangeType(p.type), node_id=p.node_id, context=p.context, id=p.id)
    if entry.type == EntryType.CONF_CHANGE_V2:
        p2 = pb.ConfChangeV2.FromString(entry.data)
        return ConfChangeV2(
            transition=ConfChangeTransition(p2.transition),
            changes=[ConfChangeSingle(type=ConfChangeType(c.type), node_id=c.node_id) for c in p2.changes],
            context=p2.context,
        )
    raise ValueError(f"entry {entry.index} of type {entry.type!r} is not a conf change")


def conf_change_entry(cc: ConfChange | ConfChangeV2) -> Entry:
    """An unappended log entry proposing ``cc``."""
    etype = EntryType.CONF_CHANGE if isinstance(cc, ConfChange) else EntryType.CONF_CHANGE_V2
    return Entry(type=etype, data=encode_conf_change(cc))
