"""Raft snapshots: the backend is the snapshot.

Every ``--snapshot-count`` applied entries the backend is synced up to the
applied index, the WAL records a snapshot marker there, raft's in-memory log
drops all but ``--snapshot-catchup-entries`` entries before it (slow
followers can still catch up from those), and old WAL segments are released.
A follower too far behind is streamed a point-in-time copy of the backend
(made on a thread) and swaps it in for its own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile

from etcdx.raft import RaftError
from etcdx.server.raft_driver import RaftDriver
from etcdx.server.read_index import AppliedIndex
from etcdx.server.stores import Stores

log = logging.getLogger("etcdx.server")

CHECK_INTERVAL = 1.0  # seconds between checks whether a snapshot is due


def clean_stale_copies(snap_dir: str) -> None:
    """Remove copies being sent or received when the member last stopped."""
    for name in os.listdir(snap_dir):
        if name.startswith("send-") or name.endswith(".part") or name.endswith(".snap.db"):
            os.remove(os.path.join(snap_dir, name))


class Snapshotter:
    def __init__(self, stores: Stores, driver: RaftDriver, applied: AppliedIndex, *, snap_dir: str,
                 snapshot_count: int, catchup_entries: int, release_wal: bool = True) -> None:
        self.stores = stores
        self.driver = driver
        self.applied = applied
        self.snap_dir = snap_dir
        self.snapshot_count = snapshot_count
        self.catchup_entries = catchup_entries
        self.release_wal = release_wal  # False with --max-wals 0: every WAL segment is kept
        self.entries_since = 0  # applied since the last snapshot marker

    async def run(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            if self.entries_since >= self.snapshot_count:
                await self.save()

    async def save(self) -> None:
        driver = self.driver
        index, term = self.applied.index, self.applied.term
        cs = driver.node.status().conf_state
        await driver.in_wal_thread(self.stores.backend.sync)
        await driver.in_wal_thread(lambda: driver.wal.save_snapshot(index, term))
        storage = driver.storage
        try:
            storage.create_snapshot(index, cs, b"")
            compact_to = index - self.catchup_entries
            if compact_to > storage.first_index():
                storage.compact(compact_to)
        except RaftError as err:  # a newer snapshot was installed meanwhile
            log.info("skipped log compaction", extra={"fields": {"reason": str(err)}})
        if self.release_wal:
            await driver.in_wal_thread(lambda: driver.wal.release_to(index))
        self.entries_since = 0
        log.info("saved snapshot", extra={"fields": {"index": index, "term": term,
                                                     "log-first-index": storage.first_index()}})

    async def open_copy(self) -> str:
        """A point-in-time copy of the backend for a follower that needs a snapshot (a file path)."""
        backend = self.stores.backend

        def write() -> str:
            fd, path = tempfile.mkstemp(prefix="send-", suffix=".db", dir=self.snap_dir)
            with os.fdopen(fd, "wb") as fh:
                backend.snapshot(fh)
            return path
        return await asyncio.get_running_loop().run_in_executor(None, write)
