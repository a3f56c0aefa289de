"""Store-wide revisions kept in the backend: current and compaction progress.

The current revision is derived from the newest entry of the ``key`` bucket
(or the compact revision, when compaction removed a trailing tombstone), so
every process that opens the backend sees the writer's revision.
"""

from __future__ import annotations

from etcdx.backend import ReadTxn, buckets
from etcdx.mvcc import revision as rev

META_SCHEDULED_COMPACT = b"scheduledCompactRev"
META_FINISHED_COMPACT = b"finishedCompactRev"
# etcd's store starts at revision 1 (the first write is revision 2) and reports
# compact revision -1 until the first compaction.
INITIAL_REVISION = 1
NO_COMPACTION = -1

# The ``key`` bucket position from which a scheduled compaction resumes (etcdx's own).
META_COMPACT_CURSOR = b"etcdxCompactCursor"


def current_revision(txn: ReadTxn) -> int:
    """The store revision as seen by ``txn``."""
    return revisions(txn)[0]


def revisions(txn: ReadTxn) -> tuple[int, int]:
    """(current revision, compact revision) as seen by ``txn``."""
    cursor = txn.cursor(buckets.KEY)
    newest = rev.main_of(cursor.key()) if cursor.last() else INITIAL_REVISION
    compacted = compact_revision(txn)
    return max(newest, compacted), compacted


def compact_revision(txn: ReadTxn) -> int:
    """The revision of the last scheduled compaction (etcd's compactMainRev),
    -1 before the first."""
    return meta_revision(txn, META_SCHEDULED_COMPACT)


def meta_revision(txn: ReadTxn, name: bytes) -> int:
    raw = txn.get(buckets.META, name)
    return rev.main_of(raw) if raw else NO_COMPACTION
