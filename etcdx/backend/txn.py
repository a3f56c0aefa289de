"""Read and write transactions over the backend's named buckets.

A ``ReadTxn`` sees one consistent snapshot of every bucket for its lifetime
(LMDB MVCC readers never block the writer). A ``WriteTxn`` is the single LMDB
write transaction of its environment: it commits on a clean ``with`` exit and
aborts when the block raises, so a batch of applied raft entries and the
consistent index that names them land together or not at all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType

import lmdb

from etcdx.backend import buckets


class ReadTxn:
    """A snapshot of the database; use as a context manager."""

    def __init__(self, txn: lmdb.Transaction, dbs: Mapping[bytes, lmdb._Database]) -> None:
        self._txn = txn
        self._dbs = dbs

    def __enter__(self) -> ReadTxn:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._txn.abort()

    def get(self, bucket: bytes, key: bytes) -> bytes | None:
        return self._txn.get(key, db=self._dbs[bucket])

    def scan(self, bucket: bytes, start: bytes, end: bytes | None = None,
             reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Items with ``start <= key < end`` (no upper bound when ``end`` is None)."""
        cursor = self._txn.cursor(db=self._dbs[bucket])
        if not reverse:
            if not cursor.set_range(start):
                return
            for key, value in cursor:
                if end is not None and key >= end:
                    return
                yield key, value
            return
        positioned = cursor.set_range(end) if end is not None else cursor.last()
        if end is not None:
            positioned = cursor.prev() if positioned else cursor.last()
        if not positioned:
            return
        for key, value in cursor.iterprev():
            if key < start:
                return
            yield key, value

    def cursor(self, bucket: bytes) -> lmdb.Cursor:
        """A raw LMDB cursor for hot paths; valid until the transaction ends."""
        return self._txn.cursor(db=self._dbs[bucket])

    def stat(self, bucket: bytes) -> dict[str, int]:
        return self._txn.stat(self._dbs[bucket])


class WriteTxn(ReadTxn):
    """The one write transaction; sees its own writes. ``on_commit`` gets each commit's duration."""

    def __init__(self, txn: lmdb.Transaction, dbs: Mapping[bytes, lmdb._Database],
                 on_commit: Callable[[float], None] | None = None) -> None:
        super().__init__(txn, dbs)
        self._on_commit = on_commit

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            if self._on_commit is None:
                self._txn.commit()
            else:
                started = time.perf_counter()
                self._txn.commit()
                self._on_commit(time.perf_counter() - started)
        else:
            self._txn.abort()

    def put(self, bucket: bytes, key: bytes, value: bytes) -> None:
        self._txn.put(key, value, db=self._dbs[bucket])

    def append(self, bucket: bytes, key: bytes, value: bytes) -> None:
        """Put a key greater than every key in the bucket (LMDB's fast append path)."""
        if not self._txn.put(key, value, append=True, db=self._dbs[bucket]):
            raise ValueError("append of a key that is not the greatest in the bucket")

    def delete(self, bucket: bytes, key: bytes) -> bool:
        return self._txn.delete(key, db=self._dbs[bucket])

    def set_consistent_index(self, index: int, term: int) -> None:
        """Record the last applied raft entry in the same transaction as its effects."""
        db = self._dbs[buckets.META]
        self._txn.put(buckets.META_CONSISTENT_INDEX, index.to_bytes(8, "big"), db=db)
        self._txn.put(buckets.META_TERM, term.to_bytes(8, "big"), db=db)
