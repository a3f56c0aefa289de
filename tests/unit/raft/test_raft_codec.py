"""The protobuf wire encoding round-trips every raft value."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from etcdx.raft import (
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
from etcdx.raft import codec

u64 = st.integers(0, 2**64 - 1)
ids = st.lists(st.integers(1, 2**64 - 1), max_size=4)
entries = st.builds(Entry, term=u64, index=u64, type=st.sampled_from(EntryType), data=st.binary(max_size=32))
conf_states = st.builds(
    ConfState, voters=ids, learners=ids, voters_outgoing=ids, learners_next=ids, auto_leave=st.booleans()
)
snapshots = st.builds(
    Snapshot,
    data=st.binary(max_size=32),
    metadata=st.builds(SnapshotMetadata, conf_state=conf_states, index=u64, term=u64),
)
messages = st.builds(
    Message,
    type=st.sampled_from(MessageType),
    to=u64,
    from_=u64,
    term=u64,
    log_term=u64,
    index=u64,
    entries=st.lists(entries, max_size=4),
    commit=u64,
    snapshot=st.none() | snapshots,
    reject=st.booleans(),
    reject_hint=u64,
    context=st.binary(max_size=16),
)
singles = st.builds(ConfChangeSingle, type=st.sampled_from(ConfChangeType), node_id=u64)


@given(messages)
def test_message_round_trips(m):
    assert codec.decode_message(codec.encode_message(m)) == m


@given(entries)
def test_entry_round_trips(e):
    assert codec.decode_entry(codec.encode_entry(e)) == e


@given(st.builds(HardState, term=u64, vote=u64, commit=u64))
def test_hard_state_round_trips(hs):
    assert codec.decode_hard_state(codec.encode_hard_state(hs)) == hs


@given(snapshots)
def test_snapshot_round_trips(s):
    assert codec.decode_snapshot(codec.encode_snapshot(s)) == s


@given(conf_states)
def test_conf_state_round_trips(cs):
    assert codec.decode_conf_state(codec.encode_conf_state(cs)) == cs


@given(st.builds(ConfChange, type=st.sampled_from(ConfChangeType), node_id=u64, context=st.binary(max_size=8), id=u64))
def test_conf_change_round_trips_through_its_entry(cc):
    assert codec.decode_conf_change(codec.conf_change_entry(cc)) == cc


@given(
    st.builds(
        ConfChangeV2,
        transition=st.sampled_from(ConfChangeTransition),
        changes=st.lists(singles, max_size=4),
        context=st.binary(max_size=8),
    )
)
def test_conf_change_v2_round_trips_through_its_entry(cc):
    assert codec.decode_conf_change(codec.conf_change_entry(cc)) == cc
