"""Consensus for a cluster of exactly one voter.

With a single voter an entry is committed as soon as it is durable, so no
elections, messages or quorum bookkeeping are needed. ``SoloNode`` offers the
subset of ``etcdx.raft.RawNode``'s interface that the server's Ready loop
uses (propose, read_index, ready, advance), so the loop is the same one that
drives a replicated member: persist, then apply, then advance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdx.raft.types import Entry, EntryType, HardState, ReadState, SoftState, StateType


@dataclass(slots=True)
class SoloReady:
    soft_state: SoftState | None
    hard_state: HardState | None
    read_states: list[ReadState]
    entries: list[Entry]
    committed_entries: list[Entry]
    messages: list = field(default_factory=list)
    snapshot: None = None

    @property
    def must_sync(self) -> bool:
        return bool(self.entries) or self.hard_state is not None


class SoloNode:
    """The leader of a one-voter cluster.

    On start it takes a new term (as an election would) and appends an empty
    entry of that term. Entries handed out by ``ready()`` are both "to persist"
    and "committed": the host persists them before it applies them, which is
    exactly the single-voter commit rule.
    """

    def __init__(self, node_id: int, hard_state: HardState, last_index: int, applied: int) -> None:
        self.id = node_id
        self.term = hard_state.term + 1
        self.last_index = last_index
        self.commit = max(hard_state.commit, last_index)
        self.applied = applied
        self._unstable: list[Entry] = []
        self._read_ctx: list[bytes] = []
        self._hs_dirty = True
        self._soft: SoftState | None = SoftState(lead=node_id, raft_state=StateType.LEADER)
        self._append(Entry(term=self.term, index=0, type=EntryType.NORMAL, data=b""))

    @property
    def lead(self) -> int:
        return self.id

    def _append(self, e: Entry) -> None:
        self.last_index += 1
        e.index = self.last_index
        self._unstable.append(e)

    def propose(self, data: bytes) -> None:
        self._append(Entry(term=self.term, index=0, type=EntryType.NORMAL, data=data))

    def read_index(self, request_ctx: bytes) -> None:
        self._read_ctx.append(request_ctx)

    def tick(self) -> None:
        """Nothing times out in a one-voter cluster."""

    def has_ready(self) -> bool:
        return bool(self._unstable or self._read_ctx or self._hs_dirty or self._soft)

    def ready(self) -> SoloReady:
        entries = self._unstable
        self._unstable = []
        if entries:
            self.commit = entries[-1].index
            self._hs_dirty = True
        # Reads are served once everything committed before them is applied;
        # entries in this very Ready are committed by it, so they count.
        reads = [ReadState(index=self.commit, request_ctx=c) for c in self._read_ctx]
        self._read_ctx = []
        hs = HardState(term=self.term, vote=self.id, commit=self.commit) if self._hs_dirty else None
        self._hs_dirty = False
        soft, self._soft = self._soft, None
        return SoloReady(soft_state=soft, hard_state=hs, read_states=reads, entries=entries, committed_entries=entries)

    def advance(self, rd: SoloReady) -> None:
        if rd.committed_entries:
            self.applied = rd.committed_entries[-1].index
