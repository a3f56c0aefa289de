"""etcdx's Python client for etcd's v3 API: blocking (`Client`) and asyncio (`AsyncClient`).

Works against etcdx and etcd alike. Both faces have the same methods (the
asyncio ones are coroutines) because both run the same programs: the
requests, retry rules, result types and the lock, election and STM algorithms
are written once in this package, and `sync` and `aio` only carry them out
over gRPC's blocking and asyncio APIs. See docs/client.md.

    from etcdx.client import Client, txn

    with Client("127.0.0.1:2379") as client:
        client.put("config/mode", "fast")
        result = client.txn([txn.value("config/mode") == "fast"], [txn.put("config/ack", "1")])
        for response in client.watch_prefix("config/", start_revision=result.header.revision):
            ...
"""

from . import errors, txn
from .concurrency import Isolation
from .config import TLS
from .errors import (
    ClientClosed,
    ClientError,
    Compacted,
    ConnectionFailed,
    ConnectionLost,
    DeadlineExceeded,
    ElectionNotLeader,
    EtcdError,
    InvalidAuthToken,
    LeaseExpired,
    LeaseNotFound,
    LockLost,
    NoElectionLeader,
    NoLeader,
    TxnConflict,
    Unavailable,
    Unimplemented,
    WatchCanceled,
)
from .sync import Client, Election, Lease, Lock, Observer, Stm, Watch
from .types import (
    Alarm,
    AlarmType,
    AuthStatus,
    DeleteResult,
    Event,
    EventType,
    GetResult,
    HashKV,
    Header,
    KeyValue,
    LeaseGrant,
    LeaseInfo,
    Member,
    MemberAddResult,
    Permission,
    PutResult,
    RolePermission,
    SnapshotInfo,
    SortOrder,
    SortTarget,
    Status,
    TxnResult,
    WatchResponse,
    prefix_range_end,
)

__all__ = [
    "Alarm", "AlarmType", "AsyncClient", "AuthStatus", "Client", "ClientClosed", "ClientError", "Compacted",
    "ConnectionFailed", "ConnectionLost", "DeadlineExceeded", "DeleteResult", "Election", "ElectionNotLeader",
    "EtcdError", "Event", "EventType", "GetResult", "HashKV", "Header", "InvalidAuthToken", "Isolation",
    "KeyValue", "Lease", "LeaseExpired", "LeaseGrant", "LeaseInfo", "LeaseNotFound", "Lock", "LockLost",
    "Member", "MemberAddResult", "NoElectionLeader", "NoLeader", "Observer", "Permission", "PutResult",
    "RolePermission", "SnapshotInfo", "SortOrder", "SortTarget", "Status", "Stm", "TLS", "TxnConflict",
    "TxnResult", "Unavailable", "Unimplemented", "Watch", "WatchCanceled", "WatchResponse", "errors",
    "prefix_range_end", "txn",
]  # fmt: skip


def __getattr__(name: str) -> object:
    # The asyncio face imports grpc.aio; load it only for those who use it.
    if name == "AsyncClient":
        from .aio import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
