"""The simulator catches a bug planted in the raft core, and names the property it breaks.

Each test runs seeds until the first violation (printing it) and checks that it
is the expected kind; a bug must be caught within a bounded number of seeds.
"""

import planted_bugs
import pytest

from etcdx.sim.invariants import (
    ELECTION_SAFETY,
    LEADER_COMPLETENESS,
    LINEARIZABILITY,
    LOG_MATCHING,
    RAFT_PANIC,
    STATE_MACHINE_SAFETY,
)
from etcdx.sim.profiles import PROFILES
from etcdx.sim.runner import combo
from etcdx.sim.simulation import Options, RunResult, Simulation

STEPS = 6000


def _first_violation(
    bug, profiles: list[str], seeds: int, sizes=(3, 5, 7)
) -> RunResult:
    for seed in range(seeds):
        nodes, profile = combo(seed, sizes, profiles)
        result = Simulation(
            seed, nodes, PROFILES[profile], Options(steps=STEPS, on_raw_node=bug)
        ).run()
        if not result.ok:
            print(
                f"{bug.__name__}: seed {seed} ({nodes} nodes, {profile}): {result.violation}"
            )
            return result
    pytest.fail(f"{bug.__name__} went unnoticed in {seeds} seeds of {profiles}")


@pytest.mark.parametrize(
    "bug, kind, profiles, seeds",
    [
        (
            planted_bugs.vote_twice_in_one_term,
            ELECTION_SAFETY,
            ["lossy", "elections", "chaos"],
            40,
        ),
        (planted_bugs.skip_persisting_the_vote, ELECTION_SAFETY, ["elections"], 100),
        (
            planted_bugs.count_stale_term_votes,
            ELECTION_SAFETY,
            ["lossy", "elections"],
            150,
        ),
        (
            planted_bugs.accept_appends_without_matching_previous_entry,
            LOG_MATCHING,
            ["membership", "partitions", "chaos"],
            60,
        ),
        (
            planted_bugs.grant_votes_to_stale_logs,
            LEADER_COMPLETENESS,
            ["lossy", "partitions", "chaos"],
            40,
        ),
        (planted_bugs.apply_one_entry_past_commit, STATE_MACHINE_SAFETY, ["calm"], 5),
        (
            planted_bugs.read_index_without_quorum_round,
            LINEARIZABILITY,
            ["pauses", "chaos"],
            100,
        ),
    ],
    ids=lambda v: getattr(v, "__name__", None),
)
def test_planted_bug_is_reported_as_the_property_it_breaks(bug, kind, profiles, seeds):
    result = _first_violation(bug, profiles, seeds)
    assert result.violation.kind == kind, result.trace
    assert "VIOLATION" in result.trace


def test_a_host_that_sends_before_writing_is_caught():
    """The server and the simulator share the host plan (etcdx.raft.host); a host that lets
    followers ack and vote before their write is durable loses committed entries when a
    write dies with its process, which the simulator's slow disks and crashes expose."""
    for seed in range(40):
        nodes, profile = combo(seed, (3, 5), ["crashes", "elections", "chaos"])
        result = Simulation(
            seed, nodes, PROFILES[profile], Options(steps=STEPS, plan=planted_bugs.send_before_persisting)
        ).run()
        if not result.ok:
            print(f"seed {seed} ({nodes} nodes, {profile}): {result.violation}")
            # A follower that acked entries it then lost also shows as a raft panic
            # (a leader's commit index beyond its log).
            assert result.violation.kind in (LEADER_COMPLETENESS, STATE_MACHINE_SAFETY, ELECTION_SAFETY, RAFT_PANIC), result.trace
            return
    pytest.fail("a host sending before persisting went unnoticed in 40 seeds")
