"""ReadIndex bookkeeping on the leader (Raft thesis §6.4).

A read request is tagged with the commit index at the time it arrived. In SAFE
mode the leader then confirms it still leads with a heartbeat round carrying
the request's context; once a quorum acknowledged a context, that request and
every one queued before it are answered. At most one round is in flight:
requests arriving meanwhile wait for the next round, so many concurrent reads
share one round. LEASE_BASED mode skips the round and relies on check-quorum's lease
(safe only if clocks do not drift beyond the election timeout).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from etcdx.raft.types import Message


class ReadOnlyOption(enum.IntEnum):
    SAFE = 0
    LEASE_BASED = 1


@dataclass(slots=True)
class ReadIndexStatus:
    req: Message
    index: int
    acks: dict[int, bool] = field(default_factory=dict)


class ReadOnly:
    """Pending read requests in arrival order, keyed by their request context."""

    __slots__ = ("option", "pending", "queue", "round_ctx")

    def __init__(self, option: ReadOnlyOption) -> None:
        self.option = option
        self.pending: dict[bytes, ReadIndexStatus] = {}
        self.queue: list[bytes] = []
        # The context of the heartbeat round in flight, None when no round is.
        self.round_ctx: bytes | None = None

    def add_request(self, index: int, m: Message) -> None:
        ctx = m.entries[0].data
        if ctx in self.pending:
            return
        self.pending[ctx] = ReadIndexStatus(req=m, index=index)
        self.queue.append(ctx)

    def recv_ack(self, id: int, ctx: bytes) -> dict[int, bool] | None:
        """Record that ``id`` acknowledged the round for ``ctx``; the acks so far, None if unknown."""
        rs = self.pending.get(ctx)
        if rs is None:
            return None
        rs.acks[id] = True
        return rs.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Pop and return the request for ``ctx`` and every request queued before it."""
        if ctx not in self.pending:
            return []
        i = self.queue.index(ctx)
        done = self.queue[: i + 1]
        self.queue = self.queue[i + 1 :]
        if self.round_ctx in done:
            self.round_ctx = None
        return [self.pending.pop(c) for c in done]

    def last_pending_request_ctx(self) -> bytes:
        return self.queue[-1] if self.queue else b""
