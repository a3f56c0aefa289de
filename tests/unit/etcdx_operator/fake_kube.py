"""A fake Kubernetes API server (HTTP, in a thread) for the official client, and a fake kubelet.

The server keeps objects in memory and answers the REST calls the driver
makes through ``kubernetes.client``: list (with equality label selectors),
read, create (409 if it exists), delete, merge patch, and the
EtcdxCluster's status subresource. So the tests run the real client's
requests and the driver's handling of real responses; only the server is
fake. The kubelet turns pods into hosts of a ``FakeCluster``: a new pod
starts its member from the pod's own args, a deleted pod stops it, a deleted
claim wipes its data, and pod status says whether the member runs.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .fakes import FakeCluster

RESOURCES = {"pods": "Pod", "persistentvolumeclaims": "PersistentVolumeClaim", "services": "Service",
             "secrets": "Secret", "etcdxclusters": "EtcdxCluster"}
_PATH = re.compile(r"^/(?:api/v1|apis/etcdx\.io/v1alpha1)/namespaces/([^/]+)/([^/]+)(?:/([^/]+))?(/status)?$")


def merge(target: dict, patch: dict) -> dict:
    """RFC 7386 JSON merge patch."""
    for k, v in patch.items():
        if v is None:
            target.pop(k, None)
        elif isinstance(v, dict) and isinstance(target.get(k), dict):
            merge(target[k], v)
        else:
            target[k] = v
    return target


class FakeKubeAPIServer:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.requests: list[str] = []
        self._uids = itertools.count(1)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> Any:
                n = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(n)) if n else None

            def _handle(self, method: str) -> None:
                url = urlsplit(self.path)
                m = _PATH.match(url.path)
                if not m or m.group(2) not in RESOURCES:
                    return self._send(404, _status(404, "NotFound", url.path))
                ns, resource, name, status = m.groups()
                server.requests.append(f"{method} {resource}{'/' + name if name else ''}{status or ''}")
                code, body = server.handle(method, ns, resource, name, bool(status), parse_qs(url.query),
                                           self._body() if method in ("POST", "PATCH", "PUT") else None)
                self._send(code, body)

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_DELETE(self) -> None:
                self._handle("DELETE")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)

    # -- the store ------------------------------------------------------------------------------
    def handle(self, method: str, ns: str, resource: str, name: str | None, status: bool, query: dict,
               body: Any) -> tuple[int, dict]:
        kind = RESOURCES[resource]
        with self._lock:
            if name is None and method == "GET":
                wanted = dict(p.split("=", 1) for p in query.get("labelSelector", [""])[0].split(",") if p)
                items = [o for (k, n, _), o in self.objects.items() if k == kind and n == ns
                         and all(o["metadata"].get("labels", {}).get(a) == b for a, b in wanted.items())]
                return 200, {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {}, "items": items}
            if name is None and method == "POST":
                key = (kind, ns, body["metadata"]["name"])
                if key in self.objects:
                    return 409, _status(409, "AlreadyExists", key[2])
                body["metadata"].update(namespace=ns, uid=f"uid-{next(self._uids)}", resourceVersion="1",
                                        creationTimestamp="2026-01-01T00:00:00Z")
                self.objects[key] = body
                return 201, body
            key = (kind, ns, name)
            if key not in self.objects:
                return 404, _status(404, "NotFound", name or "")
            if method == "GET":
                return 200, self.objects[key]
            if method == "DELETE":
                return 200, self.objects.pop(key)
            if method == "PATCH":
                if not isinstance(body, dict):
                    return 415, _status(415, "UnsupportedMediaType", "json patch")
                if status:
                    body = {"status": body.get("status", {})}
                return 200, merge(self.objects[key], body)
        return 405, _status(405, "MethodNotAllowed", method)

    def add(self, body: dict, namespace: str = "default") -> dict:
        code, out = self.handle("POST", namespace, _resource(body["kind"]), None, False, {}, body)
        assert code == 201, out
        return out

    def get(self, kind: str, name: str, namespace: str = "default") -> dict | None:
        return self.objects.get((kind, namespace, name))

    def of_kind(self, kind: str) -> list[dict]:
        return [o for (k, _, _), o in self.objects.items() if k == kind]


def _resource(kind: str) -> str:
    return next(r for r, k in RESOURCES.items() if k == kind)


def _status(code: int, reason: str, what: str) -> dict:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "code": code,
            "message": f"{reason}: {what}"}


def _arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


class FakeKubelet:
    """Runs the server's pods as hosts of a ``FakeCluster`` (see the module docstring)."""

    def __init__(self, server: FakeKubeAPIServer, cluster: FakeCluster) -> None:
        self.server = server
        self.cluster = cluster
        self.running: dict[str, str] = {}  # pod uid -> peer URL
        self.claims: dict[str, str] = {}   # claim name -> peer URL of the member that used it

    def sync(self) -> None:
        pods = {p["metadata"]["uid"]: p for p in self.server.of_kind("Pod")}
        for uid in [u for u in self.running if u not in pods]:  # deleted pods stop
            self.cluster.stop(self.running.pop(uid))
        for uid, pod in pods.items():
            args = pod["spec"]["containers"][0]["args"]
            peer = _arg(args, "--initial-advertise-peer-urls")
            if uid not in self.running:
                self.running[uid] = peer
                self.claims[pod["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"]] = peer
                version = pod["spec"]["containers"][0]["image"].rsplit(":", 1)[1]
                self.cluster.start(peer, _arg(args, "--advertise-client-urls"), _arg(args, "--name"), version,
                                   _arg(args, "--initial-cluster"), _arg(args, "--initial-cluster-state"))
            up = self.cluster.host(peer).running
            pod["status"] = {"phase": "Running", "containerStatuses": [{
                "name": "etcdx", "ready": up,
                "state": {"running": {}} if up else {"waiting": {"reason": "CrashLoopBackOff"}}}]}
        names = {c["metadata"]["name"] for c in self.server.of_kind("PersistentVolumeClaim")}
        for claim in [c for c in self.claims if c not in names]:  # a deleted claim takes its data with it
            self.cluster.wipe(self.claims.pop(claim))
