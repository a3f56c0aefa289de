"""A 3-member etcdx cluster whose members talk mutual TLS on https peer URLs.

The certificates are made here: one CA, a certificate per member with IP SAN
127.0.0.1. The cluster replicates and takes a new member (which fetches the
membership and receives a snapshot over TLS); a member whose certificate
another CA signed is refused at the handshake and never joins; a plaintext
peer gets nothing; and a member refuses to start on TLS flags that contradict
each other, naming the flag.
"""

from __future__ import annotations

import pathlib
import socket
import ssl
import subprocess
import sys
import time

import grpc
import pytest

from etcdx.pb import rpc_pb2
from etcdx.transport.wire import Handshake
from tests.support.certs import CA, Issued
from tests.support.cluster import Cluster, ClusterMember
from tests.support.procs import REPO_ROOT, free_port, require

pytestmark = pytest.mark.timeout(180)

FAST = ["--heartbeat-interval", "50", "--election-timeout", "500"]
ONE_PROCESS = ["--api-workers", "0"]


def tls_flags(issued: Issued, trusted: CA) -> list[str]:
    return ["--peer-cert-file", str(issued.cert), "--peer-key-file", str(issued.key),
            "--peer-trusted-ca-file", str(trusted.cert)]


class TLSCluster(Cluster):
    """A Cluster whose members (new ones included) have https peer URLs and certificates from ``ca``."""

    def __init__(self, base_dir: pathlib.Path, ca: CA | None, size: int = 3) -> None:
        self.ca = ca
        self.certs: dict[str, Issued] = {}
        super().__init__("etcdx", base_dir, size=size, extra_args=FAST + ONE_PROCESS)

    def _new_member(self, name: str) -> ClusterMember:
        m = super()._new_member(name)
        m.peer_scheme = "https"
        if self.ca is None:
            m.extra_args = [*m.extra_args, "--peer-auto-tls"]
        else:
            self.certs[name] = self.ca.issue(name)
            m.extra_args = [*m.extra_args, *tls_flags(self.certs[name], self.ca)]
        return m


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require("etcdx")
    base = tmp_path_factory.mktemp("peer-tls")
    c = TLSCluster(base, CA(base / "ca"))
    try:
        yield c.start()
    finally:
        c.close()


