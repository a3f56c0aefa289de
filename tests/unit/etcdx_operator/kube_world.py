"""The decision scenarios' world for the Kubernetes driver.

The kopf handlers (``reconcile`` and ``delete``, called as kopf calls them)
run the controller over the real ``kubernetes`` client talking to a fake API
server; a fake kubelet runs the pods as members of a ``FakeCluster``. One
world step is one turn of the loop (``max_actions=1``), as in the local world.
"""

from __future__ import annotations

import copy
from typing import Any

import kopf
from kubernetes import client

from etcdx.operator.kube import controller as kc
from etcdx.operator.kube.api import KubeAPI
from etcdx.operator.loop import Turn

from .fake_kube import FakeKubeAPIServer, FakeKubelet
from .fakes import FakeClock, FakeCluster
from .worlds import World


class KubeWorld(World):
    driver_name = "kube"
    def __init__(self, backup_dir: str, **spec: Any) -> None:
        super().__init__(backup_dir, **spec)
        self.cluster = FakeCluster()
        self.clock = FakeClock()
        self.server = FakeKubeAPIServer()
        self.kubelet = FakeKubelet(self.server, self.cluster)
        config = client.Configuration(host=self.server.url)
        self.api_client = client.ApiClient(config)
        self.controller = kc.Controller(KubeAPI(self.api_client), member_api=self.cluster, clock=self.clock,
                                        max_actions=1)
        kc.use(self.controller)
        self.server.add(copy.deepcopy(self.doc))
        self.deleting = False

    def _body(self) -> dict:
        stored = self.server.get("EtcdxCluster", self.doc["metadata"]["name"])
        stored["spec"] = copy.deepcopy(self.doc["spec"])  # what `kubectl apply` of the edited spec does
        return copy.deepcopy(stored)

    def step(self) -> Turn:
        self.kubelet.sync()
        body = self._body()
        if self.deleting:
            try:
                kc.delete(body=body)
            except kopf.TemporaryError:
                pass
        else:
            kc.reconcile(body=body)
        turn = self.controller.last_turn
        self.turns.append(turn)
        self.statuses.append(self.server.get("EtcdxCluster", self.doc["metadata"]["name"])["status"])
        self.kubelet.sync()
        self.clock.advance(1.0)
        return turn

    # -- test handles ------------------------------------------------------------------------------
    def kill(self, name: str) -> None:
        """The pod is evicted (its node died): the member's process is gone, its claim stays."""
        self.server.objects.pop(("Pod", "default", name))
        self.kubelet.sync()

    def lose_data(self, name: str) -> None:
        self.server.objects.pop(("Pod", "default", name))
        self.server.objects.pop(("PersistentVolumeClaim", "default", f"{name}-data"))
        self.kubelet.sync()

    def crash_loop(self, name: str) -> None:
        pod = self.server.get("Pod", name)
        peer = pod["spec"]["containers"][0]["args"][pod["spec"]["containers"][0]["args"].index(
            "--initial-advertise-peer-urls") + 1]
        self.cluster.host(peer).crashes = True
        self.cluster.stop(peer)
        self.kubelet.sync()

    def request_deletion(self) -> None:
        self.deleting = True

    def data_names(self) -> set[str]:
        return {c["metadata"]["labels"]["etcdx.io/member"] for c in self.server.of_kind("PersistentVolumeClaim")}

    def close(self) -> None:
        self.controller_close()
        self.api_client.close()
        self.server.close()

    def controller_close(self) -> None:
        for _, driver in list(self.controller._clusters.values()):
            driver.close()
