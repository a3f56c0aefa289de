"""Membership changes: turning a ConfChange(V2) into the next tracker configuration.

Every function returns a new (config, progress) pair and leaves its inputs
untouched, so a change that fails validation has no effect. Three shapes exist
(Raft thesis §4.3, etcd's conventions):

- a simple change alters at most one voter and takes effect at once;
- entering a joint config keeps the old voters as ``outgoing`` so every
  decision needs both majorities;
- leaving the joint config drops ``outgoing`` and turns ``learners_next`` into
  learners.
"""

from __future__ import annotations

from etcdx.raft.errors import ConfChangeError
from etcdx.raft.progress import Progress
from etcdx.raft.quorum import MajorityConfig
from etcdx.raft.tracker import TrackerConfig
from etcdx.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
)

ProgressMap = dict[int, Progress]


def as_v2(cc: ConfChange | ConfChangeV2) -> ConfChangeV2:
    """A V1 change as the equivalent single-change V2 (always a simple change)."""
    if isinstance(cc, ConfChangeV2):
        return cc
    return ConfChangeV2(
        transition=ConfChangeTransition.AUTO,
        changes=[ConfChangeSingle(type=cc.type, node_id=cc.node_id)],
        context=cc.context,
    )


def leaves_joint(cc: ConfChangeV2) -> bool:
    """An empty V2 change is the request to leave a joint config."""
    return not cc.changes


def enters_joint(cc: ConfChangeV2) -> tuple[bool, bool]:
    """Whether ``cc`` goes through a joint config, and whether that config is left automatically."""
    joint = cc.transition != ConfChangeTransition.AUTO or len(cc.changes) > 1
    auto_leave = cc.transition in (ConfChangeTransition.AUTO, ConfChangeTransition.JOINT_IMPLICIT)
    return joint, auto_leave


