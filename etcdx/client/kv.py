"""KV programs: get, put, delete, txn and compaction (see `ops` for what a program is).

Reads and read-only txns are idempotent and retried on any transient error;
puts, deletes and writing txns are retried only when the error proves they
were not applied.
"""

from __future__ import annotations

from collections.abc import Iterable

from etcdx.pb import rpc_pb2

from . import txn as t
from .ops import Call, Program
from .types import DeleteResult, GetResult, Header, KeyLike, PutResult, SortOrder, SortTarget, TxnResult


def get(
    key: KeyLike,
    *,
    revision: int = 0,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    timeout: float | None = None,
) -> Program[GetResult]:
    """One key (``result.kv``, ``result.value``; None when absent), at ``revision`` (0: latest)."""
    request = t.range_request(
        key, revision=revision, serializable=serializable, keys_only=keys_only, count_only=count_only
    )
    response = yield Call("KV", "Range", request, idempotent=True, timeout=timeout)
    return GetResult.from_pb(response)


def get_range(
    key: KeyLike,
    range_end: KeyLike,
    *,
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
    timeout: float | None = None,
) -> Program[GetResult]:
    """Keys in [key, range_end); range_end ``\\0`` means every key >= key."""
    request = t.range_request(
        key, range_end, revision=revision, limit=limit, sort_order=sort_order, sort_target=sort_target,
        serializable=serializable, keys_only=keys_only, count_only=count_only,
        min_mod_revision=min_mod_revision, max_mod_revision=max_mod_revision,
        min_create_revision=min_create_revision, max_create_revision=max_create_revision,
    )  # fmt: skip
    response = yield Call("KV", "Range", request, idempotent=True, timeout=timeout)
    return GetResult.from_pb(response)


def get_prefix(
    prefix: KeyLike,
    *,
    revision: int = 0,
    limit: int = 0,
    sort_order: SortOrder = SortOrder.NONE,
    sort_target: SortTarget = SortTarget.KEY,
    serializable: bool = False,
    keys_only: bool = False,
    count_only: bool = False,
    timeout: float | None = None,
) -> Program[GetResult]:
    """Every key starting with ``prefix`` (the empty prefix: every key)."""
    request = t.range_request(
        prefix, prefix=True, revision=revision, limit=limit, sort_order=sort_order, sort_target=sort_target,
        serializable=serializable, keys_only=keys_only, count_only=count_only,
    )  # fmt: skip
    response = yield Call("KV", "Range", request, idempotent=True, timeout=timeout)
    return GetResult.from_pb(response)


def put(
    key: KeyLike,
    value: KeyLike,
    *,
    lease: object = 0,
    prev_kv: bool = False,
    ignore_value: bool = False,
    ignore_lease: bool = False,
    timeout: float | None = None,
) -> Program[PutResult]:
    """Set ``key`` to ``value``, attached to ``lease`` (an id or a `Lease`; 0: none)."""
    request = t.put_request(
        key, value, lease=lease, prev_kv=prev_kv, ignore_value=ignore_value, ignore_lease=ignore_lease
    )
    response = yield Call("KV", "Put", request, idempotent=False, timeout=timeout)
    return PutResult.from_pb(response)


def delete(key: KeyLike, *, prev_kv: bool = False, timeout: float | None = None) -> Program[DeleteResult]:
    response = yield Call("KV", "DeleteRange", t.delete_request(key, prev_kv=prev_kv), idempotent=False, timeout=timeout)
    return DeleteResult.from_pb(response)


def delete_range(
    key: KeyLike, range_end: KeyLike, *, prev_kv: bool = False, timeout: float | None = None
) -> Program[DeleteResult]:
    request = t.delete_request(key, range_end, prev_kv=prev_kv)
    response = yield Call("KV", "DeleteRange", request, idempotent=False, timeout=timeout)
    return DeleteResult.from_pb(response)


def delete_prefix(prefix: KeyLike, *, prev_kv: bool = False, timeout: float | None = None) -> Program[DeleteResult]:
    request = t.delete_request(prefix, prefix=True, prev_kv=prev_kv)
    response = yield Call("KV", "DeleteRange", request, idempotent=False, timeout=timeout)
    return DeleteResult.from_pb(response)


def txn(
    compare: Iterable[t.Compare],
    success: Iterable[t.Op] = (),
    failure: Iterable[t.Op] = (),
    *,
    timeout: float | None = None,
) -> Program[TxnResult]:
    """If every compare holds, run ``success``, else ``failure`` (build both with `etcdx.client.txn`)."""
    request = t.txn_request(compare, success, failure)
    response = yield Call("KV", "Txn", request, idempotent=t.is_read_only(request), timeout=timeout)
    return TxnResult.from_pb(response)


def compact(revision: int, *, physical: bool = False, timeout: float | None = None) -> Program[Header]:
    """Discard history before ``revision``; ``physical`` waits until it is gone from disk."""
    request = rpc_pb2.CompactionRequest(revision=revision, physical=physical)
    response = yield Call("KV", "Compact", request, idempotent=False, timeout=timeout)
    return Header.from_pb(response.header)
