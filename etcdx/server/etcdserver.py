"""EtcdServer: one member's glue between the API and the replicated state.

Every mutation becomes an ``InternalRaftRequest`` proposed to the consensus
node; the Ready loop persists what the node hands out to the WAL (one
fdatasync per Ready), applies committed entries in one backend transaction
per batch, then resolves the waiting proposers and feeds the watch hub.
Linearizable reads wait for a ReadIndex round shared by every read that
arrived meanwhile, then for the applied index to reach it.

All methods run on the member's one asyncio event loop; blocking disk work
(WAL writes and fsync) runs on one worker thread so the loop keeps
collecting the next batch while the current one is made durable.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import hashlib
import json
import logging
import os
import tempfile
import time
from typing import Any, Iterator

from etcdx.backend import Backend
from etcdx.lease import Lessor
from etcdx.lease import errors as lease_errors
from etcdx.mvcc import KVStore
from etcdx.mvcc.errors import CompactedError, FutureRevisionError
from etcdx.mvcc.kvstore import current_revision
from etcdx.mvcc.watch_hub import WatchHub
from etcdx.pb import raft_internal_pb2, rpc_pb2
from etcdx.raft.types import Entry, EntryType, HardState
from etcdx.server import errors, kvops
from etcdx.server.alarms import NOSPACE, AlarmStore
from etcdx.server.config import Config, parse_retention
from etcdx.server.ids import IdGenerator, cluster_id, member_id
from etcdx.server.membership import Member, load_members, save_member
from etcdx.server.solo import SoloNode
from etcdx.wal import WAL

log = logging.getLogger("etcdx.server")

SERVER_VERSION = "3.5.0"
CLUSTER_VERSION = "3.5.0"
MAX_LEASE_TTL = 9_000_000_000
KV_OVERHEAD = 256  # bytes a put costs the quota beyond its key and value, as etcd counts it
SNAPSHOT_SYNC_INTERVAL = 1.0  # seconds between backend syncs that let old WAL segments go

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest


class EtcdServer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.data_dir = cfg.data_dir
        self.member_dir = os.path.join(cfg.data_dir, "member")
        self.wal_dir = os.path.join(self.member_dir, "wal")
        self.db_dir = os.path.join(self.member_dir, "snap", "db")
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="etcdx-wal")
        self._waiters: dict[int, asyncio.Future] = {}
        self._read_waiter: asyncio.Future | None = None
        self._read_ctx: dict[bytes, asyncio.Future] = {}
        self._applied_waiters: list[tuple[int, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._deadlines: collections.deque[tuple[float, int]] = collections.deque()
        self._read_deadlines: collections.deque[tuple[float, bytes]] = collections.deque()
        self._timeout = self.request_timeout()
        self._db_size = 0
        self._watch_kick = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task] = []
        self._compact_done: asyncio.Event = asyncio.Event()
        self._compact_done.set()
        self._compacting = False
        self.applied_index = 0
        self.applied_term = 0
        self._since_snapshot = 0
        self._snapshot_index = 0
        # Called (on the loop) right after the backend file is replaced, e.g. by
        # defragment: other processes reading it (API workers) must reopen it.
        self.on_backend_swap: list[Any] = []

    # -- lifecycle -----------------------------------------------------------------

    def open(self) -> None:
        """Open (or create) the data dir and replay the WAL tail; synchronous, before serving."""
        os.makedirs(self.member_dir, exist_ok=True)
        self.backend = Backend(self.db_dir)
        peers = self.cfg.initial_cluster_members()
        if WAL.exists(self.wal_dir):
            self.wal, state = WAL.open(self.wal_dir)
            meta = json.loads(state.metadata)
            self.member_id, self.cluster_id = int(meta["member_id"]), int(meta["cluster_id"])
            hard_state, entries = state.hard_state, state.entries
            self._snapshot_index = state.snapshot_index
        else:
            ids = {name: member_id(urls, self.cfg.initial_cluster_token) for name, urls in peers.items()}
            self.member_id = ids[self.cfg.name]
            self.cluster_id = cluster_id(list(ids.values()))
            meta = json.dumps({"member_id": self.member_id, "cluster_id": self.cluster_id}).encode()
            self.wal = WAL.create(self.wal_dir, meta)
            hard_state, entries = HardState(), []
            with self.backend.write() as btx:
                for name, urls in peers.items():
                    save_member(btx, Member(ids[name], name, urls, []))
        self.members = load_members(self.backend)
        me = self.members.get(self.member_id)
        if me is not None and (me.name != self.cfg.name or me.client_urls != self.cfg.advertise_client_urls):
            me.name, me.client_urls = self.cfg.name, list(self.cfg.advertise_client_urls)
            with self.backend.write() as btx:
                save_member(btx, me)
        self.kv = KVStore(self.backend)
        self.hub = WatchHub(self.backend)
        self.lessor = Lessor(self.backend, min_ttl=self._min_lease_ttl())
        self.alarms = AlarmStore(self.backend)
        self.ids = IdGenerator(self.member_id)
        ci, ct = self.backend.consistent_index()
        self.applied_index, self.applied_term = ci, ct
        tail = [e for e in entries if e.index > ci]
        if tail:
            log.info("replaying WAL tail", extra={"fields": {"from": tail[0].index, "to": tail[-1].index}})
            self._apply_entries(tail, replay=True)
        # A compaction interrupted by a crash is finished before serving.
        while True:
            with self.backend.write() as btx:
                if self.kv.compact_step(btx, 10000):
                    break
        last_index = entries[-1].index if entries else max(ci, self._snapshot_index)
        self.node = SoloNode(self.member_id, hard_state, last_index, self.applied_index)
        self.lessor.promote(time.monotonic())
        log.info("member ready", extra={"fields": {
            "member-id": f"{self.member_id:x}", "cluster-id": f"{self.cluster_id:x}",
            "applied-index": self.applied_index, "revision": self.kv.current_revision}})

    def _min_lease_ttl(self) -> int:
        # ceil(1.5 * election timeout), in seconds, as etcd bounds it
        return max(1, -(-3 * self.cfg.election_timeout // 2000))

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self._db_size = self.backend.size()
        for coro in (self._run_ready_loop(), self._run_lease_expiry(), self._run_watch_sync(),
                     self._run_housekeeping(), self._run_auto_compaction(), self._run_timeouts()):
            self._tasks.append(loop.create_task(coro))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        for fut in list(self._waiters.values()):
            if not fut.done():
                fut.set_exception(errors.STOPPED)
        self._waiters.clear()
        self._io.shutdown(wait=True)
        self.wal.close()
        self.backend.sync()
        self.backend.close()

    # -- the Ready loop -------------------------------------------------------------

    async def _run_ready_loop(self) -> None:
        loop = asyncio.get_running_loop()
        node = self.node
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while node.has_ready():
                rd = node.ready()
                if rd.entries or rd.hard_state is not None:
                    await loop.run_in_executor(self._io, self.wal.save, rd.hard_state, rd.entries)
                if rd.committed_entries:
                    self._apply_entries(rd.committed_entries)
                for rs in rd.read_states:
                    fut = self._read_ctx.pop(rs.request_ctx, None)
                    if fut is not None:
                        if self._read_waiter is fut:
                            self._read_waiter = None
                        if not fut.done():
                            fut.set_result(rs.index)
                node.advance(rd)
                if self._compacting:
                    self._compact_step()

    def _kick(self) -> None:
        self._wake.set()

    # -- apply ----------------------------------------------------------------------

    def _apply_entries(self, entries: list[Entry], replay: bool = False) -> None:
        results: list[tuple[int, Any]] = []
        notifications: list[tuple[list, int]] = []
        with self.backend.write() as btx:
            for e in entries:
                if e.type != EntryType.NORMAL or not e.data:
                    continue
                req = InternalRaftRequest.FromString(e.data)
                try:
                    res = self._apply_request(btx, req, notifications)
                except errors.EtcdError as err:
                    res = err
                results.append((req.header.id, res))
            last = entries[-1]
            btx.set_consistent_index(last.index, last.term)
        self.applied_index, self.applied_term = entries[-1].index, entries[-1].term
        self._since_snapshot += len(entries)
        self._db_size = self.backend.size()
        for events, rev in notifications:
            self.hub.notify(events, rev)
        if replay:
            return
        waiters = self._waiters
        for rid, res in results:
            fut = waiters.pop(rid, None)
            if fut is not None and not fut.done():
                if isinstance(res, errors.EtcdError):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)
        if self._applied_waiters:
            keep = []
            for index, fut in self._applied_waiters:
                if index <= self.applied_index:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((index, fut))
            self._applied_waiters = keep

    def _apply_request(self, btx, req: InternalRaftRequest, notes: list) -> Any:
        if req.HasField("put"):
            return self._apply_kv(btx, notes, "put", req.put)
        if req.HasField("delete_range"):
            return self._apply_kv(btx, notes, "delete_range", req.delete_range)
        if req.HasField("txn"):
            return self._apply_kv(btx, notes, "txn", req.txn)
        if req.HasField("compaction"):
            return self._apply_compaction(btx, req.compaction)
        if req.HasField("lease_grant"):
            return self._apply_lease_grant(btx, req.lease_grant)
        if req.HasField("lease_revoke"):
            return self._apply_lease_revoke(btx, req.lease_revoke, notes)
        if req.HasField("alarm"):
            return self._apply_alarm(btx, req.alarm)
        raise RuntimeError(f"unknown internal request {req}")

    def _apply_kv(self, btx, notes: list, op: str, r: Any) -> Any:
        nospace = self.alarms.active(NOSPACE)
        tw = self.kv.write(btx)
        ka = kvops.KVApply(tw, btx, self.lessor, self.kv)
        begin = tw.revision
        try:
            if op == "put":
                if nospace:
                    raise errors.NO_SPACE
                resp = rpc_pb2.PutResponse()
                ka.check_put(r)
                ka.put(r, resp)
            elif op == "delete_range":
                resp = rpc_pb2.DeleteRangeResponse()
                ka.delete_range(r, resp)
            else:
                resp = rpc_pb2.TxnResponse()
                path = kvops.txn_path(tw, r)
                if nospace and kvops.is_write_txn(r, path)[0]:
                    raise errors.NO_SPACE
                ka.check_txn(r, path)
                ka.txn(r, path, resp)
                resp.header.revision = begin + 1 if ka.changed else begin
        finally:
            rev = tw.revision
            events = tw.end()
        if events:
            notes.append((events, rev))
        return resp

    def _apply_compaction(self, btx, r: rpc_pb2.CompactionRequest) -> Any:
        try:
            self.kv.compact(r.revision, btx)
        except CompactedError:
            raise errors.COMPACTED from None
        except FutureRevisionError:
            raise errors.FUTURE_REV from None
        self._compacting = True
        self._compact_done.clear()
        resp = rpc_pb2.CompactionResponse()
        resp.header.revision = current_revision(btx)
        return resp

    def _compact_step(self) -> None:
        with self.backend.write() as btx:
            done = self.kv.compact_step(btx, 1000)
        if done:
            self._compacting = False
            self._compact_done.set()

    def _apply_lease_grant(self, btx, r: rpc_pb2.LeaseGrantRequest) -> Any:
        if self.alarms.active(NOSPACE):
            raise errors.NO_SPACE
        try:
            lease = self.lessor.grant(btx, r.ID, r.TTL, time.monotonic())
        except lease_errors.LeaseExistsError:
            raise errors.LEASE_EXISTS from None
        except lease_errors.LeaseTTLTooLargeError:
            raise errors.LEASE_TTL_TOO_LARGE from None
        return rpc_pb2.LeaseGrantResponse(ID=lease.id, TTL=lease.ttl)

    def _apply_lease_revoke(self, btx, r: rpc_pb2.LeaseRevokeRequest, notes: list) -> Any:
        try:
            keys = self.lessor.revoke(btx, r.ID)
        except lease_errors.LeaseNotFoundError:
            raise errors.LEASE_NOT_FOUND from None
        if keys:
            tw = self.kv.write(btx)
            try:
                for k in sorted(keys):
                    tw.delete_range(k, b"")
            finally:
                rev = tw.revision
                events = tw.end()
            if events:
                notes.append((events, rev))
        return rpc_pb2.LeaseRevokeResponse()

    def _apply_alarm(self, btx, r: rpc_pb2.AlarmRequest) -> Any:
        resp = rpc_pb2.AlarmResponse()
        if r.action == rpc_pb2.AlarmRequest.GET:
            pass
        elif r.action == rpc_pb2.AlarmRequest.ACTIVATE:
            if r.alarm != rpc_pb2.NONE and self.alarms.activate(btx, r.memberID, r.alarm):
                log.warning("alarm raised", extra={"fields": {"alarm": rpc_pb2.AlarmType.Name(r.alarm), "member-id": f"{r.memberID:x}"}})
                resp.alarms.add(memberID=r.memberID, alarm=r.alarm)
            return resp
        elif r.action == rpc_pb2.AlarmRequest.DEACTIVATE:
            if self.alarms.deactivate(btx, r.memberID, r.alarm):
                log.warning("alarm cleared", extra={"fields": {"alarm": rpc_pb2.AlarmType.Name(r.alarm), "member-id": f"{r.memberID:x}"}})
                resp.alarms.add(memberID=r.memberID, alarm=r.alarm)
            return resp
        for m, a in self.alarms.get(r.alarm):
            resp.alarms.add(memberID=m, alarm=a)
        return resp

    # -- proposals and reads ----------------------------------------------------------

    def request_timeout(self) -> float:
        return 5.0 + 2 * self.cfg.election_timeout / 1000.0

    async def _propose(self, req: InternalRaftRequest) -> Any:
        if self._stopping:
            raise errors.STOPPED
        rid = self.ids.next()
        req.header.id = rid
        data = req.SerializeToString()
        if len(data) > self.cfg.max_request_bytes:
            raise errors.REQUEST_TOO_LARGE
        fut = self._loop.create_future()
        self._waiters[rid] = fut
        self._deadlines.append((self._loop.time() + self._timeout, rid))
        self.node.propose(data)
        self._wake.set()
        return await fut

    async def _run_timeouts(self) -> None:
        """Fail proposals still unanswered after the request timeout.

        One sweeper for all of them is far cheaper than a timer per request;
        deadlines are appended in time order, so the oldest are at the front.
        """
        deadlines = self._deadlines
        while not self._stopping:
            await asyncio.sleep(0.25)
            now = self._loop.time()
            while deadlines and deadlines[0][0] <= now:
                _, rid = deadlines.popleft()
                fut = self._waiters.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_exception(errors.TIMEOUT)
            reads = self._read_deadlines
            while reads and reads[0][0] <= now:
                _, ctx = reads.popleft()
                fut = self._read_ctx.pop(ctx, None)
                if fut is not None:
                    if self._read_waiter is fut:
                        self._read_waiter = None
                    if not fut.done():
                        fut.set_exception(errors.TIMEOUT)

    async def linearizable_barrier(self) -> None:
        """Return once this member has applied everything committed before the call.

        Every read arriving while no ReadIndex request is outstanding joins the
        next one: one round serves them all.
        """
        fut = self._read_waiter
        if fut is None:
            fut = self._read_waiter = self._loop.create_future()
            ctx = self.ids.next().to_bytes(8, "big")
            self._read_ctx[ctx] = fut
            self._read_deadlines.append((self._loop.time() + self._timeout, ctx))
            self.node.read_index(ctx)
            self._wake.set()
        # Shielded: one reader giving up (a cancelled RPC) must not cancel the round for the rest.
        index = await asyncio.shield(fut)
        if self.applied_index < index:
            await self.wait_applied(index)

    async def wait_applied(self, index: int) -> None:
        if self.applied_index >= index:
            return
        fut = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, fut))
        await fut

    def header(self, h: rpc_pb2.ResponseHeader, revision: int = 0) -> None:
        """Fill a response header; revision 0 means "the current store revision"."""
        h.cluster_id = self.cluster_id
        h.member_id = self.member_id
        h.raft_term = self.node.term
        h.revision = revision or h.revision or self.kv.current_revision

    def header_without_revision(self, h: rpc_pb2.ResponseHeader) -> None:
        """Cluster, member and term only: etcd leaves the revision 0 on non-KV responses such as MemberList."""
        h.cluster_id = self.cluster_id
        h.member_id = self.member_id
        h.raft_term = self.node.term

    # -- KV ---------------------------------------------------------------------------

    async def range(self, r: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        if not r.serializable:
            await self.linearizable_barrier()
        resp = rpc_pb2.RangeResponse()
        kvops.do_range(self.kv, r, resp)
        self.header(resp.header)
        return resp

    def _check_quota(self, cost: int) -> None:
        # The size as of the last applied batch: the quota is a soft limit in etcd too.
        if self._db_size + cost > self.cfg.quota_bytes:
            if not self.alarms.active(NOSPACE):
                asyncio.get_running_loop().create_task(self._raise_nospace())
            raise errors.NO_SPACE

    async def _raise_nospace(self) -> None:
        req = InternalRaftRequest(alarm=rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=self.member_id, alarm=NOSPACE))
        try:
            await self._propose(req)
        except errors.EtcdError as err:
            log.warning("failed to raise NOSPACE alarm: %s", err.message)

    async def put(self, r: rpc_pb2.PutRequest) -> rpc_pb2.PutResponse:
        self._check_quota(KV_OVERHEAD + len(r.key) + len(r.value))
        resp = await self._propose(InternalRaftRequest(put=r))
        self.header(resp.header)
        return resp

    async def delete_range(self, r: rpc_pb2.DeleteRangeRequest) -> rpc_pb2.DeleteRangeResponse:
        resp = await self._propose(InternalRaftRequest(delete_range=r))
        self.header(resp.header)
        return resp

    async def txn(self, r: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
        if txn_has_write(r):
            self._check_quota(_txn_cost(r))
            resp = await self._propose(InternalRaftRequest(txn=r))
        else:
            # A read-only txn is a linearizable read: no need to go through the log.
            if not txn_all_serializable(r):
                await self.linearizable_barrier()
            resp = rpc_pb2.TxnResponse()
            with self.backend.read() as rtx:
                view = kvops.ReadView(self.kv, rtx)
                path = kvops.txn_path(view, r)
                ka = kvops.KVApply(view, None, self.lessor, self.kv)
                ka.check_txn(r, path)
                ka.txn(r, path, resp)
        self.header(resp.header)
        return resp

    async def compact(self, r: rpc_pb2.CompactionRequest) -> rpc_pb2.CompactionResponse:
        resp = await self._propose(InternalRaftRequest(compaction=r))
        if r.physical:
            await asyncio.wait_for(self._compact_done.wait(), self.request_timeout() * 10)
        self.header(resp.header)
        return resp

    # -- leases -----------------------------------------------------------------------

    async def lease_grant(self, r: rpc_pb2.LeaseGrantRequest) -> rpc_pb2.LeaseGrantResponse:
        if r.TTL > MAX_LEASE_TTL:
            raise errors.LEASE_TTL_TOO_LARGE
        self._check_quota(KV_OVERHEAD)
        req = rpc_pb2.LeaseGrantRequest(TTL=r.TTL, ID=r.ID)
        if req.ID == 0:
            req.ID = self.ids.next() & ((1 << 63) - 1)
        resp = await self._propose(InternalRaftRequest(lease_grant=req))
        self.header(resp.header)
        return resp

    async def lease_revoke(self, r: rpc_pb2.LeaseRevokeRequest) -> rpc_pb2.LeaseRevokeResponse:
        resp = await self._propose(InternalRaftRequest(lease_revoke=r))
        self.header(resp.header)
        return resp

    async def lease_renew(self, lease_id: int) -> int:
        """Keep-alive: the new TTL, or 0 when the lease does not exist (etcd's answer)."""
        await self.linearizable_barrier()
        try:
            return self.lessor.renew(lease_id, time.monotonic())
        except lease_errors.LeaseNotFoundError:
            return 0

    async def lease_time_to_live(self, r: rpc_pb2.LeaseTimeToLiveRequest) -> rpc_pb2.LeaseTimeToLiveResponse:
        await self.linearizable_barrier()
        resp = rpc_pb2.LeaseTimeToLiveResponse(ID=r.ID)
        ttl, granted, keys = self.lessor.time_to_live(r.ID, time.monotonic(), r.keys)
        resp.TTL = ttl
        if ttl != -1:
            resp.grantedTTL = granted
            if r.keys:
                resp.keys.extend(sorted(keys))
        self.header(resp.header)
        return resp

    async def lease_leases(self) -> rpc_pb2.LeaseLeasesResponse:
        await self.linearizable_barrier()
        resp = rpc_pb2.LeaseLeasesResponse()
        for lease in sorted(self.lessor.leases(), key=lambda l: l.id):
            resp.leases.add(ID=lease.id)
        self.header(resp.header)
        return resp

    async def _run_lease_expiry(self) -> None:
        while not self._stopping:
            await asyncio.sleep(0.5)
            for lid in self.lessor.expired(time.monotonic(), limit=500):
                asyncio.get_running_loop().create_task(self._revoke_expired(lid))

    async def _revoke_expired(self, lease_id: int) -> None:
        try:
            await self._propose(InternalRaftRequest(lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=lease_id)))
        except errors.EtcdError as err:
            if err != errors.LEASE_NOT_FOUND:
                log.warning("failed to revoke expired lease %x: %s", lease_id, err.message)

    # -- maintenance --------------------------------------------------------------------

    async def alarm(self, r: rpc_pb2.AlarmRequest) -> rpc_pb2.AlarmResponse:
        if r.action == rpc_pb2.AlarmRequest.GET:
            await self.linearizable_barrier()
            resp = self._apply_alarm(None, r)
        else:
            resp = await self._propose(InternalRaftRequest(alarm=r))
        self.header_without_revision(resp.header)
        return resp

    def status(self) -> rpc_pb2.StatusResponse:
        resp = rpc_pb2.StatusResponse(
            version=SERVER_VERSION, dbSize=self.backend.size(), dbSizeInUse=self.backend.size_in_use(),
            leader=self.node.lead, raftIndex=self.node.commit, raftTerm=self.node.term,
            raftAppliedIndex=self.applied_index, isLearner=False)
        for _, a in self.alarms.get():
            resp.errors.append(f"memberID:{self.member_id} alarm:{rpc_pb2.AlarmType.Name(a)} ")
        self.header(resp.header)
        return resp

    def hash(self) -> rpc_pb2.HashResponse:
        resp = rpc_pb2.HashResponse(hash=self.kv.hash())
        self.header(resp.header)
        return resp

    def hash_kv(self, r: rpc_pb2.HashKVRequest) -> rpc_pb2.HashKVResponse:
        try:
            h, compact_rev, hash_rev = self.kv.hash_kv(r.revision)
        except CompactedError:
            raise errors.COMPACTED from None
        except FutureRevisionError:
            raise errors.FUTURE_REV from None
        resp = rpc_pb2.HashKVResponse(hash=h, compact_revision=compact_rev, hash_revision=hash_rev)
        self.header(resp.header)
        return resp

    async def defragment(self) -> rpc_pb2.DefragmentResponse:
        # The backend must have no open transactions: the Ready loop's write
        # txns are synchronous on this loop, so nothing else runs meanwhile.
        started = time.monotonic()
        self.backend.defragment()
        for cb in self.on_backend_swap:
            cb()
        log.info("defragmented backend", extra={"fields": {"took-seconds": round(time.monotonic() - started, 3),
                                                            "db-size": self.backend.size()}})
        resp = rpc_pb2.DefragmentResponse()
        self.header_without_revision(resp.header)
        return resp

    def snapshot_chunks(self, chunk_size: int = 32 * 1024) -> Iterator[tuple[bytes, int]]:
        """The backend as a point-in-time file, in chunks with the bytes remaining after each.

        As etcd does, the stream ends with the SHA-256 of the file, which
        ``etcdctl snapshot save`` checks.
        """
        with tempfile.TemporaryFile(dir=self.member_dir) as fh:
            self.backend.snapshot(fh)
            total = fh.tell() + hashlib.sha256().digest_size
            fh.seek(0)
            digest = hashlib.sha256()
            sent = 0
            while True:
                chunk = fh.read(chunk_size)
                if not chunk:
                    break
                digest.update(chunk)
                sent += len(chunk)
                yield chunk, total - sent
            yield digest.digest(), 0

    def member_list(self) -> rpc_pb2.MemberListResponse:
        resp = rpc_pb2.MemberListResponse()
        for m in sorted(self.members.values(), key=lambda m: m.id):
            resp.members.add(ID=m.id, name=m.name, peerURLs=m.peer_urls, clientURLs=m.client_urls, isLearner=m.is_learner)
        self.header_without_revision(resp.header)
        return resp

    async def move_leader(self, r: rpc_pb2.MoveLeaderRequest) -> rpc_pb2.MoveLeaderResponse:
        if r.targetID != self.member_id:
            raise errors.BAD_LEADER_TRANSFEREE
        resp = rpc_pb2.MoveLeaderResponse()
        self.header(resp.header)
        return resp

    # -- background work ----------------------------------------------------------------

    async def _run_watch_sync(self) -> None:
        """Catch unsynced watchers up from the backend every 100 ms, or at once when kicked."""
        while not self._stopping:
            try:
                await asyncio.wait_for(self._watch_kick.wait(), 0.1)
            except asyncio.TimeoutError:
                pass
            self._watch_kick.clear()
            for _ in range(10):  # bounded: blocked slow watchers must not spin the loop
                if not self.hub.sync_unsynced(max_events=10000):
                    break
                await asyncio.sleep(0)

    def kick_watch_sync(self) -> None:
        self._watch_kick.set()

    async def _run_housekeeping(self) -> None:
        """Sync the backend and let WAL segments go once it holds what they hold."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            await asyncio.sleep(SNAPSHOT_SYNC_INTERVAL)
            if self._since_snapshot < self.cfg.snapshot_count:
                continue
            index, term = self.applied_index, self.applied_term
            await loop.run_in_executor(self._io, self.backend.sync)
            await loop.run_in_executor(self._io, self.wal.save_snapshot, index, term)
            await loop.run_in_executor(self._io, self.wal.release_to, index)
            self._since_snapshot = 0
            self._snapshot_index = index
            log.info("saved snapshot marker and released WAL segments", extra={"fields": {"index": index}})

    async def _run_auto_compaction(self) -> None:
        retention = parse_retention(self.cfg.auto_compaction_mode, self.cfg.auto_compaction_retention)
        if retention <= 0:
            return
        if self.cfg.auto_compaction_mode == "revision":
            interval = 300.0
            while not self._stopping:
                await asyncio.sleep(interval)
                target = self.kv.current_revision - int(retention)
                if target > self.kv.compact_revision and target > 0:
                    await self._auto_compact(target)
            return
        # periodic: remember the revision at each tick, compact to the one `retention` ago
        interval = min(retention, 3600.0) / 10 if retention < 3600 else 3600.0 / 10
        history: list[tuple[float, int]] = []
        while not self._stopping:
            now = time.monotonic()
            history.append((now, self.kv.current_revision))
            old = [rev for t, rev in history if now - t >= retention]
            if old:
                target = old[-1]
                history = [(t, rev) for t, rev in history if now - t < retention]
                if target > self.kv.compact_revision:
                    await self._auto_compact(target)
            await asyncio.sleep(interval)

    async def _auto_compact(self, revision: int) -> None:
        try:
            await self._propose(InternalRaftRequest(compaction=rpc_pb2.CompactionRequest(revision=revision)))
            log.info("auto compaction", extra={"fields": {"revision": revision}})
        except errors.EtcdError as err:
            log.warning("auto compaction to %d failed: %s", revision, err.message)


def txn_has_write(r: rpc_pb2.TxnRequest) -> bool:
    for op in list(r.success) + list(r.failure):
        kind = op.WhichOneof("request")
        if kind in ("request_put", "request_delete_range"):
            return True
        if kind == "request_txn" and txn_has_write(op.request_txn):
            return True
    return False


def txn_all_serializable(r: rpc_pb2.TxnRequest) -> bool:
    for op in list(r.success) + list(r.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range" and not op.request_range.serializable:
            return False
        if kind == "request_txn" and not txn_all_serializable(op.request_txn):
            return False
    return True


def _txn_cost(r: rpc_pb2.TxnRequest) -> int:
    cost = 0
    for op in list(r.success) + list(r.failure):
        kind = op.WhichOneof("request")
        if kind == "request_put":
            cost += KV_OVERHEAD + len(op.request_put.key) + len(op.request_put.value)
        elif kind == "request_txn":
            cost += _txn_cost(op.request_txn)
    return cost
