"""The reconcile loop's shell: observe → decide → act → write the status, again and again.

``Operator.step`` is one turn. The spec is read again every turn (edit the
file to resize or upgrade); a spec that stops being valid is reported and the
last valid one is kept. Every action is logged with its reason and result;
a wait is logged when its reason changes, so the log reads as the story of
the cluster. After an action the loop looks again at once (the next step
depends on what the action changed); after a wait or a failed action it
sleeps ``interval``.

Failures the loop expects (a member that refuses or does not answer, an
action that cannot be carried out, a backup that does not verify, I/O on the
state dir) are logged, recorded in the status and tried again next turn;
anything else propagates and stops the operator (the members keep running).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from etcdx.bbolt import CorruptDatabaseError
from etcdx.operator.driver import ActionError, Driver
from etcdx.operator.members import MemberAPIError
from etcdx.operator.model import Decision, Phase, describe
from etcdx.operator.reconcile import UNREADY_GRACE, decide
from etcdx.operator.spec import ClusterSpec, SpecError
from etcdx.operator.status import iso, summarize
from etcdx.snapshot.integrity import IntegrityError

log = logging.getLogger("etcdx.operator")

EXPECTED_FAILURES = (ActionError, MemberAPIError, IntegrityError, CorruptDatabaseError, OSError)


@dataclass
class Turn:
    decision: Decision
    result: str = ""
    failed: bool = False


class Operator:
    def __init__(self, driver: Driver, load_spec: Callable[[], ClusterSpec],
                 write_status: Callable[[dict], None], unready_grace: float = UNREADY_GRACE) -> None:
        self.driver = driver
        self._load_spec = load_spec
        self._write_status = write_status
        self.unready_grace = unready_grace
        self.spec: ClusterSpec | None = None
        self._spec_error = ""
        self._status: dict | None = None
        self._last_logged = ""

    def _read_spec(self) -> ClusterSpec:
        try:
            spec = self._load_spec()
        except (SpecError, OSError) as err:
            if self.spec is None:
                raise
            if str(err) != self._spec_error:
                log.error("the spec is not valid; keeping the last valid one", extra={"fields": {"error": str(err)}})
                self._spec_error = str(err)
            return self.spec
        if self.spec is not None and spec.name != self.spec.name:
            raise SpecError([f"metadata.name: the cluster is {self.spec.name!r}; a spec cannot rename it"])
        self._spec_error = ""
        self.spec = spec
        return spec

    def step(self) -> Turn:
        spec = self._read_spec()
        obs = self.driver.observe(spec)
        decision = decide(spec, obs, unready_grace=self.unready_grace)
        turn = Turn(decision)
        fields = {"phase": decision.phase.value, "action": describe(decision.action), "reason": decision.reason}
        if decision.action is not None:
            log.info("decided", extra={"fields": fields})
            try:
                turn.result = self.driver.act(spec, decision.action, obs)
                log.info("done", extra={"fields": {"action": describe(decision.action), "result": turn.result}})
            except EXPECTED_FAILURES as err:
                turn.result, turn.failed = f"failed: {err}", True
                log.warning("action failed", extra={"fields": {"action": describe(decision.action),
                                                                "error": str(err)}})
        elif decision.reason != self._last_logged:
            log.info("waiting", extra={"fields": fields})
        self._last_logged = decision.reason
        status = summarize(spec, obs, decision, self._status)
        if decision.action is not None:
            status["lastAction"] = {"action": describe(decision.action), "reason": decision.reason,
                                    "at": iso(obs.now), "result": turn.result or "ok"}
        elif self._status and "lastAction" in self._status:
            status["lastAction"] = self._status["lastAction"]
        if self._spec_error:
            status["specError"] = self._spec_error
        self._status = status
        self._write_status(status)
        return turn

    def run(self, stop: threading.Event, interval: float, until: Callable[[Turn], bool] | None = None) -> Turn:
        """Turn until ``stop`` is set, the cluster is deleted, or ``until(turn)`` says so; the last turn."""
        while True:
            turn = self.step()
            if turn.decision.phase is Phase.DELETED or (until is not None and until(turn)):
                return turn
            if turn.decision.action is None or turn.failed:
                if stop.wait(interval):
                    return turn
            elif stop.is_set():
                return turn
