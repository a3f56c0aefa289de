"""Configuration transitions computed by etcdx.raft.confchange."""

from __future__ import annotations

import pytest

from etcdx.raft import ConfChangeError, ConfChangeSingle, ConfChangeTransition, ConfChangeType, ConfChangeV2, ConfState
from etcdx.raft.confchange import Changer, enters_joint, restore

ADD = ConfChangeType.ADD_NODE
REMOVE = ConfChangeType.REMOVE_NODE
LEARNER = ConfChangeType.ADD_LEARNER_NODE


def changer(cs: ConfState) -> Changer:
    cfg, prs = restore(cs, last_index=10, max_inflight=4)
    return Changer(cfg, prs, last_index=10, max_inflight=4)


def test_simple_change_refuses_two_voter_changes():
    with pytest.raises(ConfChangeError):
        changer(ConfState(voters=[1, 2, 3])).simple([ConfChangeSingle(ADD, 4), ConfChangeSingle(ADD, 5)])


def test_simple_change_may_not_remove_the_last_voter():
    with pytest.raises(ConfChangeError):
        changer(ConfState(voters=[1])).simple([ConfChangeSingle(REMOVE, 1)])


def test_demoting_a_voter_in_joint_config_makes_it_a_learner_on_leave():
    cfg, prs = changer(ConfState(voters=[1, 2, 3])).enter_joint(True, [ConfChangeSingle(LEARNER, 3)])
    cs = cfg.conf_state()
    assert cs.voters == [1, 2] and cs.voters_outgoing == [1, 2, 3] and cs.learners_next == [3]
    cfg, prs = Changer(cfg, prs, 10, 4).leave_joint()
    cs = cfg.conf_state()
    assert cs.voters == [1, 2] and cs.learners == [3] and cs.voters_outgoing == [] and prs[3].is_learner


def test_removed_outgoing_voter_loses_its_progress_on_leave():
    cfg, prs = changer(ConfState(voters=[1, 2, 3])).enter_joint(False, [ConfChangeSingle(REMOVE, 3)])
    assert 3 in prs
    cfg, prs = Changer(cfg, prs, 10, 4).leave_joint()
    assert 3 not in prs


def test_joint_conf_state_restores_to_the_same_config():
    cs = ConfState(voters=[1, 2, 4], voters_outgoing=[1, 2, 3], learners=[5], learners_next=[3], auto_leave=True)
    cfg, _ = restore(cs, last_index=10, max_inflight=4)
    assert cfg.conf_state() == cs


def test_failed_change_leaves_the_original_untouched():
    c = changer(ConfState(voters=[1, 2, 3], learners=[4]))
    with pytest.raises(ConfChangeError):
        c.simple([ConfChangeSingle(ADD, 4), ConfChangeSingle(ADD, 5)])
    cfg, prs = c.simple([ConfChangeSingle(ADD, 4)])
    assert cfg.conf_state().voters == [1, 2, 3, 4] and not prs[4].is_learner


def test_which_changes_go_through_a_joint_config():
    one = [ConfChangeSingle(ADD, 4)]
    two = [ConfChangeSingle(ADD, 4), ConfChangeSingle(ADD, 5)]
    assert enters_joint(ConfChangeV2(changes=one)) == (False, True)
    assert enters_joint(ConfChangeV2(changes=two)) == (True, True)
    assert enters_joint(ConfChangeV2(transition=ConfChangeTransition.JOINT_EXPLICIT, changes=one)) == (True, False)
