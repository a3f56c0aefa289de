"""Every Kubernetes object the operator makes validates against Kubernetes' OpenAPI schema (strict:
unknown fields are errors), and the CRD's schema is the one the local driver checks specs with."""

from __future__ import annotations

import base64

import jsonschema
import pytest

from etcdx.operator import spec as specs
from etcdx.operator.kube import manifests as mf

kubernetes_validate = pytest.importorskip("kubernetes_validate")
K8S_VERSION = "1.30.0"

FULL = {"apiVersion": specs.API_VERSION, "kind": specs.KIND, "metadata": {"name": "demo", "namespace": "db"},
        "spec": {"size": 3, "version": "0.1.0", "tls": {"peer": True, "client": True},
                 "backup": {"interval": "1h", "retention": 3, "destination": "/backups/demo"},
                 "restore": {"from": "/backups/old/demo-20260101T000000.000Z.db"},
                 "member": {"heartbeatInterval": 100, "electionTimeout": 1000, "extraArgs": ["--max-txn-ops", "256"]},
                 "pod": {"image": "registry.example/etcdx", "storage": "5Gi", "storageClassName": "fast",
                         "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
                         "nodeSelector": {"disk": "ssd"}, "labels": {"team": "db"}},
                 "deletionPolicy": "Delete"}}


def every_object() -> list[dict]:
    spec = specs.parse(FULL)
    plain = specs.parse({**FULL, "spec": {"size": 1, "version": "0.1.0"}})
    pem = b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"
    return (mf.operator_objects("etcdx-system") + mf.cluster_objects(spec, "db") + mf.cluster_objects(plain, "db")
            + mf.tls_secrets(spec, "db", pem, pem, pem, pem, pem, pem, owner={"name": "demo", "uid": "u-1"}))


@pytest.mark.parametrize("obj", every_object(), ids=lambda o: f"{o['kind']}/{o['metadata']['name']}")
def test_object_validates_against_the_kubernetes_schema(obj):
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_the_validator_rejects_a_bad_pod():
    pod = mf.pod(specs.parse(FULL), "demo-0", "db", "0.1.0", "demo-0=https://x:2380", "new")
    pod["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_a_cluster_resource_validates_against_the_crd_schema():
    schema = mf.crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    jsonschema.Draft7Validator(schema).validate({**FULL, "metadata": {"name": "demo", "uid": "x", "labels": {}}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate({**FULL, "spec": {"size": 0, "version": "0.1.0"}})


def test_member_pods_reach_each_other_by_the_headless_service_names():
    spec = specs.parse(FULL)
    pod = mf.pod(spec, "demo-1", "db", "0.1.0", "demo-0=https://demo-0.demo.db.svc:2380", "existing")
    args = pod["spec"]["containers"][0]["args"]
    assert pod["spec"]["hostname"] == "demo-1" and pod["spec"]["subdomain"] == "demo"
    assert args[args.index("--initial-advertise-peer-urls") + 1] == "https://demo-1.demo.db.svc:2380"
    assert "--peer-client-cert-auth" in args and "--client-cert-auth" in args
    assert pod["spec"]["containers"][0]["image"] == "registry.example/etcdx:0.1.0"
    headless = mf.services(spec, "db")[0]
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"]
    assert "*.demo.db.svc" in mf.tls_hosts(spec, "db")


def test_secrets_hold_base64_pem():
    spec = specs.parse(FULL)
    ca, member = mf.tls_secrets(spec, "db", b"CA", b"CAKEY", b"OP", b"OPKEY", b"M", b"MKEY")
    assert base64.b64decode(member["data"]["tls.crt"]) == b"M" and member["type"] == "kubernetes.io/tls"
    assert base64.b64decode(ca["data"]["operator.key"]) == b"OPKEY"


def test_the_committed_deploy_manifests_are_current_and_valid():
    import pathlib

    import yaml

    root = pathlib.Path(__file__).resolve().parents[3] / "deploy" / "kubernetes"
    docs = list(yaml.safe_load_all((root / "operator.yaml").read_text()))
    assert docs == mf.operator_objects("etcdx-system"), \
        "regenerate: etcdx operator manifests --crd --namespace etcdx-system > deploy/kubernetes/operator.yaml"
    for obj in docs:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    specs.load(root / "example-cluster.yaml")
