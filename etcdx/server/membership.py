"""The cluster's members as the server knows them, persisted in the ``members`` bucket."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

BUCKET = b"members"


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


def save_member(btx, m: Member) -> None:
    btx.put(BUCKET, member_key(m.id), m.encode())
