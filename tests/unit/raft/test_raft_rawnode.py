"""The RawNode contract: what a Ready holds, and when."""

from __future__ import annotations

import pytest
from raft_testnet import Network, make_storage

from etcdx.raft import (
    Config,
    Entry,
    HardState,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RaftError,
    RawNode,
    StateType,
    StepLocalMessageError,
)


def test_bootstrap_writes_membership_as_a_snapshot_at_index_1():
    s = MemoryStorage()
    RawNode.bootstrap(s, [3, 1, 2])
    hs, cs = s.initial_state()
    assert cs.voters == [1, 2, 3] and hs == HardState(term=1, vote=0, commit=1)
    assert s.first_index() == 2 and s.last_index() == 1
    with pytest.raises(RaftError):
        RawNode.bootstrap(s, [1])


def test_ready_reports_soft_and_hard_state_only_when_changed():
    s = make_storage([1])
    node = RawNode(Config(id=1, storage=s))
    assert not node.has_ready()
    node.campaign()
    rd = node.ready()
    assert rd.soft_state is not None and rd.soft_state.raft_state == StateType.LEADER
    assert rd.hard_state == HardState(term=2, vote=1, commit=2)
    assert rd.must_sync and [e.index for e in rd.entries] == [2]
    assert [e.index for e in rd.committed_entries] == [2]
    s.append(rd.entries)
    node.advance(rd)
    assert not node.has_ready()
    node.propose(b"x")
    rd = node.ready()
    assert rd.soft_state is None and rd.hard_state == HardState(term=2, vote=1, commit=3)


def test_committed_entries_are_handed_out_once_even_without_advance():
    node = RawNode(Config(id=1, storage=make_storage([1])))
    node.campaign()
    first = node.ready()
    second = node.ready()
    assert first.committed_entries and not second.committed_entries


def test_local_message_types_are_rejected_from_the_network():
    node = RawNode(Config(id=1, storage=make_storage([1, 2, 3])))
    for t in (MessageType.HUP, MessageType.BEAT, MessageType.CHECK_QUORUM, MessageType.SNAP_STATUS):
        with pytest.raises(StepLocalMessageError):
            node.step(Message(type=t, from_=2, to=1))


def test_forwarded_proposal_to_a_node_without_leader_is_dropped_silently():
    node = RawNode(Config(id=1, storage=make_storage([1, 2, 3])))
    node.step(Message(type=MessageType.PROP, from_=2, to=1, entries=[]))
    assert not node.ready().messages


def test_status_shows_progress_only_on_the_leader():
    n = Network([1, 2, 3])
    n.elect(1)
    st = n.nodes[1].status()
    assert sorted(st.progress) == [1, 2, 3] and st.progress[2].match == 2
    assert st.conf_state.voters == [1, 2, 3] and st.applied == 2
    assert n.nodes[2].status().progress == {}


def test_uncommitted_size_limit_drops_proposals_until_entries_commit():
    n = Network([1, 2, 3], max_uncommitted_entries_size=100)
    n.elect(1)
    n.isolate(1)
    n.nodes[1].propose(b"x" * 60)
    with pytest.raises(ProposalDropped):
        n.nodes[1].propose(b"y" * 60)
    n.heal()
    n.stabilize()
    n.nodes[1].propose(b"y" * 60)


def test_config_is_validated():
    with pytest.raises(RaftError):
        RawNode(Config(id=0, storage=MemoryStorage()))
    with pytest.raises(RaftError):
        RawNode(Config(id=1, storage=MemoryStorage(), election_tick=1, heartbeat_tick=1))


def test_committed_entries_are_paged_by_max_committed_size_per_ready():
    s = make_storage([1])
    s.append([Entry(term=1, index=i, data=b"x" * 10) for i in range(2, 12)])
    s.set_hard_state(HardState(term=1, commit=11))
    node = RawNode(Config(id=1, storage=s, max_committed_size_per_ready=35))
    pages = []
    while node.has_ready():
        rd = node.ready()
        pages.append([e.index for e in rd.committed_entries])
        node.advance(rd)
    assert pages == [[2, 3, 4], [5, 6, 7], [8, 9, 10], [11]]


def test_accessors_match_status():
    n = Network([1, 2, 3])
    n.elect(1)
    for i in (1, 2):
        node = n.nodes[i]
        st = node.status()
        assert (node.term, node.lead, node.commit, node.raft_state) == (
            st.hard_state.term,
            st.soft_state.lead,
            st.hard_state.commit,
            st.soft_state.raft_state,
        )


def test_a_granted_vote_is_in_the_same_ready_as_the_vote_response_and_must_be_synced():
    node = RawNode(Config(id=2, storage=make_storage([1, 2, 3]), pre_vote=False))
    node.step(Message(type=MessageType.VOTE, from_=1, to=2, term=2, index=1, log_term=1))
    rd = node.ready()
    assert rd.hard_state == HardState(term=2, vote=1, commit=1) and rd.must_sync
    assert [(m.type, m.to, m.reject) for m in rd.messages] == [(MessageType.VOTE_RESP, 1, False)]


def test_restart_after_crash_between_snapshot_and_hard_state_keeps_the_snapshot_committed():
    s = make_storage([1, 2, 3], [1, 1, 1])
    s.create_snapshot(3, None, b"state")
    s.compact(3)
    s.set_hard_state(HardState(term=1, commit=1))  # the snapshot was persisted, the new commit not
    node = RawNode(Config(id=1, storage=s, applied=3))
    assert node.commit == 3 and node.status().applied == 3
