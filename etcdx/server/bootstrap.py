"""How a member comes up: restart from its WAL, found a new cluster, or join one.

The three cases differ only in where the raft log, hard state and membership
come from; all of them end in the same ``BootState`` that the server turns
into a ``RawNode``:

- **restart** (a WAL exists): ids from the WAL's metadata, the membership as
  of the last applied entry from the backend, the log tail from the WAL.
- **new cluster** (``--initial-cluster-state new``): every initial member
  derives the same member and cluster ids from ``--initial-cluster`` and
  writes the same membership as a raft snapshot at index 1, so no entries are
  needed to agree on it.
- **join** (``--initial-cluster-state existing``): the member asks the peers
  in ``--initial-cluster`` for the cluster's members, finds itself among them
  by its peer URLs (a MemberAdd put it there), and starts with an empty log;
  the leader sends it a snapshot.
- **force new cluster** (a WAL exists and ``--force-new-cluster``): a restart
  whose log drops its uncommitted tail and gains committed removals of every
  other member (``force_new_cluster``); without a WAL the flag has nothing
  to act on and the member bootstraps as usual.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field

from etcdx.backend import Backend
from etcdx.raft import MemoryStorage, RawNode
from etcdx.raft.codec import decode_conf_state, encode_conf_state
from etcdx.raft.types import ConfState, Entry, HardState, Snapshot, SnapshotMetadata
from etcdx.server import force_new_cluster
from etcdx.server.config import Config
from etcdx.server.ids import cluster_id, member_id
from etcdx.server.membership import Member, save_member
from etcdx.transport import TransportError, fetch
from etcdx.wal import WAL

log = logging.getLogger("etcdx.server")

META = b"meta"
META_CONF_STATE = b"confState"


class BootError(RuntimeError):
    """The member cannot start with this configuration and data dir."""


@dataclass
class ClusterInfo:
    """What a joining member learns from the cluster it joins."""

    cluster_id: int
    members: list[Member]
    removed: set[int] = field(default_factory=set)


@dataclass
class BootState:
    member_id: int
    cluster_id: int
    wal: WAL
    storage: MemoryStorage
    applied: int
    joining: bool = False


def save_conf_state(btx, cs: ConfState) -> None:
    btx.put(META, META_CONF_STATE, encode_conf_state(cs))


def load_conf_state(backend: Backend) -> ConfState:
    with backend.read() as rtx:
        raw = rtx.get(META, META_CONF_STATE)
    return decode_conf_state(raw) if raw else ConfState()


def boot(cfg: Config, backend: Backend, wal_dir: str, joined: ClusterInfo | None = None) -> BootState:
    """Open or create the WAL and the raft storage; see the module docstring."""
    if WAL.exists(wal_dir):
        return _restart(backend, wal_dir, force_new=cfg.force_new_cluster)
    if cfg.force_new_cluster:
        log.warning("--force-new-cluster: no WAL to restart from, the member bootstraps as usual",
                    extra={"fields": {"wal-dir": wal_dir}})
    if cfg.initial_cluster_state == "existing":
        if joined is None:
            raise BootError("joining an existing cluster needs its membership (fetch_cluster)")
        return _join(cfg, backend, wal_dir, joined)
    return _new(cfg, backend, wal_dir)


def _meta(mid: int, cid: int) -> bytes:
    return json.dumps({"member_id": mid, "cluster_id": cid}).encode()


def _restart(backend: Backend, wal_dir: str, *, force_new: bool = False) -> BootState:
    wal, state = WAL.open(wal_dir)
    meta = json.loads(state.metadata)
    ci, ct = backend.consistent_index()
    storage = MemoryStorage()
    if ci > 0:
        cs = load_conf_state(backend)
        storage.apply_snapshot(Snapshot(metadata=SnapshotMetadata(conf_state=cs, index=ci, term=ct)))
    tail = [e for e in state.entries if e.index > ci]
    wal_last = state.entries[-1].index if state.entries else state.snapshot_index
    if ci > wal_last:
        # The backend outran a WAL that lost its torn tail: the backend's state is
        # the newer truth, so the WAL continues from it.
        backend.sync()
        wal.save_snapshot(ci, ct)
    if tail and tail[0].index != ci + 1:
        raise BootError(f"the WAL misses entries {ci + 1}..{tail[0].index - 1} after the backend's applied index")
    hs = state.hard_state
    if hs.commit < ci:
        hs = HardState(hs.term, hs.vote, ci)
    mid = int(meta["member_id"])
    if force_new:
        try:
            tail, hs = _force_new_cluster(mid, wal, load_conf_state(backend), hs, tail)
        except BaseException:
            wal.close()
            raise
    storage.append(tail)
    storage.set_hard_state(hs)
    return BootState(mid, int(meta["cluster_id"]), wal, storage, ci)


def _force_new_cluster(mid: int, wal: WAL, cs: ConfState, hs: HardState,
                       tail: list[Entry]) -> tuple[list[Entry], HardState]:
    """Make the log one of a one-member cluster (``force_new_cluster``), durably, before raft sees it."""
    try:
        plan = force_new_cluster.plan(mid, hs, cs, tail)
    except force_new_cluster.ForceNewClusterError as err:
        raise BootError(f"--force-new-cluster: {err}") from None
    # Written at the index after the commit: on replay they replace the discarded tail.
    wal.save(plan.hard_state, plan.appended)
    log.warning("forcing a new one-member cluster: remove --force-new-cluster once the cluster is back, or the "
                "next restart drops the members added meanwhile", extra={"fields": {
                    "member-id": f"{mid:x}", "removed-members": [f"{m:x}" for m in plan.removed],
                    "discarded-uncommitted-entries": plan.discarded, "commit-index": plan.hard_state.commit}})
    return plan.entries, plan.hard_state


def _new(cfg: Config, backend: Backend, wal_dir: str) -> BootState:
    peers = cfg.initial_cluster_members()
    ids = {name: member_id(urls, cfg.initial_cluster_token) for name, urls in peers.items()}
    mid = ids[cfg.name]
    cid = cluster_id(list(ids.values()))
    snap, hs = RawNode.bootstrap_state(list(ids.values()))
    with backend.write() as btx:
        for name, urls in peers.items():
            save_member(btx, Member(ids[name], name, urls, []))
        save_conf_state(btx, snap.metadata.conf_state)
        btx.set_consistent_index(snap.metadata.index, snap.metadata.term)
    backend.sync()
    wal = WAL.create(wal_dir, _meta(mid, cid))
    wal.save(hs, [])
    wal.save_snapshot(snap.metadata.index, snap.metadata.term)
    storage = MemoryStorage()
    storage.apply_snapshot(snap)
    storage.set_hard_state(hs)
    return BootState(mid, cid, wal, storage, snap.metadata.index)


def _join(cfg: Config, backend: Backend, wal_dir: str, info: ClusterInfo) -> BootState:
    mine = sorted(cfg.initial_advertise_peer_urls)
    me = [m for m in info.members if sorted(m.peer_urls) == mine]
    if not me:
        raise BootError(
            f"no member of cluster {info.cluster_id:x} has peer URLs {','.join(mine)}: "
            "add it with MemberAdd (etcdctl member add) before starting it")
    with backend.write() as btx:
        for m in info.members:
            save_member(btx, m)
    backend.sync()
    wal = WAL.create(wal_dir, _meta(me[0].id, info.cluster_id))
    return BootState(me[0].id, info.cluster_id, wal, MemoryStorage(), 0, joining=True)


def needs_cluster_info(cfg: Config) -> bool:
    """A member joining an existing cluster with an empty data dir must ask the cluster first."""
    return cfg.initial_cluster_state == "existing" and not WAL.exists(cfg.wal_path)


async def fetch_cluster(cfg: Config, timeout: float = 30.0) -> ClusterInfo:
    """Ask the other members named in --initial-cluster for the cluster's membership."""
    mine = set(cfg.initial_advertise_peer_urls)
    urls = [u for name, us in cfg.initial_cluster_members().items() for u in us
            if name != cfg.name and u not in mine]
    if not urls:
        raise BootError("--initial-cluster-state existing needs the other members in --initial-cluster")
    tls = cfg.peer_tls_info()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        try:
            return parse_members_payload(await fetch(urls, "members", b"", timeout=2.0, tls=tls))
        except TransportError as err:
            if loop.time() >= deadline:
                raise BootError(f"cannot fetch the cluster's members from {','.join(urls)}: {err}") from None
            log.warning("cannot reach the cluster yet, retrying", extra={"fields": {"error": str(err)}})
            await asyncio.sleep(0.5)


def members_payload(cluster: int, members: dict[int, Member], removed: set[int] = frozenset()) -> bytes:
    """The answer to a ``members`` request: from a joining member, or one that suspects its removal."""
    return json.dumps({"cluster_id": cluster, "removed": sorted(removed), "members": [
        {"id": m.id, "name": m.name, "peer_urls": m.peer_urls, "client_urls": m.client_urls,
         "is_learner": m.is_learner} for m in members.values()]}).encode()


def parse_members_payload(raw: bytes) -> ClusterInfo:
    doc = json.loads(raw)
    return ClusterInfo(int(doc["cluster_id"]), [Member(**m) for m in doc["members"]],
                       {int(r) for r in doc.get("removed", [])})
