"""KV requests as the API layer makes them: Range, Put, DeleteRange, Txn, Compact.

Writes go through the log (``propose``); reads are linearizable (a ReadIndex
barrier, then a local read) unless the client asked for a serializable one.
A read-only txn is a read, not a proposal. With auth on, a read is checked,
read, then checked again against the auth revision (etcd's ``doSerialize``);
a write carries its caller and auth revision in the proposal's header and is
checked when applied. The quota is checked before a write
is proposed, against the size the backend had after the last applied batch,
a soft limit as in etcd: the first write over it raises the NOSPACE alarm
(once, however many writes hit it) and is refused.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from etcdx.auth import checks
from etcdx.pb import raft_internal_pb2, rpc_pb2
from etcdx.server import errors, kvops
from etcdx.server.alarms import NOSPACE
from etcdx.server.auth_requests import NO_CREDENTIALS, AuthRequests, Credentials, request_for
from etcdx.server.headers import Headers
from etcdx.server.stores import Stores

log = logging.getLogger("etcdx.server")

KV_OVERHEAD = 256  # bytes a put costs the quota beyond its key and value, as etcd counts it
InternalRaftRequest = raft_internal_pb2.InternalRaftRequest
Propose = Callable[[InternalRaftRequest], Awaitable[Any]]


class Quota:
    """The backend quota (``--quota-backend-bytes``) and the NOSPACE alarm it raises."""

    def __init__(self, stores: Stores, quota_bytes: int, member_id: int, propose: Propose) -> None:
        self.stores = stores
        self.quota_bytes = quota_bytes
        self.member_id = member_id
        self._propose = propose
        self.db_size = stores.backend.size()
        self._raise = asyncio.Event()

    def check(self, cost: int) -> None:
        if self.db_size + cost > self.quota_bytes:
            if not self.stores.alarms.active(NOSPACE):
                self._raise.set()
            raise errors.NO_SPACE

    async def run(self) -> None:
        """Raise the NOSPACE alarm through the log whenever a write found the quota exceeded."""
        while True:
            await self._raise.wait()
            self._raise.clear()
            if self.stores.alarms.active(NOSPACE):
                continue
            req = InternalRaftRequest(alarm=rpc_pb2.AlarmRequest(
                action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=self.member_id, alarm=NOSPACE))
            try:
                await self._propose(req)
            except errors.EtcdError as err:
                log.warning("failed to raise the NOSPACE alarm", extra={"fields": {"error": err.message}})
                await asyncio.sleep(1.0)


class KVRequests:
    """The KV requests; ``put_bytes`` and friends are the same writes answered with
    the serialized response through a Future (no Task: the client port's fast path;
    a coroutine only when a simple token's login is not applied here yet)."""

    def __init__(self, stores: Stores, headers: Headers, quota: Quota, auth: AuthRequests, *, propose: Propose,
                 submit: Callable[..., asyncio.Future],
                 barrier: Callable[[], Awaitable[None]], compacted: Callable[[], Awaitable[None]],
                 compact_wait: float) -> None:
        self.stores = stores
        self.headers = headers
        self.quota = quota
        self.auth = auth
        self._propose = propose
        self._submit = submit
        self._barrier = barrier
        self._compacted = compacted
        self._compact_wait = compact_wait

    async def range(self, r: rpc_pb2.RangeRequest, creds: Credentials = NO_CREDENTIALS) -> rpc_pb2.RangeResponse:
        if not r.serializable:
            await self._barrier()
        auth = self.auth
        info = await auth.identify(creds) if creds.token or creds.cert_cn else None
        auth.check(checks.check_range, info, r)
        resp = rpc_pb2.RangeResponse()
        kvops.do_range(self.stores.kv, r, resp)
        if info is not None:
            auth.recheck(info)
        self.headers.fill(resp.header)
        return resp

    async def _write(self, creds: Credentials, **field: Any) -> Any:
        auth = self.auth
        info = await auth.identify(creds) if creds.token or creds.cert_cn else None
        req = request_for(info, **field)
        auth.precheck(req)
        return await self._propose(req)

    async def put(self, r: rpc_pb2.PutRequest, creds: Credentials = NO_CREDENTIALS) -> rpc_pb2.PutResponse:
        self.quota.check(KV_OVERHEAD + len(r.key) + len(r.value))
        resp = await self._write(creds, put=r)
        self.headers.fill(resp.header)
        return resp

    def put_bytes(self, r: rpc_pb2.PutRequest,
                  creds: Credentials = NO_CREDENTIALS) -> asyncio.Future | Awaitable[bytes]:
        self.quota.check(KV_OVERHEAD + len(r.key) + len(r.value))
        return self._write_bytes(creds, put=r)

    def delete_range_bytes(self, r: rpc_pb2.DeleteRangeRequest,
                           creds: Credentials = NO_CREDENTIALS) -> asyncio.Future | Awaitable[bytes]:
        return self._write_bytes(creds, delete_range=r)

    def write_txn_bytes(self, r: rpc_pb2.TxnRequest,
                        creds: Credentials = NO_CREDENTIALS) -> asyncio.Future | Awaitable[bytes]:
        """A txn with writes (``txn_has_write``): through the log."""
        self.quota.check(txn_cost(r))
        return self._write_bytes(creds, txn=r)

    def _write_bytes(self, creds: Credentials, **field: Any) -> asyncio.Future | Awaitable[bytes]:
        auth = self.auth
        if not creds.token and not creds.cert_cn:
            info = None
        elif auth.must_wait(creds):
            return self._write_bytes_later(creds, field)
        else:
            info = auth.identify_now(creds)
        req = request_for(info, **field)
        auth.precheck(req)
        return self._submit(req, self._serialized)

    async def _write_bytes_later(self, creds: Credentials, field: dict[str, Any]) -> bytes:
        await self.auth.identify(creds)  # waits until this member applied the token's login
        return await self._write_bytes(creds, **field)

    def _serialized(self, resp: Any) -> bytes:
        """The applied response as the client gets it: header filled, serialized."""
        self.headers.fill(resp.header)
        return resp.SerializeToString()

    async def delete_range(self, r: rpc_pb2.DeleteRangeRequest,
                           creds: Credentials = NO_CREDENTIALS) -> rpc_pb2.DeleteRangeResponse:
        resp = await self._write(creds, delete_range=r)
        self.headers.fill(resp.header)
        return resp

    async def txn(self, r: rpc_pb2.TxnRequest, creds: Credentials = NO_CREDENTIALS) -> rpc_pb2.TxnResponse:
        if txn_has_write(r):
            self.quota.check(txn_cost(r))
            resp = await self._write(creds, txn=r)
        else:
            # A read-only txn is a linearizable read: no need to go through the log.
            if not txn_all_serializable(r):
                await self._barrier()
            auth = self.auth
            info = await auth.identify(creds) if creds.token or creds.cert_cn else None
            auth.check(checks.check_txn, info, r, self.stores.lessor.keys)
            resp = read_only_txn(self.stores.backend, self.stores.kv, r)
            if info is not None:
                auth.recheck(info)
        self.headers.fill(resp.header)
        return resp

    async def compact(self, r: rpc_pb2.CompactionRequest,
                      creds: Credentials = NO_CREDENTIALS) -> rpc_pb2.CompactionResponse:
        resp = await self._write(creds, compaction=r)
        if r.physical:
            await asyncio.wait_for(self._compacted(), self._compact_wait)
        self.headers.fill(resp.header)
        return resp


def read_only_txn(backend: Any, kv: Any, r: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
    """A txn without writes, evaluated in one read transaction of ``backend``."""
    with backend.read() as rtx:
        return read_only_txn_at(rtx, kv, r)


def read_only_txn_at(rtx: Any, kv: Any, r: rpc_pb2.TxnRequest) -> rpc_pb2.TxnResponse:
    """A txn without writes, evaluated in the read transaction ``rtx``."""
    resp = rpc_pb2.TxnResponse()
    view = kvops.ReadView(kv, rtx)
    path = kvops.txn_path(view, r)
    ka = kvops.KVApply(view, None, None, kv)
    ka.check_txn(r, path)
    ka.txn(r, path, resp)
    return resp


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


def txn_cost(r: rpc_pb2.TxnRequest) -> int:
    cost = 0
    for op in list(r.success) + list(r.failure):
        kind = op.WhichOneof("request")
        if kind == "request_put":
            cost += KV_OVERHEAD + len(op.request_put.key) + len(op.request_put.value)
        elif kind == "request_txn":
            cost += txn_cost(op.request_txn)
    return cost
