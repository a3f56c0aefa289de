"""A lease and the form it is stored in (bucket ``lease``)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

NO_LEASE = 0
"""The id that means "no lease" (a key without one)."""

MAX_LEASE_TTL = 9_000_000_000
"""etcd's limit in seconds: about 285 years, far below int64 nanoseconds' overflow."""

FOREVER = math.inf
"""The expiry of every lease on a member that is not the primary: only the leader expires leases."""

_STORED = struct.Struct(">qqq")  # id, ttl, remaining ttl
_ID = struct.Struct(">Q")


@dataclass(slots=True)
class Lease:
    """One lease. Read-only outside the Lessor, which owns and mutates it.

    ``remaining_ttl`` is the last checkpointed remaining TTL (0: none), which a
    new leader uses instead of ``ttl`` so long leases are not reset by every
    election. ``expiry`` is on the host's monotonic clock.
    """

    id: int
    ttl: int
    remaining_ttl: int = 0
    expiry: float = FOREVER

    def remaining(self, now: float) -> float:
        """Seconds until expiry (negative once expired; infinite off the primary)."""
        return self.expiry - now

    def refresh(self, now: float, extend: float = 0.0) -> None:
        """Restart the countdown from the checkpointed remaining TTL, else the full TTL."""
        self.expiry = now + extend + (self.remaining_ttl if self.remaining_ttl > 0 else self.ttl)


def id_key(lease_id: int) -> bytes:
    """The 8-byte big-endian key of an int64 id (negative ids sort after positive ones, as in etcd)."""
    return _ID.pack(lease_id & 0xFFFF_FFFF_FFFF_FFFF)


def encode(lease: Lease) -> bytes:
    return _STORED.pack(lease.id, lease.ttl, lease.remaining_ttl)


def decode(value: bytes) -> Lease:
    lease_id, ttl, remaining_ttl = _STORED.unpack(value)
    return Lease(lease_id, ttl, remaining_ttl)
