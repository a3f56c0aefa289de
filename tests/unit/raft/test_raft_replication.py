"""Log replication and commitment (Raft §5.3, §5.4; paper figures 7 and 8)."""

from __future__ import annotations

import pytest
from raft_testnet import Network, make_storage

from etcdx.raft import Message, MessageType, StateType

# Paper figure 7, indexes 2.. (index 1, term 1 is the bootstrap point every log shares).
LEADER_LOG = [1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7 = {
    "a": [1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 4],
    "c": [1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 4, 4, 4, 4],
    "f": [1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("case", sorted(FIGURE_7))
def test_figure_7_follower_log_is_reconciled_with_the_leaders(case):
    peers = [1, 2, 3]
    storages = {
        1: make_storage(peers, LEADER_LOG, term=7),
        2: make_storage(peers, LEADER_LOG, term=7),
        3: make_storage(peers, FIGURE_7[case], term=7),
    }
    n = Network(peers, storages=storages)
    n.elect(1)
    assert n.term(1) == 8
    n.nodes[1].propose(b"after")
    n.stabilize()
    expected = LEADER_LOG + [8, 8]
    assert n.log_terms(3) == expected
    assert n.storages[3].last_index() == len(expected) + 1
    assert n.committed(3) == n.committed(1) == len(expected) + 1
    assert n.applied_data(3) == [b"after"]


def test_figure_7_f_needs_one_round_trip_per_conflicting_term():
    peers = [1, 2, 3]
    storages = {
        1: make_storage(peers, LEADER_LOG, term=7),
        2: make_storage(peers, LEADER_LOG, term=7),
        3: make_storage(peers, FIGURE_7["f"], term=7),
    }
    n = Network(peers, storages=storages)
    n.elect(1)
    rejects = [m for m in n.messages_of(MessageType.APP_RESP) if m.from_ == 3 and m.reject]
    # Follower f diverges after index 3 with terms 2 and 3: the hints skip whole terms
    # instead of one index per round trip (8 entries would take 8 rejections).
    assert 1 <= len(rejects) <= 3


def test_figure_8_leader_does_not_commit_previous_term_entries_by_counting():
    peers = [1, 2, 3, 4, 5]
    storages = {
        1: make_storage(peers, [2], term=3),
        2: make_storage(peers, [2], term=3),
        3: make_storage(peers, [], term=3),
        4: make_storage(peers, [], term=3),
        5: make_storage(peers, [3], term=3),
    }
    n = Network(peers, storages=storages, pre_vote=False)
    n.isolate(5)
    # Hold back replication so that we decide what each follower acknowledges.
    n.filter = lambda m: m.type != MessageType.APP
    n.elect(1)
    assert n.term(1) == 4
    leader = n.nodes[1]
    assert n.log_terms(1) == [2, 4]
    # S1, S2 and S3 hold the term-2 entry at index 2: a majority, yet it must not commit (§5.4.2).
    leader.step(Message(type=MessageType.APP_RESP, from_=2, to=1, term=4, index=2))
    leader.step(Message(type=MessageType.APP_RESP, from_=3, to=1, term=4, index=2))
    assert n.committed(1) == 1
    # Once an entry of the current term is on a majority, it and everything before it commit.
    leader.step(Message(type=MessageType.APP_RESP, from_=2, to=1, term=4, index=3))
    assert n.committed(1) == 1
    leader.step(Message(type=MessageType.APP_RESP, from_=3, to=1, term=4, index=3))
    assert n.committed(1) == 3


def test_figure_8_stale_entry_is_overwritten_when_new_leader_has_a_later_term():
    peers = [1, 2, 3, 4, 5]
    storages = {
        1: make_storage(peers, [2], term=3),
        2: make_storage(peers, [2], term=3),
        3: make_storage(peers, [2], term=3),
        4: make_storage(peers, [], term=3),
        5: make_storage(peers, [3], term=3),
    }
    n = Network(peers, storages=storages, pre_vote=False)
    # S5's last term (3) beats everyone's (2), so it can win with S2, S3, S4 and overwrite index 2.
    n.isolate(1)
    n.elect(5)
    n.nodes[5].propose(b"x")
    n.stabilize()
    for i in (2, 3, 4, 5):
        assert n.log_terms(i) == [3, 4, 4]
    assert n.applied_data(2) == [b"x"]


def test_followers_forward_proposals_to_the_leader():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[3].propose(b"from-3")
    n.stabilize()
    for i in (1, 2, 3):
        assert n.applied_data(i) == [b"from-3"]


def test_proposals_between_readies_share_one_append_per_follower():
    n = Network([1, 2, 3])
    n.elect(1)
    n.trace.clear()
    for i in range(100):
        n.nodes[1].propose(b"p%d" % i)
    n.stabilize()
    apps = [m for m in n.messages_of(MessageType.APP) if m.entries]
    assert sorted(len(m.entries) for m in apps) == [100, 100]
    assert n.applied_data(2) == [b"p%d" % i for i in range(100)]


def test_max_size_per_msg_splits_appends():
    n = Network([1, 2, 3], max_size_per_msg=1000)
    n.elect(1)
    n.trace.clear()
    n.nodes[1].propose_many([b"x" * 100] * 50)
    n.stabilize()
    apps = [m for m in n.messages_of(MessageType.APP) if m.entries and m.to == 2]
    assert all(sum(len(e.data) for e in m.entries) <= 1000 for m in apps)
    assert sum(len(m.entries) for m in apps) == 50
    assert len(n.applied_data(2)) == 50


def test_inflight_window_bounds_unacknowledged_appends():
    n = Network([1, 2, 3], max_size_per_msg=1, max_inflight_msgs=3)
    n.elect(1)
    # Follower 2 never acknowledges: the leader may have at most 3 appends in flight to it.
    n.filter = lambda m: not (m.type == MessageType.APP_RESP and m.from_ == 2)
    n.trace.clear()
    n.nodes[1].propose_many([b"x"] * 10)
    n.stabilize()
    assert len([m for m in n.messages_of(MessageType.APP) if m.to == 2 and m.entries]) == 3
    assert len([m for m in n.messages_of(MessageType.APP) if m.to == 3 and m.entries]) == 10
    assert n.committed(1) == n.nodes[1].raft.log.last_index()


def test_lost_appends_are_resent_after_probe_on_heartbeat():
    n = Network([1, 2, 3])
    n.elect(1)
    n.cut(1, 3)
    n.nodes[1].propose(b"a")
    n.stabilize()
    n.nodes[1].report_unreachable(3)
    n.heal()
    n.tick_all(3)
    assert n.applied_data(3) == [b"a"]


def test_follower_rejects_append_that_does_not_match_and_hints_its_log():
    n = Network([1, 2, 3])
    node = n.nodes[2]
    node.step(Message(type=MessageType.APP, from_=1, to=2, term=2, index=5, log_term=2, commit=1))
    (resp,) = node.ready().messages
    assert resp.reject and resp.index == 5 and resp.reject_hint == 1 and resp.log_term == 1


def test_commit_index_reaches_followers_through_heartbeats():
    n = Network([1, 2, 3])
    n.elect(1)
    # Followers see the append but not the commit it enabled.
    n.filter = lambda m: not (m.type == MessageType.APP and not m.entries)
    n.nodes[1].propose(b"a")
    n.stabilize()
    assert n.committed(1) == 3 and n.committed(2) == 2
    n.filter = None
    n.tick_all(1)
    assert n.committed(2) == 3


def test_leader_appends_an_empty_entry_of_its_term():
    n = Network([1, 2, 3])
    n.elect(1)
    (e,) = [e for e in n.applied[1] if e.index == 2]
    assert e.term == 2 and e.data == b""


def test_state_after_many_elections_stays_consistent():
    seed = 3
    print("seed", seed)
    n = Network([1, 2, 3], seed=seed)
    for round_ in range(6):
        leader = n.leader()
        if leader is None:
            n.tick_all(30)
            leader = n.leader()
        assert leader is not None
        n.nodes[leader].propose(b"r%d" % round_)
        n.stabilize()
        n.isolate(leader)
        n.tick_all(30)
        n.heal()
        n.tick_all(5)
    logs = {i: [(e.index, e.term, e.data) for e in n.applied[i]] for i in n.ids}
    shortest = min(len(v) for v in logs.values())
    assert logs[1][:shortest] == logs[2][:shortest] == logs[3][:shortest]
    assert sorted(n.applied_data(1)) == [b"r%d" % i for i in range(6)]
    assert n.state(n.leader()) == StateType.LEADER


def test_duplicated_forwarded_proposal_is_appended_twice_without_corrupting_the_log():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[2].propose(b"dup")
    (fwd,) = n.handle_ready(2)
    n.nodes[1].step(fwd)
    n.nodes[1].step(fwd)
    n.stabilize()
    ents = n.applied[1][-2:]
    assert [(e.data, e.index) for e in ents] == [(b"dup", 3), (b"dup", 4)]
    assert n.applied_data(3) == [b"dup", b"dup"]
