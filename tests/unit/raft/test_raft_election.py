"""Leader election (Raft §5.2, thesis §9.6 pre-vote, §6.2 check-quorum)."""

from __future__ import annotations

import pytest
from raft_testnet import Network, make_storage

from etcdx.raft import Message, MessageType, ProposalDropped, StateType


def test_three_nodes_elect_the_campaigner():
    n = Network([1, 2, 3])
    n.elect(1)
    assert [n.state(i) for i in (1, 2, 3)] == [StateType.LEADER, StateType.FOLLOWER, StateType.FOLLOWER]
    assert all(n.nodes[i].raft.lead == 1 for i in (1, 2, 3))
    assert {n.term(i) for i in (1, 2, 3)} == {2}


def test_single_voter_elects_itself_immediately():
    n = Network([1])
    n.elect(1)
    n.nodes[1].propose(b"a")
    n.stabilize()
    assert n.applied_data(1) == [b"a"]


def test_election_timeout_elects_exactly_one_leader():
    seed = 7
    print("seed", seed)
    n = Network([1, 2, 3, 4, 5], seed=seed)
    n.tick_all(40)
    leader = n.leader()
    assert leader is not None
    assert all(n.nodes[i].raft.lead == leader for i in n.ids)


@pytest.mark.parametrize("seed", range(5))
def test_split_votes_are_resolved_by_randomized_timeouts(seed):
    print("seed", seed)
    n = Network([1, 2, 3, 4], seed=seed, pre_vote=False)
    # Two candidates in a 4-node cluster, each reaching one voter: the vote splits 2-2.
    n.cut(1, 4)
    n.cut(3, 2)
    n.nodes[1].campaign()
    n.nodes[3].campaign()
    n.stabilize()
    assert n.leader() is None
    assert n.state(1) == n.state(3) == StateType.CANDIDATE
    n.heal()
    n.tick_all(60)
    assert n.leader() is not None


def test_candidate_with_stale_log_cannot_win():
    # Node 1's log ends at term 2; nodes 2 and 3 have an entry of term 3 (§5.4.1).
    storages = {1: make_storage([1, 2, 3], [2]), 2: make_storage([1, 2, 3], [2, 3]), 3: make_storage([1, 2, 3], [2, 3])}
    n = Network([1, 2, 3], storages=storages)
    n.nodes[1].campaign()
    n.stabilize()
    assert n.state(1) != StateType.LEADER
    n.elect(2)


def test_a_node_grants_one_vote_per_term():
    n = Network([1, 2, 3], pre_vote=False)
    node = n.nodes[2]
    node.step(Message(type=MessageType.VOTE, from_=1, to=2, term=5, index=1, log_term=1))
    node.step(Message(type=MessageType.VOTE, from_=3, to=2, term=5, index=1, log_term=1))
    node.step(Message(type=MessageType.VOTE, from_=1, to=2, term=5, index=1, log_term=1))
    replies = [(m.to, m.reject) for m in node.ready().messages]
    assert replies == [(1, False), (3, True), (1, False)]
    assert node.raft.vote == 1


def test_pre_vote_keeps_a_partitioned_node_from_inflating_its_term():
    n = Network([1, 2, 3])
    n.elect(1)
    term = n.term(1)
    n.isolate(3)
    n.tick(3, 100)
    n.stabilize()
    assert n.term(3) == term
    assert n.state(3) == StateType.PRE_CANDIDATE
    n.heal()
    n.tick_all(5)
    # Rejoining does not disturb the leader.
    assert n.leader() == 1
    assert n.term(1) == term


def test_without_pre_vote_a_rejoining_node_forces_a_new_term():
    n = Network([1, 2, 3], pre_vote=False, check_quorum=False)
    n.elect(1)
    term = n.term(1)
    n.isolate(3)
    n.tick(3, 100)
    n.stabilize()
    assert n.term(3) > term
    n.heal()
    n.tick_all(30)
    assert n.term(1) > term


