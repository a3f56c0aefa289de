"""Raft's safety properties, checked incrementally as the simulated cluster runs.

The host loop reports every leader it sees elected, every batch of entries and
every commit index before they are persisted, and every entry it applies. Each
report is checked at once against what the whole cluster has done so far, so a
violation surfaces at the step that causes it:

- election safety: at most one leader per term, each node grants at most one
  vote per term, and a leader holds votes cast in its own term by a quorum;
- log matching: all logs agree on the entry and the previous term at each
  (index, term), which by induction makes equal (index, term) mean equal prefixes;
- leader completeness: a leader of term T holds every entry committed in a
  term <= T, both when elected and whenever a commit is first seen;
- state machine safety: commit never goes back, a committed entry is never
  overwritten, every node commits the same entry at an index and applies
  exactly the committed entries, in order, each once.

Linearizability of the client history and liveness after healing are checked
by the simulation at the end of a run; they share the ``Violation`` kinds here.
"""

from __future__ import annotations

from typing import Protocol

from etcdx.raft.types import Entry, EntryType

ELECTION_SAFETY = "election-safety"
LOG_MATCHING = "log-matching"
LEADER_COMPLETENESS = "leader-completeness"
STATE_MACHINE_SAFETY = "state-machine-safety"
LINEARIZABILITY = "linearizability"
LIVENESS = "liveness"
# The core raised on an internal invariant of its own.
RAFT_PANIC = "raft-panic"
# Any other exception, in the core or in the simulator.
UNEXPECTED_ERROR = "unexpected-error"


class Violation(Exception):
    """A broken property, named by ``kind`` (one of the constants above)."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


class LogView(Protocol):
    """The part of a node's persisted log the checks read (``MemoryStorage`` fits)."""

    def first_index(self) -> int: ...

    def last_index(self) -> int: ...

    def term(self, i: int) -> int: ...

    def entries(self, lo: int, hi: int, max_size: int | None = None) -> list[Entry]: ...


