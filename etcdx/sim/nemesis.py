"""The nemesis: the faults a profile asks for, injected every few ticks.

It partitions the network (a new partition replaces the last one; sometimes the
leader is cut off in a minority, its clock stalled), slows links, pauses
processes, stalls clocks, crashes members at chosen points of the host loop and
restarts them, changes the membership (learners, promotions, removals, joint
swaps left automatically or explicitly) and moves leadership.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from etcdx.raft import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
    MemoryStorage,
    ProposalDropped,
)
from etcdx.sim.clock import ELECTION_TICK, TICK
from etcdx.sim.network import LinkFaults
from etcdx.sim.node import SimNode

if TYPE_CHECKING:
    from etcdx.sim.simulation import Simulation


class Nemesis:
    """Acts on one simulation, drawing every choice from its seeded generator."""

    def __init__(self, sim: Simulation, nodes: int) -> None:
        self.sim = sim
        self._next_id = nodes + 1
        self._max_voters = nodes + 2

    def active(self) -> bool:
        """Whether the profile asks for any fault at all."""
        p = self.sim.profile
        return any(
            (
                p.partition,
                p.heal,
                p.slow_link,
                p.pause,
                p.clock_stall,
                p.crash,
                p.restart,
                p.membership,
                p.transfer,
            )
        )

    def act(self) -> None:
        """Pick one fault by the profile's weights and inject it."""
        p = self.sim.profile
        actions = [
            (p.idle, lambda: None),
            (p.partition, self._partition),
            (p.heal, self._heal_network),
            (p.slow_link, self._slow_link),
            (p.pause, self._pause_some),
            (p.clock_stall, self._stall_clock),
            (p.crash, self._crash_some),
            (p.restart, self._restart_some),
            (p.membership, self._change_membership),
            (p.transfer, self._transfer_leader),
        ]
        weights = [w for w, _ in actions]
        _, action = self.sim.rng.choices(actions, weights)[0]
        action()

    def _members(self) -> list[int]:
        return sorted(n.id for n in self.sim.nodes.values() if not n.removed)

    def _partition(self) -> None:
        """Replace the current partition: a random split, a one-way cut, a bridge, or the
        leader cut off in a minority (where a stale leader does its damage)."""
        ids = self._members()
        self.sim.rng.shuffle(ids)
        self.sim.net.reconnect()
        shape = self.sim.rng.random()
        leader = self.sim.leader()
        if shape < 0.3 and leader is not None:
            others = [i for i in ids if i != leader.id]
            minority = [
                leader.id,
                *others[: self.sim.rng.randint(0, max(0, (len(ids) - 1) // 2 - 1))],
            ]
            rest = [i for i in ids if i not in minority]
            self.sim.net.partition([minority, rest])
            self.sim.record("isolate", sorted(minority), "|", sorted(rest))
            if self.sim.profile.clock_stall and self.sim.rng.random() < 0.5:
                self._stall_clock(leader)
        elif shape < 0.6:
            cut = self.sim.rng.randint(1, len(ids) - 1)
            self.sim.net.partition([ids[:cut], ids[cut:]])
            self.sim.record("partition", sorted(ids[:cut]), "|", sorted(ids[cut:]))
        elif shape < 0.8:
            cut = self.sim.rng.randint(1, len(ids) - 1)
            self.sim.net.cut_one_way(ids[:cut], ids[cut:])
            self.sim.record("one-way", sorted(ids[:cut]), "->x", sorted(ids[cut:]))
        else:
            bridge, rest = ids[0], ids[1:]
            cut = self.sim.rng.randint(0, len(rest))
            self.sim.net.bridge(rest[:cut], rest[cut:], bridge)
            self.sim.record(
                "bridge", sorted(rest[:cut]), f"<n{bridge}>", sorted(rest[cut:])
            )

    def _heal_network(self) -> None:
        self.sim.record("heal")
        self.sim.net.heal()

    def _slow_link(self) -> None:
        ids = self._members()
        src, dst = self.sim.rng.sample(ids, 2)
        base = self.sim.profile.faults
        # Slow enough, at times, for a message to outlive an election timeout or two.
        delay = self.sim.rng.randint(1, 3 * ELECTION_TICK) * TICK
        faults = LinkFaults(
            base.drop, base.duplicate, base.delay + delay, base.jitter + delay
        )
        self.sim.net.set_link(src, dst, faults)
        self.sim.record("slow-link", f"n{src}->n{dst}")

    def _crash_some(self) -> None:
        live = [n for n in self.sim.nodes.values() if n.raw is not None]
        if not live:
            return
        node = self.sim.rng.choice(live)
        point = self.sim.rng.choice(self.sim.profile.crash_points)
        if point is None:
            self.sim.crash_node(node, None)
        else:
            node.crash_at = point
            self.sim.record("arm-crash", f"n{node.id}", point.value)

    def _pause_some(self) -> None:
        """Stall a member (a GC pause, a stuck disk): its ticks are lost, its messages wait.

        At most a minority is paused at once, so the rest can elect a leader meanwhile.
        """
        live = [
            n
            for n in self.sim.nodes.values()
            if n.raw is not None and n.paused_until <= self.sim.now
        ]
        paused = sum(
            1
            for n in self.sim.nodes.values()
            if n.raw is not None and n.paused_until > self.sim.now
        )
        if live and paused < (len(self._members()) - 1) // 2:
            node = self.sim.rng.choice(live)
            node.paused_until = (
                self.sim.now + self.sim.rng.randint(5, 4 * ELECTION_TICK) * TICK
            )
            self.sim.record("pause", f"n{node.id}", f"until t={node.paused_until}")

    def _stall_clock(self, node: SimNode | None = None) -> None:
        """Stop a member's ticker for a while (a starved timer thread): no timeouts fire there,
        so a leader cut off from its followers does not notice it lost them."""
        if node is None:
            live = [n for n in self.sim.nodes.values() if n.raw is not None]
            if not live:
                return
            leader = self.sim.leader()
            node = (
                leader
                if leader is not None and self.sim.rng.random() < 0.5
                else self.sim.rng.choice(live)
            )
        node.clock_stalled_until = (
            self.sim.now + self.sim.rng.randint(ELECTION_TICK, 4 * ELECTION_TICK) * TICK
        )
        self.sim.record(
            "stall-clock", f"n{node.id}", f"until t={node.clock_stalled_until}"
        )

    def _restart_some(self) -> None:
        dead = [n for n in self.sim.nodes.values() if n.raw is None and not n.removed]
        if dead:
            self.sim.restart_node(self.sim.rng.choice(dead))

    def _transfer_leader(self) -> None:
        leader = self.sim.leader()
        if leader is None or leader.raw is None:
            return
        targets = [v for v in leader.conf_state.voters if v != leader.id]
        if not targets:
            return
        to = self.sim.rng.choice(targets)
        self.sim.record("transfer", f"n{leader.id}->n{to}")
        leader.raw.transfer_leader(to)
        self.sim.drain(leader)

    def _change_membership(self) -> None:
        leader = self.sim.leader()
        if leader is None or leader.raw is None:
            return
        cs = leader.conf_state
        if cs.voters_outgoing:
            if not cs.auto_leave:
                self._propose_conf_change(leader, "leave-joint", ConfChangeV2())
            return
        voters = [v for v in cs.voters if v != leader.id]
        learners = list(cs.learners)
        choices: list[tuple[str, ConfChange | ConfChangeV2]] = []
        new_id = self._next_id
        choices.append(
            ("add-learner", ConfChange(ConfChangeType.ADD_LEARNER_NODE, new_id))
        )
        if learners and len(cs.voters) < self._max_voters:
            lid = self.sim.rng.choice(learners)
            choices.append(("promote", _v2(ConfChangeType.ADD_NODE, lid)))
        if len(cs.voters) > 3 and voters:
            vid = self.sim.rng.choice(voters)
            choices.append(("remove-voter", _v2(ConfChangeType.REMOVE_NODE, vid)))
        if learners and voters:
            lid, vid = self.sim.rng.choice(learners), self.sim.rng.choice(voters)
            choices.append(
                (
                    "swap-joint",
                    ConfChangeV2(
                        # Explicit: the cluster stays joint until the nemesis asks to leave.
                        self.sim.rng.choice(
                            (
                                ConfChangeTransition.AUTO,
                                ConfChangeTransition.JOINT_EXPLICIT,
                            )
                        ),
                        [
                            ConfChangeSingle(ConfChangeType.ADD_NODE, lid),
                            ConfChangeSingle(ConfChangeType.REMOVE_NODE, vid),
                        ],
                    ),
                )
            )
        if learners:
            choices.append(
                (
                    "remove-learner",
                    ConfChange(
                        ConfChangeType.REMOVE_NODE, self.sim.rng.choice(learners)
                    ),
                )
            )
        name, cc = self.sim.rng.choice(choices)
        if name == "add-learner":
            if len(self._members()) >= self._max_voters + 2:
                return
            self._next_id += 1
            self.sim.add_node(SimNode(new_id, MemoryStorage()))
        self._propose_conf_change(leader, name, cc)

    def _propose_conf_change(
        self, leader: SimNode, name: str, cc: ConfChange | ConfChangeV2
    ) -> None:
        assert leader.raw is not None
        self.sim.record("propose-conf", f"n{leader.id}", name, cc)
        try:
            leader.raw.propose_conf_change(cc)
        except ProposalDropped:
            self.sim.record("rejected", name)
            return
        self.sim.drain(leader)


def _v2(kind: ConfChangeType, nid: int) -> ConfChangeV2:
    return ConfChangeV2(ConfChangeTransition.AUTO, [ConfChangeSingle(kind, nid)])
