"""Membership changes: learners, simple changes, joint consensus (thesis §4.3)."""

from __future__ import annotations

from raft_testnet import Network, make_storage

from etcdx.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    Config,
    Entry,
    EntryType,
    HardState,
    MemoryStorage,
    MessageType,
    RawNode,
    StateType,
)
from etcdx.raft.codec import encode_conf_change

ADD = ConfChangeType.ADD_NODE
REMOVE = ConfChangeType.REMOVE_NODE
LEARNER = ConfChangeType.ADD_LEARNER_NODE


def conf(n: Network, id: int):
    return n.nodes[id].status().conf_state


def add_empty_node(n: Network, id: int) -> None:
    n.ids = sorted(n.ids + [id])
    n.add_node(id, MemoryStorage())


def test_learner_receives_the_log_but_does_not_vote():
    n = Network([1, 2, 3])
    n.elect(1)
    add_empty_node(n, 4)
    n.nodes[1].propose_conf_change(ConfChange(type=LEARNER, node_id=4))
    n.stabilize()
    n.nodes[1].propose(b"a")
    n.stabilize()
    assert conf(n, 1).learners == [4]
    assert n.applied_data(4) == [b"a"]
    # A learner never campaigns, and its log position counts for no quorum.
    n.tick(4, 100)
    n.stabilize()
    assert n.state(4) == StateType.FOLLOWER
    assert n.nodes[1].raft.trk.committed() == n.nodes[1].raft.log.last_index()
    n.isolate(2)
    n.isolate(3)
    n.nodes[1].propose(b"b")
    n.stabilize()
    assert n.applied_data(4) == [b"a"]  # not committed with only leader + learner


def test_learner_is_promoted_to_voter():
    n = Network([1, 2, 3])
    n.elect(1)
    add_empty_node(n, 4)
    n.nodes[1].propose_conf_change(ConfChange(type=LEARNER, node_id=4))
    n.stabilize()
    n.nodes[1].propose_conf_change(ConfChange(type=ADD, node_id=4))
    n.stabilize()
    assert conf(n, 1).voters == [1, 2, 3, 4] and conf(n, 1).learners == []
    assert conf(n, 4).voters == [1, 2, 3, 4]
    n.nodes[1].transfer_leader(4)
    n.stabilize()
    assert n.leader() == 4


def test_simple_add_and_remove_of_a_voter():
    n = Network([1, 2, 3])
    n.elect(1)
    add_empty_node(n, 4)
    n.nodes[1].propose_conf_change(ConfChange(type=ADD, node_id=4))
    n.stabilize()
    n.nodes[1].propose_conf_change(ConfChange(type=REMOVE, node_id=2))
    n.stabilize()
    for i in (1, 3, 4):
        assert conf(n, i).voters == [1, 3, 4]
    # The quorum is now 2 of {1, 3, 4}: losing 2 does not matter, losing 3 and 4 does.
    n.isolate(2)
    n.nodes[1].propose(b"a")
    n.stabilize()
    assert n.applied_data(4) == [b"a"]


def test_joint_consensus_replaces_two_voters_and_leaves_automatically():
    n = Network([1, 2, 3])
    n.elect(1)
    for i in (4, 5):
        add_empty_node(n, i)
    cc = ConfChangeV2(
        changes=[
            ConfChangeSingle(ADD, 4),
            ConfChangeSingle(ADD, 5),
            ConfChangeSingle(REMOVE, 2),
            ConfChangeSingle(REMOVE, 3),
        ]
    )
    n.filter = lambda m: not (m.type == MessageType.APP and m.to in (2, 3) and _has_leave(m))
    n.nodes[1].propose_conf_change(cc)
    n.stabilize()
    # Joint: the leave entry was proposed automatically but cannot commit without the old majority.
    cs = conf(n, 1)
    assert cs.voters == [1, 4, 5] and cs.voters_outgoing == [1, 2, 3] and cs.auto_leave
    n.filter = None
    n.tick_all(2)
    for i in (1, 4, 5):
        cs = conf(n, i)
        assert cs.voters == [1, 4, 5] and cs.voters_outgoing == [] and not cs.auto_leave
    n.isolate(2)
    n.isolate(3)
    n.nodes[1].propose(b"a")
    n.stabilize()
    assert n.applied_data(5) == [b"a"]


def _has_leave(m) -> bool:
    return any(e.type == EntryType.CONF_CHANGE_V2 and len(e.data) == 0 for e in m.entries)


