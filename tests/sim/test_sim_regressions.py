"""Seeds and setups that once failed, kept so they stay fixed."""

from etcdx.sim.network import LinkFaults
from etcdx.sim.profiles import PROFILES, Profile
from etcdx.sim.simulation import Options, Simulation


def test_heavily_duplicated_messages_keep_the_cluster_safe():
    """A duplicated forwarded proposal once restamped an entry already in the leader's log."""
    profile = Profile("duplicates", LinkFaults(duplicate=0.5, delay=1, jitter=8))
    for seed in range(6):
        print(f"seed {seed}")
        result = Simulation(seed, 3, profile, Options(steps=3000)).run()
        assert result.ok, f"seed {seed}: {result.violation}\n{result.trace}"


def test_a_candidate_that_crashed_before_persisting_its_vote_may_vote_again_in_that_term():
    """Seed 5327 crashed a candidate before its term and self-vote were durable; the monitor
    once counted that vote and reported the node's later vote as a double vote."""
    print("seed 5327")
    result = Simulation(5327, 7, PROFILES["chaos"], Options(steps=6000)).run()
    assert result.ok, f"{result.violation}\n{result.trace}"
