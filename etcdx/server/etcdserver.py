"""EtcdServer: one member, assembled from its parts, and its lifecycle.

The parts, each in its own module:

- ``raft_driver``: the raft core's ticker and Ready loop, WAL persistence,
  peers' messages in (bad input dropped, broken invariants fatal);
- ``applier``: committed entries applied to the stores in one backend
  transaction per batch (pure over that transaction);
- ``proposals`` and ``read_index``: proposers waiting for their entries to
  apply, readers waiting for a ReadIndex round and the applied index;
- the request facade the API layer calls: ``kv_requests`` (KV), ``leases``
  (leases), ``auth_requests`` (who a caller is, etcd's auth checks, the Auth
  service), ``maintenance`` (alarms, status, hashes, defragment, snapshot),
  ``cluster_ops`` (membership, leader transfer);
- background jobs: lease expiry and checkpoints (``leases``), compaction
  (``compactor``), raft snapshots (``snapshots``), NOSPACE (``kv_requests``).

This module builds them with their dependencies, handles what a Ready hands
the server (soft state, snapshot install, apply, read states), owns every
background task (a task that fails stops the member), and stops them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from typing import Any, AsyncIterator, Awaitable, Callable

from etcdx.auth import parse_token_options
from etcdx.backend import Backend
from etcdx.mvcc.watch_hub import WatchHub
from etcdx.pb import raft_internal_pb2, rpc_pb2
from etcdx.raft import Config as RaftConfig
from etcdx.raft import RawNode
from etcdx.raft.types import Entry, EntryType, ReadState, Snapshot, SoftState, StateType
from etcdx.server import bootstrap, errors
from etcdx.server.applier import Applier
from etcdx.server.auth_requests import AuthRequests
from etcdx.server.bootstrap import ClusterInfo
from etcdx.server.cluster_ops import ClusterOps
from etcdx.server.compactor import Compactor
from etcdx.server.config import Config, parse_duration
from etcdx.server.corruption import CorruptionChecker
from etcdx.server.headers import Headers
from etcdx.server.ids import IdGenerator
from etcdx.server.kv_requests import KVRequests, Quota
from etcdx.server.leader_link import LeaderLink, LeaderMonitor
from etcdx.server.leases import LeaseJobs, LeaseRequests
from etcdx.server.maintenance import Maintenance
from etcdx.server.peer_requests import PeerRequests
from etcdx.server.proposals import Proposals
from etcdx.server.raft_driver import RaftDriver
from etcdx.server.read_index import AppliedIndex, ReadIndex
from etcdx.server.snapshots import Snapshotter, clean_stale_copies
from etcdx.server.stores import Stores
from etcdx.transport import Transport, snapshot_db_path
from etcdx.wal import WAL

log = logging.getLogger("etcdx.server")

SWEEP_INTERVAL = 0.25  # seconds between sweeps for timed-out proposals and lost read rounds
WATCH_SYNC_INTERVAL = 0.1
TICK_ADVANCE_WAIT = 5.0  # seconds to wait for peers before giving up the initial tick advance, as etcd
TICK_ADVANCE_POLL = 0.05
InternalRaftRequest = raft_internal_pb2.InternalRaftRequest


class EtcdServer:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.data_dir = cfg.data_dir
        self.member_dir = os.path.join(cfg.data_dir, "member")
        self.wal_dir = cfg.wal_path
        self.snap_dir = os.path.join(self.member_dir, "snap")
        self.db_dir = os.path.join(self.snap_dir, "db")
        self.transport: Transport | None = None
        self._peer_urls: dict[int, list[str]] = {}  # the peers the transport knows, and their URLs
        self._tasks: list[asyncio.Task] = []
        self._swap_lock: asyncio.Lock | None = None  # one backend swap (defragment, snapshot) at a time
        self._held: list[Entry] | None = None  # committed entries held back during a defragment
        self._released: asyncio.Event | None = None
        # Set when this member applies its own removal: the process should exit (0).
        self.removed = asyncio.Event()
        # Set when the member cannot go on (a broken invariant, a failed task): exit non-zero.
        self.failed = asyncio.Event()
        # Called (on the loop) right after the backend file is replaced: other
        # processes reading it (API workers) must reopen it.
        self.on_backend_swap: list[Callable[[], None]] = []
        self._warn_apply = cfg.warning_apply_duration  # seconds: a slower apply batch is logged
        self._conf_changed = False  # since the last Ready
        self.leader_changes_seen = 0  # a metric: times a new leader became known (etcd counts the same)
        self._last_lead = 0

    # -- assembly ------------------------------------------------------------------

    def open(self, joined: ClusterInfo | None = None) -> None:
        """Open (or create) the data dir and build the member; synchronous, before serving.

        ``joined`` is the membership fetched from the cluster by ``fetch_cluster``
        when this member joins an existing cluster with an empty data dir.
        """
        cfg = self.cfg
        default_wal = os.path.join(self.member_dir, "wal")
        if os.path.abspath(self.wal_dir) != os.path.abspath(default_wal) and WAL.exists(default_wal):
            raise bootstrap.BootError(f"the data dir has its WAL in {default_wal}, not in --wal-dir {self.wal_dir}: "
                                      "move it there (or drop --wal-dir)")
        os.makedirs(self.member_dir, exist_ok=True)
        backend = Backend(self.db_dir)
        clean_stale_copies(self.snap_dir)
        bs = bootstrap.boot(cfg, backend, self.wal_dir, joined)
        self.member_id, self.cluster_id = bs.member_id, bs.cluster_id
        self.ids = IdGenerator(self.member_id)
        tokens = parse_token_options(cfg.auth_token, simple_ttl=cfg.auth_token_ttl)
        self.stores = Stores(backend, min_lease_ttl=max(1, -(-3 * cfg.election_timeout // 2000)), tokens=tokens)
        self.hub = WatchHub(backend)
        self._election_tick = max(2, cfg.election_timeout // cfg.heartbeat_interval)
        rc = RaftConfig(
            id=self.member_id, storage=bs.storage,
            election_tick=self._election_tick,
            heartbeat_tick=1, applied=bs.applied, pre_vote=cfg.pre_vote, check_quorum=True,
            max_size_per_msg=1 << 20, max_inflight_msgs=512,
            max_uncommitted_entries_size=1 << 30, max_committed_size_per_ready=16 << 20)
        node = RawNode(rc)
        self.driver = RaftDriver(node, bs.storage, bs.wal, member_id=self.member_id,
                                 tick_interval=cfg.heartbeat_interval / 1000.0, host=self,
                                 send=self._send, on_fatal=self._fatal, fsync=not cfg.unsafe_no_fsync)
        self.applier = Applier(self.stores, self.member_id, node.apply_conf_change)
        self.headers = Headers(self.cluster_id, self.member_id, lambda: node.term,
                               lambda: self.stores.kv.current_revision)
        ci, ct = backend.consistent_index()
        self._applied_at_open = (ci, ct)
        self.compactor = Compactor(self.stores, mode=cfg.auto_compaction_mode,
                                   retention=cfg.auto_compaction_retention, propose=self.propose,
                                   is_leader=lambda: node.raft_state == StateType.LEADER,
                                   step_entries=cfg.compaction_batch_limit)
        self.compactor.finish_pending()  # one interrupted by a crash is finished before serving
        cs = bs.storage.snapshot().metadata.conf_state
        if cs.voters == [self.member_id] and not cs.learners:
            node.campaign()  # alone in the cluster: no one to wait for, lead at once
        log.info("member ready", extra={"fields": {
            "member-id": f"{self.member_id:x}", "cluster-id": f"{self.cluster_id:x}",
            "applied-index": ci, "revision": self.stores.kv.current_revision,
            "voters": [f"{v:x}" for v in cs.voters]}})

    def _build(self, loop: asyncio.AbstractEventLoop) -> None:
        """The parts that live on the event loop."""
        cfg, driver, node = self.cfg, self.driver, self.driver.node
        timeout = request_timeout(cfg)
        self.applied = AppliedIndex(loop, *self._applied_at_open)
        self.proposals = Proposals(loop, self.ids, node.propose_many, driver.wake, timeout=timeout,
                                   max_request_bytes=cfg.max_request_bytes)
        self.read_index = ReadIndex(loop, self.ids, self._send_read_index, self.applied, timeout=timeout)
        self.leader = LeaderLink(lambda: node.lead, lambda: self.transport,
                                 election_timeout=cfg.election_timeout / 1000.0,
                                 heartbeat_interval=cfg.heartbeat_interval / 1000.0, request_timeout=timeout)
        self.leader_monitor = LeaderMonitor(lambda: node.lead, cfg.election_timeout / 1000.0)
        self.quota = Quota(self.stores, cfg.quota_bytes, self.member_id, self.propose)
        self.auth = AuthRequests(self.stores, self.headers, self.applied, propose=self.propose,
                                 barrier=self.linearizable_barrier, commit_index=lambda: node.commit,
                                 client_cert_auth=cfg.client_cert_auth, bcrypt_cost=cfg.bcrypt_cost,
                                 timeout=timeout)
        self.kv = KVRequests(self.stores, self.headers, self.quota, self.auth, propose=self.propose,
                             submit=self.submit,
                             barrier=self.linearizable_barrier, compacted=self.compactor.done.wait,
                             compact_wait=10 * timeout)
        self.leases = LeaseRequests(self.stores, self.headers, self.quota, self.ids, self.leader, self.auth,
                                    member_id=self.member_id, propose=self.propose,
                                    barrier=self.linearizable_barrier,
                                    checkpoints=cfg.experimental_enable_lease_checkpoint)
        self.lease_jobs = LeaseJobs(self.stores, self.auth, propose=self.propose, checkpoint_interval=(
            cfg.lease_checkpoint_interval if cfg.experimental_enable_lease_checkpoint else None))
        self._swap_lock = asyncio.Lock()
        self.maintenance = Maintenance(self.stores, self.headers, driver, self.applied,
                                       member_id=self.member_id, scratch_dir=self.member_dir,
                                       propose=self.propose, barrier=self.linearizable_barrier,
                                       hold_apply=self.hold_apply, on_backend_swap=self.on_backend_swap,
                                       swap_lock=self._swap_lock)
        self.cluster = ClusterOps(cfg, self.stores, self.headers, driver, self.proposals, self.leader,
                                  self.ids, member_id=self.member_id, transport=lambda: self.transport,
                                  propose=self.propose, barrier=self.linearizable_barrier,
                                  on_removed=self._removed_from_cluster)
        self.snapshotter = Snapshotter(self.stores, driver, self.applied, snap_dir=self.snap_dir,
                                       snapshot_count=cfg.snapshot_count, catchup_entries=cfg.catchup_entries,
                                       release_wal=cfg.max_wals != 0)
        self._watch_kick = asyncio.Event()
        self.corruption = CorruptionChecker(
            self.stores, member_id=self.member_id, transport=lambda: self.transport, propose=self.propose,
            hash_kv=lambda rev: self.maintenance.hash_kv(rpc_pb2.HashKVRequest(revision=rev)),
            is_leader=lambda: node.raft_state == StateType.LEADER)

    @property
    def published(self) -> asyncio.Event:
        return self.cluster.published

    # -- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._build(loop)
        self.transport = Transport(
            local_id=self.member_id, cluster_id=self.cluster_id, listen_urls=self.cfg.listen_peer_urls,
            on_messages=self.driver.step_peer_messages, on_unreachable=self._on_unreachable,
            on_snapshot_status=self._on_snapshot_status, snapshot_dir=self.snap_dir,
            open_snapshot=self.snapshotter.open_copy, request_handler=PeerRequests(self).handle,
            tls=self.cfg.peer_tls_info())
        await self.transport.start()
        self._sync_peers()
        jobs: list[Callable[[], Awaitable[None]]] = [
            self.driver.run, self._run_sweeper, self._run_watch_sync, self.quota.run,
            self.lease_jobs.run_expiry, self.lease_jobs.run_checkpoints, self.compactor.run_auto,
            self.snapshotter.run, self.cluster.run_publish, self.cluster.run_removal_check,
            self.leader_monitor.run, self._advance_election_ticks]
        check_every = parse_duration(self.cfg.experimental_corrupt_check_time)
        if check_every > 0:
            jobs.append(lambda: self.corruption.run_periodic(check_every))
        self._tasks = [loop.create_task(self._guard(job), name=getattr(job, "__qualname__", "job"))
                       for job in jobs]

    async def _guard(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run one of the member's jobs; if it fails, the member must not limp on."""
        try:
            await job()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.critical("a member task failed; stopping", exc_info=True)
            self._fatal("a member task failed")

    def _fatal(self, reason: str) -> None:
        """Stop serving: a broken invariant or a failed task. The process exits non-zero."""
        if self.failed.is_set():
            return
        log.critical("stopping the member", extra={"fields": {"reason": reason}})
        self.driver.halted = True
        self.failed.set()

    async def stop(self) -> None:
        self.proposals.fail_all(errors.STOPPED)
        self.read_index.fail_all(errors.STOPPED)
        self.driver.halted = True
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.transport is not None:
            await self.transport.stop()
        self.driver.close()
        self.auth.close()
        self.stores.backend.close()

    # -- what a Ready hands the server (RaftDriver's host) ---------------------------------

    def on_soft_state(self, ss: SoftState) -> None:
        node = self.driver.node
        lessor = self.stores.lessor
        if ss.lead and ss.lead != self._last_lead:
            self.leader_changes_seen += 1
        self._last_lead = ss.lead
        if ss.raft_state == StateType.LEADER:
            if not lessor.is_primary:
                self._promote_lessor()
            log.info("became leader", extra={"fields": {"term": node.term}})
        elif lessor.is_primary:
            lessor.demote()
        log.info("leader changed", extra={"fields": {"leader": f"{ss.lead:x}", "term": node.term,
                                                     "state": ss.raft_state.name}})

    def _promote_lessor(self) -> None:
        """The old leader's keep-alives are unknown: give every lease its TTL (or
        checkpointed remainder) plus an election timeout, as etcd does."""
        self.stores.lessor.promote(time.monotonic(), extend=self.cfg.election_timeout / 1000.0)

    def apply(self, entries: list[Entry]) -> Awaitable[None] | None:
        if self._held is None:
            self._apply_now(entries)
            return None
        self._held.extend(entries)
        if any(e.type == EntryType.CONF_CHANGE for e in entries):
            # raft must see a conf change applied before it goes on: wait for the hold to end.
            assert self._released is not None
            return self._released.wait()
        return None

    def _apply_now(self, entries: list[Entry]) -> None:
        started = time.monotonic()
        out = self.applier.apply(entries)
        took = time.monotonic() - started
        if took > self._warn_apply:
            log.warning("apply request took too long", extra={"fields": {
                "took": f"{took:.6f}s", "expected-duration": self.cfg.experimental_warning_apply_duration,
                "entries": len(entries), "first-index": entries[0].index if entries else 0}})
        if not out.last_index:
            return
        if out.auth_changed:
            self.auth.refresh()  # before anyone waiting for this index reads it
        self.applied.advance(out.last_index, out.last_term)
        self.snapshotter.entries_since += len(entries)
        self.quota.db_size = self.stores.backend.size()
        if out.conf_changed:
            self._sync_peers()
            self._conf_changed = True
        if out.compaction_scheduled:
            self.compactor.scheduled()
        for events, rev in out.events:
            self.hub.notify(events, rev)
        self.proposals.resolve(out.results)
        if out.removed_self:
            self._removed_from_cluster()

    @contextlib.asynccontextmanager
    async def hold_apply(self) -> AsyncIterator[None]:
        """Hold committed entries back (the member keeps replicating and persisting), then apply them."""
        self._held, self._released = [], asyncio.Event()
        try:
            yield
        finally:
            held, self._held = self._held, None
            if held:
                self._apply_now(held)
            self._released.set()

    def on_read_states(self, states: list[ReadState]) -> None:
        for rs in states:
            self.read_index.answer(rs.request_ctx, rs.index)

    def after_ready(self) -> None:
        self.compactor.step()
        if self._conf_changed:
            self._conf_changed = False
            self._campaign_if_alone()

    def _campaign_if_alone(self) -> None:
        """A voter left alone in the configuration (--force-new-cluster) leads at once, not after a timeout."""
        node = self.driver.node
        cs = node.status().conf_state
        if cs.voters == [self.member_id] and not cs.voters_outgoing and node.raft_state != StateType.LEADER:
            node.campaign()
            self.driver.wake()

    async def _advance_election_ticks(self) -> None:
        """etcd's --initial-election-tick-advance: once two peers are connected, a member that heard from
        no leader is left two ticks short of its election timeout, so a cluster starting up elects fast."""
        if not self.cfg.initial_election_tick_advance:
            return
        node = self.driver.node
        for _ in range(int(TICK_ADVANCE_WAIT / TICK_ADVANCE_POLL)):
            await asyncio.sleep(TICK_ADVANCE_POLL)
            active = sum(1 for pid in self._peer_urls if self.transport.is_active(pid))
            if active > 1:
                if node.lead == 0:
                    self.driver.advance_ticks(self._election_tick - 2)
                    log.info("fast-forwarded election ticks", extra={"fields": {
                        "ticks": self._election_tick - 2, "active-peers": active}})
                return

    async def install_snapshot(self, snap: Snapshot) -> None:
        """Replace the backend by the one the leader sent with this snapshot."""
        index = snap.metadata.index
        path = snapshot_db_path(self.snap_dir, index)
        if not os.path.exists(path):
            raise RuntimeError(f"snapshot at {index} arrived without its database file {path}")
        loop = asyncio.get_running_loop()
        backend = self.stores.backend
        started = time.monotonic()
        async with self._swap_lock:
            await loop.run_in_executor(None, backend.begin_swap)
            try:
                backend.replace_with(path)
            finally:
                backend.end_swap()
            # Tokens assigned by entries this snapshot skips were never seen here; those assigned
            # before it may belong to users it deleted or whose password it changed: drop them all.
            self.stores.auth.tokens.disable()
            self.stores.reload()
            self.auth.refresh()
            ci, ct = backend.consistent_index()
            self.applier.backend_index = ci
            self.applied.reset(ci, ct)
            self.hub.restore(backend)
            self.quota.db_size = backend.size()
            if self.driver.node.raft_state == StateType.LEADER:
                self._promote_lessor()
        await self.driver.in_wal_thread(lambda: self.driver.wal.save_snapshot(index, snap.metadata.term))
        self.driver.storage.apply_snapshot(snap)
        self.snapshotter.entries_since = 0
        self._sync_peers()
        self.compactor.scheduled()  # finish a compaction the sender's backend had under way
        for cb in self.on_backend_swap:
            cb()
        self.kick_watch_sync()
        log.info("installed snapshot from the leader", extra={"fields": {
            "index": index, "backend-index": ci, "revision": self.stores.kv.current_revision,
            "took-seconds": round(time.monotonic() - started, 3)}})

    # -- proposals and reads --------------------------------------------------------

    async def propose(self, req: InternalRaftRequest, *, learner_ok: bool = False) -> Any:
        """Propose ``req`` and wait until this member applied it; its result or etcd's error."""
        if not learner_ok and self.stores.is_learner(self.member_id):
            raise errors.LEARNER_NOT_SUPPORTED
        return await self.proposals.propose(req)

    def submit(self, req: InternalRaftRequest, encode: Callable[[Any], Any] | None = None) -> asyncio.Future:
        """``propose`` as a Future (see ``Proposals.submit``)."""
        if self.stores.is_learner(self.member_id):
            raise errors.LEARNER_NOT_SUPPORTED
        return self.proposals.submit(req, encode)

    async def linearizable_barrier(self) -> None:
        """Return once this member has applied everything committed before the call."""
        if self.stores.is_learner(self.member_id):
            raise errors.LEARNER_NOT_SUPPORTED
        await self.read_index.barrier()

    def _send_read_index(self, ctx: bytes) -> None:
        self.driver.node.read_index(ctx)
        self.driver.wake()

    async def _run_sweeper(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            now = loop.time()
            self.proposals.expire(now)
            self.read_index.sweep(now)

    # -- watches -------------------------------------------------------------------

    async def _run_watch_sync(self) -> None:
        """Catch unsynced watchers up from the backend every 100 ms, or at once when kicked."""
        while True:
            try:
                await asyncio.wait_for(self._watch_kick.wait(), WATCH_SYNC_INTERVAL)
            except asyncio.TimeoutError:
                pass
            self._watch_kick.clear()
            for _ in range(10):  # bounded: blocked slow watchers must not spin the loop
                if not self.hub.sync_unsynced(max_events=10000):
                    break
                await asyncio.sleep(0)

    def kick_watch_sync(self) -> None:
        self._watch_kick.set()

    # -- peers -----------------------------------------------------------------------

    def _send(self, msgs: list) -> None:
        if self.transport is not None:
            self.transport.send(msgs)

    def _on_unreachable(self, peer: int) -> None:
        self.driver.node.report_unreachable(peer)

    def _on_snapshot_status(self, peer: int, ok: bool) -> None:
        self.driver.node.report_snapshot(peer, failed=not ok)
        self.driver.wake()

    def _sync_peers(self) -> None:
        """Make the transport's peers the current members (learners included), minus us."""
        if self.transport is None:
            return
        want = {m.id: m.peer_urls for m in self.stores.members.values() if m.id != self.member_id}
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

    def _removed_from_cluster(self) -> None:
        log.warning("the member has been permanently removed from the cluster")
        self.removed.set()


def request_timeout(cfg: Config) -> float:
    """How long a request waits for its entry to apply before "request timed out", as etcd."""
    return 5.0 + 2 * cfg.election_timeout / 1000.0
