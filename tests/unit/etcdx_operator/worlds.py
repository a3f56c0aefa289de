"""Worlds the decision scenarios run in: the same scenarios, one per driver.

A world owns a ``FakeCluster``, a fake clock and an ``Operator`` over some
driver; ``step`` is one turn of the real loop. ``LocalWorld`` runs the
in-memory ``FakeDriver``; ``KubeWorld`` (in ``test_operator_kube``) runs the
Kubernetes driver against a fake API server, with a fake kubelet that turns
pods into hosts of the same ``FakeCluster``.
"""

from __future__ import annotations

import copy
from typing import Any

from etcdx.operator import spec as specs
from etcdx.operator.loop import Operator, Turn
from etcdx.operator.model import Phase

from .fakes import FakeClock, FakeCluster, FakeDriver

BASE_DOC: dict[str, Any] = {
    "apiVersion": specs.API_VERSION,
    "kind": specs.KIND,
    "metadata": {"name": "demo"},
    "spec": {"size": 3, "version": "0.1.0"},
}

TURN_SECONDS = 1.0


class World:
    """What scenarios use; subclasses make ``self.operator`` and the test handles."""

    driver_name = "local"

    cluster: FakeCluster
    clock: FakeClock
    operator: Operator

    def __init__(self, backup_dir: str, **spec: Any) -> None:
        self.backup_dir = backup_dir
        self.doc = copy.deepcopy(BASE_DOC)
        self.doc["spec"].update(spec)
        self.statuses: list[dict] = []
        self.turns: list[Turn] = []

    def load_spec(self) -> specs.ClusterSpec:
        return specs.parse(self.doc)

    def set_spec(self, **changes: Any) -> None:
        self.doc["spec"].update(changes)

    # -- stepping ---------------------------------------------------------------------------
    def step(self) -> Turn:
        self.before_turn()
        turn = self.operator.step()
        self.turns.append(turn)
        self.clock.advance(TURN_SECONDS)
        return turn

    def before_turn(self) -> None:
        """Hook: the Kubernetes world's kubelet runs here."""

    def settle(self, max_turns: int = 80) -> Turn:
        """Step until the loop waits in a resting phase; every turn is checked by ``invariant``."""
        for _ in range(max_turns):
            turn = self.step()
            self.invariant(turn)
            if turn.decision.action is None and turn.decision.phase in (Phase.RUNNING, Phase.DELETED, Phase.FAILED):
                return turn
        raise AssertionError(f"not settled after {max_turns} turns; last: {self.turns[-1].decision}")

    def invariant(self, turn: Turn) -> None:
        """The cluster never has two learners; once it had a leader, an action never left it without quorum
        unless members were killed by the test."""
        assert sum(m.learner for m in self.cluster.members.values()) <= 1

    def actions(self) -> list[str]:
        return [type(t.decision.action).__name__ for t in self.turns if t.decision.action is not None]

    def describe(self) -> list[str]:
        from etcdx.operator.model import describe
        return [describe(t.decision.action) for t in self.turns if t.decision.action is not None]

    @property
    def status(self) -> dict:
        return self.statuses[-1]

    # -- test handles (driver specific) ------------------------------------------------------------
    def kill(self, name: str) -> None:
        raise NotImplementedError

    def lose_data(self, name: str) -> None:
        raise NotImplementedError

    def request_deletion(self) -> None:
        raise NotImplementedError

    def data_names(self) -> set[str]:
        """Names of slots whose data still exists."""
        raise NotImplementedError


class LocalWorld(World):
    def __init__(self, backup_dir: str, **spec: Any) -> None:
        super().__init__(backup_dir, **spec)
        self.cluster = FakeCluster()
        self.clock = FakeClock()
        self.driver = FakeDriver(self.cluster, self.clock, backup_dir)
        self.operator = Operator(self.driver, self.load_spec, self.statuses.append)

    def kill(self, name: str) -> None:
        self.driver.kill(name)

    def lose_data(self, name: str) -> None:
        self.driver.lose_data(name)

    def crash_loop(self, name: str) -> None:
        self.cluster.host(self.driver.records[name].peer_url).crashes = True
        self.driver.kill(name)

    def request_deletion(self) -> None:
        self.driver.deletion_requested = True

    def data_names(self) -> set[str]:
        return {r.name for r in self.driver.records.values() if self.cluster.host(r.peer_url).has_data}

    def close(self) -> None:
        self.driver.close()
