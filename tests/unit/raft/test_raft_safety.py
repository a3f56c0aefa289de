"""Seeded random runs with message loss, partitions, restarts and membership changes,
checked for Raft's safety properties."""

from __future__ import annotations

import random

import pytest
from raft_testnet import Network

from etcdx.raft import ConfChange, ConfChangeType, ProposalDropped, StateType


def run(seed: int, steps: int) -> Network:
    rng = random.Random(seed)
    n = Network([1, 2, 3, 4, 5], seed=seed)
    n.filter = lambda m: rng.random() > 0.1
    leaders: dict[int, int] = {}
    proposed = 0
    for step in range(steps):
        roll = rng.random()
        if roll < 0.05:
            n.heal()
            a, b = rng.sample(n.ids, 2)
            n.isolate(a)
            if rng.random() < 0.5:
                n.cut(b, rng.choice(n.ids))
        elif roll < 0.08:
            n.heal()
        elif roll < 0.1:
            n.restart(rng.choice(n.ids))
        elif roll < 0.12:
            # Demote or promote node 5; the leader lets only one change be pending.
            kind = rng.choice([ConfChangeType.ADD_LEARNER_NODE, ConfChangeType.ADD_NODE])
            try:
                n.nodes[rng.choice(n.ids)].propose_conf_change(ConfChange(type=kind, node_id=5))
            except ProposalDropped:
                pass
        elif roll < 0.5:
            node = n.nodes[rng.choice(n.ids)]
            try:
                node.propose(b"v%d" % proposed)
                proposed += 1
            except ProposalDropped:
                pass
        for i in n.ids:
            n.nodes[i].tick()
        n.stabilize()
        for i in n.ids:
            r = n.nodes[i].raft
            if r.state == StateType.LEADER:
                # Election safety: at most one leader per term.
                assert leaders.setdefault(r.term, i) == i, f"two leaders in term {r.term}"
        check_applied_prefixes(n)
    return n


def check_applied_prefixes(n: Network) -> None:
    """State machine safety: no two nodes apply different entries at the same index."""
    logs = [[(e.index, e.term, e.data) for e in n.applied[i]] for i in n.ids]
    longest = max(logs, key=len)
    for log in logs:
        assert log == longest[: len(log)]


@pytest.mark.parametrize("seed", range(4))
def test_random_faults_never_break_safety(seed):
    print("seed", seed)
    n = run(seed, 1000)
    n.heal()
    n.filter = None
    n.tick_all(60)
    assert n.leader() is not None
    check_applied_prefixes(n)
    assert len({len(n.applied[i]) for i in n.ids}) == 1


def test_same_seed_gives_the_same_run():
    a = run(11, 150)
    b = run(11, 150)
    trace_a = [(m.type, m.from_, m.to, m.term, m.index) for m in a.trace]
    trace_b = [(m.type, m.from_, m.to, m.term, m.index) for m in b.trace]
    assert trace_a == trace_b
