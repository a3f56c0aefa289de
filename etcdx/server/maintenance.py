"""Maintenance requests: alarms, status, hashes, defragment, snapshots.

The long ones (hashing the key space, copying the database) run on worker
threads holding the backend open (``Backend.hold``), never on the event loop
that ticks raft: on a big store they take seconds, and a leader whose loop
stalls that long stops sending heartbeats and loses its leadership.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
import time
from typing import IO, AsyncContextManager, Awaitable, Callable

from etcdx.mvcc.errors import CompactedError, FutureRevisionError
from etcdx.pb import raft_internal_pb2, rpc_pb2
from etcdx.server import errors
from etcdx.server.applier import apply_alarm
from etcdx.server.headers import Headers
from etcdx.server.raft_driver import RaftDriver
from etcdx.server.read_index import AppliedIndex
from etcdx.server.stores import Stores

log = logging.getLogger("etcdx.server")

SERVER_VERSION = "3.5.0"
CLUSTER_VERSION = "3.5.0"
InternalRaftRequest = raft_internal_pb2.InternalRaftRequest


@dataclasses.dataclass
class SnapshotFile:
    """A point-in-time copy of the backend in an unlinked temporary file; close it when done."""

    file: IO[bytes]
    size: int

    def close(self) -> None:
        self.file.close()


class Maintenance:
    def __init__(self, stores: Stores, headers: Headers, driver: RaftDriver, applied: AppliedIndex, *,
                 member_id: int, scratch_dir: str,
                 propose: Callable[[InternalRaftRequest], Awaitable[object]],
                 barrier: Callable[[], Awaitable[None]],
                 hold_apply: Callable[[], AsyncContextManager[None]],
                 on_backend_swap: list[Callable[[], None]], swap_lock: asyncio.Lock) -> None:
        self.stores = stores
        self.headers = headers
        self.driver = driver
        self.applied = applied
        self.member_id = member_id
        self.scratch_dir = scratch_dir
        self._propose = propose
        self._barrier = barrier
        self._hold_apply = hold_apply
        self._on_backend_swap = on_backend_swap
        self._swap_lock = swap_lock  # one backend swap (defragment, snapshot install) at a time

    async def alarm(self, r: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        if r.action == rpc_pb2.AlarmRequest.GET:
            await self._barrier()
            resp = apply_alarm(self.stores, None, r)
        else:
            resp = await self._propose(InternalRaftRequest(alarm=r))
        self.headers.fill_without_revision(resp.header)
        return resp

    async def status(self, r: rpc_pb2.StatusRequest | None = None) -> rpc_pb2.StatusResponse:
        backend = self.stores.backend
        node = self.driver.node
        resp = rpc_pb2.StatusResponse(
            version=SERVER_VERSION, dbSize=backend.size(), dbSizeInUse=backend.size_in_use(),
            leader=node.lead, raftIndex=node.commit, raftTerm=node.term,
            raftAppliedIndex=self.applied.index, isLearner=self.stores.is_learner(self.member_id))
        for _, a in self.stores.alarms.get():
            resp.errors.append(f"memberID:{self.member_id} alarm:{rpc_pb2.AlarmType.Name(a)} ")
        self.headers.fill(resp.header)
        return resp

    async def _off_loop(self, fn: Callable[[], object]) -> object:
        backend = self.stores.backend

        def held() -> object:
            with backend.hold():
                return fn()
        return await asyncio.get_running_loop().run_in_executor(None, held)

    async def hash(self, r: rpc_pb2.HashRequest | None = None) -> rpc_pb2.HashResponse:
        kv = self.stores.kv
        resp = rpc_pb2.HashResponse(hash=await self._off_loop(kv.hash))
        self.headers.fill(resp.header)
        return resp

    async def hash_kv(self, r: rpc_pb2.HashKVRequest) -> rpc_pb2.HashKVResponse:
        kv = self.stores.kv
        try:
            h, compact_rev, hash_rev = await self._off_loop(lambda: kv.hash_kv(r.revision))
        except CompactedError:
            raise errors.COMPACTED from None
        except FutureRevisionError:
            raise errors.FUTURE_REV from None
        resp = rpc_pb2.HashKVResponse(hash=h, compact_revision=compact_rev, hash_revision=hash_rev)
        self.headers.fill(resp.header)
        return resp

    async def defragment(self, r: rpc_pb2.DefragmentRequest | None = None) -> rpc_pb2.DefragmentResponse:
        """Rewrite the backend without free pages.

        The copy runs on a thread while the member keeps ticking, replicating and
        persisting; only applying is held back, so the copy misses nothing, and
        the entries committed meanwhile are applied to the new file. The swap
        itself (two renames) is the only part on the event loop.
        """
        async with self._swap_lock, self._hold_apply():
            backend = self.stores.backend
            loop = asyncio.get_running_loop()
            started = time.monotonic()
            tmp = backend.scratch_dir("defrag")
            try:
                copy = await loop.run_in_executor(None, backend.copy_compacted, tmp)
                await loop.run_in_executor(None, backend.begin_swap)
                try:
                    backend.replace_with(copy)
                finally:
                    backend.end_swap()
            finally:
                await loop.run_in_executor(None, _remove_tree, tmp)
            for cb in self._on_backend_swap:
                cb()
            log.info("defragmented backend", extra={"fields": {
                "took-seconds": round(time.monotonic() - started, 3), "db-size": backend.size()}})
        resp = rpc_pb2.DefragmentResponse()
        self.headers.fill_without_revision(resp.header)
        return resp

    async def snapshot(self, write: Callable[[IO[bytes]], object] | None = None) -> SnapshotFile:
        """A point-in-time copy of the backend, written on a thread into an unlinked file.

        ``write(file)`` writes it (default: a copy of the LMDB file; the API layer
        passes etcd's snapshot format). If the caller is cancelled while the copy
        runs, the file is closed as soon as the thread is done with it.
        """
        backend = self.stores.backend
        fh = tempfile.TemporaryFile(dir=self.scratch_dir)
        copy = write or backend.snapshot

        def held() -> None:
            with backend.hold():
                copy(fh)
        work = asyncio.get_running_loop().run_in_executor(None, held)
        try:
            await asyncio.shield(work)
        except asyncio.CancelledError:
            work.add_done_callback(lambda _: fh.close())
            raise
        except BaseException:
            fh.close()
            raise
        size = fh.seek(0, 2)
        fh.seek(0)
        return SnapshotFile(fh, size)


def _remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
