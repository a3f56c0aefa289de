"""Compares and operations for transactions, and the requests they make.

    from etcdx.client import txn
    client.txn(
        compare=[txn.version("job") == 0],                  # the key does not exist
        success=[txn.put("job", "mine", lease=lease.id)],
        failure=[txn.get("job")],
    )

A compare is built by comparing a *target* of a key with a value:
``value(key)``, ``version(key)``, ``create_revision(key)``,
``mod_revision(key)`` and ``lease(key)`` support ``==``, ``!=``, ``<`` and
``>``. A target may cover a range (``range_end=``) or a prefix
(``prefix=True``): the compare must then hold for every key in it.
Operations are ``get``, ``get_prefix``, ``put``, ``delete``,
``delete_prefix`` and a nested ``txn``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from etcdx.pb import rpc_pb2

from .types import KeyLike, SortOrder, SortTarget, prefix_range_end, to_bytes

_Result = rpc_pb2.Compare.CompareResult
_Target = rpc_pb2.Compare.CompareTarget


@dataclass(frozen=True, slots=True)
class Compare:
    """One compare of a txn; build it with the target functions below."""

    pb: rpc_pb2.Compare


class _CompareTarget:
    __slots__ = ("_key", "_range_end", "_target", "_field")

    def __init__(self, key: KeyLike, target: int, field: str, range_end: KeyLike | None, prefix: bool) -> None:
        self._key = to_bytes(key)
        self._range_end = range_end_of(key, range_end, prefix)
        self._target = target
        self._field = field

    def _compare(self, result: int, other: object) -> Compare:
        value = to_bytes(other) if self._field == "value" else _int(other)
        pb = rpc_pb2.Compare(result=result, target=self._target, key=self._key, range_end=self._range_end)
        setattr(pb, self._field, value)
        return Compare(pb)

    def __eq__(self, other: object) -> Compare:  # type: ignore[override]
        return self._compare(_Result.EQUAL, other)

    def __ne__(self, other: object) -> Compare:  # type: ignore[override]
        return self._compare(_Result.NOT_EQUAL, other)

    def __lt__(self, other: object) -> Compare:
        return self._compare(_Result.LESS, other)

    def __gt__(self, other: object) -> Compare:
        return self._compare(_Result.GREATER, other)

    __hash__ = None  # type: ignore[assignment]


def _int(v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"compare with an int, not {type(v).__name__}")
    return v


def range_end_of(key: KeyLike, range_end: KeyLike | None, prefix: bool) -> bytes:
    if prefix and range_end is not None:
        raise ValueError("give range_end or prefix=True, not both")
    if prefix:
        return prefix_range_end(key)
    return to_bytes(range_end) if range_end is not None else b""


def _range_key(key: KeyLike, prefix: bool) -> bytes:
    """The empty prefix means every key: etcd spells that key ``\0``, range_end ``\0``."""
    k = to_bytes(key)
    return b"\0" if prefix and not k else k


def lease_id(lease: object) -> int:
    """A lease given as its id or as anything with an ``id`` (a granted `Lease`)."""
    ident = getattr(lease, "id", lease)
    return _int(ident)


def value(key: KeyLike, *, range_end: KeyLike | None = None, prefix: bool = False) -> _CompareTarget:
    return _CompareTarget(key, _Target.VALUE, "value", range_end, prefix)


def version(key: KeyLike, *, range_end: KeyLike | None = None, prefix: bool = False) -> _CompareTarget:
    """The key's version: 0 when it does not exist."""
    return _CompareTarget(key, _Target.VERSION, "version", range_end, prefix)


def create_revision(key: KeyLike, *, range_end: KeyLike | None = None, prefix: bool = False) -> _CompareTarget:
    return _CompareTarget(key, _Target.CREATE, "create_revision", range_end, prefix)


def mod_revision(key: KeyLike, *, range_end: KeyLike | None = None, prefix: bool = False) -> _CompareTarget:
    return _CompareTarget(key, _Target.MOD, "mod_revision", range_end, prefix)


def lease(key: KeyLike, *, range_end: KeyLike | None = None, prefix: bool = False) -> _CompareTarget:
    return _CompareTarget(key, _Target.LEASE, "lease", range_end, prefix)


