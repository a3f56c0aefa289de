"""Go's TLS stack (etcdctl 3.4) completes a handshake with the client port's server context.

The client front end will serve gRPC with ``client_tls_info().server_context(alpn=...)``;
until it does, a bare TLS listener stands in for it and records what etcdctl
negotiated: TLS 1.3, ALPN ``h2`` (without it Go's gRPC gives up), and the
client certificate when client-cert-auth is on. etcdctl itself then fails
(nobody speaks gRPC here), which is expected.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
import threading

import pytest
from support import procs

from etcdx.tls import TLSInfo
from tests.support.certs import CA


class Listener:
    """A TLS listener on a thread of its own that records each accepted connection's TLS facts."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.accepted: list[dict] = []
        self.failures: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.port = 0

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def serve(reader, writer):
            obj = writer.get_extra_info("ssl_object")
            cert = obj.getpeercert()
            self.accepted.append({"alpn": obj.selected_alpn_protocol(), "version": obj.version(),
                                  "client": dict(r[0] for r in cert["subject"])["commonName"] if cert else None})
            writer.close()

        server = self._loop.run_until_complete(asyncio.start_server(serve, "127.0.0.1", 0, ssl=self.ctx))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        self._loop.run_until_complete(server.wait_closed())

    def __enter__(self) -> Listener:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def etcdctl(port: int, *tls: str) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        subprocess.run([procs.ETCDCTL_BIN, "--endpoints", f"https://127.0.0.1:{port}", "--dial-timeout", "2s",
                        "--command-timeout", "3s", *tls, "get", "k"], capture_output=True, timeout=15,
                       env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"})


@pytest.fixture
def pki(tmp_path):
    ca = CA(tmp_path / "ca")
    return ca, ca.issue("server"), ca.issue("etcdctl-user")


@pytest.mark.etcd
def test_etcdctl_negotiates_tls_1_3_and_h2_with_the_client_port_context(pki):
    procs.require("etcdctl")
    ca, server, _ = pki
    info = TLSInfo("client", cert_file=str(server.cert), key_file=str(server.key))
    with Listener(info.server_context(alpn=["h2", "http/1.1"])) as listener:
        etcdctl(listener.port, "--cacert", str(ca.cert))
    assert listener.accepted, "etcdctl never completed a handshake"
    assert listener.accepted[0] == {"alpn": "h2", "version": "TLSv1.3", "client": None}


@pytest.mark.etcd
def test_etcdctl_presents_its_certificate_and_is_refused_without_one(pki):
    procs.require("etcdctl")
    ca, server, user = pki
    info = TLSInfo("client", cert_file=str(server.cert), key_file=str(server.key), trusted_ca_file=str(ca.cert),
                   client_cert_auth=True, max_version="TLS1.2",
                   cipher_suites=("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",))
    info.validate()
    failures: list[str] = []
    ctx = info.server_context(alpn=["h2"], on_handshake_failure=lambda err: failures.append(str(err)))
    with Listener(ctx) as listener:
        etcdctl(listener.port, "--cacert", str(ca.cert), "--cert", str(user.cert), "--key", str(user.key))
        accepted = list(listener.accepted)
        etcdctl(listener.port, "--cacert", str(ca.cert))
    assert accepted and accepted[0] == {"alpn": "h2", "version": "TLSv1.2", "client": "etcdctl-user"}
    assert len(listener.accepted) == len(accepted)  # nothing more got through without a certificate
    assert any("certificate" in f.lower() for f in failures), failures
