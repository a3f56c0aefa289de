"""The CI sweep: hundreds of seeds across every profile and 3, 5 and 7 nodes, all safe and live."""

from etcdx.sim.profiles import PROFILES
from etcdx.sim.runner import report_failure, run_seeds
from etcdx.sim.simulation import Options

SEEDS = 300
STEPS = 3000


def test_every_seed_keeps_raft_safe_live_and_linearizable(capsys):
    summary = run_seeds(range(SEEDS), [3, 5, 7], list(PROFILES), Options(steps=STEPS))
    with capsys.disabled():
        print(
            f"\nsim: {summary.runs} seeds x {STEPS} steps, {summary.ticks} ticks, "
            f"{summary.operations} client ops in {summary.seconds:.1f}s ({summary.cpu_seconds:.1f}s of CPU), "
            f"slowest recovery {summary.max_recovery_ticks} ticks"
        )
        for failure in summary.failures:
            report_failure(failure, STEPS)
    assert not summary.failures, f"failing seeds: {[r.seed for r in summary.failures]}"