class Changer:
    """Applies changes to a copy of the tracker's config and progress.

    ``last_index`` seeds the progress of newly added members: the leader
    probes them from its last entry.
    """

    def __init__(self, config: TrackerConfig, progress: ProgressMap, last_index: int, max_inflight: int) -> None:
        self._config = config
        self._progress = progress
        self._last_index = last_index
        self._max_inflight = max_inflight

    def enter_joint(self, auto_leave: bool, changes: list[ConfChangeSingle]) -> tuple[TrackerConfig, ProgressMap]:
        cfg, prs = self._copy()
        if cfg.voters.is_joint():
            raise ConfChangeError("config is already joint")
        if not cfg.voters.incoming.ids:
            raise ConfChangeError("can't make a zero-voter config joint")
        cfg.voters.outgoing = cfg.voters.incoming.copy()
        self._apply(cfg, prs, changes)
        cfg.auto_leave = auto_leave
        self._check(cfg, prs)
        return cfg, prs

    def leave_joint(self) -> tuple[TrackerConfig, ProgressMap]:
        cfg, prs = self._copy()
        if not cfg.voters.is_joint():
            raise ConfChangeError("can't leave a non-joint config")
        for i in cfg.learners_next:
            cfg.learners.add(i)
            prs[i] = pr = prs[i].clone()
            pr.is_learner = True
        cfg.learners_next = set()
        for i in cfg.voters.outgoing.ids:
            if i not in cfg.voters.incoming and i not in cfg.learners:
                del prs[i]
        cfg.voters.outgoing = MajorityConfig()
        cfg.auto_leave = False
        self._check(cfg, prs)
        return cfg, prs

    def simple(self, changes: list[ConfChangeSingle]) -> tuple[TrackerConfig, ProgressMap]:
        cfg, prs = self._copy()
        if cfg.voters.is_joint():
            raise ConfChangeError("can't apply simple config change in joint config")
        before = set(cfg.voters.incoming.ids)
        self._apply(cfg, prs, changes)
        if len(before ^ cfg.voters.incoming.ids) > 1:
            raise ConfChangeError("more than one voter changed without entering joint config")
        self._check(cfg, prs)
        return cfg, prs

    def apply(self, cc: ConfChange | ConfChangeV2) -> tuple[TrackerConfig, ProgressMap]:
        """The configuration after ``cc``, whichever of the three shapes it is."""
        v2 = as_v2(cc)
        if leaves_joint(v2):
            return self.leave_joint()
        joint, auto_leave = enters_joint(v2)
        if joint:
            return self.enter_joint(auto_leave, v2.changes)
        return self.simple(v2.changes)

    def _copy(self) -> tuple[TrackerConfig, ProgressMap]:
        return self._config.copy(), dict(self._progress)

    def _apply(self, cfg: TrackerConfig, prs: ProgressMap, changes: list[ConfChangeSingle]) -> None:
        for c in changes:
            if c.node_id == 0:
                continue
            if c.type == ConfChangeType.ADD_NODE:
                self._make_voter(cfg, prs, c.node_id)
            elif c.type == ConfChangeType.ADD_LEARNER_NODE:
                self._make_learner(cfg, prs, c.node_id)
            elif c.type == ConfChangeType.REMOVE_NODE:
                self._remove(cfg, prs, c.node_id)
            elif c.type != ConfChangeType.UPDATE_NODE:
                raise ConfChangeError(f"unknown conf change type {c.type}")
        if not cfg.voters.incoming.ids:
            raise ConfChangeError("removed all voters")

    def _init_progress(self, cfg: TrackerConfig, prs: ProgressMap, id: int, is_learner: bool) -> None:
        if is_learner:
            cfg.learners.add(id)
        else:
            cfg.voters.incoming.ids.add(id)
        prs[id] = Progress(max(self._last_index, 1), self._max_inflight, is_learner)

    def _make_voter(self, cfg: TrackerConfig, prs: ProgressMap, id: int) -> None:
        pr = prs.get(id)
        if pr is None:
            self._init_progress(cfg, prs, id, is_learner=False)
            return
        prs[id] = pr = pr.clone()
        pr.is_learner = False
        cfg.learners.discard(id)
        cfg.learners_next.discard(id)
        cfg.voters.incoming.ids.add(id)

    def _make_learner(self, cfg: TrackerConfig, prs: ProgressMap, id: int) -> None:
        pr = prs.get(id)
        if pr is None:
            self._init_progress(cfg, prs, id, is_learner=True)
            return
        if pr.is_learner:
            return
        cfg.voters.incoming.ids.discard(id)
        cfg.learners.discard(id)
        cfg.learners_next.discard(id)
        if id in cfg.voters.outgoing:
            # Still a voter of the outgoing half; it becomes a learner when the joint config is left.
            cfg.learners_next.add(id)
        else:
            prs[id] = pr = pr.clone()
            pr.is_learner = True
            cfg.learners.add(id)

    def _remove(self, cfg: TrackerConfig, prs: ProgressMap, id: int) -> None:
        if id not in prs:
            return
        cfg.voters.incoming.ids.discard(id)
        cfg.learners.discard(id)
        cfg.learners_next.discard(id)
        if id not in cfg.voters.outgoing:
            del prs[id]

    @staticmethod
    def _check(cfg: TrackerConfig, prs: ProgressMap) -> None:
        for i in cfg.voters.ids() | cfg.learners | cfg.learners_next:
            if i not in prs:
                raise ConfChangeError(f"no progress for {i}")
        for i in cfg.learners_next:
            if i not in cfg.voters.outgoing:
                raise ConfChangeError(f"{i} is in learners_next but not outgoing voters")
            if prs[i].is_learner:
                raise ConfChangeError(f"{i} is in learners_next but is already a learner")
        for i in cfg.learners:
            if i in cfg.voters.outgoing or i in cfg.voters.incoming:
                raise ConfChangeError(f"{i} is both learner and voter")
            if not prs[i].is_learner:
                raise ConfChangeError(f"{i} is a learner but its progress says voter")
        if not cfg.voters.is_joint() and (cfg.learners_next or cfg.auto_leave):
            raise ConfChangeError("learners_next or auto_leave set outside a joint config")


def restore(cs: ConfState, last_index: int, max_inflight: int) -> tuple[TrackerConfig, ProgressMap]:
    """The tracker configuration described by ``cs`` (from storage or a snapshot)."""
    empty = Changer(TrackerConfig(), {}, last_index, max_inflight)
    if not cs.voters_outgoing:
        changes = [ConfChangeSingle(ConfChangeType.ADD_NODE, i) for i in cs.voters]
        changes += [ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, i) for i in cs.learners]
        if not changes:
            return TrackerConfig(), {}
        cfg, prs = empty._copy()
        empty._apply(cfg, prs, changes)
        Changer._check(cfg, prs)
        return cfg, prs
    # Build the outgoing config first, then enter the joint config from it.
    cfg, prs = empty._copy()
    empty._apply(cfg, prs, [ConfChangeSingle(ConfChangeType.ADD_NODE, i) for i in cs.voters_outgoing])
    changes = [ConfChangeSingle(ConfChangeType.REMOVE_NODE, i) for i in cs.voters_outgoing]
    changes += [ConfChangeSingle(ConfChangeType.ADD_NODE, i) for i in cs.voters]
    changes += [ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, i) for i in cs.learners]
    changes += [ConfChangeSingle(ConfChangeType.ADD_LEARNER_NODE, i) for i in cs.learners_next]
    return Changer(cfg, prs, last_index, max_inflight).enter_joint(cs.auto_leave, changes)

