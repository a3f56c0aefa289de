"""The Kubernetes calls the driver makes, on the official ``kubernetes`` client.

Objects go in and come out as plain dicts (the manifests' shape): responses
are read raw and decoded as JSON, so nothing depends on the client's model
classes. A refusal becomes ``KubeError`` (an ``ActionError``: the loop logs it
and tries again next turn); a missing object is ``None``/``False``.
"""

from __future__ import annotations

import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from etcdx.operator.driver import ActionError
from etcdx.operator.spec import API_GROUP, PLURAL

KINDS = {
    "Pod": "pod",
    "PersistentVolumeClaim": "persistent_volume_claim",
    "Service": "service",
    "Secret": "secret",
}


class KubeError(ActionError):
    def __init__(self, what: str, err: ApiException) -> None:
        super().__init__(f"{what}: {err.status} {err.reason}")
        self.status = err.status


class KubeAPI:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)

    def _method(self, verb: str, kind: str):
        return getattr(self.core, f"{verb}_namespaced_{KINDS[kind]}")

    def list(self, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        try:
            resp = self._method("list", kind)(namespace, label_selector=selector, _preload_content=False)
        except ApiException as err:
            raise KubeError(f"list {kind}", err) from None
        return json.loads(resp.data).get("items", [])

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            resp = self._method("read", kind)(name, namespace, _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return None
            raise KubeError(f"get {kind} {name}", err) from None
        return json.loads(resp.data)

    def create(self, namespace: str, body: dict[str, Any]) -> None:
        kind, name = body["kind"], body["metadata"]["name"]
        try:
            self._method("create", kind)(namespace, body, _preload_content=False)
        except ApiException as err:
            raise KubeError(f"create {kind} {name}", err) from None

    def ensure(self, namespace: str, body: dict[str, Any]) -> None:
        """Create unless an object of that kind and name exists."""
        if self.get(body["kind"], namespace, body["metadata"]["name"]) is None:
            self.create(namespace, body)

    def delete(self, kind: str, namespace: str, name: str) -> bool:
        try:
            self._method("delete", kind)(name, namespace, _preload_content=False)
        except ApiException as err:
            if err.status == 404:
                return False
            raise KubeError(f"delete {kind} {name}", err) from None
        return True

    def patch(self, kind: str, namespace: str, name: str, patch: dict[str, Any]) -> None:
        try:
            self._method("patch", kind)(name, namespace, patch, _preload_content=False)
        except ApiException as err:
            raise KubeError(f"patch {kind} {name}", err) from None

    def patch_status(self, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            self.custom.patch_namespaced_custom_object_status(API_GROUP, "v1alpha1", namespace, PLURAL, name,
                                                              {"status": status}, _preload_content=False)
        except ApiException as err:
            raise KubeError(f"patch status of {name}", err) from None
