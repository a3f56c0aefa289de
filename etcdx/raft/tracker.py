"""The leader's bookkeeping of the membership: voters, learners, their progress, and votes."""

from __future__ import annotations

from etcdx.raft.progress import Progress
from etcdx.raft.quorum import JointConfig, VoteResult
from etcdx.raft.types import ConfState


class TrackerConfig:
    """The active membership.

    ``learners_next`` holds voters of the outgoing config that become learners
    when the joint config is left (a voter cannot be a learner at the same time).
    ``auto_leave`` says the joint config is left by the leader on its own once
    the entry that entered it is applied.
    """

    __slots__ = ("voters", "learners", "learners_next", "auto_leave")

    def __init__(
        self,
        voters: JointConfig | None = None,
        learners: set[int] | None = None,
        learners_next: set[int] | None = None,
        auto_leave: bool = False,
    ) -> None:
        self.voters = voters if voters is not None else JointConfig()
        self.learners: set[int] = learners if learners is not None else set()
        self.learners_next: set[int] = learners_next if learners_next is not None else set()
        self.auto_leave = auto_leave

    def __repr__(self) -> str:
        s = f"voters={self.voters!r}"
        if self.learners:
            s += f" learners={sorted(self.learners)}"
        if self.learners_next:
            s += f" learners_next={sorted(self.learners_next)}"
        if self.auto_leave:
            s += " autoleave"
        return s

    def copy(self) -> TrackerConfig:
        return TrackerConfig(self.voters.copy(), set(self.learners), set(self.learners_next), self.auto_leave)

    def conf_state(self) -> ConfState:
        return ConfState(
            voters=sorted(self.voters.incoming.ids),
            learners=sorted(self.learners),
            voters_outgoing=sorted(self.voters.outgoing.ids),
            learners_next=sorted(self.learners_next),
            auto_leave=self.auto_leave,
        )


class ProgressTracker:
    """Progress of every member and the votes of the current election."""

    __slots__ = ("config", "_progress", "_sorted_ids", "votes", "max_inflight")

    def __init__(self, max_inflight: int) -> None:
        self.config = TrackerConfig()
        self._progress: dict[int, Progress] = {}
        self._sorted_ids: list[int] = []
        self.votes: dict[int, bool] = {}
        self.max_inflight = max_inflight

    @property
    def progress(self) -> dict[int, Progress]:
        """Progress by member id. Replace the whole map (never add or remove keys in place)
        so the cached member order stays right."""
        return self._progress

    @progress.setter
    def progress(self, prs: dict[int, Progress]) -> None:
        self._progress = prs
        self._sorted_ids = sorted(prs)

    def conf_state(self) -> ConfState:
        return self.config.conf_state()

    def is_singleton(self) -> bool:
        return len(self.config.voters.incoming) == 1 and not self.config.voters.is_joint()

    def committed(self) -> int:
        """The largest index replicated on a quorum of voters."""
        prs = self.progress

        def acked(i: int) -> int:
            pr = prs.get(i)
            return pr.match if pr is not None else 0

        return self.config.voters.committed_index(acked)

    def sorted_ids(self) -> list[int]:
        """Member ids in a fixed order, so message order is deterministic."""
        return self._sorted_ids

    def quorum_active(self) -> bool:
        """Whether a quorum of voters was heard from recently (check-quorum)."""
        active = {i: pr.recent_active for i, pr in self.progress.items() if not pr.is_learner}
        return self.config.voters.vote_result(active) == VoteResult.WON

    def voter_ids(self) -> list[int]:
        return sorted(self.config.voters.ids())

    def reset_votes(self) -> None:
        self.votes = {}

    def record_vote(self, id: int, granted: bool) -> None:
        self.votes.setdefault(id, granted)

    def tally_votes(self) -> tuple[int, int, VoteResult]:
        """Granted and rejected counts among members, and the election outcome."""
        granted = rejected = 0
        for i, pr in self.progress.items():
            if pr.is_learner or i not in self.votes:
                continue
            if self.votes[i]:
                granted += 1
            else:
                rejected += 1
        return granted, rejected, self.config.voters.vote_result(self.votes)

