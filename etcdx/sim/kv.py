"""The toy key-value state machine the simulated cluster replicates.

Commands are tiny text records in entry data. Each carries the client request
id, and the machine applies a request id at most once: the network may
duplicate a forwarded proposal, and a duplicate applied again later would make
an old write reappear, which is the client's problem in real etcd too (it is
solved there by the request id in the internal request as well).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Put:
    request_id: int
    key: str
    value: int

    def encode(self) -> bytes:
        return f"put {self.request_id} {self.key} {self.value}".encode()


def decode(data: bytes) -> Put | None:
    """The command in an entry's data; None for the leader's empty entries."""
    if not data:
        return None
    verb, request_id, key, value = data.decode().split(" ")
    if verb != "put":
        raise ValueError(f"unknown command {data!r}")
    return Put(int(request_id), key, int(value))


class KVStore:
    """The replicated map plus the applied index it reflects."""

    __slots__ = ("applied", "seen", "values")

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.seen: set[int] = set()
        self.applied = 0

    def apply(self, index: int, data: bytes) -> Put | None:
        """Apply the entry at ``index``; returns the put it performed, if any."""
        self.applied = index
        cmd = decode(data)
        if cmd is None or cmd.request_id in self.seen:
            return None
        self.seen.add(cmd.request_id)
        self.values[cmd.key] = cmd.value
        return cmd

    def get(self, key: str) -> int | None:
        return self.values.get(key)

    def snapshot(self) -> bytes:
        return json.dumps(
            {"values": self.values, "seen": sorted(self.seen), "applied": self.applied},
            sort_keys=True,
        ).encode()

    @classmethod
    def restore(cls, data: bytes) -> KVStore:
        kv = cls()
        if data:
            doc = json.loads(data)
            kv.values = dict(doc["values"])
            kv.seen = set(doc["seen"])
            kv.applied = doc["applied"]
        return kv
