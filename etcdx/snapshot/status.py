"""``snapshot status``: hash, revision, key count and size of a snapshot file, as etcd reports them.

The hash is CRC-32C over every bucket's name, keys and values in order (a
nested bucket counts as a key without value), the revision is the main
revision of the last ``key`` bucket entry, the key count counts every key of
every bucket and the size is the database's (pages in use). The file must
pass bbolt's consistency check first, as etcd requires.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import google_crc32c

from etcdx.bbolt import CorruptDatabaseError, Reader
from etcdx.mvcc import revision as rev
from etcdx.snapshot import layout


@dataclass(frozen=True)
class Status:
    hash: int
    revision: int
    total_key: int
    total_size: int

    def to_json(self) -> dict[str, int]:
        """etcd's JSON field names."""
        d = asdict(self)
        return {"hash": d["hash"], "revision": d["revision"], "totalKey": d["total_key"],
                "totalSize": d["total_size"]}


def status(path: str | os.PathLike) -> Status:
    """The status of the snapshot (or database) file at ``path``.

    Raises ``OSError`` for an unreadable file and ``CorruptDatabaseError``
    for one that is not a consistent bbolt database.
    """
    with Reader(path) as reader:
        problems = reader.check()
        if problems:
            raise CorruptDatabaseError(
                f"snapshot file integrity check failed. {len(problems)} errors found.\n" + "\n".join(problems))
        crc = 0
        revision = total = 0
        root = reader.root()
        for name, value in root.items():
            bucket = root.bucket(name) if value is None else None
            if bucket is None:
                raise CorruptDatabaseError(f"cannot get hash of bucket {name.decode(errors='replace')}")
            crc = google_crc32c.extend(crc, name)
            is_key = name == layout.KEY
            for key, value in bucket.items():
                crc = google_crc32c.extend(crc, key)
                if value:
                    crc = google_crc32c.extend(crc, value)
                if is_key:
                    revision = rev.main_of(key)
                total += 1
        return Status(crc, revision, total, reader.size)
