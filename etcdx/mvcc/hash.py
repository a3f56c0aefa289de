"""Hashes of the ``key`` bucket, computed as etcd computes them.

etcd's HashKV is CRC-32C (Castagnoli) over the bucket name ``key`` and then
each revision key and KeyValue bytes up to the hashed revision, skipping
revisions at or below the compact revision that a compaction at the hashed
revision would remove. Since the bucket layout is etcd's, equal histories hash
equal across members and, where the bytes match, against etcd itself.
"""

from __future__ import annotations

import google_crc32c

from etcdx.backend import ReadTxn, buckets
from etcdx.mvcc import revision as rev
from etcdx.mvcc.errors import CompactedError, FutureRevisionError
from etcdx.mvcc.key_index import KeyIndex
from etcdx.mvcc.meta import revisions
from etcdx.pb import kv_pb2


def hash_all(txn: ReadTxn) -> int:
    """CRC-32C of the bucket name and every entry of the ``key`` bucket."""
    crc = google_crc32c.extend(0, buckets.KEY)
    for k, v in txn.scan(buckets.KEY, b""):
        crc = google_crc32c.extend(google_crc32c.extend(crc, k), v)
    return crc


def hash_kv(txn: ReadTxn, revision: int) -> tuple[int, int, int]:
    """(hash, compact_revision, hash_revision) of the key space at ``revision``
    (<= 0: current), as etcd's HashKV."""
    current, compacted = revisions(txn)
    if 0 < revision < compacted:
        raise CompactedError(compacted)
    if revision > current:
        raise FutureRevisionError(current)
    at = revision if revision > 0 else current
    index = KeyIndex(txn)
    crc, skipped = _hash_until(txn, index, at, compacted, skip_compactable=True)
    if skipped and not _any_live_key(index, at):
        # etcd skips only when the compaction would keep something.
        crc, _ = _hash_until(txn, index, at, compacted, skip_compactable=False)
    return crc, compacted, at


def _hash_until(txn: ReadTxn, index: KeyIndex, at: int, compacted: int,
                skip_compactable: bool) -> tuple[int, bool]:
    crc = google_crc32c.extend(0, buckets.KEY)
    skipped = False
    for k, v in txn.scan(buckets.KEY, b"", rev.encode(at + 1)):
        if skip_compactable and rev.main_of(k) <= compacted and not _kept(index, k, v, at):
            skipped = True
            continue
        crc = google_crc32c.extend(google_crc32c.extend(crc, k), v)
    return crc, skipped


def _kept(index: KeyIndex, k: bytes, v: bytes, at: int) -> bool:
    """Whether a compaction at ``at`` keeps this entry: the key's newest
    revision <= at, and live."""
    r = rev.decode(k)
    if r.tombstone:
        return False
    kv = kv_pb2.KeyValue()
    kv.ParseFromString(v)
    ref = index.ref(kv.key)
    latest = index.latest(ref, at) if ref is not None else None
    return latest is not None and (latest.main, latest.sub) == (r.main, r.sub)


def _any_live_key(index: KeyIndex, at: int) -> bool:
    for ref, entry in index.walk(b"", None):
        if entry.main > at:
            entry = index.latest(ref, at)
        if entry is not None and not entry.tombstone:
            return True
    return False
