"""Data corruption checks between members, as etcd's ``--experimental-*-corrupt-check*``.

Members that applied the same log must hold the same key space: HashKV at
one revision (with the same compact revision) is equal on all of them. Two
checks compare it:

- **initial** (``--experimental-initial-corrupt-check``): before serving, a
  member asks each peer for HashKV at its own revision; a peer that answers at
  that revision with the same compact revision and another hash means this
  member's data (or the peer's) is damaged, and the member refuses to start.
- **periodic** (``--experimental-corrupt-check-time``): the leader compares its
  HashKV with every follower's at the leader's revision and raises the CORRUPT
  alarm for a follower that differs. While a CORRUPT alarm is raised, every
  member refuses writes with "etcdserver: corrupt cluster" (reads still work, so
  the data can be inspected and saved).

Peers answer ``hashkv`` requests over the peer transport (``etcdx.transport``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from etcdx.pb import raft_internal_pb2, rpc_pb2
from etcdx.server import errors
from etcdx.server.alarms import CORRUPT
from etcdx.server.stores import Stores
from etcdx.transport import RemoteError, Transport, TransportError

log = logging.getLogger("etcdx.server")

PEER_TIMEOUT = 5.0  # seconds a peer has to answer a hashkv request
InternalRaftRequest = raft_internal_pb2.InternalRaftRequest
HashKV = Callable[[int], Awaitable[rpc_pb2.HashKVResponse]]


class CorruptionError(RuntimeError):
    """This member's key space differs from a peer's at the same revision."""


class CorruptionChecker:
    def __init__(self, stores: Stores, *, member_id: int, hash_kv: HashKV,
                 transport: Callable[[], Transport | None], is_leader: Callable[[], bool],
                 propose: Callable[[InternalRaftRequest], Awaitable[Any]]) -> None:
        self.stores = stores
        self.member_id = member_id
        self._hash_kv = hash_kv
        self._transport = transport
        self._is_leader = is_leader
        self._propose = propose

    async def answer(self, payload: bytes) -> bytes:
        """A peer's ``hashkv`` request (a HashKVRequest): this member's HashKV."""
        return (await self._hash_kv(rpc_pb2.HashKVRequest.FromString(payload).revision)).SerializeToString()

    async def _peer_hashes(self, revision: int) -> dict[int, rpc_pb2.HashKVResponse]:
        """Each reachable peer's HashKV at ``revision`` (peers that cannot answer are left out)."""
        transport = self._transport()
        if transport is None:
            return {}
        payload = rpc_pb2.HashKVRequest(revision=revision).SerializeToString()
        peers = [m for m in self.stores.members if m != self.member_id]

        async def ask(peer: int) -> rpc_pb2.HashKVResponse | None:
            try:
                raw = await transport.call(peer, "hashkv", payload, timeout=PEER_TIMEOUT)
            except (TransportError, RemoteError) as err:
                log.info("corruption check: a peer did not answer", extra={"fields": {
                    "peer": f"{peer:x}", "error": str(err)}})
                return None
            return rpc_pb2.HashKVResponse.FromString(raw)

        answers = await asyncio.gather(*(ask(p) for p in peers))
        return {p: a for p, a in zip(peers, answers) if a is not None}

    async def initial_check(self) -> None:
        """Raise CorruptionError if a peer holds different data at this member's revision."""
        mine = await self._hash_kv(0)
        for peer, theirs in (await self._peer_hashes(mine.hash_revision)).items():
            if _differs(mine, theirs):
                log.critical("found data inconsistency with peers", extra={"fields": {
                    "peer": f"{peer:x}", "revision": mine.hash_revision, "hash": mine.hash,
                    "peer-hash": theirs.hash}})
                raise CorruptionError(f"{self.member_id:x} found data inconsistency with peers")
        log.info("initial corruption check passed", extra={"fields": {"revision": mine.hash_revision}})

    async def run_periodic(self, interval: float) -> None:
        """Leader: compare HashKV with every follower's every ``interval`` seconds."""
        while True:
            await asyncio.sleep(interval)
            if not self._is_leader() or self.stores.alarms.active(CORRUPT):
                continue
            mine = await self._hash_kv(0)
            for peer, theirs in (await self._peer_hashes(mine.hash_revision)).items():
                if _differs(mine, theirs):
                    log.error("a follower's data differs from the leader's", extra={"fields": {
                        "peer": f"{peer:x}", "revision": mine.hash_revision}})
                    await self._raise_alarm(peer)

    async def _raise_alarm(self, member: int) -> None:
        req = InternalRaftRequest(alarm=rpc_pb2.AlarmRequest(
            action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=member, alarm=CORRUPT))
        try:
            await self._propose(req)
        except errors.EtcdError as err:
            log.warning("failed to raise the CORRUPT alarm", extra={"fields": {"error": err.message}})


def _differs(mine: rpc_pb2.HashKVResponse, theirs: rpc_pb2.HashKVResponse) -> bool:
    """Comparable (same revision, same compaction) and different."""
    return (theirs.hash_revision == mine.hash_revision and theirs.compact_revision == mine.compact_revision
            and theirs.hash != mine.hash)