class SafetyMonitor:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> the node elected in it
        self._votes: dict[tuple[int, int], int] = {}  # (term, voter) -> candidate
        self._voters_for: dict[
            tuple[int, int], set[int]
        ] = {}  # (term, candidate) -> voters
        self._logged: dict[tuple[int, int], tuple[EntryType, bytes, int | None]] = {}
        self._committed: dict[int, Entry] = {}
        self._commit_term: dict[
            int, int
        ] = {}  # index -> term in which it was first seen committed
        self._applied: dict[int, int] = {}  # node -> last applied index
        self._acting: dict[
            int, tuple[int, LogView]
        ] = {}  # node -> (term, log) while it leads
        self.max_commit = 0

    def vote_cast(self, voter: int, candidate: int, term: int) -> None:
        """A granted (non-pre) vote left ``voter``."""
        other = self._votes.setdefault((term, voter), candidate)
        if other != candidate:
            raise Violation(
                ELECTION_SAFETY,
                f"node {voter} voted for both {other} and {candidate} in term {term}",
            )
        self._voters_for.setdefault((term, candidate), set()).add(voter)

    def leader_elected(
        self, node: int, term: int, log: LogView, quorums: list[list[int]]
    ) -> None:
        """``quorums`` are the voter sets (two while joint) each needing a majority of votes."""
        other = self.leaders.setdefault(term, node)
        if other != node:
            raise Violation(
                ELECTION_SAFETY, f"nodes {other} and {node} both lead term {term}"
            )
        granted = self._voters_for.get((term, node), set()) | {node}
        for voters in quorums:
            if voters and len(granted.intersection(voters)) <= len(voters) // 2:
                raise Violation(
                    ELECTION_SAFETY,
                    f"node {node} leads term {term} with votes from {sorted(granted)} of voters {sorted(voters)}",
                )
        self._acting[node] = (term, log)
        self._check_complete(node, term, log, self._committed)

    def stepped_down(self, node: int) -> None:
        self._acting.pop(node, None)

    def entries_persisting(
        self, node: int, log: LogView, commit: int, entries: list[Entry]
    ) -> None:
        """Called before ``entries`` are appended to ``log``, whose node has committed ``commit``."""
        if not entries:
            return
        first = entries[0].index
        if first <= commit and _term_or_none(log, first) != entries[0].term:
            raise Violation(
                STATE_MACHINE_SAFETY,
                f"node {node} overwrites index {first} at or below its commit {commit}",
            )
        prev = _term_or_none(log, first - 1)
        for e in entries:
            key = (e.index, e.term)
            seen = self._logged.get(key)
            if seen is None:
                self._logged[key] = (e.type, e.data, prev)
            elif (
                seen[0] != e.type
                or seen[1] != e.data
                or (prev is not None and seen[2] is not None and seen[2] != prev)
            ):
                raise Violation(
                    LOG_MATCHING,
                    f"node {node} logs {_show(e)} after term {prev}; another log has "
                    f"{seen[1]!r} after term {seen[2]} at index {e.index} term {e.term}",
                )
            prev = e.term

    def commit_advanced(
        self, node: int, term: int, old: int, new: int, log: LogView
    ) -> None:
        """Called once ``log`` holds the entries up to ``new`` and before the commit is persisted."""
        if new < old:
            raise Violation(
                STATE_MACHINE_SAFETY,
                f"node {node} commit went back from {old} to {new}",
            )
        lo = max(old + 1, log.first_index())
        if new > log.last_index():
            raise Violation(
                STATE_MACHINE_SAFETY,
                f"node {node} commits {new} beyond its last index {log.last_index()}",
            )
        fresh: dict[int, Entry] = {}
        for e in log.entries(lo, new + 1) if lo <= new else ():
            known = self._committed.get(e.index)
            if known is None:
                self._committed[e.index] = e
                self._commit_term[e.index] = term
                fresh[e.index] = e
            elif known.term != e.term or known.data != e.data:
                raise Violation(
                    STATE_MACHINE_SAFETY,
                    f"node {node} commits {_show(e)} but {_show(known)} was committed before",
                )
        self.max_commit = max(self.max_commit, new)
        if fresh:
            for leader, (lterm, llog) in sorted(self._acting.items()):
                if lterm >= term:
                    self._check_complete(leader, lterm, llog, fresh)

    def restored(self, node: int, applied: int) -> None:
        """The node's state machine now reflects everything up to ``applied`` (start or snapshot)."""
        self._applied[node] = applied

    def applying(self, node: int, entry: Entry) -> None:
        last = self._applied.get(node, 0)
        if entry.index != last + 1:
            raise Violation(
                STATE_MACHINE_SAFETY,
                f"node {node} applies index {entry.index} right after {last}",
            )
        known = self._committed.get(entry.index)
        if known is None or known.term != entry.term or known.data != entry.data:
            shown = "nothing" if known is None else _show(known)
            raise Violation(
                STATE_MACHINE_SAFETY,
                f"node {node} applies {_show(entry)} where {shown} is committed",
            )
        self._applied[node] = entry.index

    def _check_complete(
        self, node: int, term: int, log: LogView, committed: dict[int, Entry]
    ) -> None:
        first, last = log.first_index(), log.last_index()
        for index in sorted(committed):
            if index < first or self._commit_term[index] > term:
                continue
            want = committed[index]
            have = log.entries(index, index + 1)[0] if index <= last else None
            if have is None or have.term != want.term or have.data != want.data:
                shown = "nothing" if have is None else _show(have)
                raise Violation(
                    LEADER_COMPLETENESS,
                    f"leader {node} of term {term} has {shown} where {_show(want)} is committed",
                )


def _term_or_none(log: LogView, index: int) -> int | None:
    if index < log.first_index() - 1 or index > log.last_index():
        return None
    return log.term(index)


def _show(e: Entry) -> str:
    return f"entry {e.index}/t{e.term} {e.data[:24]!r}"
