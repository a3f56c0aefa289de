"""The cluster's members as the server knows them, persisted in the ``members`` bucket.

Membership changes travel through the raft log as conf-change entries whose
context is the member (JSON). Applying one updates raft's configuration (the
server's job) and this bucket in the same backend transaction as the
consistent index, so a restarted member knows exactly the members as of its
last applied entry. Removed ids are remembered in ``members_removed`` and can
never come back, as in etcd.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from etcdx.raft.types import ConfChange, ConfChangeType
from etcdx.server import errors

BUCKET = b"members"
REMOVED_BUCKET = b"members_removed"
MAX_LEARNERS = 1


@dataclass
class Member:
    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str] = field(default_factory=list)
    is_learner: bool = False

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> "Member":
        return cls(**json.loads(data))


def member_key(member_id: int) -> bytes:
    return member_id.to_bytes(8, "big")


def load_members(backend) -> dict[int, Member]:
    with backend.read() as rtx:
        return {m.id: m for m in (Member.decode(v) for _, v in rtx.scan(BUCKET, b""))}


def load_removed(backend) -> set[int]:
    with backend.read() as rtx:
        return {int.from_bytes(k, "big") for k, _ in rtx.scan(REMOVED_BUCKET, b"")}


def save_member(btx, m: Member) -> None:
    btx.put(BUCKET, member_key(m.id), m.encode())


def validate_conf_change(members: dict[int, Member], removed: set[int], cc: ConfChange) -> None:
    """etcd's checks of a membership change against the current members; raises EtcdError.

    Run when proposing (to answer the client early) and again when applying
    (the members may have changed in between); a change that fails at apply
    time becomes a no-op on every member alike.
    """
    nid = cc.node_id
    if cc.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
        m = Member.decode(cc.context)
        if nid in removed:
            raise errors.MEMBER_EXISTS  # etcd: "ID removed" maps to this client error
        existing = members.get(nid)
        if cc.type == ConfChangeType.ADD_NODE and existing is not None and existing.is_learner:
            return  # a promotion
        if existing is not None:
            raise errors.MEMBER_EXISTS
        urls = {u for other in members.values() for u in other.peer_urls}
        if any(u in urls for u in m.peer_urls):
            raise errors.PEER_URL_EXISTS
        if cc.type == ConfChangeType.ADD_LEARNER_NODE:
            if sum(1 for other in members.values() if other.is_learner) >= MAX_LEARNERS:
                raise errors.TOO_MANY_LEARNERS
    elif cc.type == ConfChangeType.REMOVE_NODE:
        if nid not in members:
            raise errors.MEMBER_NOT_FOUND
    elif cc.type == ConfChangeType.UPDATE_NODE:
        if nid not in members:
            raise errors.MEMBER_NOT_FOUND
        m = Member.decode(cc.context)
        urls = {u for other in members.values() if other.id != nid for u in other.peer_urls}
        if any(u in urls for u in m.peer_urls):
            raise errors.PEER_URL_EXISTS


def apply_conf_change(btx, members: dict[int, Member], cc: ConfChange) -> None:
    """Record a validated change in ``members`` and in the buckets (same transaction as the index)."""
    nid = cc.node_id
    if cc.type in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER_NODE):
        existing = members.get(nid)
        if existing is not None and cc.type == ConfChangeType.ADD_NODE:
            existing.is_learner = False
            m = existing
        else:
            m = Member.decode(cc.context)
            m.is_learner = cc.type == ConfChangeType.ADD_LEARNER_NODE
            members[nid] = m
        save_member(btx, m)
    elif cc.type == ConfChangeType.REMOVE_NODE:
        members.pop(nid, None)
        btx.delete(BUCKET, member_key(nid))
        btx.put(REMOVED_BUCKET, member_key(nid), b"removed")
    elif cc.type == ConfChangeType.UPDATE_NODE:
        m = members[nid]
        m.peer_urls = Member.decode(cc.context).peer_urls
        save_member(btx, m)
