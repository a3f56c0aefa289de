"""Leadership transfer (thesis §3.10)."""

from __future__ import annotations

import pytest
from raft_testnet import Network

from etcdx.raft import MessageType, ProposalDropped, StateType


def test_leader_transfers_to_an_up_to_date_follower():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[1].transfer_leader(2)
    n.stabilize()
    assert n.leader() == 2
    assert n.messages_of(MessageType.TIMEOUT_NOW)[0].to == 2


def test_transfer_to_a_lagging_follower_catches_it_up_first():
    n = Network([1, 2, 3])
    n.elect(1)
    n.cut(1, 3)
    n.nodes[1].propose(b"a")
    n.stabilize()
    n.heal()
    n.nodes[1].transfer_leader(3)
    n.stabilize()
    assert n.leader() == 3
    assert n.applied_data(3) == [b"a"]


def test_follower_forwards_transfer_request_to_the_leader():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[3].transfer_leader(3)
    n.stabilize()
    assert n.leader() == 3


def test_proposals_are_dropped_while_transferring():
    n = Network([1, 2, 3])
    n.elect(1)
    n.isolate(3)
    n.nodes[1].transfer_leader(3)
    with pytest.raises(ProposalDropped):
        n.nodes[1].propose(b"x")


def test_transfer_is_aborted_after_an_election_timeout():
    n = Network([1, 2, 3])
    n.elect(1)
    n.isolate(3)
    n.nodes[1].transfer_leader(3)
    n.stabilize()
    assert n.nodes[1].status().lead_transferee == 3
    n.tick(1, n.nodes[1].raft.election_timeout)
    assert n.nodes[1].status().lead_transferee == 0
    assert n.state(1) == StateType.LEADER
    n.nodes[1].propose(b"ok")


def test_transfer_campaign_overrides_the_leader_lease():
    n = Network([1, 2, 3])
    n.elect(1)
    term = n.term(1)
    n.nodes[1].transfer_leader(2)
    n.stabilize()
    # The followers heard from 1 just now, yet grant 2's forced vote.
    assert n.leader() == 2 and n.term(2) == term + 1


def test_transfer_to_a_learner_is_ignored():
    from etcdx.raft import ConfChange, ConfChangeType

    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[1].propose_conf_change(ConfChange(type=ConfChangeType.ADD_LEARNER_NODE, node_id=4))
    n.stabilize()
    n.nodes[1].transfer_leader(4)
    n.stabilize()
    assert n.leader() == 1
    assert n.nodes[1].status().lead_transferee == 0


def test_follower_forwards_transfer_to_a_third_node():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[3].transfer_leader(2)
    n.stabilize()
    assert n.leader() == 2
