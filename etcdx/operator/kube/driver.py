"""Slots on Kubernetes: a member's PersistentVolumeClaim (its data) and its Pod (its process).

The claim is the slot: it is made first (before MemberAdd, so the member's
peer URL, its DNS name, is known), carries in annotations how the member is
first started (initial cluster, state, snapshot to restore) and, once a pod
ran on it, ``started`` and the version. A pod that is gone, failed, or whose
container is in CrashLoopBackOff is an exited process; a claim that is gone
is lost data. ``bootstrapped`` is an annotation of the headless Service, made
with the first members.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from etcdx.operator import pki
from etcdx.operator.driver import ActionError, Driver
from etcdx.operator.kube import manifests as mf
from etcdx.operator.kube.api import KubeAPI
from etcdx.operator.members import ClientTLS, GrpcMemberAPI, MemberAPI
from etcdx.operator.model import Process, Slot
from etcdx.operator.spec import ClusterSpec

POD_GONE_TIMEOUT = 120.0


def _annotations(obj: dict | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("annotations") or {}


def _member(obj: dict) -> str:
    return obj["metadata"]["labels"][mf.LABEL_MEMBER]


def pod_process(pod: dict | None, started: bool) -> Process:
    if pod is None:
        return Process.EXITED if started else Process.ABSENT
    if pod["metadata"].get("deletionTimestamp"):
        return Process.EXITED
    status = pod.get("status") or {}
    if status.get("phase") in ("Failed", "Succeeded"):
        return Process.EXITED
    for cs in status.get("containerStatuses") or ():
        if ((cs.get("state") or {}).get("waiting") or {}).get("reason") == "CrashLoopBackOff":
            return Process.EXITED
    return Process.RUNNING  # running, or pending: a pod that never gets going is restarted after the grace


class KubeDriver(Driver):
    def __init__(self, kube: KubeAPI, namespace: str, api: MemberAPI | None = None,
                 owner: dict[str, str] | None = None, clock=time.time, sleep=time.sleep) -> None:
        super().__init__(api, clock)  # type: ignore[arg-type]  (made on first use when None: it needs the TLS secret)
        self.kube = kube
        self.namespace = namespace
        self.owner = owner
        self.deletion_requested = False
        self._sleep = sleep
        self._own_api = api is None

    # -- observing -------------------------------------------------------------------------------
    def observe(self, spec: ClusterSpec):
        if self.api is None:
            self.api = GrpcMemberAPI(self._client_tls(spec))
        return super().observe(spec)

    def _client_tls(self, spec: ClusterSpec) -> ClientTLS | None:
        if not spec.tls.client:
            return None
        secret = self.kube.get("Secret", self.namespace, f"{spec.name}-ca")
        if secret is None:
            raise ActionError(f"secret {spec.name}-ca is missing: no client certificate for the members")
        import base64
        data = {k: base64.b64decode(v) for k, v in secret["data"].items()}
        return ClientTLS.from_pem(data["ca.crt"], data["operator.crt"], data["operator.key"])

    def _objects(self, spec: ClusterSpec) -> tuple[dict[str, dict], dict[str, dict]]:
        sel = mf.selector(spec)
        pods = {_member(p): p for p in self.kube.list("Pod", self.namespace, sel) if mf.LABEL_MEMBER in
                p["metadata"].get("labels", {})}
        claims = {_member(c): c for c in self.kube.list("PersistentVolumeClaim", self.namespace, sel)
                  if mf.LABEL_MEMBER in c["metadata"].get("labels", {})}
        return pods, claims

    def slots(self, spec: ClusterSpec) -> list[Slot]:
        pods, claims = self._objects(spec)
        out = []
        for name in sorted(set(pods) | set(claims)):
            pod, claim = pods.get(name), claims.get(name)
            started = _annotations(claim).get(mf.ANN_STARTED) == "true"
            version = _annotations(pod).get(mf.ANN_VERSION) or _annotations(claim).get(mf.ANN_VERSION)
            out.append(Slot(name, mf.peer_url(spec, name, self.namespace), mf.client_url(spec, name, self.namespace),
                            pod_process(pod, started), claim is not None and started, version))
        return out

    def bootstrapped(self, spec: ClusterSpec) -> bool:
        svc = self.kube.get("Service", self.namespace, spec.name)
        return _annotations(svc).get(mf.ANN_BOOTSTRAPPED) == "true"

    def deleting(self, spec: ClusterSpec) -> bool:
        return self.deletion_requested

    def data_left(self, spec: ClusterSpec) -> bool:
        sel = mf.selector(spec)
        return any(self.kube.list(kind, self.namespace, sel) for kind in ("PersistentVolumeClaim", "Service", "Secret"))

    def backup_destination(self, spec: ClusterSpec) -> str | None:
        return spec.backup.destination if spec.backup else None

    def write_status(self, spec_name: str, status: dict) -> None:
        self.kube.patch_status(self.namespace, spec_name, status)

    # -- acting ------------------------------------------------------------------------------------
    def _ensure_tls(self, spec: ClusterSpec) -> None:
        if not spec.tls.enabled or self.kube.get("Secret", self.namespace, f"{spec.name}-tls") is not None:
            return
        if spec.tls.ca_secret_name:
            import base64
            given = self.kube.get("Secret", self.namespace, spec.tls.ca_secret_name)
            if given is None:
                raise ActionError(f"spec.tls.caSecretName: no secret {spec.tls.ca_secret_name!r}")
            ca_cert, ca_key = (base64.b64decode(given["data"][k]) for k in ("ca.crt", "ca.key"))
        else:
            ca_cert, ca_key = pki.make_ca(f"etcdx {spec.name} CA")
        member_cert, member_key = pki.issue(ca_cert, ca_key, f"{spec.name} member",
                                            mf.tls_hosts(spec, self.namespace))
        op_cert, op_key = pki.issue(ca_cert, ca_key, "etcdx-operator", [])
        for secret in mf.tls_secrets(spec, self.namespace, ca_cert, ca_key, op_cert, op_key, member_cert,
                                     member_key, owner=self.owner):
            self.kube.ensure(self.namespace, secret)

    def create_slots(self, spec: ClusterSpec, names: Sequence[str], restore_from: str | None) -> None:
        self._ensure_tls(spec)
        initial = ",".join(f"{n}={mf.peer_url(spec, n, self.namespace)}" for n in names)
        for n in names:
            self.kube.ensure(self.namespace, mf.claim(spec, n, self.namespace, initial, "new", restore_from))
        for svc in mf.services(spec, self.namespace, owner=self.owner):  # the headless one marks bootstrapped
            self.kube.ensure(self.namespace, svc)

    def prepare_slot(self, spec: ClusterSpec, name: str) -> Slot:
        self.kube.create(self.namespace, mf.claim(spec, name, self.namespace, "", "existing"))
        return Slot(name, mf.peer_url(spec, name, self.namespace), mf.client_url(spec, name, self.namespace),
                    Process.ABSENT, False)

    def _wait_pod_gone(self, name: str) -> None:
        deadline = self.clock() + POD_GONE_TIMEOUT
        while self.kube.get("Pod", self.namespace, name) is not None:
            if self.clock() > deadline:
                raise ActionError(f"pod {name} still terminating after {POD_GONE_TIMEOUT:g}s")
            self._sleep(0.5)

    def start(self, spec: ClusterSpec, name: str, version: str, join_cluster: str | None) -> None:
        claim = self.kube.get("PersistentVolumeClaim", self.namespace, f"{name}-data")
        if claim is None:
            raise ActionError(f"claim {name}-data is gone")
        notes = _annotations(claim)
        initial, state = notes.get(mf.ANN_INITIAL_CLUSTER, ""), notes.get(mf.ANN_INITIAL_STATE, "new")
        if join_cluster is not None:
            initial, state = join_cluster, "existing"
        if self.kube.get("Pod", self.namespace, name) is not None:  # failed or crash-looping: a fresh pod
            self.kube.delete("Pod", self.namespace, name)
            self._wait_pod_gone(name)
        self.kube.patch("PersistentVolumeClaim", self.namespace, f"{name}-data", {"metadata": {"annotations": {
            mf.ANN_INITIAL_CLUSTER: initial, mf.ANN_INITIAL_STATE: state, mf.ANN_STARTED: "true",
            mf.ANN_VERSION: version}}})
        self.kube.create(self.namespace, mf.pod(spec, name, self.namespace, version, initial, state,
                                                notes.get(mf.ANN_RESTORE), owner=self.owner))

    def stop(self, spec: ClusterSpec, name: str) -> None:
        if self.kube.delete("Pod", self.namespace, name):
            self._wait_pod_gone(name)

    def retire(self, spec: ClusterSpec, name: str) -> None:
        self.stop(spec, name)
        self.kube.delete("PersistentVolumeClaim", self.namespace, f"{name}-data")

    def delete_data(self, spec: ClusterSpec) -> None:
        sel = mf.selector(spec)
        for kind in ("PersistentVolumeClaim", "Service", "Secret"):
            for obj in self.kube.list(kind, self.namespace, sel):
                self.kube.delete(kind, self.namespace, obj["metadata"]["name"])

    def close(self) -> None:
        super().close()
        if self._own_api and isinstance(self.api, GrpcMemberAPI):
            self.api.close()