def wait_for(what: str, cond, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = cond()
        except grpc.RpcError:
            result = None
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def value_on(m, key: bytes) -> bytes | None:
    kvs = m.kv.Range(rpc_pb2.RangeRequest(key=key, serializable=True), timeout=2).kvs
    return kvs[0].value if kvs else None


def test_the_cluster_replicates_and_grows_over_peer_tls(cluster):
    assert all(m.advertise_peer_url.startswith("https://") for m in cluster.members)
    leader = cluster.leader()
    for i in range(20):
        leader.kv.Put(rpc_pb2.PutRequest(key=b"tls-%d" % i, value=b"v%d" % i), timeout=5)
    for m in cluster.members:
        wait_for(f"{m.name} to apply the writes", lambda m=m: value_on(m, b"tls-19") == b"v19")
    # A new member fetches the membership and catches up over TLS too.
    m4 = cluster.add_member("m4")
    try:
        wait_for("m4 to catch up", lambda: value_on(m4, b"tls-19") == b"v19")
        cluster.leader().kv.Put(rpc_pb2.PutRequest(key=b"after-join", value=b"yes"), timeout=5)
        wait_for("m4 to apply a new write", lambda: value_on(m4, b"after-join") == b"yes")
    finally:
        cluster.remove_member(m4)


def test_a_plaintext_peer_is_refused(cluster):
    m1 = cluster.members[0]
    hello = Handshake("stream", 0x1234, m1.member_id, 0x5678).line()
    with socket.create_connection(("127.0.0.1", m1.peer_port), timeout=5) as s:
        s.sendall(hello)
        assert s.recv(100) == b""  # closed without a word: no "OK", no plaintext answer at all
    wait_for("m1 to log the refused handshake",
             lambda: "rejected peer connection at the TLS handshake" in m1.log_tail(200))


def test_a_member_whose_certificate_another_ca_signed_cannot_join(cluster, tmp_path):
    stranger_ca = CA(tmp_path / "stranger-ca", name="stranger CA")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    added = cluster.leader().cluster.MemberAdd(rpc_pb2.MemberAddRequest(peerURLs=[url], isLearner=True), timeout=5)
    # It trusts the cluster's CA, so the refusal can only come from the cluster's side.
    m5 = ClusterMember("etcdx", tmp_path, "m5", cluster.token,
                       extra_args=FAST + ONE_PROCESS + tls_flags(stranger_ca.issue("m5"), cluster.ca))
    m5.peer_scheme, m5.peer_port = "https", port
    m5.initial_cluster = ",".join(f"{p.name or 'm5'}={u}" for p in added.members for u in p.peerURLs)
    m5.initial_cluster_state = "existing"
    try:
        m5.start(wait=False)
        wait_for("m5 to report the refusal", lambda: "cannot reach the cluster yet" in m5.log_tail(200))
        tail = m5.log_tail(200)
        assert "does it trust our certificate?" in tail or "alert unknown ca" in tail, tail
        assert any("certificate verify failed" in m.log_tail(400) for m in cluster.members)
        assert m5.is_running()  # still asking, never admitted
        members = cluster.leader().cluster.MemberList(rpc_pb2.MemberListRequest(), timeout=5).members
        assert [m.name for m in members if m.ID == added.member.ID] == [""]  # never started, never published
    finally:
        m5.close()
        cluster.leader().cluster.MemberRemove(rpc_pb2.MemberRemoveRequest(ID=added.member.ID), timeout=5)


def peer_certificate_cn(m, client: Issued, ca: CA) -> str:
    """The CN of the certificate ``m`` serves on its peer port to a client presenting ``client``."""
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    ctx.load_cert_chain(str(client.cert), str(client.key))
    with socket.create_connection(("127.0.0.1", m.peer_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            subject = tls.getpeercert()["subject"]
    return dict(rdn[0] for rdn in subject)["commonName"]


def test_a_member_serves_its_rotated_certificate_without_a_restart(cluster):
    m3 = cluster.members[2]
    probe = cluster.ca.issue("probe")
    assert peer_certificate_cn(m3, probe, cluster.ca) == "m3"
    cluster.certs["m3"].replace_with(cluster.ca.issue("m3-next", cn="m3-rotated"))
    assert peer_certificate_cn(m3, probe, cluster.ca) == "m3-rotated"
    pid = m3.pid
    cluster.leader().kv.Put(rpc_pb2.PutRequest(key=b"after-rotation", value=b"yes"), timeout=5)
    wait_for("m3 to apply a write after the rotation", lambda: value_on(m3, b"after-rotation") == b"yes")
    assert m3.pid == pid


def test_peer_auto_tls_members_form_a_cluster_with_self_signed_certificates(tmp_path):
    require("etcdx")
    with TLSCluster(tmp_path, ca=None) as c:
        c.start()
        c.leader().kv.Put(rpc_pb2.PutRequest(key=b"auto", value=b"tls"), timeout=5)
        for m in c.members:
            wait_for(f"{m.name} to apply the write", lambda m=m: value_on(m, b"auto") == b"tls")
            fixtures = m.data_dir / "fixtures" / "peer"
            assert (fixtures / "cert.pem").is_file() and (fixtures / "key.pem").is_file()
        raw = ssl.get_server_certificate(("127.0.0.1", c.members[0].peer_port))
        assert raw.startswith("-----BEGIN CERTIFICATE-----")  # the peer port speaks TLS


@pytest.mark.parametrize("flags,message", [
    (["--peer-key-file", "/etc/hostname"], "--peer-cert-file and --peer-key-file must both be given"),
    (["--listen-peer-urls", "https://127.0.0.1:{port}", "--initial-advertise-peer-urls", "https://127.0.0.1:{port}"],
     "cannot listen on TLS for 127.0.0.1:{port}: KeyFile and CertFile are not presented"),
    (["--cipher-suites", "TLS_NOT_A_SUITE"], 'unexpected TLS cipher suite "TLS_NOT_A_SUITE"'),
])
def test_a_member_refuses_to_start_on_inconsistent_tls_flags(tmp_path, flags, message):
    require("etcdx")
    port = free_port()
    flags = [f.format(port=port) for f in flags]
    done = subprocess.run([sys.executable, "-m", "etcdx.main", "--data-dir", str(tmp_path / "d"),
                           "--initial-cluster", f"default=https://127.0.0.1:{port}", *flags],
                          capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 2
    assert message.format(port=port) in done.stderr
    assert not (tmp_path / "d").exists()
