"""With --client-cert-auth, a client certificate's common name is the user when no token is sent.

The same script on etcd 3.4 and etcdx (with and without API workers), over
gRPC and etcdctl: the certificate of ``root`` manages auth, ``alice``'s reads
and writes her prefix only, a name with no user is refused, a token wins over
the certificate, and a user added with ``--no-password`` (certificate only)
works through its certificate while it cannot log in.
"""

from __future__ import annotations

import os
import subprocess

import grpc
import pytest

from etcdx.pb import rpc_pb2, rpc_pb2_grpc
from support import auth_setup, procs
from support.auth_setup import ALICE_PW, md, outcome
from support.certs import CA

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]

USERS = ("root", "alice", "nobody", "certonly")


def _channel(m: procs.Member, ca: CA, issued) -> grpc.Channel:
    creds = grpc.ssl_channel_credentials(ca.cert.read_bytes(), issued.key.read_bytes(), issued.cert.read_bytes())
    return grpc.secure_channel(m.endpoint, creds)


def _script(m: procs.Member, ca: CA, certs: dict) -> list[str]:
    channels = {name: _channel(m, ca, certs[name]) for name in USERS}
    try:
        kv = {name: rpc_pb2_grpc.KVStub(ch) for name, ch in channels.items()}
        auth_setup.enable(channels["root"])
        rpc_pb2_grpc.AuthStub(channels["root"]).UserAdd(rpc_pb2.AuthUserAddRequest(name="certonly", options={
            "no_password": True}), timeout=10)  # root's certificate: root (auth is on now)
        rpc_pb2_grpc.AuthStub(channels["root"]).UserGrantRole(
            rpc_pb2.AuthUserGrantRoleRequest(user="certonly", role="rw"), timeout=10)
        obs = []
        for name in USERS:
            obs.append(f"{name} put a/{name}: {outcome(lambda: kv[name].Put(rpc_pb2.PutRequest(key=f'a/{name}'.encode(), value=b'v'), timeout=10))}")
            obs.append(f"{name} get x: {outcome(lambda: kv[name].Range(rpc_pb2.RangeRequest(key=b'x'), timeout=10))}")
            obs.append(f"{name} serializable get a/: {outcome(lambda: kv[name].Range(rpc_pb2.RangeRequest(key=b'a/', range_end=b'a0', serializable=True), timeout=10))}")
            obs.append(f"{name} user list: {outcome(lambda: rpc_pb2_grpc.AuthStub(channels[name]).UserList(rpc_pb2.AuthUserListRequest(), timeout=10))}")
        alice_token = auth_setup.token(channels["nobody"], "alice", ALICE_PW)
        obs.append("nobody's certificate, alice's token, put a/t: " + outcome(
            lambda: kv["nobody"].Put(rpc_pb2.PutRequest(key=b"a/t", value=b"v"), metadata=md(alice_token), timeout=10)))
        obs.append("root's certificate, alice's token, get x: " + outcome(
            lambda: kv["root"].Range(rpc_pb2.RangeRequest(key=b"x"), metadata=md(alice_token), timeout=10)))
        obs.append("certonly logs in: " + outcome(lambda: auth_setup.token(channels["root"], "certonly", "pw")))
        return obs
    finally:
        for ch in channels.values():
            ch.close()


def _etcdctl(m: procs.Member, ca: CA, issued, *args: str) -> str:
    r = subprocess.run([procs.ETCDCTL_BIN, "--endpoints", m.endpoint, "--cacert", str(ca.cert), "--cert",
                        str(issued.cert), "--key", str(issued.key), "--dial-timeout", "5s", *args],
                       capture_output=True, text=True, timeout=30, env={**os.environ, "ETCDCTL_API": "3"})
    return f"exit {r.returncode} out {r.stdout.strip()!r} err {r.stderr.strip().splitlines()[-1:]!r}"


def test_certificate_common_names_are_users_as_in_etcd(tmp_path, member_group):
    procs.require("etcd")
    procs.require("etcdx")
    procs.require("etcdctl")
    ca = CA(tmp_path / "ca")
    server = ca.issue("server")
    certs = {name: ca.issue(f"client-{name}", cn=name, server=False) for name in USERS}
    tls = ["--cert-file", str(server.cert), "--key-file", str(server.key), "--trusted-ca-file", str(ca.cert),
           "--client-cert-auth"]
    seen = {}
    for label, kind, extra in (("etcd", "etcd", []), ("etcdx", "etcdx", []),
                               ("etcdx-no-workers", "etcdx", ["--api-workers", "0"])):
        m = member_group.new(kind, name=label.replace("-", ""), start=False, extra_args=[*tls, *extra])
        m.client_scheme = "https"
        m.client_tls = (ca.cert, certs["root"].cert, certs["root"].key)
        m.start()
        seen[label] = _script(m, ca, certs) + [
            "etcdctl as alice, get a/alice: " + _etcdctl(m, ca, certs["alice"], "get", "a/alice", "--print-value-only"),
            "etcdctl as alice, put x: " + _etcdctl(m, ca, certs["alice"], "put", "x", "1"),
            "etcdctl as root, role list: " + _etcdctl(m, ca, certs["root"], "role", "list"),
        ]
        m.close()
    assert seen["etcdx"] == seen["etcd"], "\n".join(f"{a}\n{b}\n" for a, b in zip(seen["etcd"], seen["etcdx"]) if a != b)
    assert seen["etcdx-no-workers"] == seen["etcd"]
    assert "alice put a/alice: ok" in seen["etcd"]
    assert "alice get x: PERMISSION_DENIED: etcdserver: permission denied" in seen["etcd"]
    assert "nobody put a/nobody: PERMISSION_DENIED: etcdserver: permission denied" in seen["etcd"]
    assert "certonly put a/certonly: ok" in seen["etcd"]
