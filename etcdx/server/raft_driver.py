"""The raft driver: ticks the raft core, feeds it peers' messages, and runs its Ready loop.

The Ready loop walks ``etcdx.raft.host.plan`` — the same plan the simulator
walks, so its ordering rules are checked deterministically there: a leader
sends appends before its own fsync, everyone else after; apply after persist;
read states after apply; advance last. Persisting (one WAL write and at most
one fdatasync per Ready) runs on a single worker thread, so while one batch is
made durable the event loop keeps stepping messages, ticking, and collecting
the next batch's proposals: group commit falls out of the loop's shape.

Two kinds of failure are kept apart. *Bad input from a peer* (a local-only
message type, a message addressed to another member) is dropped, counted and
logged: the member keeps serving. A *broken invariant* — raft refusing a
message because it would overwrite a committed entry or move the commit index
past the log, or anything else it raises while stepping or applying — means
this member's log can no longer be trusted: the driver halts at once (nothing
further is persisted, sent or applied) and reports it through ``on_fatal``,
and the member exits non-zero, as etcd panics there.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import time
from typing import Awaitable, Callable, Protocol

from etcdx.raft import RaftError, RawNode, StepLocalMessageError
from etcdx.raft.host import StepKind, plan
from etcdx.raft.storage import MemoryStorage
from etcdx.raft.types import Entry, Message, ReadState, Snapshot, SoftState, StateType
from etcdx.wal import WAL

log = logging.getLogger("etcdx.server")

BAD_INPUT_LOG_EVERY = 100  # after the first, log one in this many dropped peer messages


class ReadyHost(Protocol):
    """What the server does with the parts of a Ready the driver does not handle itself."""

    def on_soft_state(self, ss: SoftState) -> None: ...

    async def install_snapshot(self, snap: Snapshot) -> None: ...

    def apply(self, entries: list[Entry]) -> Awaitable[None] | None: ...

    def on_read_states(self, states: list[ReadState]) -> None: ...

    def after_ready(self) -> None: ...


class RaftDriver:
    """Owns the RawNode, its in-memory log and the WAL; see the module docstring."""

    def __init__(self, node: RawNode, storage: MemoryStorage, wal: WAL, *, member_id: int,
                 tick_interval: float, host: ReadyHost,
                 send: Callable[[list[Message]], None],
                 on_fatal: Callable[[str], None], fsync: bool = True) -> None:
        self.node = node
        self.storage = storage
        self.wal = wal
        self.member_id = member_id
        self._tick_interval = tick_interval
        self._host = host
        self._send = send
        self._on_fatal = on_fatal
        self._fsync = fsync  # False only with --unsafe-no-fsync
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="etcdx-wal")
        self._wake = asyncio.Event()
        self.halted = False
        self.dropped_peer_messages = 0
        self.on_wal_sync: Callable[[float], None] | None = None  # each synced save's duration, on the WAL thread

    # -- input -------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def step_peer_messages(self, msgs: list[Message]) -> None:
        """Messages from the transport; see the module docstring for what is dropped and what halts."""
        if self.halted:
            return
        node = self.node
        for m in msgs:
            if m.to != self.member_id:
                self._drop(m, f"addressed to {m.to:x}")
                continue
            try:
                node.step(m)
            except StepLocalMessageError as err:
                self._drop(m, str(err))
            except RaftError as err:
                self.fail(f"raft refused a {m.type.name} from {m.from_:x} at term {m.term}: {err}")
                return
        self._wake.set()

    def _drop(self, m: Message, why: str) -> None:
        self.dropped_peer_messages += 1
        if self.dropped_peer_messages % BAD_INPUT_LOG_EVERY == 1:
            log.warning("dropped a bad message from a peer", extra={"fields": {
                "from": f"{m.from_:x}", "type": m.type.name, "reason": why,
                "dropped-total": self.dropped_peer_messages}})

    def advance_ticks(self, n: int) -> None:
        """Tick the raft core ``n`` times at once (etcd's initial election tick advance)."""
        for _ in range(n):
            self.node.tick()
        self._wake.set()

    def fail(self, reason: str) -> None:
        """A broken invariant: stop persisting, sending and applying, and tell the server."""
        if self.halted:
            return
        self.halted = True
        self._wake.set()
        self._on_fatal(reason)

    # -- the loops -----------------------------------------------------------------------

    async def run(self) -> None:
        """The ticker and the Ready loop, until cancelled or halted."""
        async with asyncio.TaskGroup() as tg:
            ticker = tg.create_task(self._run_ticker())
            await self._run_ready_loop()
            ticker.cancel()

    async def _run_ticker(self) -> None:
        node = self.node
        while not self.halted:
            await asyncio.sleep(self._tick_interval)
            node.tick()
            self._wake.set()

    async def _run_ready_loop(self) -> None:
        node = self.node
        host = self._host
        self._wake.set()
        while not self.halted:
            await self._wake.wait()
            self._wake.clear()
            while not self.halted and node.has_ready():
                rd = node.ready()
                if rd.soft_state is not None:
                    host.on_soft_state(rd.soft_state)
                for step in plan(rd, node.raft_state == StateType.LEADER):
                    if self.halted:
                        return
                    kind = step.kind
                    if kind is StepKind.SEND:
                        self._send(step.messages)
                    elif kind is StepKind.PERSIST:
                        if rd.snapshot is not None and not rd.snapshot.is_empty():
                            await host.install_snapshot(rd.snapshot)
                        if rd.entries or rd.hard_state is not None:
                            await self._persist(rd.hard_state, rd.entries, rd.must_sync and self._fsync)
                    elif kind is StepKind.APPLY:
                        pending = host.apply(rd.committed_entries)
                        if pending is not None:
                            await pending
                    elif kind is StepKind.READ_STATES:
                        host.on_read_states(rd.read_states)
                    else:
                        node.advance(rd)
                host.after_ready()

    async def _persist(self, hard_state, entries: list[Entry], sync: bool) -> None:
        await asyncio.get_running_loop().run_in_executor(
            self._io, functools.partial(self._save, hard_state, entries, sync))
        if hard_state is not None:
            self.storage.set_hard_state(hard_state)
        if entries:
            self.storage.append(entries)

    def _save(self, hard_state, entries: list[Entry], sync: bool) -> None:
        """On the WAL thread: one record, and how long a synced one took (``on_wal_sync``)."""
        if not sync or self.on_wal_sync is None:
            self.wal.save(hard_state, entries, sync=sync)
            return
        started = time.perf_counter()
        self.wal.save(hard_state, entries, sync=True)
        self.on_wal_sync(time.perf_counter() - started)

    async def in_wal_thread(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` on the WAL's thread, ordered with the Ready loop's writes."""
        return await asyncio.get_running_loop().run_in_executor(self._io, fn)

    def close(self) -> None:
        """After the loops stopped: finish pending writes and close the WAL."""
        self._io.shutdown(wait=True)
        self.wal.close()
