"""A Python etcd client from PyPI (`aetcd` 1.0, asyncio over gRPC) used against etcdx.

aetcd 1.0 imports fine with protobuf 7 but ships its own generated etcd
protos, which cannot share a descriptor pool with etcdx.pb; so the scenario
(tests/support/aetcd_scenario.py: put, get, prefix get, delete, txn, watch,
lease, lease expiry, lock, a snapshot read back by etcdctl) runs in a child process of the same interpreter and
prints its observations as JSON. (`etcd3` 0.12 is not used: its generated code
predates protobuf 4 and does not import with protobuf 7.)

Needs `pip install aetcd==1.0.0`; skipped with that reason when it is missing.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import pytest
from support import procs

SCENARIO = pathlib.Path(__file__).resolve().parents[1] / "support" / "aetcd_scenario.py"

pytestmark = pytest.mark.timeout(120)


def require_aetcd() -> None:
    r = subprocess.run(
        [sys.executable, "-c", "import aetcd"],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        pytest.skip("aetcd not installed (pip install aetcd==1.0.0)")


def run_scenario(member: procs.Member) -> dict:
    r = subprocess.run(
        [sys.executable, str(SCENARIO), member.endpoint],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert r.returncode == 0, (
        f"aetcd scenario failed against {member}:\n{r.stderr[-4000:]}\n"
        f"--- server log tail ---\n{member.log_tail(30)}"
    )
    return json.loads(r.stdout)


def test_aetcd_works_against_etcdx(etcdx_server):
    require_aetcd()
    obs = run_scenario(etcdx_server)
    rev = obs["put_revision"]
    assert obs["put_prev_kv"]["value"] == "1"
    assert obs["get"] == {
        "key": "a",
        "value": "2",
        "version": 2,
        "create_revision": rev,
        "mod_revision": rev + 1,
        "has_lease": False,
    }
    assert obs["get_missing"] is None
    assert [kv["key"] for kv in obs["get_prefix"]] == ["p/1", "p/2", "p/3"]
    assert obs["get_prefix_desc_keys"] == ["p/3", "p/2", "p/1"]
    assert obs["get_all_count"] == 5
    assert obs["delete"]["deleted"] == 1 and obs["delete"]["prev"]["value"] == "p/1-v"
    assert obs["delete_missing"] is True
    assert obs["delete_prefix"] == 2
    assert obs["txn_succeeded"] is True
    assert obs["txn_failed_branch"] == [False, None]
    events = obs["watch_events"]
    assert [(e["kind"], e["key"], e["value"], e["prev"]) for e in events] == [
        ("PUT", "w/1", "x", ""),
        ("PUT", "w/2", "y", ""),
        ("PUT", "w/1", "z", "x"),
        ("DELETE", "w/2", "", "y"),
    ]
    revs = [e["mod_revision"] for e in events]
    assert revs == list(range(revs[0], revs[0] + 4))
    assert [e[:2] for e in obs["watch_once"]] == [
        ["PUT", "p/1"],
        ["PUT", "p/2"],
        ["PUT", "p/3"],
        ["DELETE", "p/1"],
        ["DELETE", "p/2"],
        ["DELETE", "p/3"],
    ]
    assert obs["lease_granted_ttl"] == 30
    assert obs["lease_info"] == {
        "grantedTTL": 30,
        "keys": ["leased"],
        "ttl_positive": True,
    }
    assert obs["lease_refresh_ttl"] == 30
    assert obs["leased_key_after_revoke"] is None
    assert obs["lease_info_after_revoke_ttl"] == -1
    assert (
        obs["short_lease_ttl"] == 2
    )  # raised to the minimum, as etcd does with a 1 s election timeout
    assert obs["short_lease_expired"] is True
    assert obs["lock_acquired"] is True and obs["lock_is_acquired"] is True
    assert obs["contended_acquire"] is False
    assert obs["lock_after_release"] is True
    assert obs["lock_key_after_release"] is None
    if obs["snapshot_revision"] is not None:
        assert obs["snapshot_revision"] == obs["final_revision"] - 1


@pytest.mark.etcd
def test_aetcd_sees_the_same_as_against_etcd(member_group):
    """The whole scenario, revisions included, observes the same on etcd and etcdx."""
    require_aetcd()
    procs.require("etcd")
    procs.require(procs.candidate_kind())
    ref = member_group.new("etcd", start=False)
    cand = member_group.new(procs.candidate_kind(), start=False)
    procs.start_members([ref, cand])
    a, b = run_scenario(ref), run_scenario(cand)
    differing = {
        k: (a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
    }
    assert not differing, "observations differ (etcd, etcdx):\n" + "\n".join(
        f"  {k}: {v[0]!r}\n  {' ' * len(k)}  {v[1]!r}" for k, v in differing.items()
    )
