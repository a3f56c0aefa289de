"""The Kubernetes objects of the operator and of one cluster, as plain dicts.

Pure functions: the controller creates what they return, ``etcdx operator
manifests`` prints them, and the tests validate every one against the
Kubernetes OpenAPI schema.

A cluster ``demo`` in namespace ``ns`` is:

- a headless Service ``demo`` (peer and client ports, not-ready addresses
  published so members find each other while starting): member ``demo-0`` is
  ``demo-0.demo.ns.svc``;
- a Service ``demo-client`` for clients;
- per member a PersistentVolumeClaim ``<member>-data`` (the slot: it holds the
  data dir and, in annotations, how the member was first started) and a Pod
  ``<member>`` (hostname + subdomain give it its DNS name). Pods, not a
  StatefulSet: the loop decides which member goes (a dead one, a follower,
  never the leader), which a StatefulSet's highest-ordinal-first rule cannot;
- with TLS, Secrets ``demo-ca`` (the CA and the operator's client
  certificate) and ``demo-tls`` (one certificate for every member's DNS name).
"""

from __future__ import annotations

from typing import Any

from etcdx.operator import spec as specs
from etcdx.operator.spec import ClusterSpec

CLIENT_PORT = 2379
PEER_PORT = 2380
DATA_MOUNT = "/var/lib/etcdx"
TLS_MOUNT = "/etc/etcdx/tls"
BACKUP_MOUNT = "/backups"
BACKUP_CLAIM = "etcdx-backups"
OPERATOR_IMAGE = "etcdx"

LABEL_CLUSTER = "etcdx.io/cluster"
LABEL_MEMBER = "etcdx.io/member"
ANN_VERSION = "etcdx.io/version"
ANN_INITIAL_CLUSTER = "etcdx.io/initial-cluster"
ANN_INITIAL_STATE = "etcdx.io/initial-cluster-state"
ANN_STARTED = "etcdx.io/started"
ANN_BOOTSTRAPPED = "etcdx.io/bootstrapped"
ANN_RESTORE = "etcdx.io/restore-from"


def labels(spec: ClusterSpec, member: str | None = None) -> dict[str, str]:
    out = {"app.kubernetes.io/name": "etcdx", "app.kubernetes.io/instance": spec.name,
           "app.kubernetes.io/managed-by": "etcdx-operator", LABEL_CLUSTER: spec.name, **spec.pod.labels}
    if member:
        out[LABEL_MEMBER] = member
    return out


def selector(spec: ClusterSpec) -> str:
    return f"{LABEL_CLUSTER}={spec.name}"


def _meta(spec: ClusterSpec, name: str, namespace: str, member: str | None = None,
          owner: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels(spec, member)}
    if annotations:
        meta["annotations"] = annotations
    if owner:  # garbage-collected with the EtcdxCluster (PVCs are not owned: the deletion policy decides)
        meta["ownerReferences"] = [{"apiVersion": specs.API_VERSION, "kind": specs.KIND, "name": owner["name"],
                                    "uid": owner["uid"], "controller": True, "blockOwnerDeletion": True}]
    return meta


def host(spec: ClusterSpec, member: str, namespace: str) -> str:
    return f"{member}.{spec.name}.{namespace}.svc"


def peer_url(spec: ClusterSpec, member: str, namespace: str) -> str:
    return f"{'https' if spec.tls.peer else 'http'}://{host(spec, member, namespace)}:{PEER_PORT}"


def client_url(spec: ClusterSpec, member: str, namespace: str) -> str:
    return f"{'https' if spec.tls.client else 'http'}://{host(spec, member, namespace)}:{CLIENT_PORT}"


def tls_hosts(spec: ClusterSpec, namespace: str) -> list[str]:
    """Every name a member is reached at: one certificate serves them all."""
    return [f"*.{spec.name}.{namespace}.svc", f"*.{spec.name}.{namespace}.svc.cluster.local",
            f"{spec.name}-client.{namespace}.svc", f"{spec.name}-client", "localhost", "127.0.0.1"]