def test_joint_config_needs_both_majorities():
    n = Network([1, 2, 3])
    n.elect(1)
    for i in (4, 5):
        add_empty_node(n, i)
    cc = ConfChangeV2(
        transition=ConfChangeTransition.JOINT_EXPLICIT,
        changes=[ConfChangeSingle(ADD, 4), ConfChangeSingle(ADD, 5), ConfChangeSingle(REMOVE, 3)],
    )
    n.nodes[1].propose_conf_change(cc)
    n.stabilize()
    assert conf(n, 1).voters_outgoing == [1, 2, 3]
    # New majority {1, 4, 5} is reachable but the old one {1, 2, 3} is not: no commit.
    n.isolate(2)
    n.isolate(3)
    committed = n.committed(1)
    n.nodes[1].propose(b"a")
    n.stabilize()
    assert n.committed(1) == committed
    n.heal()
    n.tick_all(1)
    assert n.applied_data(4) == [b"a"]
    # Explicit transition: the joint config stays until asked to leave.
    assert conf(n, 1).voters_outgoing == [1, 2, 3]
    n.nodes[1].propose_conf_change(ConfChangeV2())
    n.stabilize()
    assert conf(n, 1).voters == [1, 2, 4, 5] and conf(n, 1).voters_outgoing == []


def test_only_one_conf_change_is_pending_at_a_time():
    n = Network([1, 2, 3])
    n.elect(1)
    add_empty_node(n, 4)
    add_empty_node(n, 5)
    n.nodes[1].propose_conf_change(ConfChange(type=ADD, node_id=4))
    n.nodes[1].propose_conf_change(ConfChange(type=ADD, node_id=5))
    n.stabilize()
    assert conf(n, 1).voters == [1, 2, 3, 4]
    kinds = [e.type for e in n.applied[1] if e.index > 2]
    assert kinds == [EntryType.CONF_CHANGE, EntryType.NORMAL]
    # Once the first is applied, the next one is accepted.
    n.nodes[1].propose_conf_change(ConfChange(type=ADD, node_id=5))
    n.stabilize()
    assert conf(n, 1).voters == [1, 2, 3, 4, 5]


def test_leave_joint_is_refused_outside_a_joint_config():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[1].propose_conf_change(ConfChangeV2())
    n.stabilize()
    assert [e.type for e in n.applied[1] if e.index > 2] == [EntryType.NORMAL]


def test_removed_leader_steps_down_and_the_rest_elect_a_new_one():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[1].propose_conf_change(ConfChange(type=REMOVE, node_id=1))
    n.stabilize()
    assert n.state(1) == StateType.FOLLOWER
    assert conf(n, 2).voters == [2, 3]
    n.tick_all(40)
    assert n.leader() in (2, 3)
    leader = n.leader()
    n.nodes[leader].propose(b"after")
    n.stabilize()
    assert n.applied_data(2) == n.applied_data(3) == [b"after"]


def test_node_with_unapplied_conf_change_does_not_campaign():
    s = make_storage([1, 2, 3])
    cc = ConfChange(type=LEARNER, node_id=4)
    s.append([Entry(term=1, index=2, type=EntryType.CONF_CHANGE, data=encode_conf_change(cc))])
    s.set_hard_state(HardState(term=1, commit=2))
    node = RawNode(Config(id=2, storage=s))
    node.campaign()
    assert node.raft.state == StateType.FOLLOWER
    rd = node.ready()
    assert rd.messages == [] and [e.index for e in rd.committed_entries] == [2]
    node.apply_conf_change(cc)
    node.advance(rd)
    node.campaign()
    assert node.raft.state == StateType.PRE_CANDIDATE


def test_election_in_joint_config_needs_both_majorities():
    # Without the leader lease, so that votes are counted whenever asked for.
    n = Network([1, 2, 3], pre_vote=False, check_quorum=False)
    n.elect(1)
    for i in (4, 5):
        add_empty_node(n, i)
    cc = ConfChangeV2(
        transition=ConfChangeTransition.JOINT_EXPLICIT,
        changes=[ConfChangeSingle(ADD, 4), ConfChangeSingle(ADD, 5), ConfChangeSingle(REMOVE, 2)],
    )
    n.nodes[1].propose_conf_change(cc)
    n.stabilize()
    assert conf(n, 4).voters == [1, 3, 4, 5] and conf(n, 4).voters_outgoing == [1, 2, 3]
    # 4 and 5 form a majority of nothing: the outgoing half {1, 2, 3} must agree too.
    for i in (1, 2, 3):
        n.isolate(i)
    n.tick(4, 100)
    n.stabilize()
    assert n.state(4) != StateType.LEADER
    n.heal()
    n.isolate(1)
    n.cut(3, 4)
    n.cut(3, 5)
    # Now 4 can reach 2 and 5: incoming {1,3,4,5} has only 4, 5 — still not a majority of 4.
    n.nodes[4].campaign()
    n.stabilize()
    assert n.state(4) != StateType.LEADER
    n.heal()
    n.isolate(1)
    n.nodes[4].campaign()
    n.stabilize()
    assert n.state(4) == StateType.LEADER
