"""etcd's KV request semantics over the mvcc store: Range, Put, DeleteRange, Txn.

These functions turn one client request into mvcc calls and build the
response, with etcd's rules for sorting, limits, filters, compares, nested
transactions and per-response header revisions. They are used both by the
applier (writes, inside the batch's backend transaction) and by the read path.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

from etcdx.mvcc.errors import CompactedError, FutureRevisionError
from etcdx.mvcc.kvstore import current_revision
from etcdx.pb import kv_pb2, rpc_pb2
from etcdx.server import errors

RangeRequest = rpc_pb2.RangeRequest
Compare = rpc_pb2.Compare


class RangeView(Protocol):
    """What a range needs from a read or write view of the store."""

    def range(self, key: bytes, range_end: bytes, *, revision: int = 0, limit: int = 0,
              count_only: bool = False, keys_only: bool = False) -> Any: ...


_SORT_KEYS: dict[int, Callable[[kv_pb2.KeyValue], Any]] = {
    RangeRequest.KEY: lambda kv: kv.key,
    RangeRequest.VERSION: lambda kv: kv.version,
    RangeRequest.CREATE: lambda kv: kv.create_revision,
    RangeRequest.MOD: lambda kv: kv.mod_revision,
    RangeRequest.VALUE: lambda kv: kv.value,
}


def do_range(view: RangeView, r: rpc_pb2.RangeRequest, resp: rpc_pb2.RangeResponse) -> None:
    """Fill ``resp`` (kvs, more, count, header.revision) for ``r`` read from ``view``."""
    needs_all = (r.sort_order != RangeRequest.NONE or r.min_mod_revision or r.max_mod_revision
                 or r.min_create_revision or r.max_create_revision)
    limit = 0 if needs_all else r.limit
    if limit > 0:
        limit += 1  # one more than asked tells whether there are more
    # Sorting by value needs the values even when only keys are returned.
    strip_values = r.keys_only and r.sort_target == RangeRequest.VALUE
    try:
        rr = view.range(r.key, r.range_end, revision=r.revision, limit=limit,
                        count_only=r.count_only, keys_only=r.keys_only and not strip_values)
    except CompactedError:
        raise errors.COMPACTED from None
    except FutureRevisionError:
        raise errors.FUTURE_REV from None
    kvs = rr.kvs
    if r.max_mod_revision:
        kvs = [kv for kv in kvs if kv.mod_revision <= r.max_mod_revision]
    if r.min_mod_revision:
        kvs = [kv for kv in kvs if kv.mod_revision >= r.min_mod_revision]
    if r.max_create_revision:
        kvs = [kv for kv in kvs if kv.create_revision <= r.max_create_revision]
    if r.min_create_revision:
        kvs = [kv for kv in kvs if kv.create_revision >= r.min_create_revision]
    order = r.sort_order
    if r.sort_target != RangeRequest.KEY and order == RangeRequest.NONE:
        order = RangeRequest.ASCEND  # etcd sorts by a non-key target ascending by default
    if order == RangeRequest.ASCEND and r.sort_target != RangeRequest.KEY:
        kvs = sorted(kvs, key=_SORT_KEYS[r.sort_target])
    elif order == RangeRequest.DESCEND:
        kvs = sorted(kvs, key=_SORT_KEYS[r.sort_target], reverse=True)
    if r.limit > 0 and len(kvs) > r.limit:
        kvs = kvs[: r.limit]
        resp.more = True
    if strip_values:
        for kv in kvs:
            kv.value = b""
    if kvs:
        resp.kvs.extend(kvs)
    resp.count = rr.count
    resp.header.revision = rr.revision


def _compare_one(c: rpc_pb2.Compare, kv: kv_pb2.KeyValue) -> bool:
    t = c.target
    if t == Compare.VALUE:
        a, b = kv.value, c.value
        rv = (a > b) - (a < b)
    else:
        if t == Compare.VERSION:
            a, b = kv.version, c.version
        elif t == Compare.CREATE:
            a, b = kv.create_revision, c.create_revision
        elif t == Compare.MOD:
            a, b = kv.mod_revision, c.mod_revision
        else:
            a, b = kv.lease, c.lease
        rv = (a > b) - (a < b)
    res = c.result
    if res == Compare.EQUAL:
        return rv == 0
    if res == Compare.NOT_EQUAL:
        return rv != 0
    if res == Compare.GREATER:
        return rv > 0
    return rv < 0


_EMPTY_KV = kv_pb2.KeyValue()


def compare(view: RangeView, c: rpc_pb2.Compare) -> bool:
    """True when every key in the compare's range satisfies it; a missing key compares as zero values,
    except that a value compare on a missing key always fails."""
    rr = view.range(c.key, c.range_end)
    if not rr.kvs:
        if c.target == Compare.VALUE:
            return False
        return _compare_one(c, _EMPTY_KV)
    return all(_compare_one(c, kv) for kv in rr.kvs)


def txn_path(view: RangeView, r: rpc_pb2.TxnRequest) -> list[bool]:
    """Branch choices of the txn and its nested txns, depth first, all against the state before the txn."""
    ok = all(compare(view, c) for c in r.compare)
    path = [ok]
    for op in (r.success if ok else r.failure):
        if op.WhichOneof("request") == "request_txn":
            path.extend(txn_path(view, op.request_txn))
    return path


def is_write_txn(r: rpc_pb2.TxnRequest, path: list[bool], pos: int = 0) -> tuple[bool, int]:
    """Whether the chosen branches contain a put or delete; also how many path slots this txn used."""
    ops = r.success if path[pos] else r.failure
    used = 1
    write = False
    for op in ops:
        kind = op.WhichOneof("request")
        if kind in ("request_put", "request_delete_range"):
            write = True
        elif kind == "request_txn":
            w, n = is_write_txn(op.request_txn, path, pos + used)
            write = write or w
            used += n
    return write, used


class ReadView:
    """A read-only view at one backend read transaction, shaped like an mvcc TxnWrite."""

    def __init__(self, kv: Any, rtx: Any) -> None:
        self.kv = kv
        self.rtx = rtx
        self.revision = current_revision(rtx)

    def range(self, key: bytes, range_end: bytes = b"", **kw: Any) -> Any:
        return self.kv.range(key, range_end, txn=self.rtx, **kw)


class KVApply:
    """Executes writes inside one mvcc write transaction (one store revision).

    ``tw`` is an mvcc TxnWrite; ``leases`` is the lessor (attach, detach,
    lookup) whose persistence shares the same backend transaction ``btx``.
    """

    def __init__(self, tw: Any, btx: Any, leases: Any, kv: Any) -> None:
        self.tw = tw
        self.kv = kv
        self.btx = btx
        self.leases = leases
        self.begin_rev = tw.revision
        self.changed = False

    def _rev(self) -> int:
        return self.tw.revision

    def check_put(self, p: rpc_pb2.PutRequest, key_first: bool = False) -> None:
        """A standalone put checks its lease first; a put inside a txn checks its key first (etcd's order)."""
        if key_first:
            self._check_put_key(p)
        if p.lease and self.leases.lookup(p.lease) is None:
            raise errors.LEASE_NOT_FOUND
        if not key_first:
            self._check_put_key(p)

    def _check_put_key(self, p: rpc_pb2.PutRequest) -> None:
        if (p.ignore_value or p.ignore_lease) and not self.tw.range(p.key, b"").kvs:
            raise errors.KEY_NOT_FOUND

    def put(self, p: rpc_pb2.PutRequest, resp: rpc_pb2.PutResponse) -> None:
        value, lease = p.value, p.lease
        if p.ignore_value or p.ignore_lease or p.prev_kv:
            cur = self.tw.range(p.key, b"").kvs
            if (p.ignore_value or p.ignore_lease) and not cur:
                raise errors.KEY_NOT_FOUND
            if p.ignore_value:
                value = cur[0].value
            if p.ignore_lease:
                lease = cur[0].lease
            if p.prev_kv and cur:
                resp.prev_kv.CopyFrom(cur[0])
        prev = self.tw.put(p.key, value, lease)
        self.changed = True
        if prev is not None and prev.lease and prev.lease != lease:
            self.leases.detach(self.btx, prev.lease, p.key)
        if lease and (prev is None or prev.lease != lease):
            self.leases.attach(self.btx, lease, p.key)
        resp.header.revision = self._rev()

    def delete_range(self, d: rpc_pb2.DeleteRangeRequest, resp: rpc_pb2.DeleteRangeResponse) -> None:
        prevs = self.tw.delete_range(d.key, d.range_end)
        if prevs:
            self.changed = True
            for kv in prevs:
                if kv.lease:
                    self.leases.detach(self.btx, kv.lease, kv.key)
            if d.prev_kv:
                resp.prev_kvs.extend(prevs)
        resp.deleted = len(prevs)
        resp.header.revision = self._rev()

    def range(self, r: rpc_pb2.RangeRequest, resp: rpc_pb2.RangeResponse) -> None:
        do_range(self.tw, r, resp)

    def check_txn(self, r: rpc_pb2.TxnRequest, path: list[bool]) -> None:
        """Reject the whole txn before any write, as etcd does: every put on the
        taken path first, then every range."""
        self._check_ops(r, path, 0, puts=True)
        self._check_ops(r, path, 0, puts=False)

    def _check_ops(self, r: rpc_pb2.TxnRequest, path: list[bool], pos: int, puts: bool) -> int:
        used = 1
        for op in (r.success if path[pos] else r.failure):
            kind = op.WhichOneof("request")
            if kind == "request_put" and puts:
                self.check_put(op.request_put, key_first=True)
            elif kind == "request_range" and not puts:
                rev = op.request_range.revision
                if rev > self.begin_rev:
                    raise errors.FUTURE_REV
                if 0 < rev < self.kv.compact_revision:
                    raise errors.COMPACTED
            elif kind == "request_txn":
                used += self._check_ops(op.request_txn, path, pos + used, puts)
        return used

    def txn(self, r: rpc_pb2.TxnRequest, path: list[bool], resp: rpc_pb2.TxnResponse, pos: int = 0) -> int:
        ok = path[pos]
        resp.succeeded = ok
        used = 1
        for op in (r.success if ok else r.failure):
            kind = op.WhichOneof("request")
            out = resp.responses.add()
            if kind == "request_range":
                self.range(op.request_range, out.response_range)
            elif kind == "request_put":
                self.put(op.request_put, out.response_put)
            elif kind == "request_delete_range":
                self.delete_range(op.request_delete_range, out.response_delete_range)
            elif kind == "request_txn":
                out.response_txn.header.SetInParent()
                used += self.txn(op.request_txn, path, out.response_txn, pos + used)
        return used