def services(spec: ClusterSpec, namespace: str, owner: dict[str, str] | None = None) -> list[dict[str, Any]]:
    ports = [{"name": "client", "port": CLIENT_PORT, "targetPort": CLIENT_PORT, "protocol": "TCP"},
             {"name": "peer", "port": PEER_PORT, "targetPort": PEER_PORT, "protocol": "TCP"}]
    headless = {"apiVersion": "v1", "kind": "Service",
                "metadata": _meta(spec, spec.name, namespace, owner=owner, annotations={ANN_BOOTSTRAPPED: "true"}),
                "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                         "selector": {LABEL_CLUSTER: spec.name}, "ports": ports}}
    client = {"apiVersion": "v1", "kind": "Service", "metadata": _meta(spec, f"{spec.name}-client", namespace,
                                                                       owner=owner),
              "spec": {"type": "ClusterIP", "selector": {LABEL_CLUSTER: spec.name}, "ports": ports[:1]}}
    return [headless, client]


def claim(spec: ClusterSpec, member: str, namespace: str, initial_cluster: str, state: str,
          restore_from: str | None = None) -> dict[str, Any]:
    annotations = {ANN_INITIAL_CLUSTER: initial_cluster, ANN_INITIAL_STATE: state}
    if restore_from:
        annotations[ANN_RESTORE] = restore_from
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": _meta(spec, f"{member}-data", namespace, member, annotations=annotations),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": spec.pod.storage}}},
    }
    if spec.pod.storage_class_name:
        body["spec"]["storageClassName"] = spec.pod.storage_class_name
    return body


def member_args(spec: ClusterSpec, member: str, namespace: str, initial_cluster: str, state: str) -> list[str]:
    scheme_c = "https" if spec.tls.client else "http"
    scheme_p = "https" if spec.tls.peer else "http"
    args = ["--name", member, "--data-dir", f"{DATA_MOUNT}/data",
            "--listen-client-urls", f"{scheme_c}://0.0.0.0:{CLIENT_PORT}",
            "--advertise-client-urls", client_url(spec, member, namespace),
            "--listen-peer-urls", f"{scheme_p}://0.0.0.0:{PEER_PORT}",
            "--initial-advertise-peer-urls", peer_url(spec, member, namespace),
            "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", spec.token]
    cert, key, ca = f"{TLS_MOUNT}/tls.crt", f"{TLS_MOUNT}/tls.key", f"{TLS_MOUNT}/ca.crt"
    if spec.tls.peer:
        args += ["--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca,
                 "--peer-client-cert-auth"]
    if spec.tls.client:
        args += ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca, "--client-cert-auth"]
    return args + spec.member.flags()


def image(spec: ClusterSpec, version: str) -> str:
    return f"{spec.pod.image}:{version}"


def pod(spec: ClusterSpec, member: str, namespace: str, version: str, initial_cluster: str, state: str,
        restore_from: str | None = None, owner: dict[str, str] | None = None) -> dict[str, Any]:
    """The member's pod; ``restore_from`` (a file on the backup volume) fills an empty data dir first."""
    mounts = [{"name": "data", "mountPath": DATA_MOUNT}]
    volumes: list[dict[str, Any]] = [{"name": "data", "persistentVolumeClaim": {"claimName": f"{member}-data"}}]
    if spec.tls.enabled:
        mounts.append({"name": "tls", "mountPath": TLS_MOUNT, "readOnly": True})
        volumes.append({"name": "tls", "secret": {"secretName": f"{spec.name}-tls", "defaultMode": 0o400}})
    resources: dict[str, Any] = {}
    if spec.pod.requests:
        resources["requests"] = dict(spec.pod.requests)
    if spec.pod.limits:
        resources["limits"] = dict(spec.pod.limits)
    container: dict[str, Any] = {
        "name": "etcdx", "image": image(spec, version), "command": ["etcdx"],
        "args": member_args(spec, member, namespace, initial_cluster, state),
        "ports": [{"name": "client", "containerPort": CLIENT_PORT}, {"name": "peer", "containerPort": PEER_PORT}],
        "volumeMounts": mounts, "resources": resources,
        "readinessProbe": {"tcpSocket": {"port": CLIENT_PORT}, "periodSeconds": 5},
    }
    body: dict[str, Any] = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": _meta(spec, member, namespace, member, owner=owner, annotations={ANN_VERSION: version}),
        "spec": {"hostname": member, "subdomain": spec.name, "restartPolicy": "Always",
                 "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
                 "containers": [container], "volumes": volumes},
    }
    if spec.pod.node_selector:
        body["spec"]["nodeSelector"] = dict(spec.pod.node_selector)
    if restore_from:
        restore = ["etcdxutl", "snapshot", "restore", restore_from, "--name", member,
                   "--data-dir", f"{DATA_MOUNT}/data", "--initial-cluster", initial_cluster,
                   "--initial-cluster-token", spec.token,
                   "--initial-advertise-peer-urls", peer_url(spec, member, namespace)]
        body["spec"]["initContainers"] = [{
            "name": "restore", "image": image(spec, version), "command": ["sh", "-c"],
            # only into an empty data dir: a restarted member keeps what it has
            "args": [f'[ -d {DATA_MOUNT}/data/member ] || exec "$@"', "restore", *restore],
            "volumeMounts": [mounts[0], {"name": "backups", "mountPath": BACKUP_MOUNT, "readOnly": True}]}]
        volumes.append({"name": "backups", "persistentVolumeClaim": {"claimName": BACKUP_CLAIM, "readOnly": True}})
    return body


