"""Known etcdx divergences from etcd 3.4, as found by these suites.

Each entry marks the tests that currently fail because of a documented etcdx
bug as non-strict xfail: they still run in full, a fix shows up as XPASS (then
delete the entry), and the bug text is in the report (`pytest -rxX`). Set
ETCDX_STRICT_CONFORMANCE=1 to run without these marks and see the raw failures.

Found while the server was being written (first single-member server, Nov 2026);
each text says what etcd answers and what etcdx answered.
"""

from __future__ import annotations

import os

import pytest

from support import procs

REV0 = ("etcdx#rev0: an empty store is at revision 0 (etcd: 1), so every revision etcdx reports is one "
        "lower than etcd's (first put: header/create/mod revision 1, etcd 2)")
COMPACT_NEVER = ("etcdx#compact-never: before any compaction etcd's compact revision is -1: Compact(revision=0) "
                 "succeeds on etcd but gets OUT_OF_RANGE 'required revision has been compacted' on etcdx, and "
                 "HashKV's compact_revision is -1 on etcd but 0 on etcdx")
WATCH_CANCEL_HEADER = ("etcdx#watch-cancel-header: the WatchResponse canceling a watcher whose start revision was "
                       "compacted has header.revision 0 on etcd, the current revision on etcdx")
MEMBER_LIST_HEADER = ("etcdx#memberlist-header: MemberListResponse.header.revision is 0 on etcd 3.4 (non-KV call), "
                      "the current revision on etcdx")

KNOWN_ETCDX_BUGS: dict[str, tuple[str, ...]] = {
    "test_differential.py::test_etcdx_matches_etcd_on_random_sequences": (REV0, COMPACT_NEVER, WATCH_CANCEL_HEADER),
    "test_differential.py::test_short_lease_ttl_is_raised_to_the_minimum": (REV0,),
    "test_differential.py::test_live_watch_sees_the_same_events": (REV0,),
    "test_errors.py::test_bad_input_gets_etcds_answer[etcdx-range_at_compaction_revision_is_served]": (REV0,),
    "test_etcdctl.py::test_put_get_del_flags": (REV0,),
    "test_etcdctl.py::test_txn_interactive": (REV0,),
    "test_etcdctl.py::test_compaction": (REV0,),
    "test_etcdctl.py::test_watch": (REV0,),
    "test_etcdctl.py::test_lease_commands": (REV0,),
    "test_etcdctl.py::test_endpoint_member_alarm_defrag": (REV0, COMPACT_NEVER, MEMBER_LIST_HEADER),
    "test_etcdctl.py::test_hashkv_agrees_with_etcd_for_the_same_history": (COMPACT_NEVER,),
    "test_python_client.py::test_aetcd_sees_the_same_as_against_etcd": (REV0,),
}


def pytest_collection_modifyitems(config, items):
    if os.environ.get("ETCDX_STRICT_CONFORMANCE") or procs.candidate_kind() != "etcdx":
        return
    for item in items:
        for pattern, bugs in KNOWN_ETCDX_BUGS.items():
            if item.nodeid.endswith(pattern):
                item.add_marker(pytest.mark.xfail(reason=" | ".join(bugs), strict=False))
