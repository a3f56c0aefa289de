"""The durable raft log: segmented, checksummed, group-committed, repaired after a crash."""

from etcdx.wal.errors import CorruptWALError, WALLockedError
from etcdx.wal.replay import WalState
from etcdx.wal.wal import WAL

__all__ = ["WAL", "WalState", "CorruptWALError", "WALLockedError"]
