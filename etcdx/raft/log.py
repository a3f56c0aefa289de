"""The raft log: stable entries in ``Storage`` followed by not-yet-persisted ones.

``Unstable`` holds what the core has accepted but the host has not yet
persisted (entries and possibly an incoming snapshot). ``RaftLog`` joins the
two and tracks the commit and apply positions.
"""

from __future__ import annotations

from etcdx.raft.errors import CompactedError, RaftError, UnavailableError
from etcdx.raft.storage import Storage, limit_size
from etcdx.raft.types import Entry, Snapshot


class Unstable:
    """Entries (from ``offset`` on) and a snapshot not yet written to storage."""

    __slots__ = ("snapshot", "entries", "offset")

    def __init__(self, offset: int) -> None:
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []
        self.offset = offset

    def maybe_term(self, i: int) -> int | None:
        if i < self.offset:
            if self.snapshot is not None and self.snapshot.metadata.index == i:
                return self.snapshot.metadata.term
            return None
        k = i - self.offset
        if k >= len(self.entries):
            return None
        return self.entries[k].term

    def stable_to(self, i: int, t: int) -> None:
        """Forget entries up to ``i`` once persisted, unless they were replaced meanwhile."""
        if i < self.offset or i >= self.offset + len(self.entries):
            return
        if self.entries[i - self.offset].term == t:
            self.entries = self.entries[i + 1 - self.offset :]
            self.offset = i + 1

    def stable_snap_to(self, i: int) -> None:
        if self.snapshot is not None and self.snapshot.metadata.index == i:
            self.snapshot = None

    def restore(self, snap: Snapshot) -> None:
        self.offset = snap.metadata.index + 1
        self.entries = []
        self.snapshot = snap

    def truncate_and_append(self, ents: list[Entry]) -> None:
        after = ents[0].index
        if after == self.offset + len(self.entries):
            self.entries.extend(ents)
        elif after <= self.offset:
            self.offset = after
            self.entries = list(ents)
        else:
            self.entries = self.entries[: after - self.offset] + ents

    def slice(self, lo: int, hi: int) -> list[Entry]:
        return self.entries[lo - self.offset : hi - self.offset]


