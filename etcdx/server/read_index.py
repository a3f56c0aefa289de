"""Linearizable reads: a ReadIndex round confirms leadership, then the read waits for apply.

Reads share rounds, one in flight at a time, but a read only ever joins a
round sent after it arrived: a round already in flight may have confirmed
leadership before the read was made (a leader paused and resumed, with old
heartbeat acks in its socket, would answer it stale). Reads arriving
meanwhile all wait for the next round. A round lost to a leader change is
asked again after ``RETRY`` seconds; one unanswered for the request timeout
fails its readers with "request timed out".
"""

from __future__ import annotations

import asyncio
import collections
from typing import Callable

from etcdx.server import errors
from etcdx.server.ids import IdGenerator

RETRY = 0.5  # seconds before an unanswered ReadIndex request is sent again


class AppliedIndex:
    """The index of the last entry applied to the stores, and waiters for it to grow."""

    def __init__(self, loop: asyncio.AbstractEventLoop, index: int = 0, term: int = 0) -> None:
        self._loop = loop
        self.index = index
        self.term = term
        self._waiters: list[tuple[int, asyncio.Future]] = []

    def advance(self, index: int, term: int) -> None:
        if index <= self.index:
            return
        self.index, self.term = index, term
        if self._waiters:
            keep = []
            for at, fut in self._waiters:
                if at <= index:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((at, fut))
            self._waiters = keep

    def reset(self, index: int, term: int) -> None:
        """A snapshot replaced the stores: the applied index is the snapshot's."""
        self.index, self.term = 0, 0
        self.advance(index, term)

    async def wait(self, index: int) -> None:
        """Return once ``index`` is applied; a waiter that gives up leaves nothing behind."""
        if self.index >= index:
            return
        fut = self._loop.create_future()
        waiter = (index, fut)
        self._waiters.append(waiter)
        try:
            await fut
        except asyncio.CancelledError:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass  # advance() dropped it already
            raise


class ReadIndex:
    """ReadIndex rounds for linearizable reads; see the module docstring.

    ``send`` asks raft for a read point tagged with a context (the answer comes
    back through ``answer``); ``applied`` is the member's applied index.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, ids: IdGenerator, send: Callable[[bytes], None],
                 applied: AppliedIndex, *, timeout: float) -> None:
        self._loop = loop
        self._ids = ids
        self._send = send
        self._applied = applied
        self._timeout = timeout
        self._next: asyncio.Future | None = None  # readers waiting for a round not yet sent
        self._inflight: asyncio.Future | None = None  # the round sent and not yet answered
        self._rounds: dict[bytes, asyncio.Future] = {}
        self._sent_at: dict[bytes, float] = {}
        self._deadlines: collections.deque[tuple[float, bytes]] = collections.deque()

    async def barrier(self) -> None:
        """Return once this member has applied everything committed before the call."""
        fut = self._next
        if fut is None:
            fut = self._next = self._loop.create_future()
            if self._inflight is None:
                self._send_round()
        # Shielded: one reader giving up (a cancelled RPC) must not cancel the round for the rest.
        index = await asyncio.shield(fut)
        await self._applied.wait(index)

    def _send_round(self) -> None:
        fut, self._next = self._next, None
        self._inflight = fut
        ctx = self._ids.next().to_bytes(8, "big")
        now = self._loop.time()
        self._rounds[ctx] = fut
        self._sent_at[ctx] = now
        self._deadlines.append((now + self._timeout, ctx))
        self._send(ctx)

    def answer(self, ctx: bytes, index: int) -> None:
        """A round came back: its readers may read once ``index`` is applied."""
        fut = self._rounds.pop(ctx, None)
        self._sent_at.pop(ctx, None)
        if fut is not None:
            if not fut.done():
                fut.set_result(index)
            self._round_done(fut)

    def _round_done(self, fut: asyncio.Future) -> None:
        if self._inflight is fut:
            self._inflight = None
            if self._next is not None:
                self._send_round()

    def sweep(self, now: float) -> None:
        """Ask again for rounds lost with a leader change; fail those past the request timeout."""
        for ctx, sent in list(self._sent_at.items()):
            if now - sent >= RETRY:
                self._sent_at[ctx] = now
                self._send(ctx)
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, ctx = deadlines.popleft()
            fut = self._rounds.pop(ctx, None)
            self._sent_at.pop(ctx, None)
            if fut is not None:
                if not fut.done():
                    fut.set_exception(errors.TIMEOUT)
                self._round_done(fut)

    def fail_all(self, err: errors.EtcdError) -> None:
        for fut in [*self._rounds.values(), self._next]:
            if fut is not None and not fut.done():
                fut.set_exception(err)
        self._rounds.clear()
        self._sent_at.clear()
        self._next = self._inflight = None
