"""A 3-member cluster with mutual TLS on the peer *and* client ports, etcd and etcdx alike.

Certificates come from one test CA (IP SAN 127.0.0.1). etcdctl with
``--cacert/--cert/--key`` works against every member (etcdx's API workers serve
TLS too); without a client certificate it is refused; plaintext to an https
client URL is refused; the member's own gRPC stubs (the test's TLS channel)
see the same data.
"""

from __future__ import annotations

import os
import pathlib
import socket
import ssl
import subprocess

import pytest

from etcdx.pb import rpc_pb2
from support import procs
from support.certs import CA
from support.cluster import Cluster, ClusterMember

pytestmark = [pytest.mark.timeout(240), pytest.mark.etcd]


class MutualTLSCluster(Cluster):
    """Members with https peer and client URLs and certificates from ``ca``."""

    def __init__(self, kind: str, base_dir: pathlib.Path, ca: CA, client: tuple) -> None:
        self.ca = ca
        self.client = client
        super().__init__(kind, base_dir, size=3, extra_args=["--heartbeat-interval", "50", "--election-timeout", "500"])

    def _new_member(self, name: str) -> ClusterMember:
        m = super()._new_member(name)
        issued = self.ca.issue(f"{self.kind}-{name}")
        m.peer_scheme = m.client_scheme = "https"
        m.client_tls = self.client
        m.extra_args = [*m.extra_args,
                        "--peer-cert-file", str(issued.cert), "--peer-key-file", str(issued.key),
                        "--peer-trusted-ca-file", str(self.ca.cert), "--peer-client-cert-auth",
                        "--cert-file", str(issued.cert), "--key-file", str(issued.key),
                        "--trusted-ca-file", str(self.ca.cert), "--client-cert-auth"]
        return m


@pytest.fixture(scope="module", params=["etcd", "etcdx"])
def cluster(request, tmp_path_factory):
    kind = request.param
    procs.require(kind)
    base = tmp_path_factory.mktemp(f"client-tls-{kind}")
    ca = CA(base / "ca")
    user = ca.issue("client-user", server=False)
    c = MutualTLSCluster(kind, base, ca, (ca.cert, user.cert, user.key))
    try:
        yield c.start()
    finally:
        c.close()


def etcdctl(cluster: Cluster, *args: str, tls: bool = True, timeout: float = 20) -> subprocess.CompletedProcess:
    ca, cert, key = cluster.client
    flags = ["--endpoints", ",".join(m.endpoint for m in cluster.members), "--dial-timeout", "3s",
             "--command-timeout", "5s", "--cacert", str(ca)]
    if tls:
        flags += ["--cert", str(cert), "--key", str(key)]
    return subprocess.run([procs.ETCDCTL_BIN, *flags, *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "ETCDCTL_API": "3"})


def test_etcdctl_with_a_client_certificate_works_on_every_member(cluster) -> None:
    assert etcdctl(cluster, "put", "tls-key", "tls-value").stdout.strip() == "OK"
    for m in cluster.members:
        r = subprocess.run([procs.ETCDCTL_BIN, "--endpoints", m.endpoint, "--cacert", str(cluster.client[0]),
                            "--cert", str(cluster.client[1]), "--key", str(cluster.client[2]),
                            "get", "tls-key", "--print-value-only"],
                           capture_output=True, text=True, timeout=20, env={**os.environ, "ETCDCTL_API": "3"})
        assert r.stdout.strip() == "tls-value", r.stderr
    status = etcdctl(cluster, "endpoint", "status", "--cluster", "-w", "json")
    assert status.returncode == 0 and status.stdout.count('"leader"') == 3, status.stderr
    got = cluster.members[0].kv.Range(rpc_pb2.RangeRequest(key=b"tls-key"), timeout=5)
    assert got.kvs[0].value == b"tls-value"


def test_a_client_without_a_certificate_is_refused(cluster) -> None:
    r = etcdctl(cluster, "get", "tls-key", tls=False)
    assert r.returncode != 0 and "tls-value" not in r.stdout


def test_plaintext_to_an_https_client_url_is_refused(cluster) -> None:
    m = cluster.members[0]
    with socket.create_connection(("127.0.0.1", m.client_port), timeout=5) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00" * 9)
        s.settimeout(5)
        try:
            data = s.recv(100)
        except (ConnectionResetError, TimeoutError, socket.timeout):
            data = b""
    # A TLS server answers plaintext with a TLS alert or closes; never with HTTP/2 frames.
    assert not data.startswith(b"\x00\x00"), data
    # TLS without a client certificate: the server refuses the session (an alert, or it
    # closes it); a request sent over it is never answered.
    ctx = ssl.create_default_context(cafile=str(cluster.client[0]))
    answer = b""
    try:
        with socket.create_connection(("127.0.0.1", m.client_port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = tls.recv(100)
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        pass
    assert answer == b"", answer
