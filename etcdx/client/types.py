"""Typed results: plain frozen dataclasses built from etcd's protobuf responses.

Keys and values are ``bytes`` as etcd stores them; revisions, versions and
ids are ``int``. Every result that etcd gives a header keeps it, so callers can
read the store revision a response was served at.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass, field

from etcdx import keys
from etcdx.pb import auth_pb2, kv_pb2, rpc_pb2

KeyLike = str | bytes


def to_bytes(value: KeyLike) -> bytes:
    """Keys and values may be given as str (encoded UTF-8) or bytes."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"expected str or bytes, not {type(value).__name__}")


def prefix_range_end(prefix: KeyLike) -> bytes:
    """The range_end that makes [prefix, range_end) every key starting with ``prefix`` (``etcdx.keys``)."""
    return keys.prefix_range_end(to_bytes(prefix))


class EventType(enum.IntEnum):
    PUT = kv_pb2.Event.PUT
    DELETE = kv_pb2.Event.DELETE


class SortOrder(enum.IntEnum):
    NONE = rpc_pb2.RangeRequest.NONE
    ASCEND = rpc_pb2.RangeRequest.ASCEND
    DESCEND = rpc_pb2.RangeRequest.DESCEND


class SortTarget(enum.IntEnum):
    KEY = rpc_pb2.RangeRequest.KEY
    VERSION = rpc_pb2.RangeRequest.VERSION
    CREATE = rpc_pb2.RangeRequest.CREATE
    MOD = rpc_pb2.RangeRequest.MOD
    VALUE = rpc_pb2.RangeRequest.VALUE


class AlarmType(enum.IntEnum):
    NONE = rpc_pb2.NONE
    NOSPACE = rpc_pb2.NOSPACE
    CORRUPT = rpc_pb2.CORRUPT


class Permission(enum.IntEnum):
    READ = auth_pb2.Permission.READ
    WRITE = auth_pb2.Permission.WRITE
    READWRITE = auth_pb2.Permission.READWRITE


@dataclass(frozen=True, slots=True)
class Header:
    cluster_id: int
    member_id: int
    revision: int
    raft_term: int

    @classmethod
    def from_pb(cls, h: rpc_pb2.ResponseHeader) -> Header:
        return cls(h.cluster_id, h.member_id, h.revision, h.raft_term)


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int

    @classmethod
    def from_pb(cls, kv: kv_pb2.KeyValue) -> KeyValue:
        return cls(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


@dataclass(frozen=True, slots=True)
class GetResult:
    """A range's keys (``kvs``), whether more matched than ``limit`` allowed, and the total ``count``.

    Iterating yields the KeyValues; ``kv`` and ``value`` are the first one's, or None.
    """

    header: Header
    kvs: tuple[KeyValue, ...]
    more: bool
    count: int

    @classmethod
    def from_pb(cls, r: rpc_pb2.RangeResponse) -> GetResult:
        return cls(Header.from_pb(r.header), tuple(KeyValue.from_pb(kv) for kv in r.kvs), r.more, r.count)

    def __iter__(self) -> Iterator[KeyValue]:
        return iter(self.kvs)

    def __len__(self) -> int:
        return len(self.kvs)

    @property
    def kv(self) -> KeyValue | None:
        return self.kvs[0] if self.kvs else None

    @property
    def value(self) -> bytes | None:
        return self.kvs[0].value if self.kvs else None


@dataclass(frozen=True, slots=True)
class PutResult:
    header: Header
    prev_kv: KeyValue | None  # with prev_kv=True, the key before the put (None if it did not exist)

    @classmethod
    def from_pb(cls, r: rpc_pb2.PutResponse) -> PutResult:
        return cls(Header.from_pb(r.header), KeyValue.from_pb(r.prev_kv) if r.HasField("prev_kv") else None)


@dataclass(frozen=True, slots=True)
class DeleteResult:
    header: Header
    deleted: int
    prev_kvs: tuple[KeyValue, ...]  # with prev_kv=True

    @classmethod
    def from_pb(cls, r: rpc_pb2.DeleteRangeResponse) -> DeleteResult:
        return cls(Header.from_pb(r.header), r.deleted, tuple(KeyValue.from_pb(kv) for kv in r.prev_kvs))


@dataclass(frozen=True, slots=True)
class TxnResult:
    """Whether the compares held, and one result per op of the branch that ran."""

    header: Header
    succeeded: bool
    responses: tuple[GetResult | PutResult | DeleteResult | TxnResult, ...]

    @classmethod
    def from_pb(cls, r: rpc_pb2.TxnResponse) -> TxnResult:
        return cls(Header.from_pb(r.header), r.succeeded, tuple(_op_result(op) for op in r.responses))


def _op_result(op: rpc_pb2.ResponseOp) -> GetResult | PutResult | DeleteResult | TxnResult:
    kind = op.WhichOneof("response")
    if kind == "response_range":
        return GetResult.from_pb(op.response_range)
    if kind == "response_put":
        return PutResult.from_pb(op.response_put)
    if kind == "response_delete_range":
        return DeleteResult.from_pb(op.response_delete_range)
    if kind == "response_txn":
        return TxnResult.from_pb(op.response_txn)
    raise ValueError(f"txn response op of unknown kind {kind!r}")


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    kv: KeyValue  # for DELETE: the key, with mod_revision the delete's revision
    prev_kv: KeyValue | None  # with prev_kv=True

    @classmethod
    def from_pb(cls, e: kv_pb2.Event) -> Event:
        return cls(
            EventType(e.type), KeyValue.from_pb(e.kv), KeyValue.from_pb(e.prev_kv) if e.HasField("prev_kv") else None
        )

    @property
    def revision(self) -> int:
        return self.kv.mod_revision

    @property
    def is_create(self) -> bool:
        return self.type is EventType.PUT and self.kv.version == 1


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """One batch of a watch: whole revisions' ``events``, or a progress notification.

    A progress notification (``progress_notify``, no events) promises that every
    event up to ``revision`` has been delivered.
    """

    revision: int  # the header revision the server sent the batch at
    events: tuple[Event, ...]
    header: Header = field(compare=False)

    @property
    def progress_notify(self) -> bool:
        return not self.events

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)


