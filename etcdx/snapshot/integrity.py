"""etcd's snapshot trailer: the SHA-256 of the database, appended to the file.

``etcdctl snapshot save`` stores the database followed by the 32-byte SHA-256
the server sent after it. A bbolt file is a whole number of pages, so a file
whose size is 32 more than a multiple of 512 (the smallest sector size)
carries a trailer; a database copied out of a data dir has none, and etcd's
restore takes it only with ``--skip-hash-check``.
"""

from __future__ import annotations

import hashlib
import os

TRAILER_SIZE = hashlib.sha256().digest_size
_SECTOR = 512
_READ = 1 << 20


class IntegrityError(ValueError):
    """The snapshot's hash trailer is missing or does not match (etcd's messages)."""


def has_trailer(file_size: int) -> bool:
    return file_size % _SECTOR == TRAILER_SIZE


def verify(path: str | os.PathLike, skip_hash_check: bool = False) -> int:
    """Check the trailer as etcd's restore does; returns the database's size (without it)."""
    size = os.path.getsize(path)
    if not has_trailer(size):
        if not skip_hash_check:
            raise IntegrityError("snapshot missing hash but --skip-hash-check=false")
        return size
    db_size = size - TRAILER_SIZE
    if skip_hash_check:
        return db_size
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        left = db_size
        while left:
            chunk = fh.read(min(_READ, left))
            if not chunk:
                raise IntegrityError(f"{path}: shorter than it was a moment ago")
            digest.update(chunk)
            left -= len(chunk)
        expected = fh.read(TRAILER_SIZE)
    got = digest.digest()
    if expected != got:
        raise IntegrityError(f"expected sha256 {_go_bytes(expected)}, got {_go_bytes(got)}")
    return db_size


def _go_bytes(b: bytes) -> str:
    """A byte string as Go's %v prints a []byte, as etcd's message shows it."""
    return "[" + " ".join(str(x) for x in b) + "]"