class RaftLog:
    """The replicated log as the core sees it.

    Invariant: ``applied <= applying <= committed <= last_index()``. ``applying``
    is the last index handed to the host in a Ready but not yet acknowledged
    by ``advance``.
    """

    __slots__ = ("storage", "unstable", "committed", "applying", "applied", "max_next_size")

    def __init__(self, storage: Storage, max_next_size: int | None = None) -> None:
        self.storage = storage
        # Bytes of committed entries handed out at once (None: no limit).
        self.max_next_size = max_next_size
        first = storage.first_index()
        last = storage.last_index()
        self.unstable = Unstable(last + 1)
        self.committed = first - 1
        self.applying = first - 1
        self.applied = first - 1

    def __repr__(self) -> str:
        return (
            f"RaftLog(committed={self.committed}, applied={self.applied}, "
            f"unstable.offset={self.unstable.offset}, len(unstable)={len(self.unstable.entries)})"
        )

    # first_index, last_index and term inline the Unstable lookups: they run several times per message.

    def first_index(self) -> int:
        snap = self.unstable.snapshot
        if snap is not None:
            return snap.metadata.index + 1
        return self.storage.first_index()

    def last_index(self) -> int:
        u = self.unstable
        if u.entries:
            return u.offset + len(u.entries) - 1
        if u.snapshot is not None:
            return u.snapshot.metadata.index
        return self.storage.last_index()

    def term(self, i: int) -> int:
        """The term of entry ``i``; raises CompactedError/UnavailableError outside the log."""
        u = self.unstable
        k = i - u.offset
        if 0 <= k < len(u.entries):
            return u.entries[k].term
        t = u.maybe_term(i)
        if t is not None:
            return t
        if i < self.first_index() - 1:
            raise CompactedError(f"index {i} is compacted")
        if i > self.last_index():
            raise UnavailableError(f"index {i} beyond last index {self.last_index()}")
        return self.storage.term(i)

    def zero_term_on_range_error(self, i: int) -> int:
        try:
            return self.term(i)
        except (CompactedError, UnavailableError):
            return 0

    def last_term(self) -> int:
        return self.term(self.last_index())

    def match_term(self, i: int, t: int) -> bool:
        try:
            return self.term(i) == t
        except (CompactedError, UnavailableError):
            return False

    def is_up_to_date(self, last_index: int, term: int) -> bool:
        """Whether a log ending at (``last_index``, ``term``) is at least as up to date as ours."""
        last_term = self.last_term()
        return term > last_term or (term == last_term and last_index >= self.last_index())

    def find_conflict(self, ents: list[Entry]) -> int:
        """Index of the first entry of ``ents`` that is new or conflicts with the log; 0 if none."""
        last = self.last_index()
        for e in ents:
            if e.index > last or not self.match_term(e.index, e.term):
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """The largest index <= ``index`` whose term is <= ``term``, with that term.

        Used for fast backtracking: every entry above the returned index is
        known not to match a log whose entry at ``index`` has term ``term``.
        """
        while index > 0:
            try:
                t = self.term(index)
            except (CompactedError, UnavailableError):
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    def maybe_append(self, index: int, log_term: int, committed: int, ents: list[Entry]) -> int | None:
        """Append ``ents`` after (``index``, ``log_term``) if that entry matches; the new last index or None."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.committed:
                raise RaftError(f"entry {ci} conflicts with committed entry (committed {self.committed})")
            self.append(ents[ci - index - 1 :])
        self.commit_to(min(committed, last_new))
        return last_new

    def append(self, ents: list[Entry]) -> int:
        if not ents:
            return self.last_index()
        if ents[0].index - 1 < self.committed:
            raise RaftError(f"appending after {ents[0].index - 1} is below committed {self.committed}")
        self.unstable.truncate_and_append(ents)
        return self.last_index()

    def unstable_entries(self) -> list[Entry]:
        """A copy: the unstable list keeps growing in place after a Ready took it."""
        return self.unstable.entries[:]

    def slice(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]:
        """Entries in ``[lo, hi)`` limited to ``max_size`` bytes (at least one)."""
        if lo > hi:
            raise RaftError(f"invalid slice {lo} > {hi}")
        first = self.first_index()
        if lo < first:
            raise CompactedError(f"index {lo} is compacted (first is {first})")
        if hi > self.last_index() + 1:
            raise UnavailableError(f"slice [{lo}, {hi}) beyond last index {self.last_index()}")
        if lo == hi:
            return []
        offset = self.unstable.offset
        if hi <= offset:
            return self.storage.entries(lo, hi, max_size)
        if lo >= offset:
            return limit_size(self.unstable.slice(lo, hi), max_size)
        stored = self.storage.entries(lo, offset, max_size)
        if len(stored) < offset - lo:
            return stored
        return limit_size(stored + self.unstable.slice(offset, hi), max_size)

    def entries(self, i: int, max_size: int | None = None) -> list[Entry]:
        """Entries from ``i`` to the end, limited to ``max_size`` bytes."""
        last = self.last_index()
        if i > last:
            return []
        return self.slice(i, last + 1, max_size)

    def has_next_committed_entries(self) -> bool:
        return self.committed > max(self.applying, self.first_index() - 1)

    def next_committed_entries(self) -> list[Entry]:
        """Committed entries not yet handed to the host for applying."""
        lo = max(self.applying + 1, self.first_index())
        if self.committed + 1 > lo:
            return self.slice(lo, self.committed + 1, self.max_next_size)
        return []

    def snapshot(self) -> Snapshot:
        if self.unstable.snapshot is not None:
            return self.unstable.snapshot
        return self.storage.snapshot()

    def has_pending_snapshot(self) -> bool:
        return self.unstable.snapshot is not None

    def commit_to(self, to_commit: int) -> None:
        if to_commit > self.committed:
            if to_commit > self.last_index():
                raise RaftError(f"commit {to_commit} beyond last index {self.last_index()}")
            self.committed = to_commit

    def maybe_commit(self, max_index: int, term: int) -> bool:
        """Commit up to ``max_index`` if that entry is of ``term`` (Raft §5.4.2)."""
        if max_index > self.committed and self.zero_term_on_range_error(max_index) == term:
            self.commit_to(max_index)
            return True
        return False

    def applying_to(self, i: int) -> None:
        self.applying = max(self.applying, i)

    def applied_to(self, i: int) -> None:
        if i == 0:
            return
        if i > self.committed or i < self.applied:
            raise RaftError(f"applied {i} out of range [{self.applied}, {self.committed}]")
        self.applied = i
        self.applying = max(self.applying, i)

    def stable_to(self, i: int, t: int) -> None:
        self.unstable.stable_to(i, t)

    def stable_snap_to(self, i: int) -> None:
        self.unstable.stable_snap_to(i)

    def restore(self, snap: Snapshot) -> None:
        """Replace the log by ``snap`` (which the host persists from the next Ready)."""
        self.committed = snap.metadata.index
        self.unstable.restore(snap)