@dataclass(frozen=True, slots=True)
class LeaseGrant:
    id: int
    ttl: int
    header: Header = field(compare=False)


@dataclass(frozen=True, slots=True)
class LeaseInfo:
    """TimeToLive: ``ttl`` is -1 when the lease does not exist (expired or revoked)."""

    id: int
    ttl: int
    granted_ttl: int
    keys: tuple[bytes, ...]
    header: Header = field(compare=False)

    @classmethod
    def from_pb(cls, r: rpc_pb2.LeaseTimeToLiveResponse) -> LeaseInfo:
        return cls(r.ID, r.TTL, r.grantedTTL, tuple(r.keys), Header.from_pb(r.header))


@dataclass(frozen=True, slots=True)
class Member:
    id: int
    name: str  # empty until a started member has published itself
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]
    is_learner: bool

    @classmethod
    def from_pb(cls, m: rpc_pb2.Member) -> Member:
        return cls(m.ID, m.name, tuple(m.peerURLs), tuple(m.clientURLs), m.isLearner)


@dataclass(frozen=True, slots=True)
class MemberAddResult:
    member: Member
    members: tuple[Member, ...]
    header: Header = field(compare=False)


@dataclass(frozen=True, slots=True)
class Status:
    """One member's Maintenance.Status (``header.member_id`` says which member answered)."""

    header: Header
    version: str
    db_size: int
    db_size_in_use: int
    leader: int
    raft_index: int
    raft_term: int
    raft_applied_index: int
    errors: tuple[str, ...]
    is_learner: bool

    @classmethod
    def from_pb(cls, r: rpc_pb2.StatusResponse) -> Status:
        return cls(
            Header.from_pb(r.header), r.version, r.dbSize, r.dbSizeInUse, r.leader,
            r.raftIndex, r.raftTerm, r.raftAppliedIndex, tuple(r.errors), r.isLearner,
        )  # fmt: skip

    @property
    def is_leader(self) -> bool:
        return self.leader != 0 and self.leader == self.header.member_id


@dataclass(frozen=True, slots=True)
class Alarm:
    member_id: int
    alarm: AlarmType


@dataclass(frozen=True, slots=True)
class HashKV:
    hash: int
    compact_revision: int
    header: Header = field(compare=False)


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot saved to ``path``: ``size`` bytes, ending with the SHA-256 etcd appends (checked)."""

    path: str
    size: int


@dataclass(frozen=True, slots=True)
class AuthStatus:
    enabled: bool
    auth_revision: int


@dataclass(frozen=True, slots=True)
class RolePermission:
    type: Permission
    key: bytes
    range_end: bytes

    @classmethod
    def from_pb(cls, p: auth_pb2.Permission) -> RolePermission:
        return cls(Permission(p.permType), p.key, p.range_end)
