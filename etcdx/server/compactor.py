"""Compaction: carrying out applied compactions in steps, and etcd's auto-compaction.

A Compact request is applied (recorded) like any write; the work of dropping
old revisions is done in bounded steps between Ready batches, so a large
compaction never stalls the loop. ``--auto-compaction-mode``/``-retention``
make the leader propose compactions itself, as etcd's compactor does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from etcdx.pb import raft_internal_pb2, rpc_pb2
from etcdx.server import errors
from etcdx.server.config import parse_retention
from etcdx.server.stores import Stores

log = logging.getLogger("etcdx.server")

STEP_ENTRIES = 1000  # key-bucket entries per step between Ready batches (--experimental-compaction-batch-limit)
BOOT_STEP_ENTRIES = 10000
REVISION_MODE_INTERVAL = 300.0  # seconds between looks in revision mode, as etcd
InternalRaftRequest = raft_internal_pb2.InternalRaftRequest


class Compactor:
    def __init__(self, stores: Stores, *, mode: str, retention: str,
                 propose: Callable[[InternalRaftRequest], Awaitable[Any]],
                 is_leader: Callable[[], bool], step_entries: int = STEP_ENTRIES) -> None:
        self.stores = stores
        self._step_entries = step_entries
        self._mode = mode
        self._retention = parse_retention(mode, retention)
        self._propose = propose
        self._is_leader = is_leader
        self.done = asyncio.Event()
        self.done.set()

    def finish_pending(self) -> None:
        """Finish a compaction interrupted by a crash (or carried in by a snapshot) at once."""
        while True:
            with self.stores.backend.write() as btx:
                if self.stores.kv.compact_step(btx, BOOT_STEP_ENTRIES):
                    break
        self.done.set()

    def scheduled(self) -> None:
        """A compaction was applied (or may be pending in a new backend): work on it between batches."""
        self.done.clear()

    def step(self) -> None:
        if self.done.is_set():
            return
        with self.stores.backend.write() as btx:
            finished = self.stores.kv.compact_step(btx, self._step_entries)
        if finished:
            self.done.set()

    async def run_auto(self) -> None:
        retention = self._retention
        if retention <= 0:
            return
        if self._mode == "revision":
            while True:
                await asyncio.sleep(REVISION_MODE_INTERVAL)
                kv = self.stores.kv
                target = kv.current_revision - int(retention)
                if target > kv.compact_revision and target > 0:
                    await self._auto_compact(target)
        # periodic: remember the revision at each tick, compact to the one `retention` ago
        interval = min(retention, 3600.0) / 10
        history: list[tuple[float, int]] = []
        while True:
            now = time.monotonic()
            history.append((now, self.stores.kv.current_revision))
            old = [rev for t, rev in history if now - t >= retention]
            if old:
                target = old[-1]
                history = [(t, rev) for t, rev in history if now - t < retention]
                if target > self.stores.kv.compact_revision:
                    await self._auto_compact(target)
            await asyncio.sleep(interval)

    async def _auto_compact(self, revision: int) -> None:
        if not self._is_leader():
            return  # as in etcd, only the leader's compactor proposes
        try:
            await self._propose(InternalRaftRequest(compaction=rpc_pb2.CompactionRequest(revision=revision)))
            log.info("auto compaction", extra={"fields": {"revision": revision}})
        except errors.EtcdError as err:
            log.warning("auto compaction failed", extra={"fields": {"revision": revision, "error": err.message}})
