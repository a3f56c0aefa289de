"""The Maintenance.Snapshot stream: the exported database in chunks, then its SHA-256."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator

from etcdx.backend import Backend
from etcdx.snapshot.export import export_backend


def snapshot_chunks(backend: Backend, scratch_dir: str, *, cluster_version: str,
                    chunk_size: int = 32 * 1024) -> Iterator[tuple[bytes, int]]:
    """(blob, bytes remaining after it) for each message of the stream.

    The database is exported to a scratch file in ``scratch_dir`` first (the
    bbolt writer seeks back to write its meta pages), then sent; as etcd
    does, the last message is the SHA-256 of the database, which ``etcdctl
    snapshot save`` checks and keeps as the file's trailer. Blocking: call it
    off the event loop.
    """
    with tempfile.TemporaryFile(dir=scratch_dir) as fh:
        size = export_backend(backend, fh, cluster_version=cluster_version)
        digest = hashlib.sha256()
        total = size + digest.digest_size
        fh.seek(0)
        sent = 0
        while sent < size:
            chunk = fh.read(min(chunk_size, size - sent))
            if not chunk:
                raise RuntimeError(f"snapshot scratch file ended at {sent} of {size} bytes")
            digest.update(chunk)
            sent += len(chunk)
            yield chunk, total - sent
        yield digest.digest(), 0
