"""The embedded storage engine (LMDB): named buckets, batched write
transactions, consistent index, size, defragment and snapshots."""

from etcdx.backend.backend import Backend
from etcdx.backend.txn import ReadTxn, WriteTxn

__all__ = ["Backend", "ReadTxn", "WriteTxn"]
