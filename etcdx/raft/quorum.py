"""Quorum arithmetic: which index a set of voters has committed, who won a vote.

A ``MajorityConfig`` is one set of voters deciding by simple majority. A
``JointConfig`` pairs the incoming and outgoing voter sets of a membership
change (Raft thesis §4.3): while joint, every decision needs a majority of both.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable, Iterable, Mapping

INFINITE_INDEX = sys.maxsize
"""What an empty majority has committed: it never holds back a joint decision."""


class VoteResult(enum.IntEnum):
    PENDING = 0  # not decided yet: some voters have not answered
    LOST = 1
    WON = 2


class MajorityConfig:
    """A set of voter ids that decides by majority."""

    __slots__ = ("ids",)

    def __init__(self, ids: Iterable[int] = ()) -> None:
        self.ids: set[int] = set(ids)

    def __repr__(self) -> str:
        return f"({' '.join(str(i) for i in sorted(self.ids))})"

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, id: int) -> bool:
        return id in self.ids

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MajorityConfig) and self.ids == other.ids

    def copy(self) -> MajorityConfig:
        return MajorityConfig(self.ids)

    def committed_index(self, acked: Callable[[int], int]) -> int:
        """The largest index that a majority has acknowledged (``acked(id)``, 0 if unknown)."""
        n = len(self.ids)
        if n == 0:
            return INFINITE_INDEX
        if n == 1:
            (only,) = self.ids
            return acked(only)
        idxs = sorted(acked(i) for i in self.ids)
        # Every voter from position n - quorum upwards acked at least idxs[n - quorum].
        return idxs[n - (n // 2 + 1)]

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """The outcome given ``votes`` (granted or rejected; absent means not yet answered)."""
        n = len(self.ids)
        if n == 0:
            # An empty config wins every vote, so a joint config reduces to its other half.
            return VoteResult.WON
        granted = rejected = 0
        for i in self.ids:
            v = votes.get(i)
            if v is None:
                continue
            if v:
                granted += 1
            else:
                rejected += 1
        quorum = n // 2 + 1
        if granted >= quorum:
            return VoteResult.WON
        if n - rejected >= quorum:
            return VoteResult.PENDING
        return VoteResult.LOST


class JointConfig:
    """The incoming and outgoing voter sets; outgoing is empty outside a joint change."""

    __slots__ = ("incoming", "outgoing")

    def __init__(self, incoming: MajorityConfig | None = None, outgoing: MajorityConfig | None = None) -> None:
        self.incoming = incoming if incoming is not None else MajorityConfig()
        self.outgoing = outgoing if outgoing is not None else MajorityConfig()

    def __repr__(self) -> str:
        if self.outgoing.ids:
            return f"{self.incoming!r}&&{self.outgoing!r}"
        return repr(self.incoming)

    def copy(self) -> JointConfig:
        return JointConfig(self.incoming.copy(), self.outgoing.copy())

    def is_joint(self) -> bool:
        return bool(self.outgoing.ids)

    def ids(self) -> set[int]:
        return self.incoming.ids | self.outgoing.ids

    def __contains__(self, id: int) -> bool:
        return id in self.incoming.ids or id in self.outgoing.ids

    def committed_index(self, acked: Callable[[int], int]) -> int:
        """The largest index committed by both halves."""
        return min(self.incoming.committed_index(acked), self.outgoing.committed_index(acked))

    def vote_result(self, votes: Mapping[int, bool]) -> VoteResult:
        """WON only if both halves won; LOST if either lost."""
        r1 = self.incoming.vote_result(votes)
        r2 = self.outgoing.vote_result(votes)
        if r1 == r2:
            return r1
        if r1 == VoteResult.LOST or r2 == VoteResult.LOST:
            return VoteResult.LOST
        return VoteResult.PENDING
