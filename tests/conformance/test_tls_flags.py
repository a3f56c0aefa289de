"""TLS configurations that real etcd 3.4 refuses to start with are refused by etcdx too, with etcd's words.

Each case starts real etcd and etcdx with the same flags: both must exit
without serving, etcd's output must hold the recorded text (so the facts stay
checked against etcd 3.4.23), and etcdx's message must hold the same text and
also name the flag to fix. Where etcd 3.4 accepts a contradiction (client-cert-
auth without a CA, CRL or allowed CN without verification) etcdx refuses more;
those cases are in tests/unit/server/test_config_tls.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from support import procs

from tests.support.certs import CA


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    ca = CA(tmp_path_factory.mktemp("pki"))
    m = ca.issue("m1")
    return {"ca": str(ca.cert), "cert": str(m.cert), "key": str(m.key), "other_key": str(ca.issue("m2").key)}


PEER_TLS = ["--listen-peer-urls", "https://127.0.0.1:{peer}", "--initial-advertise-peer-urls", "https://127.0.0.1:{peer}",
            "--initial-cluster", "default=https://127.0.0.1:{peer}"]

CASES = {
    # name: (flags, text in both outputs (case-insensitive), the flag etcdx's message names)
    "unknown-cipher-suite": (["--cipher-suites", "TLS_RSA_WITH_AES_128_CBC_SHA,FOO"],
                             ['unexpected TLS cipher suite "FOO"'], "--cipher-suites"),
    "peer-key-without-cert": (["--peer-key-file", "{key}"],
                              ["KeyFile and CertFile must both be present[key: {key}, cert: ]"], "--peer-cert-file"),
    "https-peer-url-without-cert": (PEER_TLS, ["cannot listen on TLS for 127.0.0.1:{peer}: KeyFile and CertFile are not presented"],
                                    "--peer-cert-file"),
    "https-client-url-without-cert": (["--listen-client-urls", "https://127.0.0.1:{client}",
                                       "--advertise-client-urls", "https://127.0.0.1:{client}"],
                                      ["TLS key/cert (--cert-file, --key-file) must be provided for client url "
                                       "https://127.0.0.1:{client} with HTTPS scheme"], "--cert-file"),
    "allowed-cn-and-hostname": (PEER_TLS + ["--peer-cert-file", "{cert}", "--peer-key-file", "{key}",
                                            "--peer-trusted-ca-file", "{ca}", "--peer-client-cert-auth",
                                            "--peer-cert-allowed-cn", "x", "--peer-cert-allowed-hostname", "y"],
                                ['AllowedCN and AllowedHostname are mutually exclusive (cn="x", hostname="y")'],
                                "--peer-cert-allowed-cn"),
    "key-of-another-certificate": (PEER_TLS + ["--peer-cert-file", "{cert}", "--peer-key-file", "{other_key}"],
                                   ["private key does not match public key"], "--peer-key-file"),
    "missing-ca-file": (PEER_TLS + ["--peer-cert-file", "{cert}", "--peer-key-file", "{key}",
                                    "--peer-trusted-ca-file", "/nonexistent/ca.pem"],
                        ["/nonexistent/ca.pem", "no such file or directory"], "--peer-trusted-ca-file"),
}


def run(kind: str, flags: list[str], tmp_path) -> subprocess.CompletedProcess:
    client = procs.free_port()
    base = ["--data-dir", str(tmp_path / kind), "--listen-client-urls", f"http://127.0.0.1:{client}",
            "--advertise-client-urls", f"http://127.0.0.1:{client}"]
    peer = procs.free_port()
    if "--listen-peer-urls" not in flags:
        base += ["--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls",
                 f"http://127.0.0.1:{peer}", "--initial-cluster", f"default=http://127.0.0.1:{peer}"]
    command = [procs.ETCD_BIN] if kind == "etcd" else [sys.executable, "-m", procs.ETCDX_MODULE]
    try:
        return subprocess.run([*command, *base, *flags], capture_output=True, text=True, timeout=30,
                              cwd=procs.REPO_ROOT)
    except subprocess.TimeoutExpired as err:
        raise AssertionError(f"{kind} did not refuse {flags} within 30s: it started") from err


@pytest.mark.etcd
@pytest.mark.parametrize("case", list(CASES))
def test_etcdx_refuses_what_etcd_refuses_in_etcds_words(case, pki, tmp_path):
    procs.require("etcd")
    procs.require("etcdx")
    flags, texts, flag = CASES[case]
    client, peer = procs.free_port(), procs.free_port()
    values = {**pki, "client": client, "peer": peer}
    flags = [f.format(**values) for f in flags]
    texts = [t.format(**values).lower() for t in texts]
    etcd, etcdx = run("etcd", flags, tmp_path), run("etcdx", flags, tmp_path)
    etcd_out = (etcd.stdout + etcd.stderr).lower()
    assert etcd.returncode != 0 and all(t in etcd_out for t in texts), etcd_out[-2000:]
    assert etcdx.returncode == 2, etcdx.stderr[-2000:]
    message = etcdx.stderr.lower()
    assert all(t in message for t in texts), message
    assert flag in message
