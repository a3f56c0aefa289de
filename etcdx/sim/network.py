"""The simulated network between raft nodes.

The network decides, when a message is sent, whether it is lost, duplicated and
how long each copy travels; reordering follows from independent delays. Links
can also be cut: symmetric partitions, one-way cuts and a bridge node that sees
both halves of a split cluster. A cut is checked both at send and at delivery,
so a message in flight when a partition starts is lost with it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class LinkFaults:
    """How one directed link misbehaves; delays are in simulated time units."""

    drop: float = 0.0
    duplicate: float = 0.0
    delay: int = 1
    jitter: int = 0


class Network:
    """Directed links between node ids, each with its faults and an open/cut state."""

    def __init__(self, rng: random.Random, faults: LinkFaults) -> None:
        self._rng = rng
        self.faults = faults
        self._overrides: dict[tuple[int, int], LinkFaults] = {}
        self._cut: set[tuple[int, int]] = set()

    def link_faults(self, src: int, dst: int) -> LinkFaults:
        return self._overrides.get((src, dst), self.faults)

    def set_link(self, src: int, dst: int, faults: LinkFaults) -> None:
        """Give one directed link its own faults (a slow or flaky path)."""
        self._overrides[(src, dst)] = faults

    def connected(self, src: int, dst: int) -> bool:
        return (src, dst) not in self._cut

    def cut(self, src: int, dst: int) -> None:
        self._cut.add((src, dst))

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut every link, both ways, between nodes of different groups."""
        sets = [sorted(g) for g in groups]
        for i, a in enumerate(sets):
            for b in sets[i + 1 :]:
                self.cut_one_way(a, b)
                self.cut_one_way(b, a)

    def cut_one_way(self, srcs: Iterable[int], dsts: Iterable[int]) -> None:
        """Messages from ``srcs`` to ``dsts`` are lost; the reverse direction still works."""
        dst_list = list(dsts)
        for s in srcs:
            for d in dst_list:
                if s != d:
                    self._cut.add((s, d))

    def bridge(self, left: Iterable[int], right: Iterable[int], bridge: int) -> None:
        """Split into two halves that cannot talk, except through ``bridge``, which sees both."""
        lhs = [n for n in left if n != bridge]
        rhs = [n for n in right if n != bridge]
        self.cut_one_way(lhs, rhs)
        self.cut_one_way(rhs, lhs)

    def reconnect(self) -> None:
        """Reopen every cut link; slow or flaky links stay as they are."""
        self._cut.clear()

    def heal(self) -> None:
        """Reopen every link and forget per-link faults."""
        self._cut.clear()
        self._overrides.clear()

    def is_partitioned(self) -> bool:
        return bool(self._cut)

    def transmit(self, src: int, dst: int) -> list[int]:
        """Delays of the copies of one message that will arrive; empty when it is lost."""
        if not self.connected(src, dst):
            return []
        f = self.link_faults(src, dst)
        rng = self._rng
        if f.drop and rng.random() < f.drop:
            return []
        copies = 2 if f.duplicate and rng.random() < f.duplicate else 1
        return [
            f.delay + (rng.randint(0, f.jitter) if f.jitter else 0)
            for _ in range(copies)
        ]
