"""A seed replays exactly: same seed, same trace; another seed, another trace."""

from etcdx.sim.profiles import PROFILES
from etcdx.sim.simulation import Options, Simulation


def _digest(seed: int, profile: str = "chaos", nodes: int = 5) -> str:
    sim = Simulation(seed, nodes, PROFILES[profile], Options(steps=1500, digest=True))
    result = sim.run()
    assert result.ok, f"seed {seed}: {result.violation}"
    return sim.trace.hexdigest()


def test_same_seed_replays_the_same_trace():
    for profile in ("chaos", "membership"):
        print(f"seed 11 profile {profile}")
        assert _digest(11, profile) == _digest(11, profile)


def test_different_seeds_give_different_traces():
    print("seeds 11 and 12")
    assert _digest(11) != _digest(12)