@dataclass(frozen=True, slots=True)
class Op:
    """One operation of a txn branch."""

    pb: rpc_pb2.RequestOp


def range_request(
    key: KeyLike,
    range_end: KeyLike | None = None,
    *,
    prefix: bool = False,
    revision: int = 0,
    limit: int = 0,
    sort_order: SortOrder = SortOrder.NONE,
    sort_target: SortTarget = SortTarget.KEY,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    min_mod_revision: int = 0,
    max_mod_revision: int = 0,
    min_create_revision: int = 0,
    max_create_revision: int = 0,
) -> rpc_pb2.RangeRequest:
    return rpc_pb2.RangeRequest(
        key=_range_key(key, prefix),
        range_end=range_end_of(key, range_end, prefix),
        revision=revision,
        limit=limit,
        sort_order=sort_order,
        sort_target=sort_target,
        serializable=serializable,
        keys_only=keys_only,
        count_only=count_only,
        min_mod_revision=min_mod_revision,
        max_mod_revision=max_mod_revision,
        min_create_revision=min_create_revision,
        max_create_revision=max_create_revision,
    )


def put_request(
    key: KeyLike,
    value: KeyLike = b"",
    *,
    lease: object = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
) -> rpc_pb2.PutRequest:
    return rpc_pb2.PutRequest(
        key=to_bytes(key),
        value=to_bytes(value),
        lease=lease_id(lease),
        prev_kv=prev_kv,
        ignore_value=ignore_value,
        ignore_lease=ignore_lease,
    )


def delete_request(
    key: KeyLike, range_end: KeyLike | None = None, *, prefix: bool = False, prev_kv: bool = False
) -> rpc_pb2.DeleteRangeRequest:
    return rpc_pb2.DeleteRangeRequest(
        key=_range_key(key, prefix), range_end=range_end_of(key, range_end, prefix), prev_kv=prev_kv
    )


def txn_request(compare: Iterable[Compare], success: Iterable[Op] = (), failure: Iterable[Op] = ()) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(
        compare=[_check(c, Compare).pb for c in compare],
        success=[_check(o, Op).pb for o in success],
        failure=[_check(o, Op).pb for o in failure],
    )


def _check(item: object, kind: type) -> object:
    if not isinstance(item, kind):
        raise TypeError(f"expected a txn {kind.__name__}, got {item!r}")
    return item


def get(key: KeyLike, range_end: KeyLike | None = None, **options: object) -> Op:
    """A range op; takes `range_request`'s options (prefix, revision, limit, sort, ...)."""
    return Op(rpc_pb2.RequestOp(request_range=range_request(key, range_end, **options)))  # type: ignore[arg-type]


def get_prefix(prefix: KeyLike, **options: object) -> Op:
    return get(prefix, prefix=True, **options)


def put(key: KeyLike, value: KeyLike = b"", **options: object) -> Op:
    """A put op; takes `put_request`'s options (lease, prev_kv, ignore_value, ignore_lease)."""
    return Op(rpc_pb2.RequestOp(request_put=put_request(key, value, **options)))  # type: ignore[arg-type]


def delete(key: KeyLike, range_end: KeyLike | None = None, *, prefix: bool = False, prev_kv: bool = False) -> Op:
    return Op(rpc_pb2.RequestOp(request_delete_range=delete_request(key, range_end, prefix=prefix, prev_kv=prev_kv)))


def delete_prefix(prefix: KeyLike, *, prev_kv: bool = False) -> Op:
    return delete(prefix, prefix=True, prev_kv=prev_kv)


def txn(compare: Iterable[Compare], success: Iterable[Op] = (), failure: Iterable[Op] = ()) -> Op:
    """A nested txn (etcd 3.3+)."""
    return Op(rpc_pb2.RequestOp(request_txn=txn_request(compare, success, failure)))


def is_read_only(request: rpc_pb2.TxnRequest) -> bool:
    """True when no branch of the txn writes: retrying it cannot apply anything twice."""
    for op in (*request.success, *request.failure):
        kind = op.WhichOneof("request")
        if kind in ("request_put", "request_delete_range"):
            return False
        if kind == "request_txn" and not is_read_only(op.request_txn):
            return False
    return True