def tls_secrets(spec: ClusterSpec, namespace: str, ca_cert: bytes, ca_key: bytes, operator_cert: bytes,
                operator_key: bytes, member_cert: bytes, member_key: bytes,
                owner: dict[str, str] | None = None) -> list[dict[str, Any]]:
    import base64

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()
    ca = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
          "metadata": _meta(spec, f"{spec.name}-ca", namespace),
          "data": {"ca.crt": b64(ca_cert), "ca.key": b64(ca_key), "operator.crt": b64(operator_cert),
                   "operator.key": b64(operator_key)}}
    member = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": _meta(spec, f"{spec.name}-tls", namespace, owner=owner),
              "data": {"ca.crt": b64(ca_cert), "tls.crt": b64(member_cert), "tls.key": b64(member_key)}}
    return [ca, member]


def cluster_objects(spec: ClusterSpec, namespace: str) -> list[dict[str, Any]]:
    """What a new cluster starts with: its services, and each initial member's claim and pod."""
    names = [spec.member_name(i) for i in range(spec.size)]
    initial = ",".join(f"{n}={peer_url(spec, n, namespace)}" for n in names)
    out = services(spec, namespace)
    for n in names:
        out.append(claim(spec, n, namespace, initial, "new", spec.restore_from))
        out.append(pod(spec, n, namespace, spec.version, initial, "new", spec.restore_from))
    return out


# -- the operator itself ----------------------------------------------------------------------------


def crd() -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": specs.SPEC_SCHEMA,
            "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
        },
    }
    columns = [
        {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
        {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
        {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
        {"name": "Ready", "type": "integer", "jsonPath": ".status.readyMembers"},
        {"name": "Leader", "type": "string", "jsonPath": ".status.leader"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{specs.PLURAL}.{specs.API_GROUP}"},
        "spec": {
            "group": specs.API_GROUP, "scope": "Namespaced",
            "names": {"plural": specs.PLURAL, "singular": "etcdxcluster", "kind": specs.KIND,
                      "shortNames": ["etcdx"]},
            "versions": [{"name": "v1alpha1", "served": True, "storage": True,
                          "schema": {"openAPIV3Schema": schema}, "subresources": {"status": {}},
                          "additionalPrinterColumns": columns}],
        },
    }


def operator_objects(namespace: str, image_ref: str = f"{OPERATOR_IMAGE}:latest") -> list[dict[str, Any]]:
    """The CRD, the operator's service account and rights, its backup volume and its Deployment."""
    meta = {"namespace": namespace, "labels": {"app.kubernetes.io/name": "etcdx-operator"}}
    rules = [
        {"apiGroups": [specs.API_GROUP], "resources": [specs.PLURAL, f"{specs.PLURAL}/status"],
         "verbs": ["get", "list", "watch", "patch", "update"]},
        {"apiGroups": [""], "resources": ["pods", "persistentvolumeclaims", "services", "secrets"],
         "verbs": ["get", "list", "watch", "create", "delete", "patch"]},
        {"apiGroups": [""], "resources": ["events"], "verbs": ["create"]},
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    ]
    return [
        crd(),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "etcdx-operator", **meta}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "etcdx-operator"}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "etcdx-operator"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "etcdx-operator"},
         "subjects": [{"kind": "ServiceAccount", "name": "etcdx-operator", "namespace": namespace}]},
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": BACKUP_CLAIM, **meta},
         "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "10Gi"}}}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "etcdx-operator", **meta},
         "spec": {"replicas": 1, "strategy": {"type": "Recreate"},
                  "selector": {"matchLabels": {"app.kubernetes.io/name": "etcdx-operator"}},
                  "template": {
                      "metadata": {"labels": {"app.kubernetes.io/name": "etcdx-operator"}},
                      "spec": {"serviceAccountName": "etcdx-operator",
                               "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
                               "containers": [{
                                   "name": "operator", "image": image_ref,
                                   "command": ["kopf", "run", "--all-namespaces", "-m", "etcdx.operator.kube.controller"],
                                   "volumeMounts": [{"name": "backups", "mountPath": BACKUP_MOUNT}],
                                   "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
                               "volumes": [{"name": "backups",
                                            "persistentVolumeClaim": {"claimName": BACKUP_CLAIM}}]}}}},
    ]
