"""Errors the WAL raises to its host."""

from __future__ import annotations


class CorruptWALError(Exception):
    """The log holds damage that a crash cannot explain, so it cannot be trusted.

    A crash can only tear the very last write; anything else (a bad record with
    valid records after it, damage in a segment that is not the last, a broken
    chain of checksums, a missing segment) means the disk or someone lost or
    altered acknowledged data. The member must refuse to start rather than
    serve from a log with a hole in it.
    """

    def __init__(self, path: str, offset: int, record_number: int, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.record_number = record_number
        self.reason = reason
        super().__init__(
            f"corrupt WAL record #{record_number} at offset {offset} of {path}: {reason}"
        )


class WALLockedError(Exception):
    """Another WAL object, in this process or another, has the directory open for writing."""

    def __init__(self, path: str) -> None:
        self.path = path
        super().__init__(f"WAL {path} is locked by another writer")
