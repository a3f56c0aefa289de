"""The Kubernetes controller: kopf handlers running the shared reconcile loop per ``EtcdxCluster``.

    kopf run --all-namespaces -m etcdx.operator.kube.controller

A timer turns the loop for every cluster every ``INTERVAL`` seconds (up to
``MAX_ACTIONS`` actions a turn, stopping at the first wait or failure); the
delete handler (kopf keeps a finalizer on every cluster for it) turns it with
deletion requested until every member is stopped and the data is kept or
removed as ``deletionPolicy`` says. Each cluster keeps one ``Operator`` (its
driver remembers restarts and unready times between turns). A spec the
schema refuses is reported in the status and left alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from etcdx.operator import spec as specs
from etcdx.operator.kube.api import KubeAPI
from etcdx.operator.kube.driver import KubeDriver
from etcdx.operator.loop import Operator, Turn
from etcdx.operator.members import MemberAPI
from etcdx.operator.model import Phase

INTERVAL = 5.0
MAX_ACTIONS = 20


def _plain(obj: Any) -> Any:
    """kopf hands objects in as read-only mapping views; the spec's schema check wants dicts and lists."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


class Controller:
    """Operators by cluster, over one Kubernetes API and (in tests) one member API."""

    def __init__(self, kube: KubeAPI, member_api: MemberAPI | None = None,
                 clock: Callable[[], float] | None = None, max_actions: int = MAX_ACTIONS) -> None:
        self.kube = kube
        self.member_api = member_api
        self.clock = clock
        self.max_actions = max_actions
        self._clusters: dict[tuple[str, str], tuple[Operator, KubeDriver]] = {}
        self._bodies: dict[tuple[str, str], Mapping[str, Any]] = {}
        self._lock = threading.Lock()
        self.last_turn: Turn | None = None

    def _operator(self, key: tuple[str, str], body: Mapping[str, Any]) -> tuple[Operator, KubeDriver]:
        with self._lock:
            if key not in self._clusters:
                meta = body["metadata"]
                extra = {"clock": self.clock} if self.clock else {}
                driver = KubeDriver(self.kube, key[0], self.member_api,
                                    owner={"name": meta["name"], "uid": meta.get("uid", "")}, **extra)
                operator = Operator(driver, lambda: specs.parse(self._bodies[key]),
                                    lambda status: driver.write_status(key[1], status))
                self._clusters[key] = (operator, driver)
            return self._clusters[key]

    def turn(self, body: Mapping[str, Any], deleting: bool = False) -> Phase:
        """Step the cluster's loop until it waits (or ``max_actions``); the phase it ends in."""
        key = (body["metadata"].get("namespace") or "default", body["metadata"]["name"])
        body = _plain(body)
        self._bodies[key] = body
        if key not in self._clusters:
            try:
                specs.parse(body)
            except specs.SpecError as err:
                self.kube.patch_status(key[0], key[1], {"phase": Phase.FAILED.value, "specError": str(err)})
                raise kopf.PermanentError(str(err)) from None
        operator, driver = self._operator(key, body)
        driver.deletion_requested = deleting
        for _ in range(self.max_actions):
            turn = operator.step()
            self.last_turn = turn
            if turn.decision.action is None or turn.failed:
                break
        if turn.decision.phase is Phase.DELETED:
            with self._lock:
                self._clusters.pop(key, None)
            driver.close()
        return turn.decision.phase


_controller: Controller | None = None


def controller() -> Controller:
    global _controller
    if _controller is None:
        from kubernetes import client, config

        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
        _controller = Controller(KubeAPI(client.ApiClient()))
    return _controller


def use(c: Controller) -> None:
    """Make the handlers use ``c`` (tests hand in one over a fake API server)."""
    global _controller
    _controller = c


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.persistence.finalizer = f"{specs.API_GROUP}/finalizer"
    settings.posting.level = 30  # events for warnings and up; decisions go to the log and the status


@kopf.timer(specs.API_GROUP, "v1alpha1", specs.PLURAL, interval=INTERVAL, initial_delay=0.0)
def reconcile(body: kopf.Body, **_: Any) -> None:
    controller().turn(body)


@kopf.on.delete(specs.API_GROUP, "v1alpha1", specs.PLURAL)
def delete(body: kopf.Body, **_: Any) -> None:
    phase = controller().turn(body, deleting=True)
    if phase is not Phase.DELETED:
        raise kopf.TemporaryError(f"deleting the cluster ({phase.value})", delay=2)
