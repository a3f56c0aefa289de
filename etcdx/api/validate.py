"""Request checks etcd makes before a request reaches consensus.

They run in the API layer, on the client's protobuf, so a bad request costs
no proposal. The rules and their order are etcd's, so the first error a
client sees is the one etcd would send.
"""

from __future__ import annotations

from etcdx.pb import rpc_pb2
from etcdx.server import errors

_SORT_ORDERS = set(rpc_pb2.RangeRequest.SortOrder.values())
_SORT_TARGETS = set(rpc_pb2.RangeRequest.SortTarget.values())


def check_range(r: rpc_pb2.RangeRequest) -> None:
    if not r.key:
        raise errors.EMPTY_KEY
    if r.sort_order not in _SORT_ORDERS or r.sort_target not in _SORT_TARGETS:
        raise errors.INVALID_SORT_OPTION


def check_put(r: rpc_pb2.PutRequest) -> None:
    if not r.key:
        raise errors.EMPTY_KEY
    if r.ignore_value and r.value:
        raise errors.VALUE_PROVIDED
    if r.ignore_lease and r.lease != 0:
        raise errors.LEASE_PROVIDED


def check_delete(r: rpc_pb2.DeleteRangeRequest) -> None:
    if not r.key:
        raise errors.EMPTY_KEY


def check_txn(r: rpc_pb2.TxnRequest, max_txn_ops: int) -> None:
    """Size limits, per-op checks, then the duplicate-key rule over both branches."""
    _check_txn_ops(r, max_txn_ops)
    _puts_and_deletes(r.success)
    _puts_and_deletes(r.failure)


def _check_txn_ops(r: rpc_pb2.TxnRequest, max_txn_ops: int) -> None:
    opc = max(len(r.compare), len(r.success), len(r.failure))
    if opc > max_txn_ops:
        raise errors.TOO_MANY_OPS
    for c in r.compare:
        if not c.key:
            raise errors.EMPTY_KEY
    for op in list(r.success) + list(r.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            check_range(op.request_range)
        elif kind == "request_put":
            check_put(op.request_put)
        elif kind == "request_delete_range":
            check_delete(op.request_delete_range)
        elif kind == "request_txn":
            _check_txn_ops(op.request_txn, max_txn_ops - opc)


class _Intervals:
    """Half-open byte intervals [start, end); an empty end is unbounded, as in etcd's checker."""

    def __init__(self) -> None:
        self.items: list[tuple[bytes, bytes | None]] = []

    def add(self, start: bytes, end: bytes | None) -> None:
        self.items.append((start, end))

    def contains(self, key: bytes) -> bool:
        for start, end in self.items:
            if end is None:  # a single key
                if key == start:
                    return True
            elif start <= key and (end == b"" or key < end):
                return True
        return False


def _puts_and_deletes(ops) -> tuple[set[bytes], _Intervals]:
    """Keys put and ranges deleted by one branch, raising DUPLICATE_KEY on overlap.

    A put may not touch a key another put or a delete of the same branch
    touches; the two branches of a nested txn exclude each other, so a key put
    in both of them is fine. Deletes may overlap each other.
    """
    dels = _Intervals()
    for op in ops:
        if op.WhichOneof("request") == "request_delete_range":
            d = op.request_delete_range
            # "\0" as range_end compares as a tiny key here, exactly as etcd's
            # interval check treats it, so a from-key delete never overlaps.
            dels.add(d.key, d.range_end if d.range_end else None)
    puts: set[bytes] = set()
    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        then_puts, then_dels = _puts_and_deletes(op.request_txn.success)
        else_puts, else_dels = _puts_and_deletes(op.request_txn.failure)
        for k in then_puts:
            if k in puts or dels.contains(k):
                raise errors.DUPLICATE_KEY
            puts.add(k)
        for k in else_puts:
            if (k in puts and k not in then_puts) or dels.contains(k):
                raise errors.DUPLICATE_KEY
            puts.add(k)
        dels.items.extend(then_dels.items)
        dels.items.extend(else_dels.items)
    for op in ops:
        if op.WhichOneof("request") != "request_put":
            continue
        k = op.request_put.key
        if k in puts or dels.contains(k):
            raise errors.DUPLICATE_KEY
        puts.add(k)
    return puts, dels
