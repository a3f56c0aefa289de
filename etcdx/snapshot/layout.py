"""etcd's backend layout (3.4/3.5), and how etcdx's buckets map onto it.

Read from files real etcd writes (``etcdctl snapshot save``) and from etcd's
protos; each bucket's keys and values:

- ``key``: revision (``mvcc.revision``, 17 bytes, + ``t`` for a tombstone) →
  ``mvccpb.KeyValue``; a tombstone's value holds only the key. etcdx stores
  it byte for byte the same, so it is copied as is.
- ``meta``: ``consistent_index`` and ``term`` (8 bytes big-endian; ``term``
  since 3.5), ``scheduledCompactRev`` and ``finishedCompactRev`` (revisions).
  3.5 also keeps ``confState`` there, as JSON; restores rewrite it, and
  etcdx's own meta keys (its ``confState`` in protobuf, its compaction cursor)
  stay out of the export.
- ``lease``: lease id (8 bytes big-endian) → ``leasepb.Lease``.
- ``alarm``: ``etcdserverpb.AlarmMember`` (protobuf) → empty value.
- ``members``: member id in lower-case hex → JSON ``{"id", "peerURLs",
  "name", "clientURLs", "isLearner"}`` (empty names, URL lists and false
  omitted, as Go's ``omitempty``); ``members_removed``: hex id → ``removed``.
- ``cluster``: ``clusterVersion`` → e.g. ``3.5.0``.
- ``auth`` (``authRevision``, 8 bytes big-endian, 1 in a store that never
  changed auth; ``authEnabled``), ``authUsers``, ``authRoles``.
"""

from __future__ import annotations

import json
import struct

from google.protobuf.message import DecodeError

from etcdx.pb import lease_pb2, rpc_pb2
from etcdx.server.membership import Member

KEY = b"key"
META = b"meta"
LEASE = b"lease"
ALARM = b"alarm"
MEMBERS = b"members"
MEMBERS_REMOVED = b"members_removed"
CLUSTER = b"cluster"
AUTH = b"auth"
AUTH_USERS = b"authUsers"
AUTH_ROLES = b"authRoles"

BUCKETS = tuple(sorted((KEY, META, LEASE, ALARM, MEMBERS, MEMBERS_REMOVED, CLUSTER, AUTH,
                        AUTH_USERS, AUTH_ROLES)))
"""Every bucket an etcd backend has, in bbolt's (byte) order."""

META_CONSISTENT_INDEX = b"consistent_index"
META_TERM = b"term"
META_SCHEDULED_COMPACT = b"scheduledCompactRev"
META_FINISHED_COMPACT = b"finishedCompactRev"
META_KEYS = (META_CONSISTENT_INDEX, META_TERM, META_SCHEDULED_COMPACT, META_FINISHED_COMPACT)
"""The meta keys that mean the same in etcd and etcdx (and are carried across)."""

CLUSTER_VERSION_KEY = b"clusterVersion"
AUTH_REVISION_KEY = b"authRevision"
AUTH_ENABLED_KEY = b"authEnabled"
INITIAL_AUTH_REVISION = (1).to_bytes(8, "big")
REMOVED = b"removed"

_ALARM_KEY = struct.Struct(">QI")  # etcdx's alarm bucket key: member id, alarm type


class LayoutError(ValueError):
    """A bucket entry that does not have etcd's layout; the message names it."""


# -- leases ----------------------------------------------------------------------

def lease_to_etcd(lease_id: int, ttl: int, remaining_ttl: int) -> bytes:
    return lease_pb2.Lease(ID=lease_id, TTL=ttl, RemainingTTL=remaining_ttl).SerializeToString()


def lease_from_etcd(key: bytes, value: bytes) -> lease_pb2.Lease:
    lease = _parse(lease_pb2.Lease, value, f"lease {key.hex()}")
    if len(key) != 8 or int.from_bytes(key, "big", signed=True) != lease.ID:
        raise LayoutError(f"lease bucket: key {key.hex()} does not name lease {lease.ID:x}")
    return lease


# -- alarms ----------------------------------------------------------------------

def alarm_to_etcd(etcdx_key: bytes) -> bytes:
    member, alarm = _ALARM_KEY.unpack(etcdx_key)
    return rpc_pb2.AlarmMember(memberID=member, alarm=alarm).SerializeToString()


def alarm_from_etcd(key: bytes) -> bytes:
    """etcdx's alarm bucket key for etcd's."""
    am = _parse(rpc_pb2.AlarmMember, key, "alarm bucket key")
    return _ALARM_KEY.pack(am.memberID, am.alarm)


# -- members ---------------------------------------------------------------------

def member_key(member_id: int) -> bytes:
    return f"{member_id:x}".encode()


def member_to_etcd(m: Member) -> bytes:
    doc: dict = {"id": m.id, "peerURLs": list(m.peer_urls)}
    if m.name:
        doc["name"] = m.name
    if m.client_urls:
        doc["clientURLs"] = list(m.client_urls)
    if m.is_learner:
        doc["isLearner"] = True
    return json.dumps(doc, separators=(",", ":")).encode()


def member_from_etcd(key: bytes, value: bytes) -> Member:
    try:
        doc = json.loads(value)
        m = Member(id=int(doc["id"]), name=str(doc.get("name", "")),
                   peer_urls=[str(u) for u in doc.get("peerURLs") or []],
                   client_urls=[str(u) for u in doc.get("clientURLs") or []],
                   is_learner=bool(doc.get("isLearner", False)))
    except (ValueError, KeyError, TypeError) as err:
        raise LayoutError(f"members bucket: member {key!r} is not etcd's JSON: {err}") from None
    if member_key(m.id) != key:
        raise LayoutError(f"members bucket: key {key!r} does not name member {m.id:x}")
    return m


def removed_from_etcd(key: bytes) -> int:
    try:
        return int(key, 16)
    except ValueError:
        raise LayoutError(f"members_removed bucket: key {key!r} is not a hex member id") from None


def _parse(cls, raw: bytes, what: str):
    msg = cls()
    try:
        msg.ParseFromString(raw)
    except DecodeError as err:
        raise LayoutError(f"{what}: not a {cls.DESCRIPTOR.full_name}: {err}") from None
    return msg
