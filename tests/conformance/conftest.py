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

WATCH_CANCEL_HEADER = (
    "etcdx#watch-cancel-header: the WatchResponse canceling a watcher whose start revision was "
    "compacted has header.revision 0 on etcd, the current revision on etcdx"
)
NONKV_HEADER = (
    "etcdx#nonkv-header: MemberList, Alarm and Defragment responses have header.revision 0 on etcd 3.4, "
    "the current revision on etcdx"
)
TXN_CHECK_ORDER = (
    "etcdx#txn-check-order: etcd validates every put on the txn's taken path (lease exists; key "
    "exists for ignore_value/ignore_lease) before any range's revision, so a txn holding both a bad "
    "put and a future/compacted range gets 'requested lease not found'/'key not found' on etcd but "
    "'required revision is a future revision'/'has been compacted' on etcdx; and within one txn "
    "put etcd checks the key (ignore_value/ignore_lease) before the lease, etcdx the lease first "
    "(a plain Put checks the lease first on both)"
)
KEYS_ONLY_VALUE_SORT = (
    "etcdx#keys-only-value-sort: with keys_only and sort_target=VALUE etcd sorts by the stored "
    "values (it strips values after sorting and limiting); etcdx sorts as if every value were "
    "empty, i.e. by key"
)

# registry key (also the key in compare.TOLERATED_ETCDX_BUGS) -> (text, tests pinning it)
KNOWN_ETCDX_BUGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "watch-cancel-header": (
        WATCH_CANCEL_HEADER,
        (
            "test_headers.py::test_compaction_cancel_response_has_no_header_revision[etcdx]",
        ),
    ),
    "txn-check-order": (
        TXN_CHECK_ORDER,
        (
            "test_errors.py::test_bad_input_gets_etcds_answer[etcdx-txn_put_checks_precede_range_checks_lease]",
            "test_errors.py::test_bad_input_gets_etcds_answer[etcdx-txn_put_checks_precede_range_checks_ignore_value]",
            "test_errors.py::test_bad_input_gets_etcds_answer[etcdx-txn_put_checks_precede_range_checks_nested]",
            "test_errors.py::test_bad_input_gets_etcds_answer[etcdx-txn_put_key_check_precedes_lease_check]",
        ),
    ),
    "keys-only-value-sort": (
        KEYS_ONLY_VALUE_SORT,
        ("test_pinned.py::test_keys_only_range_sorts_by_the_real_values[etcdx]",),
    ),
    "nonkv-header": (
        NONKV_HEADER,
        (
            "test_headers.py::test_header_revision[etcdx-MemberList]",
            "test_headers.py::test_header_revision[etcdx-AlarmGet]",
            "test_headers.py::test_header_revision[etcdx-Defragment]",
        ),
    ),
}

# Fixed since first found (kept for the record; their tests now pass strictly):
# - an empty store was at revision 0 (etcd: 1), every revision one lower than etcd's;
# - the compact revision started at 0 (etcd: -1): Compact(0) answered "compacted" and
#   HashKV's compact_revision was 0 before any compaction.


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
