"""Rebuilding the raft log's durable state from the records of a WAL, in order."""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdx.raft.types import Entry, HardState


@dataclass(slots=True)
class WalState:
    """What a member boots from: its metadata, last hard state and log after the snapshot.

    ``entries`` are contiguous, start at ``snapshot_index + 1`` and have raft's
    truncations resolved (a later entry with an index already seen replaces it
    and everything after it).
    """

    metadata: bytes
    hard_state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)
    snapshot_index: int = 0
    snapshot_term: int = 0


class GapError(ValueError):
    """Entries are missing between the snapshot and the first entry after it."""


class Replay:
    """Folds records into a WalState; the WAL feeds it segment by segment."""

    def __init__(self) -> None:
        self.wal_id = 0
        self.metadata: bytes | None = None
        self.hard_state = HardState()
        self.snapshot_index = 0
        self.snapshot_term = 0
        self._entries: list[Entry] = []

    @property
    def last_index(self) -> int:
        """Index of the newest entry or snapshot: the next segment is named after it."""
        last = self._entries[-1].index if self._entries else 0
        return max(last, self.snapshot_index)

    def snapshot(self, index: int, term: int) -> None:
        self.snapshot_index, self.snapshot_term = index, term
        log = self._entries
        if log and log[0].index <= index <= log[-1].index and log[index - log[0].index].term != term:
            # A snapshot installed over a log that disagrees at its index: raft
            # discarded that log, so its old tail must not come back on replay
            # (it would make this member's log look older than it was when voting).
            del log[index - log[0].index :]

    def batch(self, hard_state: HardState | None, entries: list[Entry]) -> None:
        log = self._entries
        for e in entries:
            if log:
                first, last = log[0].index, log[-1].index
                if e.index <= last:
                    # raft truncated its uncommitted tail: this entry replaces the rest.
                    del log[max(e.index - first, 0) :]
                elif e.index > last + 1:
                    # Only a snapshot installed in between can explain a jump; state() checks.
                    log.clear()
            log.append(e)
        if hard_state is not None:
            self.hard_state = hard_state

    def state(self) -> WalState:
        assert self.metadata is not None, "every segment starts with metadata"
        log = self._entries
        if log and log[-1].index > self.snapshot_index:
            start = max(self.snapshot_index + 1 - log[0].index, 0)
            if start == 0 and log[0].index > self.snapshot_index + 1:
                raise GapError(
                    f"entries {self.snapshot_index + 1}..{log[0].index - 1} after the snapshot are missing"
                )
            entries = log[start:]
        else:
            entries = []
        return WalState(self.metadata, self.hard_state, entries, self.snapshot_index, self.snapshot_term)
