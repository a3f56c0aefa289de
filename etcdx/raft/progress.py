"""What the leader knows about one follower's log, and how it paces sending to it.

A follower is probed (one append in flight until it answers) until the leader
finds where their logs match, then replicated to optimistically (up to
``max_inflight`` appends in flight), or sent a snapshot when the entries it
needs were compacted away.
"""

from __future__ import annotations

import enum
from collections import deque


class ProgressState(enum.IntEnum):
    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Inflights:
    """The last indexes of appends sent but not acknowledged, bounded by count."""

    __slots__ = ("size", "_q")

    def __init__(self, size: int) -> None:
        self.size = size
        self._q: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def add(self, last_index: int) -> None:
        self._q.append(last_index)

    def free_le(self, index: int) -> None:
        """Forget the appends acknowledged by an ack of ``index``."""
        q = self._q
        while q and q[0] <= index:
            q.popleft()

    def free_first_one(self) -> None:
        if self._q:
            self._q.popleft()

    def full(self) -> bool:
        return len(self._q) >= self.size

    def reset(self) -> None:
        self._q.clear()


class Progress:
    """The leader's view of one peer: ``match`` is known replicated, ``next`` is next to send."""

    __slots__ = ("match", "next", "state", "pending_snapshot", "recent_active", "probe_sent", "inflights", "is_learner")

    def __init__(self, next: int, max_inflight: int, is_learner: bool = False, match: int = 0) -> None:
        self.match = match
        self.next = next
        self.state = ProgressState.PROBE
        self.pending_snapshot = 0
        # Whether the peer was heard from during the current election timeout (check-quorum).
        self.recent_active = True
        # In PROBE state: an append is outstanding, so wait for its answer (or a heartbeat reply).
        self.probe_sent = False
        self.inflights = Inflights(max_inflight)
        self.is_learner = is_learner

    def __repr__(self) -> str:
        s = f"{self.state.name} match={self.match} next={self.next}"
        if self.is_learner:
            s += " learner"
        if self.state == ProgressState.SNAPSHOT:
            s += f" pending_snapshot={self.pending_snapshot}"
        if self.probe_sent:
            s += " paused"
        if len(self.inflights):
            s += f" inflight={len(self.inflights)}"
        return s

    def clone(self) -> Progress:
        """A copy sharing the inflight window (the original is discarded by the caller)."""
        p = Progress(self.next, self.inflights.size, self.is_learner, self.match)
        p.state = self.state
        p.pending_snapshot = self.pending_snapshot
        p.recent_active = self.recent_active
        p.probe_sent = self.probe_sent
        p.inflights = self.inflights
        return p

    def _reset_state(self, state: ProgressState) -> None:
        self.probe_sent = False
        self.pending_snapshot = 0
        self.state = state
        self.inflights.reset()

    def become_probe(self) -> None:
        if self.state == ProgressState.SNAPSHOT:
            # The snapshot (if it was applied) moved the follower to at least pending_snapshot.
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def sent_append(self, last_index: int | None) -> None:
        """Account for an append ending at ``last_index`` (None: carried no entries)."""
        if self.state == ProgressState.REPLICATE:
            if last_index is not None:
                self.next = last_index + 1
                self.inflights.add(last_index)
        elif self.state == ProgressState.PROBE:
            self.probe_sent = True

    def maybe_update(self, n: int) -> bool:
        """Record an ack of index ``n``; False if it was stale."""
        updated = False
        if self.match < n:
            self.match = n
            updated = True
            self.probe_sent = False
        if self.next < n + 1:
            self.next = n + 1
        return updated

    def maybe_decr_to(self, rejected: int, match_hint: int) -> bool:
        """Back off after the follower rejected an append at ``rejected``; False if the reject was stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False
        self.next = max(min(rejected, match_hint + 1), 1)
        self.probe_sent = False
        return True

    def is_paused(self) -> bool:
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return self.inflights.full()
        return True
