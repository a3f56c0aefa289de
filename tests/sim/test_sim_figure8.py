"""Raft's figure 8, scripted on the simulator: why a leader may not commit an old-term
entry by counting replicas, and that the monitor notices when one does.

Five nodes. Leader A replicates an entry (index 3, A's term) to B only and crashes.
X wins the next term without it, writes its own index 3 and is cut off. A (or B)
wins a later term and copies the old index 3 to Y, one entry per message, while its
own term's entry never reaches Y. Counting replicas, the old entry is on a majority
(A, B, Y) — but X can still win an election with Y and W and overwrite it. So the
commit rule only counts entries of the leader's current term.

Every step is the simulator's own (seeded delays, election timeouts); the script only
partitions, crashes, restarts and waits for conditions, naming nodes by the role they
end up playing.
"""

from collections.abc import Callable

import planted_bugs

from etcdx.raft import RawNode, StateType
from etcdx.sim.invariants import LEADER_COMPLETENESS, Violation
from etcdx.sim.network import LinkFaults
from etcdx.sim.profiles import Profile
from etcdx.sim.simulation import Options, Simulation


def _figure_8(bug: Callable[[RawNode], None] | None) -> Violation | None:
    options = Options(
        steps=0, clients=0, pre_vote=False, max_msg_size=1, on_raw_node=bug
    )
    sim = Simulation(1, 5, Profile("script", LinkFaults(delay=1), reboot=0.0), options)
    n = sim.nodes

    def leader_among(ids) -> int | None:
        return next(
            (i for i in ids if n[i].raw is not None and n[i].role == StateType.LEADER),
            None,
        )

    def holds(i: int, index: int, term: int) -> bool:
        return n[i].disk.last_index() >= index and n[i].disk.term(index) == term

    def isolate(*groups: list[int]) -> None:
        sim.net.reconnect()
        sim.net.partition(groups)

    try:
        sim.step_until(
            lambda: leader_among(n) is not None and all(n[i].kv.applied >= 2 for i in n)
        )
        a = leader_among(n)
        term_a = n[a].term
        b, *rest = (i for i in n if i != a)
        isolate([a, b], rest)
        sim.propose(a, b"put 1 x 1")
        sim.step_until(lambda: holds(b, 3, term_a))
        sim.crash(a)

        sim.step_until(lambda: leader_among(rest) is not None)
        x = leader_among(rest)
        y, w = (i for i in rest if i != x)
        isolate([x], [a, b, y, w])
        sim.crash(x)
        assert holds(x, 3, n[x].term) and not holds(x, 3, term_a)

        sim.restart(a)
        isolate([x], [w], [a, b, y])
        sim.step_until(lambda: leader_among([a, b]) is not None)
        leader = leader_among([a, b])
        sim.step_until(lambda: holds(y, 3, term_a))
        sim.net.cut(leader, y)  # the leader's own-term entry never reaches Y
        for _ in range(100):
            sim.step()
        sim.crash(leader)

        isolate([a], [b], [x, y, w])
        sim.restart(x)
        sim.step_until(lambda: leader_among([x]) is not None)
    except Violation as v:
        print(sim.trace.render(20))
        return v
    return sim.run().violation


def test_committing_an_old_term_entry_by_counting_replicas_breaks_leader_completeness():
    violation = _figure_8(planted_bugs.commit_previous_term_by_counting_replicas)
    assert violation is not None and violation.kind == LEADER_COMPLETENESS


def test_figure_8_is_safe_when_only_current_term_entries_are_committed_by_counting():
    assert _figure_8(None) is None