def test_followers_ignore_votes_while_their_leader_is_alive():
    n = Network([1, 2, 3], pre_vote=False)
    n.elect(1)
    term = n.term(1)
    n.nodes[3].campaign()
    n.stabilize()
    # The leader lease: 2 heard from 1 within an election timeout, so it ignores 3's vote request.
    assert n.leader() == 1
    assert n.nodes[2].raft.term == term


def test_partitioned_leader_steps_down_and_its_proposals_are_not_committed():
    n = Network([1, 2, 3])
    n.elect(1)
    n.isolate(1)
    n.nodes[1].propose(b"stale")
    n.stabilize()
    for _ in range(2 * n.nodes[1].raft.election_timeout):
        n.tick(1)
    n.stabilize()
    assert n.state(1) == StateType.FOLLOWER  # check-quorum: no quorum heard from
    n.tick_all(0)
    for _ in range(40):
        n.tick(2)
        n.tick(3)
        n.stabilize()
    new_leader = n.leader()
    assert new_leader in (2, 3)
    n.nodes[new_leader].propose(b"fresh")
    n.stabilize()
    n.heal()
    n.tick_all(5)
    for i in (1, 2, 3):
        assert n.applied_data(i) == [b"fresh"]


def test_leader_without_check_quorum_stays_leader_when_partitioned():
    n = Network([1, 2, 3], check_quorum=False)
    n.elect(1)
    n.isolate(1)
    n.tick(1, 50)
    assert n.state(1) == StateType.LEADER


def test_proposal_without_leader_is_dropped():
    n = Network([1, 2, 3])
    with pytest.raises(ProposalDropped):
        n.nodes[1].propose(b"x")


def test_candidate_drops_proposals():
    n = Network([1, 2, 3])
    n.isolate(1)
    n.nodes[1].campaign()
    assert n.state(1) == StateType.PRE_CANDIDATE
    with pytest.raises(ProposalDropped):
        n.nodes[1].propose(b"x")


def test_forwarding_disabled_drops_follower_proposals():
    n = Network([1, 2, 3], disable_proposal_forwarding=True)
    n.elect(1)
    with pytest.raises(ProposalDropped):
        n.nodes[2].propose(b"x")


def test_vote_requests_carry_last_log_position():
    n = Network([1, 2, 3], pre_vote=False)
    n.nodes[1].campaign()
    n.stabilize()
    votes = n.messages_of(MessageType.VOTE)
    assert {(m.to, m.index, m.log_term) for m in votes} == {(2, 1, 1), (3, 1, 1)}


def test_restarted_node_keeps_term_and_vote():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[2].propose(b"x")
    n.stabilize()
    before = n.nodes[2].raft.hard_state()
    node = n.restart(2)
    assert node.raft.hard_state() == before
    assert node.raft.log.last_index() == n.nodes[1].raft.log.last_index()


def test_candidate_that_hears_from_a_leader_of_its_term_follows_it():
    n = Network([1, 2, 3], pre_vote=False)
    n.isolate(3)
    n.nodes[3].campaign()
    term = n.term(3)
    n.nodes[3].step(Message(type=MessageType.APP, from_=1, to=3, term=term, index=1, log_term=1, commit=1))
    assert n.state(3) == StateType.FOLLOWER and n.nodes[3].raft.lead == 1


def test_learner_ignores_timeout_now():
    from etcdx.raft import ConfChange, ConfChangeType

    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[1].propose_conf_change(ConfChange(type=ConfChangeType.ADD_LEARNER_NODE, node_id=3))
    n.stabilize()
    n.nodes[3].step(Message(type=MessageType.TIMEOUT_NOW, from_=1, to=3, term=n.term(1)))
    assert n.state(3) == StateType.FOLLOWER and n.term(3) == n.term(1)


def test_leader_ignores_responses_from_unknown_members():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[1].step(Message(type=MessageType.APP_RESP, from_=9, to=1, term=n.term(1), index=100))
    assert n.state(1) == StateType.LEADER and not n.nodes[1].ready().messages
