"""``python3 -m etcdx.sim`` reports progress, failing seeds with their trace, and its exit code."""

import planted_bugs

from etcdx.raft import RawNode
from etcdx.sim import node as sim_node
from etcdx.sim.__main__ import main


def test_passing_seeds_exit_zero(capsys):
    assert (
        main(
            [
                "--seeds",
                "3",
                "--steps",
                "600",
                "--nodes",
                "3",
                "--profile",
                "calm,chaos",
            ]
        )
        == 0
    )
    assert "all 3 seeds passed" in capsys.readouterr().out


class _ApplyingPastCommit(RawNode):
    def __init__(self, config):
        super().__init__(config)
        planted_bugs.apply_one_entry_past_commit(self)


def test_failing_seed_prints_its_trace_and_how_to_reproduce_it_and_exits_nonzero(
    capsys, monkeypatch
):
    monkeypatch.setattr(sim_node, "RawNode", _ApplyingPastCommit)
    assert (
        main(
            [
                "--seeds",
                "2",
                "--steps",
                "1500",
                "--nodes",
                "3",
                "--profile",
                "calm",
                "--trace",
                "20",
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "FAIL seed 0 (3 nodes, calm" in out
    assert "state-machine-safety" in out
    assert (
        "reproduce: python3 -m etcdx.sim --start 0 --seeds 1 --nodes 3 --profile calm --steps 1500"
        in out
    )
    assert "VIOLATION" in out
    assert "FAILED seeds: 0 1" in out
