"""etcd's Lock and Election services: the concurrency recipes run in the member for the caller.

etcd serves ``v3lockpb.Lock`` and ``v3electionpb.Election`` by running its
Go client's concurrency recipes inside the server, as the caller (the
request's token goes with every inner call). This mixin does the same over
the handler object's own KV, Lease and Watch methods, so etcd's request checks
and auth apply unchanged:

- a contender's key is ``<name>/<lease id in hex>``, put with its lease only if
  absent (asking twice returns the same key); the holder (leader) is the key
  with the lowest create revision under ``<name>/``; a contender waits until
  every key with a lower create revision is deleted (watching the next-lower
  one at a time), so a release or an expired lease hands over in create order;
- lease 0 in Lock or Campaign gets a new 60 s lease, as etcd's session does;
- errors of the inner calls reach the client with code Unknown and their
  message (``etcdserver: requested lease not found``), and the recipes' own
  are ``election: no leader``, ``election: not leader`` and ``"leader" field
  must be provided``, all code Unknown: what etcd 3.4 answers;
- a caller that gives up while waiting withdraws its key (Lock) or resigns
  (Campaign) through the log, as etcd's recipes do on a cancelled context.

Only the core serves these; API workers forward them (``etcdx.api.remote``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator

from etcdx.api.context import CallContext
from etcdx.keys import prefix_range_end
from etcdx.pb import kv_pb2, rpc_pb2, v3election_pb2, v3lock_pb2
from etcdx.server.errors import EtcdError

log = logging.getLogger("etcdx.api.concurrency")

SESSION_TTL = 60  # seconds: etcd's concurrency session default, for requests with lease 0
NO_LEADER = EtcdError("UNKNOWN", "election: no leader")
NOT_LEADER = EtcdError("UNKNOWN", "election: not leader")
MISSING_LEADER_KEY = EtcdError("UNKNOWN", '"leader" field must be provided')

_CREATE, _EQUAL = rpc_pb2.Compare.CREATE, rpc_pb2.Compare.EQUAL


def _first_create(prefix: bytes) -> rpc_pb2.RangeRequest:
    """The contender with the lowest create revision: the holder, or leader."""
    return rpc_pb2.RangeRequest(key=prefix, range_end=prefix_range_end(prefix), limit=1,
                                sort_order=rpc_pb2.RangeRequest.ASCEND, sort_target=rpc_pb2.RangeRequest.CREATE)


def _is_created(key: bytes, revision: int) -> rpc_pb2.Compare:
    return rpc_pb2.Compare(result=_EQUAL, target=_CREATE, key=key, create_revision=revision)


def _contender_key(name: bytes, lease: int) -> bytes:
    return name + b"/" + b"%x" % lease


async def _inner(call: Any) -> Any:
    """An inner call's result; its etcd error as the client of a recipe sees it (code Unknown)."""
    try:
        return await call
    except EtcdError as err:
        raise EtcdError("UNKNOWN", err.message) from None


