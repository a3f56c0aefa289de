"""Known etcdx divergences from etcd 3.4, as found by these suites.

Each known bug is pinned by narrow tests, marked here as non-strict xfail (a fix
shows up as XPASS: then delete the entry); the broad comparisons (differential,
etcdctl transcripts) tolerate exactly that difference through
`compare.TOLERATED_ETCDX_BUGS` and stay strict about everything else. The bug
text is in the report (`pytest -rxX`). ETCDX_STRICT_CONFORMANCE=1 turns both
off to show the raw failures.

Found while the server was being written (first single-member server, Nov 2026);
each text says what etcd answers and what etcdx answered.
"""

from __future__ import annotations

import os

import pytest
from support import compare, procs

# registry key (also the key in compare.TOLERATED_ETCDX_BUGS) -> (text, tests pinning it).
# A broad comparison that must tolerate an entry checks `key in compare.TOLERATED_ETCDX_BUGS`
# for exactly that difference.
KNOWN_ETCDX_BUGS: dict[str, tuple[str, tuple[str, ...]]] = {}

# Found by these suites and fixed since (their tests pass strictly now):
# - rev0: an empty store was at revision 0 (etcd: 1), every revision one lower than etcd's;
# - compact-never: the compact revision started at 0 (etcd: -1), so Compact(0) answered
#   "compacted" and HashKV's compact_revision was 0 before any compaction;
# - watch-cancel-header: the compaction-cancel WatchResponse carried header.revision;
# - nonkv-header: MemberList, Alarm and Defragment headers carried a revision (etcd: 0);
# - txn-check-order: a txn's puts must be checked before its ranges, and within a txn put
#   the key (ignore_value/ignore_lease) before the lease;
# - keys-only-value-sort: keys_only ranges sorted by VALUE must sort by the stored values.


def pytest_configure(config):
    if not os.environ.get("ETCDX_STRICT_CONFORMANCE"):
        compare.TOLERATED_ETCDX_BUGS.update(KNOWN_ETCDX_BUGS)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ETCDX_STRICT_CONFORMANCE") or procs.candidate_kind() != "etcdx":
        return
    for item in items:
        for text, patterns in KNOWN_ETCDX_BUGS.values():
            if any(item.nodeid.endswith(pattern) for pattern in patterns):
                item.add_marker(pytest.mark.xfail(reason=text, strict=False))
