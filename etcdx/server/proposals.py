"""Proposals and their waiters: a request goes into the log, its proposer waits for the result.

Every proposal made during one event-loop iteration goes to raft in one
batch (so a burst of writes becomes a few log appends and one fsync), and
the proposer's future is resolved when the applier reports its request id.
A proposal fails at once when no leader is known, and fails with etcd's
"request timed out" when it is not applied within the request timeout.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, Callable, Iterable

from etcdx.pb import raft_internal_pb2
from etcdx.raft import ProposalDropped
from etcdx.server import errors
from etcdx.server.ids import IdGenerator

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest


class Proposals:
    """Batches proposals into raft and resolves their waiters.

    ``propose_many`` hands a batch of serialized requests to raft (raising
    ``ProposalDropped`` without a leader); ``wake`` tells the Ready loop there
    is work. Results come back through ``resolve`` from the applier.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, ids: IdGenerator,
                 propose_many: Callable[[list[bytes]], None], wake: Callable[[], None], *,
                 timeout: float, max_request_bytes: int) -> None:
        self._loop = loop
        self._ids = ids
        self._propose_many = propose_many
        self._wake = wake
        self.timeout = timeout
        self._max_request_bytes = max_request_bytes
        self._waiters: dict[int, asyncio.Future] = {}
        self._encoders: dict[int, Callable[[Any], Any]] = {}  # how to hand a result to its proposer
        self._deadlines: collections.deque[tuple[float, int]] = collections.deque()
        self._pending: list[tuple[int, bytes]] = []  # (request id, data) for the next batch
        self._flush_scheduled = False
        self.stopped = False
        self.failed = 0  # proposals failed without being applied (no leader, timeout, stop): a metric

    @property
    def pending(self) -> int:
        """Proposals waiting to be applied."""
        return len(self._waiters)

    async def propose(self, req: InternalRaftRequest) -> Any:
        """Propose ``req`` and wait until this member applied it; its result or etcd's error."""
        return await self.submit(req)

    def submit(self, req: InternalRaftRequest, encode: Callable[[Any], Any] | None = None) -> asyncio.Future:
        """Propose ``req``; a Future of its result (or etcd's error) once this member applied it,
        passed through ``encode`` first if given (a serialized response: no second Future).

        Cancelling the Future withdraws the proposal if raft has not taken it
        yet: the client gave up, so it must not be applied long after.
        """
        if self.stopped:
            raise errors.STOPPED
        rid = self._ids.next()
        req.header.id = rid
        data = req.SerializeToString()
        if len(data) > self._max_request_bytes:
            raise errors.REQUEST_TOO_LARGE
        fut = self.expect(rid)
        if encode is not None:
            self._encoders[rid] = encode
        self._pending.append((rid, data))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)
        return fut

    def expect(self, rid: int) -> asyncio.Future:
        """A future for the result of request ``rid``, failed with TIMEOUT after the request timeout
        (conf changes, which are proposed by other means, wait through this too)."""
        fut = self._loop.create_future()
        self._waiters[rid] = fut
        self._deadlines.append((self._loop.time() + self.timeout, rid))
        return fut

    def forget(self, rid: int) -> None:
        self._waiters.pop(rid, None)
        self._encoders.pop(rid, None)

    def _flush(self) -> None:
        """Hand every proposal of this loop iteration to raft as one batch.

        Without a known leader raft drops them, and they fail at once with
        "etcdserver: no leader" (Unavailable: worth retrying) instead of waiting
        and being applied after their client gave up. etcd answers "raft
        proposal dropped" with code Unknown here, which clients do not retry.
        A proposal whose proposer already gave up is left out.
        """
        self._flush_scheduled = False
        batch, self._pending = self._pending, []
        waiters = self._waiters
        live = []
        for p in batch:
            fut = waiters.get(p[0])
            if fut is None or fut.cancelled():
                self.forget(p[0])  # its proposer gave up before raft took it
            else:
                live.append(p)
        if not live:
            return
        try:
            self._propose_many([data for _, data in live])
        except ProposalDropped:
            for rid, _ in live:
                self.fail(rid, errors.NO_LEADER)
            return
        self._wake()

    def resolve(self, results: Iterable[tuple[int, Any]]) -> None:
        """The applier's results: a value, or an EtcdError to raise in the proposer."""
        waiters, encoders = self._waiters, self._encoders
        for rid, res in results:
            fut = waiters.pop(rid, None)
            encode = encoders.pop(rid, None) if encoders else None
            if fut is not None and not fut.done():
                if isinstance(res, errors.EtcdError):
                    fut.set_exception(res)
                else:
                    fut.set_result(res if encode is None else encode(res))

    def fail(self, rid: int, err: errors.EtcdError) -> None:
        self._encoders.pop(rid, None)
        fut = self._waiters.pop(rid, None)
        if fut is not None and not fut.done():
            self.failed += 1
            fut.set_exception(err)

    def fail_all(self, err: errors.EtcdError) -> None:
        self.stopped = True
        for rid in list(self._waiters):
            self.fail(rid, err)

    def expire(self, now: float) -> None:
        """Fail the proposals still unanswered after the request timeout.

        One sweep for all of them is far cheaper than a timer per request;
        deadlines are appended in time order, so the oldest are at the front.
        """
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, rid = deadlines.popleft()
            self.fail(rid, errors.TIMEOUT)
