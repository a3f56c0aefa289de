"""Key ranges as etcd's API spells them: one rule shared by the client and the server.

A plain module with no dependencies, below every other package, so that the
member (the Lock and Election recipes) and ``etcdx.client`` use the same code
without one importing the other.
"""

from __future__ import annotations


def prefix_range_end(prefix: bytes) -> bytes:
    """The range_end that makes [prefix, range_end) every key starting with ``prefix``.

    As in etcd: the last byte below 0xff is incremented and what follows it is
    dropped; a prefix of only 0xff bytes (or empty) means "to the end" (``\\0``).
    """
    p = bytearray(prefix)
    while p:
        if p[-1] < 0xFF:
            p[-1] += 1
            return bytes(p)
        p.pop()
    return b"\0"
