"""Which keys a lease holds: bucket ``lease_keys``, one row per (lease, key).

Kept in the backend rather than in RAM (no per-key structure in memory), so a
revoke is one prefix scan. A row's key is the lease's 8-byte id then the user
key. LMDB keys are limited to 511 bytes, so a user key longer than
``_INLINE`` is stored by its SHA-256, padded to a length no inline key has,
with the full key as the row's value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from etcdx.lease.lease import id_key

BUCKET = b"lease_keys"
_INLINE = 400
_HASHED_LEN = 448


def row_key(lease_id: int, key: bytes) -> tuple[bytes, bytes]:
    """The row (key, value) that attaches ``key`` to ``lease_id``."""
    if len(key) <= _INLINE:
        return id_key(lease_id) + key, b""
    digest = hashlib.sha256(key).digest()
    return id_key(lease_id) + digest.ljust(_HASHED_LEN, b"\0"), key


def scan(txn, lease_id: int) -> Iterator[tuple[bytes, bytes]]:
    """(row key, user key) of every key attached to ``lease_id``, in row order."""
    prefix = id_key(lease_id)
    end = (int.from_bytes(prefix, "big") + 1).to_bytes(8, "big") if prefix != b"\xff" * 8 else None
    for row, value in txn.scan(BUCKET, prefix, end):
        yield row, (value if value else row[8:])
