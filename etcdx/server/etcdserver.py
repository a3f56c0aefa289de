"""EtcdServer: one member's glue between the API and the replicated state.

Every mutation becomes an ``InternalRaftRequest`` proposed to the raft
``RawNode``; the Ready loop persists what the node hands out to the WAL (one
fdatasync per Ready), sends its messages to peers through the transport,
applies committed entries in one backend transaction per batch, then resolves
the waiting proposers and feeds the watch hub. Linearizable reads wait for a
ReadIndex round sent after they arrived (shared by all reads that arrived
while the previous round was in flight), then for the applied index to reach
it. Membership operations live in ``cluster_ops``, boot in ``bootstrap``.

All methods run on the member's one asyncio event loop; blocking disk work
(WAL writes and fsync) runs on one worker thread so the loop keeps
collecting the next batch while the current one is made durable.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
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
from etcdx.raft import Config as RaftConfig
from etcdx.raft import ProposalDropped, RaftError, RawNode
from etcdx.raft.codec import decode_conf_change
from etcdx.raft.types import (ConfChange, ConfChangeType, Entry, EntryType, Message, Snapshot,
                              SoftState, StateType)
from etcdx.server import bootstrap, errors, kvops
from etcdx.server.alarms import NOSPACE, AlarmStore
from etcdx.server.bootstrap import ClusterInfo
from etcdx.server.cluster_ops import MembershipOps
from etcdx.server.config import Config, parse_retention
from etcdx.server.ids import IdGenerator
from etcdx.server.membership import load_members, load_removed, save_member, validate_conf_change
from etcdx.server.membership import apply_conf_change as apply_member_change
from etcdx.snapshot import stream as snapshot_stream
from etcdx.transport import RemoteError, Transport, TransportError, snapshot_db_path

log = logging.getLogger("etcdx.server")

SERVER_VERSION = "3.5.0"
CLUSTER_VERSION = "3.5.0"
MAX_LEASE_TTL = 9_000_000_000
KV_OVERHEAD = 256  # bytes a put costs the quota beyond its key and value, as etcd counts it
SNAPSHOT_SYNC_INTERVAL = 1.0  # seconds between checks whether a snapshot is due
READ_INDEX_RETRY = 0.5  # seconds before an unanswered ReadIndex request is sent again

InternalRaftRequest = raft_internal_pb2.InternalRaftRequest


class EtcdServer(MembershipOps):
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.data_dir = cfg.data_dir
        self.member_dir = os.path.join(cfg.data_dir, "member")
        self.wal_dir = os.path.join(self.member_dir, "wal")
        self.snap_dir = os.path.join(self.member_dir, "snap")
        self.db_dir = os.path.join(self.snap_dir, "db")
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="etcdx-wal")
        self._waiters: dict[int, asyncio.Future] = {}
        self._read_next: asyncio.Future | None = None  # readers waiting for a round not yet sent
        self._read_inflight: asyncio.Future | None = None  # the round sent and not yet answered
        self._read_ctx: dict[bytes, asyncio.Future] = {}
        self._read_started: dict[bytes, float] = {}
        self._applied_waiters: list[tuple[int, asyncio.Future]] = []
        self._wake = asyncio.Event()
        self._deadlines: collections.deque[tuple[float, int]] = collections.deque()
        self._read_deadlines: collections.deque[tuple[float, bytes]] = collections.deque()
        self._pending_props: list[tuple[int, bytes]] = []  # (request id, data) for the next batch
        self._props_scheduled = False
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
        self._backend_index = 0  # entries up to here are in the backend already (after a snapshot install)
        self._since_snapshot = 0
        self.transport: Transport | None = None
        self._peer_urls: dict[int, list[str]] = {}  # the peers the transport knows, and their URLs
        # Set when this member applies its own removal: the process should exit.
        self.removed = asyncio.Event()
        # Set when a task the member cannot run without has failed: the process should exit.
        self.failed = asyncio.Event()
        # Set once the members bucket holds this member's name and client URLs. As in
        # etcd, a member serves clients only after that, so MemberList never shows a
        # serving member as unstarted.
        self.published = asyncio.Event()
        # Called (on the loop) right after the backend file is replaced, e.g. by
        # defragment: other processes reading it (API workers) must reopen it.
        self.on_backend_swap: list[Any] = []

    # -- lifecycle -----------------------------------------------------------------

    def open(self, joined: ClusterInfo | None = None) -> None:
        """Open (or create) the data dir and the raft node; synchronous, before serving.

        ``joined`` is the membership fetched from the cluster by ``fetch_cluster``
        when this member joins an existing cluster with an empty data dir.
        """
        os.makedirs(self.member_dir, exist_ok=True)
        self.backend = Backend(self.db_dir)
        for name in os.listdir(self.snap_dir):  # copies being sent or received when we stopped
            if name.startswith("send-") or name.endswith(".part") or name.endswith(".snap.db"):
                os.remove(os.path.join(self.snap_dir, name))
        bs = bootstrap.boot(self.cfg, self.backend, self.wal_dir, joined)
        self.wal, self.storage = bs.wal, bs.storage
        self.member_id, self.cluster_id = bs.member_id, bs.cluster_id
        self.ids = IdGenerator(self.member_id)
        self._load_state()
        self.hub = WatchHub(self.backend)
        # A compaction interrupted by a crash is finished before serving.
        while True:
            with self.backend.write() as btx:
                if self.kv.compact_step(btx, 10000):
                    break
        rc = RaftConfig(
            id=self.member_id, storage=self.storage,
            election_tick=max(2, self.cfg.election_timeout // self.cfg.heartbeat_interval),
            heartbeat_tick=1, applied=bs.applied, pre_vote=self.cfg.pre_vote, check_quorum=True,
            max_size_per_msg=1 << 20, max_inflight_msgs=512,
            max_uncommitted_entries_size=1 << 30, max_committed_size_per_ready=16 << 20)
        self.node = RawNode(rc)
        cs = self.storage.snapshot().metadata.conf_state
        if cs.voters == [self.member_id] and not cs.learners:
            # Alone in the cluster: no one to wait for, lead at once.
            self.node.campaign()
        log.info("member ready", extra={"fields": {
            "member-id": f"{self.member_id:x}", "cluster-id": f"{self.cluster_id:x}",
            "applied-index": self.applied_index, "revision": self.kv.current_revision,
            "voters": [f"{v:x}" for v in cs.voters]}})

    def _load_state(self) -> None:
        """(Re)build what is read from the backend; after open and after a snapshot install
        (the watch hub, which holds watchers, is restored rather than rebuilt)."""
        self.kv = KVStore(self.backend)
        self.lessor = Lessor(self.backend, min_ttl=self._min_lease_ttl())
        self.alarms = AlarmStore(self.backend)
        self.members, self.removed_ids = load_members(self.backend), load_removed(self.backend)
        ci, ct = self.backend.consistent_index()
        self.applied_index, self.applied_term = ci, ct
        self._backend_index = ci
        self._db_size = self.backend.size()

    def _min_lease_ttl(self) -> int:
        # ceil(1.5 * election timeout), in seconds, as etcd bounds it
        return max(1, -(-3 * self.cfg.election_timeout // 2000))

    async def start(self) -> None:
        loop = self._loop = asyncio.get_running_loop()
        self.transport = Transport(
            local_id=self.member_id, cluster_id=self.cluster_id, listen_urls=self.cfg.listen_peer_urls,
            on_messages=self._on_messages, on_unreachable=self._on_unreachable,
            on_snapshot_status=self._on_snapshot_status, snapshot_dir=self.snap_dir,
            open_snapshot=self._open_snapshot, request_handler=self._on_peer_request)
        await self.transport.start()
        self._sync_peers()
        for coro in (self._run_ready_loop(), self._run_ticker(), self._run_lease_expiry(), self._run_watch_sync(),
                     self._run_housekeeping(), self._run_auto_compaction(), self._run_timeouts(),
                     self._run_publish(), self._run_lease_checkpoints(), self._run_removal_check()):
            self._tasks.append(loop.create_task(self._guard(coro)))
        self._wake.set()

    async def _guard(self, coro) -> None:
        """Run one of the member's loops; if it fails, the member must not limp on."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.critical("a member task failed; stopping", exc_info=True)
            self.failed.set()

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
        if self.transport is not None:
            await self.transport.stop()
        for fut in list(self._waiters.values()):
            if not fut.done():
                fut.set_exception(errors.STOPPED)
        self._waiters.clear()
        self._io.shutdown(wait=True)
        self.wal.close()
        self.backend.sync()
        self.backend.close()

    # -- raft plumbing ----------------------------------------------------------------

    def _sync_peers(self) -> None:
        """Make the transport's peers the current members (learners included), minus us."""
        if self.transport is None:
            return
        want = {m.id: m.peer_urls for m in self.members.values() if m.id != self.member_id}
        have = self._peer_urls
        for pid, urls in want.items():
            if pid not in have:
                self.transport.add_peer(pid, urls)
            elif have[pid] != urls:
                self.transport.update_peer(pid, urls)
        for pid in have:
            if pid not in want:
                self.transport.remove_peer(pid)
        self._peer_urls = {pid: list(urls) for pid, urls in want.items()}

    def _on_messages(self, msgs: list[Message]) -> None:
        node = self.node
        for m in msgs:
            try:
                node.step(m)
            except RaftError as err:
                log.debug("dropped a peer message: %s", err)
        self._wake.set()

    def _on_unreachable(self, peer: int) -> None:
        self.node.report_unreachable(peer)

    def _on_snapshot_status(self, peer: int, ok: bool) -> None:
        self.node.report_snapshot(peer, failed=not ok)
        self._wake.set()

    async def _open_snapshot(self) -> str:
        """A point-in-time copy of the backend for a follower that needs a snapshot."""
        def write() -> str:
            fd, path = tempfile.mkstemp(prefix="send-", suffix=".db", dir=self.snap_dir)
            with os.fdopen(fd, "wb") as fh:
                self.backend.snapshot(fh)
            return path
        return await asyncio.get_running_loop().run_in_executor(None, write)

    async def _run_ticker(self) -> None:
        interval = self.cfg.heartbeat_interval / 1000.0
        node = self.node
        while not self._stopping:
            await asyncio.sleep(interval)
            node.tick()
            self._wake.set()

    # -- the Ready loop -------------------------------------------------------------

    async def _run_ready_loop(self) -> None:
        loop = asyncio.get_running_loop()
        node = self.node
        while not self._stopping:
            await self._wake.wait()
            self._wake.clear()
            while node.has_ready():
                rd = node.ready()
                # A leader may send before its own fsync (raft thesis 10.2.1): commit
                # still needs a quorum of persisted copies, and it applies (and
                # acknowledges) only after persisting. Everyone else sends after.
                early = rd.messages if node.raft_state == StateType.LEADER else None
                if early:
                    self.transport.send(early)
                if rd.snapshot is not None and not rd.snapshot.is_empty():
                    await self._install_snapshot(rd.snapshot)
                if rd.entries or rd.hard_state is not None:
                    await loop.run_in_executor(
                        self._io, functools.partial(self.wal.save, rd.hard_state, rd.entries, sync=rd.must_sync))
                    if rd.hard_state is not None:
                        self.storage.set_hard_state(rd.hard_state)
                    if rd.entries:
                        self.storage.append(rd.entries)
                if rd.messages and not early:
                    self.transport.send(rd.messages)
                if rd.soft_state is not None:
                    self._on_soft_state(rd.soft_state)
                if rd.committed_entries:
                    self._apply_entries(rd.committed_entries)
                for rs in rd.read_states:
                    self._answer_read(rs.request_ctx, rs.index)
                node.advance(rd)
                if self._compacting:
                    self._compact_step()
            if self.removed.is_set():
                return

    def _on_soft_state(self, ss: SoftState) -> None:
        if ss.raft_state == StateType.LEADER:
            if not self.lessor.is_primary:
                self._promote_lessor()
            log.info("became leader", extra={"fields": {"term": self.node.term}})
        elif self.lessor.is_primary:
            self.lessor.demote()
        log.info("leader changed", extra={"fields": {"leader": f"{ss.lead:x}", "term": self.node.term,
                                                     "state": ss.raft_state.name}})

    def _promote_lessor(self) -> None:
        """The old leader's keep-alives are unknown: give every lease its TTL (or
        checkpointed remainder) plus an election timeout, as etcd does."""
        self.lessor.promote(time.monotonic(), extend=self.cfg.election_timeout / 1000.0)

    def _kick(self) -> None:
        self._wake.set()

    # -- apply ----------------------------------------------------------------------

    def _apply_entries(self, entries: list[Entry]) -> None:
        """Apply committed entries in one backend transaction, then answer their proposers."""
        results: list[tuple[int, Any]] = []
        notifications: list[tuple[list, int]] = []
        conf_changed = False
        with self.backend.write() as btx:
            for e in entries:
                if e.index <= self._backend_index:
                    # Already in a backend received as a snapshot; raft still needs its conf changes.
                    if e.type == EntryType.CONF_CHANGE:
                        self.node.apply_conf_change(decode_conf_change(e))
                    continue
                if e.type == EntryType.NORMAL:
                    if not e.data:
                        continue  # a new leader's empty entry
                    req = InternalRaftRequest.FromString(e.data)
                    try:
                        res = self._apply_request(btx, req, notifications)
                    except errors.EtcdError as err:
                        res = err
                    results.append((req.header.id, res))
                elif e.type == EntryType.CONF_CHANGE:
                    cc = decode_conf_change(e)
                    results.append((cc.id, self._apply_conf_change(btx, cc)))
                    conf_changed = True
            last = entries[-1]
            if last.index > self._backend_index:
                btx.set_consistent_index(last.index, last.term)
        if last.index > self.applied_index:
            self.applied_index, self.applied_term = last.index, last.term
        self._since_snapshot += len(entries)
        self._db_size = self.backend.size()
        if conf_changed:
            self._sync_peers()
        for events, rev in notifications:
            self.hub.notify(events, rev)
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

    def _apply_conf_change(self, btx, cc: ConfChange) -> Any:
        try:
            validate_conf_change(self.members, self.removed_ids, cc)
        except errors.EtcdError as err:
            # Invalid by the time it applies (e.g. raced with another change): a
            # no-op on every member alike.
            return err
        cs = self.node.apply_conf_change(cc)
        bootstrap.save_conf_state(btx, cs)
        apply_member_change(btx, self.members, cc)
        if cc.type == ConfChangeType.REMOVE_NODE:
            self.removed_ids.add(cc.node_id)
            if cc.node_id == self.member_id:
                self._removed_from_cluster()
        log.info("applied membership change", extra={"fields": {
            "change": cc.type.name, "member-id": f"{cc.node_id:x}",
            "voters": [f"{v:x}" for v in cs.voters], "learners": [f"{v:x}" for v in cs.learners]}})
        return list(self.members.values())

    def _removed_from_cluster(self) -> None:
        log.warning("the member has been permanently removed from the cluster")
        self.removed.set()

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
        if req.HasField("lease_checkpoint"):
            return self._apply_lease_checkpoint(btx, req.lease_checkpoint)
        if req.HasField("cluster_member_attr_set"):
            r = req.cluster_member_attr_set
            m = self.members.get(r.member_ID)
            if m is not None:
                m.name, m.client_urls = r.name, list(r.client_urls)
                save_member(btx, m)
            return None
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

    async def _propose(self, req: InternalRaftRequest, *, learner_ok: bool = False) -> Any:
        """Propose ``req`` and wait until this member has applied it; its result or etcd's error."""
        if self._stopping:
            raise errors.STOPPED
        rid = self.ids.next()
        req.header.id = rid
        data = req.SerializeToString()
        if len(data) > self.cfg.max_request_bytes:
            raise errors.REQUEST_TOO_LARGE
        if not learner_ok and self._learner():
            raise errors.LEARNER_NOT_SUPPORTED
        fut = self._loop.create_future()
        self._waiters[rid] = fut
        self._deadlines.append((self._loop.time() + self._timeout, rid))
        self._pending_props.append((rid, data))
        if not self._props_scheduled:
            self._props_scheduled = True
            self._loop.call_soon(self._flush_proposals)
        try:
            return await fut
        except asyncio.CancelledError:
            self._waiters.pop(rid, None)  # the client gave up
            raise

    def _flush_proposals(self) -> None:
        """Hand every proposal of this loop iteration to raft as one batch.

        Without a known leader raft drops them, and they fail at once with
        "etcdserver: no leader" (Unavailable: worth retrying) instead of waiting
        and being applied after their client gave up. etcd answers "raft
        proposal dropped" with code Unknown here, which clients do not retry.
        A proposal whose proposer already gave up is left out.
        """
        self._props_scheduled = False
        props, self._pending_props = self._pending_props, []
        waiters = self._waiters
        live = [p for p in props if p[0] in waiters]
        if not live:
            return
        try:
            self.node.propose_many([data for _, data in live])
        except ProposalDropped:
            for rid, _ in live:
                fut = waiters.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_exception(errors.NO_LEADER)
            return
        self._wake.set()

    def _learner(self) -> bool:
        me = self.members.get(self.member_id)
        return me is not None and me.is_learner

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
            for ctx, started in list(self._read_started.items()):
                if now - started >= READ_INDEX_RETRY:
                    # Lost with a leader change or sent while there was none: ask again.
                    self._read_started[ctx] = now
                    self.node.read_index(ctx)
                    self._wake.set()
            reads = self._read_deadlines
            while reads and reads[0][0] <= now:
                _, ctx = reads.popleft()
                fut = self._read_ctx.pop(ctx, None)
                self._read_started.pop(ctx, None)
                if fut is not None:
                    if not fut.done():
                        fut.set_exception(errors.TIMEOUT)
                    self._read_round_done(fut)

    async def linearizable_barrier(self) -> None:
        """Return once this member has applied everything committed before the call.

        Reads share ReadIndex rounds, one in flight at a time, but a read only
        ever joins a round sent after it arrived: a round already in flight may
        have confirmed leadership before the read was made (a leader paused and
        resumed, with old heartbeat acks in its socket, would answer it stale).
        Reads arriving meanwhile all wait for the next round.
        """
        if self._learner():
            raise errors.LEARNER_NOT_SUPPORTED
        fut = self._read_next
        if fut is None:
            fut = self._read_next = self._loop.create_future()
            if self._read_inflight is None:
                self._send_read_round()
        # Shielded: one reader giving up (a cancelled RPC) must not cancel the round for the rest.
        index = await asyncio.shield(fut)
        if self.applied_index < index:
            await self.wait_applied(index)

    def _send_read_round(self) -> None:
        fut, self._read_next = self._read_next, None
        self._read_inflight = fut
        ctx = self.ids.next().to_bytes(8, "big")
        self._read_ctx[ctx] = fut
        self._read_started[ctx] = self._loop.time()
        self._read_deadlines.append((self._loop.time() + self._timeout, ctx))
        self.node.read_index(ctx)
        self._wake.set()

    def _answer_read(self, ctx: bytes, index: int) -> None:
        """A ReadIndex round came back: its readers may read once ``index`` is applied."""
        fut = self._read_ctx.pop(ctx, None)
        self._read_started.pop(ctx, None)
        if fut is not None:
            if not fut.done():
                fut.set_result(index)
            self._read_round_done(fut)

    def _read_round_done(self, fut: asyncio.Future) -> None:
        if self._read_inflight is fut:
            self._read_inflight = None
            if self._read_next is not None:
                self._send_read_round()

    async def wait_applied(self, index: int) -> None:
        if self.applied_index >= index:
            return
        fut = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((index, fut))
        await fut

    def header(self, h: rpc_pb2.ResponseHeader, revision: int = 0) -> None:
        """Fill a response header; revision 0 means "the current store revision"."""
        self.header_without_revision(h)
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
        """Keep-alive: the new TTL, or 0 when the lease does not exist (etcd's answer).

        Only the leader counts leases down, so a follower forwards it there.
        """
        leader = await self._wait_leader()
        if leader != self.member_id:
            raw = await self._call_peer(leader, "lease_renew", lease_id.to_bytes(8, "big", signed=True))
            return int.from_bytes(raw, "big", signed=True)
        await self.linearizable_barrier()
        lease = self.lessor.lookup(lease_id)
        if lease is not None and lease.remaining_ttl > 0 and self.cfg.experimental_enable_lease_checkpoint:
            # Persist "full TTL again" first, or a new leader would resume the old remainder.
            await self._propose(InternalRaftRequest(lease_checkpoint=rpc_pb2.LeaseCheckpointRequest(
                checkpoints=[rpc_pb2.LeaseCheckpoint(ID=lease_id, remaining_TTL=0)])))
        try:
            return self.lessor.renew(lease_id, time.monotonic())
        except lease_errors.LeaseNotFoundError:
            return 0
        except lease_errors.LeaseNotPrimaryError:
            raise errors.NOT_LEADER from None

    async def lease_time_to_live(self, r: rpc_pb2.LeaseTimeToLiveRequest) -> rpc_pb2.LeaseTimeToLiveResponse:
        leader = await self._wait_leader()
        if leader != self.member_id:
            raw = await self._call_peer(leader, "lease_ttl", r.SerializeToString())
            resp = rpc_pb2.LeaseTimeToLiveResponse.FromString(raw)
        else:
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

    async def _wait_leader(self) -> int:
        """The current leader's id, waiting up to an election or two for one."""
        deadline = self._loop.time() + 2 * self.cfg.election_timeout / 1000.0 + 1.0
        while not self.node.lead:
            if self._loop.time() >= deadline:
                raise errors.NO_LEADER
            await asyncio.sleep(self.cfg.heartbeat_interval / 1000.0)
        return self.node.lead

    async def _call_peer(self, peer: int, method: str, payload: bytes) -> bytes:
        try:
            return await self.transport.call(peer, method, payload, timeout=self._timeout)
        except RemoteError as err:
            code, _, message = str(err).partition(" ")
            raise errors.EtcdError(code, message) from None
        except TransportError:
            raise errors.TIMEOUT_DUE_TO_LEADER_FAIL from None

    async def _on_peer_request(self, method: str, payload: bytes) -> bytes:
        """Requests other members send us over the peer transport."""
        try:
            if method == "members":
                return bootstrap.members_payload(self.cluster_id, self.members, self.removed_ids)
            handler = self._LEADER_REQUESTS.get(method)
            if handler is None:
                raise RemoteError(f"UNIMPLEMENTED unknown peer request {method}")
            if self.node.lead != self.member_id:
                raise errors.NOT_LEADER  # never forward again: the caller asks the leader it knows
            return await handler(self, payload)
        except errors.EtcdError as err:
            raise RemoteError(f"{err.code} {err.message}") from None

    async def _peer_lease_renew(self, payload: bytes) -> bytes:
        ttl = await self.lease_renew(int.from_bytes(payload, "big", signed=True))
        return ttl.to_bytes(8, "big", signed=True)

    async def _peer_lease_ttl(self, payload: bytes) -> bytes:
        resp = await self.lease_time_to_live(rpc_pb2.LeaseTimeToLiveRequest.FromString(payload))
        return resp.SerializeToString()

    async def _peer_member_promote(self, payload: bytes) -> bytes:
        resp = await self.member_promote(rpc_pb2.MemberPromoteRequest.FromString(payload))
        return resp.SerializeToString()

    _LEADER_REQUESTS = {"lease_renew": _peer_lease_renew, "lease_ttl": _peer_lease_ttl,
                        "member_promote": _peer_member_promote}

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
            raftAppliedIndex=self.applied_index, isLearner=self._learner())
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
        """The backend as a point-in-time etcd (bbolt) database, in chunks with the
        bytes remaining after each, then its SHA-256 (which ``etcdctl snapshot
        save`` checks); see ``etcdx.snapshot``. Blocking: runs in a thread."""
        return snapshot_stream.snapshot_chunks(self.backend, self.member_dir, cluster_version=CLUSTER_VERSION,
                                               chunk_size=chunk_size)

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
        """Every --snapshot-count applied entries: snapshot and compact the raft log.

        The backend is the snapshot: once it is synced up to the applied index,
        the WAL records a snapshot marker there, raft's in-memory log drops all
        but --snapshot-catchup-entries entries before it (slow followers can
        still catch up from those), and old WAL segments are released.
        """
        loop = asyncio.get_running_loop()
        while not self._stopping:
            await asyncio.sleep(SNAPSHOT_SYNC_INTERVAL)
            if self._since_snapshot < self.cfg.snapshot_count:
                continue
            index, term = self.applied_index, self.applied_term
            cs = self.node.status().conf_state
            await loop.run_in_executor(self._io, self.backend.sync)
            await loop.run_in_executor(self._io, self.wal.save_snapshot, index, term)
            try:
                self.storage.create_snapshot(index, cs, b"")
                compact_to = index - self.cfg.catchup_entries
                if compact_to > self.storage.first_index():
                    self.storage.compact(compact_to)
            except RaftError as err:  # a newer snapshot was installed meanwhile
                log.info("skipped log compaction: %s", err)
            await loop.run_in_executor(self._io, self.wal.release_to, index)
            self._since_snapshot = 0
            log.info("saved snapshot", extra={"fields": {"index": index, "term": term,
                                                        "log-first-index": self.storage.first_index()}})

    async def _install_snapshot(self, snap: Snapshot) -> None:
        """Replace the backend by the one the leader sent with this snapshot."""
        index = snap.metadata.index
        path = snapshot_db_path(self.snap_dir, index)
        if not os.path.exists(path):
            raise RuntimeError(f"snapshot at {index} arrived without its database file {path}")
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        self.backend.replace_with(path)
        self._load_state()
        self.hub.restore(self.backend)
        if self.node.raft_state == StateType.LEADER:
            self._promote_lessor()
        await loop.run_in_executor(self._io, self.wal.save_snapshot, index, snap.metadata.term)
        self.storage.apply_snapshot(snap)
        self._since_snapshot = 0
        self._sync_peers()
        self._compacting = True  # finish a compaction the sender's backend had under way
        self._compact_done.clear()
        for cb in self.on_backend_swap:
            cb()
        self.kick_watch_sync()
        log.info("installed snapshot from the leader", extra={"fields": {
            "index": index, "backend-index": self._backend_index, "revision": self.kv.current_revision,
            "took-seconds": round(time.monotonic() - started, 3)}})

    async def _run_lease_checkpoints(self) -> None:
        """Leader: persist the remaining TTL of long leases, so a new leader resumes from it."""
        if not self.cfg.experimental_enable_lease_checkpoint:
            return
        interval = self.cfg.lease_checkpoint_interval
        while not self._stopping:
            await asyncio.sleep(interval)
            if not self.lessor.is_primary:
                continue
            now = time.monotonic()
            cps = [rpc_pb2.LeaseCheckpoint(ID=lease.id, remaining_TTL=max(1, int(lease.remaining(now) + 0.999)))
                   for lease in self.lessor.leases() if lease.ttl > interval and lease.remaining(now) > 0]
            for i in range(0, len(cps), 1000):
                try:
                    await self._propose(InternalRaftRequest(
                        lease_checkpoint=rpc_pb2.LeaseCheckpointRequest(checkpoints=cps[i:i + 1000])))
                except errors.EtcdError as err:
                    log.warning("lease checkpoint failed: %s", err.message)
                    break

    def _apply_lease_checkpoint(self, btx, r: rpc_pb2.LeaseCheckpointRequest) -> Any:
        now = time.monotonic()
        for cp in r.checkpoints:
            self.lessor.checkpoint(btx, cp.ID, cp.remaining_TTL, now)
        return rpc_pb2.LeaseCheckpointResponse()

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
        if self.node.raft_state != StateType.LEADER:
            return  # as in etcd, only the leader's compactor proposes
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