class LockElectionHandlers:
    """Lock, Unlock, Campaign, Proclaim, Leader, Observe and Resign for a handler object.

    The class using it provides the RPC methods ``Range``, ``Txn``,
    ``DeleteRange``, ``Watch``, ``LeaseGrant`` and ``raw_Txn`` (a Future of a
    write txn's response), and sets ``_withdrawals`` to an empty set: the
    withdrawals proposed for callers that went away, until they are applied.
    """

    _withdrawals: set[asyncio.Future]

    # -- Lock ---------------------------------------------------------------------------

    async def Lock(self, r: v3lock_pb2.LockRequest, ctx: CallContext) -> v3lock_pb2.LockResponse:
        lease = r.lease or await self._session_lease(ctx)
        prefix = r.name + b"/"
        key = _contender_key(r.name, lease)
        owner = rpc_pb2.RequestOp(request_range=_first_create(prefix))
        resp = await _inner(self.Txn(rpc_pb2.TxnRequest(
            compare=[_is_created(key, 0)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, lease=lease)), owner],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key)), owner]), ctx))
        my_rev = resp.header.revision if resp.succeeded else resp.responses[0].response_range.kvs[0].create_revision
        holders = resp.responses[1].response_range.kvs
        if not holders or holders[0].create_revision == my_rev:
            return v3lock_pb2.LockResponse(header=resp.header, key=key)
        try:
            header = await self._wait_deletes(prefix, my_rev - 1, ctx)
        except BaseException:
            self._withdraw(rpc_pb2.TxnRequest(success=[
                rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=key))]), ctx)
            raise
        return v3lock_pb2.LockResponse(header=header, key=key)

    async def Unlock(self, r: v3lock_pb2.UnlockRequest, ctx: CallContext) -> v3lock_pb2.UnlockResponse:
        resp = await _inner(self.DeleteRange(rpc_pb2.DeleteRangeRequest(key=r.key), ctx))
        return v3lock_pb2.UnlockResponse(header=resp.header)

    # -- Election -----------------------------------------------------------------------

    async def Campaign(self, r: v3election_pb2.CampaignRequest,
                       ctx: CallContext) -> v3election_pb2.CampaignResponse:
        lease = r.lease or await self._session_lease(ctx)
        prefix = r.name + b"/"
        key = _contender_key(r.name, lease)
        resp = await _inner(self.Txn(rpc_pb2.TxnRequest(
            compare=[_is_created(key, 0)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=r.value, lease=lease))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key))]), ctx))
        leader = v3election_pb2.LeaderKey(name=r.name, key=key, rev=resp.header.revision, lease=lease)
        if not resp.succeeded:
            kv = resp.responses[0].response_range.kvs[0]
            leader.rev = kv.create_revision
            if kv.value != r.value:
                try:
                    await self._proclaim(leader, r.value, ctx)
                except BaseException:
                    self._withdraw(_resign_txn(leader), ctx)
                    raise
        try:
            await self._wait_deletes(prefix, leader.rev - 1, ctx)
        except asyncio.CancelledError:
            self._withdraw(_resign_txn(leader), ctx)  # the campaigner gave up: etcd resigns for it
            raise
        return v3election_pb2.CampaignResponse(header=resp.header, leader=leader)

    async def Proclaim(self, r: v3election_pb2.ProclaimRequest,
                       ctx: CallContext) -> v3election_pb2.ProclaimResponse:
        if not r.HasField("leader"):
            raise MISSING_LEADER_KEY
        header = await self._proclaim(r.leader, r.value, ctx)
        return v3election_pb2.ProclaimResponse(header=header)

    async def Leader(self, r: v3election_pb2.LeaderRequest, ctx: CallContext) -> v3election_pb2.LeaderResponse:
        resp = await _inner(self.Range(_first_create(r.name + b"/"), ctx))
        if not resp.kvs:
            raise NO_LEADER
        return v3election_pb2.LeaderResponse(header=resp.header, kv=resp.kvs[0])

    async def Resign(self, r: v3election_pb2.ResignRequest, ctx: CallContext) -> v3election_pb2.ResignResponse:
        """Delete the leader key if it is still the one created at ``rev``; a stale key is no error."""
        if not r.HasField("leader"):
            raise MISSING_LEADER_KEY
        resp = await _inner(self.Txn(_resign_txn(r.leader), ctx))
        return v3election_pb2.ResignResponse(header=resp.header)

    async def Observe(self, r: v3election_pb2.LeaderRequest,
                      ctx: CallContext) -> AsyncIterator[v3election_pb2.LeaderResponse]:
        """The leader now (or the first one to come), then every change of its value, then the next
        leader, and so on. A failing inner call ends the stream without an error, as in etcd."""
        prefix = r.name + b"/"
        try:
            while True:
                resp = await _inner(self.Range(_first_create(prefix), ctx))
                if resp.kvs:
                    header, kv = resp.header, resp.kvs[0]
                else:
                    header, kv = await self._first_put(prefix, resp.header.revision, ctx)
                yield v3election_pb2.LeaderResponse(header=header, kv=kv)
                async with contextlib.aclosing(self._watch(kv.key, b"", header.revision + 1, ctx)) as updates:
                    deleted = False
                    async for wr in updates:
                        for ev in wr.events:
                            if ev.type == kv_pb2.Event.DELETE:
                                deleted = True  # the leader resigned or its lease ended: find the next
                                break
                            yield v3election_pb2.LeaderResponse(header=wr.header, kv=ev.kv)
                        if deleted:
                            break
        except EtcdError:
            return

    # -- the recipes' steps ---------------------------------------------------------------

    async def _session_lease(self, ctx: CallContext) -> int:
        resp = await _inner(self.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=SESSION_TTL), ctx))
        return resp.ID

    async def _proclaim(self, leader: v3election_pb2.LeaderKey, value: bytes, ctx: CallContext) -> rpc_pb2.ResponseHeader:
        resp = await _inner(self.Txn(rpc_pb2.TxnRequest(
            compare=[_is_created(leader.key, leader.rev)],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=leader.key, value=value, ignore_lease=True))]),
            ctx))
        if not resp.succeeded:
            raise NOT_LEADER
        return resp.header

    async def _wait_deletes(self, prefix: bytes, max_create_revision: int, ctx: CallContext) -> rpc_pb2.ResponseHeader:
        """Wait until no key under ``prefix`` has a create revision <= ``max_create_revision``;
        the header of the read that found none."""
        newest_older = rpc_pb2.RangeRequest(
            key=prefix, range_end=prefix_range_end(prefix), limit=1, max_create_revision=max_create_revision,
            sort_order=rpc_pb2.RangeRequest.DESCEND, sort_target=rpc_pb2.RangeRequest.CREATE)
        while True:
            resp = await _inner(self.Range(newest_older, ctx))
            if not resp.kvs:
                return resp.header
            async with contextlib.aclosing(self._watch(resp.kvs[0].key, b"", resp.header.revision, ctx)) as events:
                async for wr in events:
                    if any(ev.type == kv_pb2.Event.DELETE for ev in wr.events):
                        break

    async def _first_put(self, prefix: bytes, revision: int,
                         ctx: CallContext) -> tuple[rpc_pb2.ResponseHeader, kv_pb2.KeyValue]:
        """The first key put under ``prefix`` from ``revision`` on, with a header at its revision."""
        async with contextlib.aclosing(self._watch(prefix, prefix_range_end(prefix), revision, ctx)) as events:
            async for wr in events:
                for ev in wr.events:
                    if ev.type == kv_pb2.Event.PUT:
                        header = rpc_pb2.ResponseHeader()
                        header.CopyFrom(wr.header)
                        header.revision = ev.kv.mod_revision
                        return header, ev.kv
        raise EtcdError("UNKNOWN", "lost watcher waiting for a leader")

    async def _watch(self, key: bytes, range_end: bytes, start_revision: int,
                     ctx: CallContext) -> AsyncIterator[rpc_pb2.WatchResponse]:
        """Event responses of one watch, as the caller; a cancel (compaction, auth) is its reason as an error."""
        create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=key, range_end=range_end, start_revision=start_revision))
        requests_end = asyncio.Event()  # never set: the request side stays open while we watch

        async def requests() -> AsyncIterator[rpc_pb2.WatchRequest]:
            yield create
            await requests_end.wait()

        async with contextlib.aclosing(self.Watch(requests(), ctx)) as responses:
            async for resp in responses:
                if resp.canceled:
                    raise EtcdError("UNKNOWN", resp.cancel_reason or "etcdserver: watch canceled")
                if resp.events:
                    yield resp
        raise EtcdError("UNKNOWN", "lost watcher waiting for delete")

    def _withdraw(self, txn: rpc_pb2.TxnRequest, ctx: CallContext) -> None:
        """Propose ``txn`` (a contender withdrawing) without waiting for it: the caller is gone."""
        try:
            fut = asyncio.ensure_future(self.raw_Txn(txn.SerializeToString(), ctx))
        except EtcdError as err:
            log.warning("could not withdraw a lock or election contender", extra={"fields": {"error": err.message}})
            return
        self._withdrawals.add(fut)
        fut.add_done_callback(self._withdrawn)

    def _withdrawn(self, fut: asyncio.Future) -> None:
        self._withdrawals.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            err = fut.exception()
            if isinstance(err, EtcdError):
                log.warning("could not withdraw a lock or election contender",
                            extra={"fields": {"error": err.message}})
            else:
                log.error("withdrawing a lock or election contender failed", exc_info=err)


def _resign_txn(leader: v3election_pb2.LeaderKey) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(compare=[_is_created(leader.key, leader.rev)], success=[
        rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=leader.key))])
