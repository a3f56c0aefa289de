"""A RangeRequest's sorting, revision filters and ``more`` flag, as etcd's
apply layer does them on top of the store's range.

Enum values are those of etcd's ``RangeRequest`` (``SortOrder``:
NONE=0, ASCEND=1, DESCEND=2; ``SortTarget``: KEY=0, VERSION=1, CREATE=2,
MOD=3, VALUE=4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from etcdx.mvcc.kvstore import RangeResult
from etcdx.pb import kv_pb2

NONE, ASCEND, DESCEND = 0, 1, 2
KEY, VERSION, CREATE, MOD, VALUE = 0, 1, 2, 3, 4

_SORT_KEYS: dict[int, Callable[[kv_pb2.KeyValue], int | bytes]] = {
    KEY: lambda kv: kv.key,
    VERSION: lambda kv: kv.version,
    CREATE: lambda kv: kv.create_revision,
    MOD: lambda kv: kv.mod_revision,
    VALUE: lambda kv: kv.value,
}


@dataclass
class RangeReply:
    kvs: list[kv_pb2.KeyValue]
    count: int      # matches before limit and filters, as etcd reports it
    revision: int   # response header revision
    more: bool      # more keys matched than ``limit`` returned


def execute_range(range_fn: Callable[..., RangeResult], key: bytes, range_end: bytes = b"", *,
                  revision: int = 0, limit: int = 0, sort_order: int = NONE,
                  sort_target: int = KEY, min_mod_revision: int = 0,
                  max_mod_revision: int = 0, min_create_revision: int = 0,
                  max_create_revision: int = 0, count_only: bool = False,
                  keys_only: bool = False) -> RangeReply:
    """Serve a RangeRequest through ``range_fn`` (``KVStore.range``, a
    ``TxnWrite.range``, or one bound to a read transaction).

    Ties in a sort keep key order (etcd's sort is unstable there).
    """
    if sort_target not in _SORT_KEYS or sort_order not in (NONE, ASCEND, DESCEND):
        raise ValueError("etcdserver: invalid sort option")
    filtered = any((min_mod_revision, max_mod_revision, min_create_revision,
                    max_create_revision))
    fetch = 0 if sort_order != NONE or filtered else limit
    result = range_fn(key, range_end, revision=revision, limit=fetch + 1 if fetch > 0 else 0,
                      count_only=count_only, keys_only=keys_only)
    kvs = result.kvs
    if filtered:
        kvs = [kv for kv in kvs
               if not (max_mod_revision and kv.mod_revision > max_mod_revision)
               and not (min_mod_revision and kv.mod_revision < min_mod_revision)
               and not (max_create_revision and kv.create_revision > max_create_revision)
               and not (min_create_revision and kv.create_revision < min_create_revision)]
    order = sort_order
    if sort_target != KEY and order == NONE:
        order = ASCEND  # etcd sorts by a non-key target ascending by default
    elif sort_target == KEY and order == ASCEND:
        order = NONE    # already in key order
    if order != NONE:
        kvs = sorted(kvs, key=_SORT_KEYS[sort_target], reverse=order == DESCEND)
    more = 0 < limit < len(kvs)
    if more:
        kvs = kvs[:limit]
    return RangeReply(kvs, result.count, result.revision, more)
