"""CI entry of the fault-injection harness (tests/faults): short schedules with fixed seeds.

Each case runs clients and watchers on every member for `DURATION` seconds
while the seeded nemesis kills, pauses and (with 3 members) partitions, then
checks the history. A case passes only if nothing was found, the check was
conclusive, and the run did real work (acknowledged operations of every type,
faults injected, watch events), so it cannot pass vacuously. A failure prints
the report: the faults, the smallest window the checker found, and where the
history was saved (`python3 -m tests.faults --recheck PATH` checks it again).

Longer randomized schedules: `python3 -m tests.faults --kind etcdx --members 1
--seeds 20 --duration 60` (see tests/faults/__main__.py).
"""

from __future__ import annotations

import pytest
from faults import (  # CLUSTER_KINDS: add "etcdx" there once clustering lands
    CLUSTER_KINDS,
    runner,
)
from faults.lying import LyingProxy
from support import procs

DURATION = 20.0
SEED = 1
CASES = [("etcd", 1), ("etcdx", 1)] + [(kind, 3) for kind in CLUSTER_KINDS]
# The runs on real etcd show the harness accuses no correct server; they are the long
# reference runs (`-m slow`), while the planted-bug tests below prove it can accuse.
PARAMS = [pytest.param(kind, n, id=f"{kind}-x{n}", marks=[pytest.mark.slow] if kind == "etcd" else [])
          for kind, n in CASES]

# Acknowledged operations a run must reach (a quiet 2-core box does 5-15x this).
MIN_ACKNOWLEDGED = 500
MIN_FAULTS = 3
MUST_SUCCEED = ("put", "get", "sget", "delete", "txn", "range", "put_lease", "keepalive", "lease_revoke")


def _assert_made_progress(report: runner.Report) -> None:
    assert report.ok_operations >= MIN_ACKNOWLEDGED, report.details()
    assert len(report.faults) >= MIN_FAULTS, report.details()
    assert report.watch_events > 0, report.details()
    assert report.progress_notifications > 0, report.details()
    for op_type in MUST_SUCCEED:
        assert report.counts.get(op_type, {}).get("ok", 0) > 0, f"no successful {op_type}\n{report.details()}"


@pytest.mark.parametrize(("kind", "members"), PARAMS)
def test_fault_schedule_finds_no_violation(kind: str, members: int) -> None:
    procs.require(kind)
    report = runner.run(kind, members, SEED, DURATION, log=print)
    print(report.details())
    assert not report.violations, report.details()
    assert report.linearizable is True, f"checker undecided: {report.explanation}\n{report.details()}"
    _assert_made_progress(report)


def test_harness_catches_a_server_that_serves_stale_reads(tmp_path) -> None:
    """Reads answered from a stale cache (a planted bug in a shim before a real etcd) must be flagged."""
    procs.require("etcd")
    shims: dict[str, LyingProxy] = {}

    def lying_front(endpoint: str) -> str:
        if endpoint not in shims:
            shims[endpoint] = LyingProxy(endpoint, seed=len(shims)).start()
        return shims[endpoint].endpoint

    try:
        report = runner.run("etcd", 1, SEED, 5.0, base_dir=tmp_path / "run", faults=False, front=lying_front)
    finally:
        for shim in shims.values():
            shim.close()
    print(report.details())
    assert sum(s.stale_answers for s in shims.values()) > 0
    assert report.linearizable is False, report.details()
    assert any("serializable read" in v for v in report.violations), report.details()
