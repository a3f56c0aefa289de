"""Checking a snapshot stream as it arrives (pure).

etcd (and etcdx) end the Snapshot stream with the SHA-256 of the database
bytes before it; ``etcdctl snapshot save`` keeps the whole stream, trailer
included, and so do we. `SnapshotCheck` hashes everything but the last 32
bytes seen so far, so the check needs no second pass over the file.
"""

from __future__ import annotations

import hashlib

_DIGEST_SIZE = hashlib.sha256().digest_size


class SnapshotCorrupt(ValueError):
    """The snapshot's bytes do not match the SHA-256 the server appended."""


class SnapshotCheck:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._tail = b""
        self.received = 0

    def feed(self, blob: bytes) -> None:
        self.received += len(blob)
        buf = self._tail + blob
        if len(buf) > _DIGEST_SIZE:
            self._hash.update(buf[:-_DIGEST_SIZE])
            buf = buf[-_DIGEST_SIZE:]
        self._tail = buf

    def finish(self) -> None:
        """Raise `SnapshotCorrupt` unless the stream ended with the digest of what came before."""
        if len(self._tail) < _DIGEST_SIZE or self._hash.digest() != self._tail:
            raise SnapshotCorrupt(f"snapshot of {self.received} bytes fails its SHA-256 check")
