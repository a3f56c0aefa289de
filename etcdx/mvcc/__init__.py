"""The revisioned key space over the backend: range/put/delete/txn at a
revision, compaction, hashes, and the watch hub."""

from etcdx.mvcc.errors import CompactedError, FutureRevisionError
from etcdx.mvcc.kvstore import KVStore, RangeResult, TxnWrite

__all__ = ["CompactedError", "FutureRevisionError", "KVStore", "RangeResult", "TxnWrite"]
