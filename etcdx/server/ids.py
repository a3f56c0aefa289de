"""Member, cluster and request ids, derived the way etcd derives them.

Deriving them identically means a member started with the same flags gets the
same ids under etcdx as under etcd (``8e9e05c52164694d`` for the defaults),
which tools and operators recognise.
"""

from __future__ import annotations

import hashlib
import itertools
import struct
import time


def member_id(peer_urls: list[str], cluster_token: str, now: float | None = None) -> int:
    """The first 8 bytes of SHA-1 over the sorted peer URLs, the token and (for a member added at runtime) the time."""
    b = "".join(sorted(peer_urls)).encode() + cluster_token.encode()
    if now is not None:
        b += str(int(now)).encode()
    return struct.unpack(">Q", hashlib.sha1(b).digest()[:8])[0]


def cluster_id(member_ids: list[int]) -> int:
    """The first 8 bytes of SHA-1 over the sorted member ids, each as 8 big-endian bytes."""
    b = b"".join(struct.pack(">Q", m) for m in sorted(member_ids))
    return struct.unpack(">Q", hashlib.sha1(b).digest()[:8])[0]


class IdGenerator:
    """Unique 64-bit ids per member: 16 bits of the member id, 40 bits of milliseconds, then a counter.

    Used for proposal ids and server-chosen lease ids; unique across restarts
    because the time part moves forward.
    """

    def __init__(self, member: int, now: float | None = None) -> None:
        ms = int((time.time() if now is None else now) * 1000) & ((1 << 40) - 1)
        start = ((member & 0xFFFF) << 48) | (ms << 8)
        self._counter = itertools.count(start + 1)

    def next(self) -> int:
        return next(self._counter) & 0xFFFFFFFFFFFFFFFF
