"""Clients that misbehave on the client port cost the member bounded memory and no service.

- 10,000 idle connections at once (a leak in some client, or an attack): the
  member keeps answering a well-behaved client, its memory stays bounded, and
  it serves on after they go.
- Garbage where a TLS handshake belongs (random bytes, plaintext HTTP/1.1 and
  HTTP/2, truncated ClientHellos) on an https client URL, many times: every such
  connection is closed, and TLS clients keep working.
- Random bytes after the HTTP/2 preface: that connection is closed (GOAWAY or
  reset), the others are not.

Each runs against etcd too, so the checks only ask what etcd also does.
"""

from __future__ import annotations

import os
import random
import socket
import ssl
import time

import pytest

from etcdx.pb import rpc_pb2
from support import procs
from support.certs import CA

pytestmark = [pytest.mark.timeout(240), pytest.mark.etcd]

KINDS = ["etcd", "etcdx"]


def _family(pid: int) -> list[int]:
    """``pid`` and its children (etcdx's API workers)."""
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(entry))
            except OSError:
                pass
    return [pid, *kids]


def _rss_kib(pid: int) -> int:
    total = 0
    for p in _family(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def _works(m: procs.Member, key: bytes) -> bool:
    m.kv.Put(rpc_pb2.PutRequest(key=key, value=b"v"), timeout=10)
    return m.kv.Range(rpc_pb2.RangeRequest(key=key), timeout=10).count == 1


@pytest.mark.parametrize("kind", KINDS)
def test_ten_thousand_idle_connections_do_not_stop_the_member(member_group, kind: str) -> None:
    procs.require(kind)
    m = member_group.new(kind)
    assert _works(m, b"before")
    rss_before = _rss_kib(m.pid)
    conns: list[socket.socket] = []
    try:
        for _ in range(10_000):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", m.client_port))
            conns.append(s)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the listen backlog drains as the member accepts
            if _works(m, b"during"):
                break
        rss_during = _rss_kib(m.pid)
    finally:
        for s in conns:
            s.close()
    assert rss_during - rss_before < 400 * 1024, f"{kind} grew by {(rss_during - rss_before) // 1024} MiB"
    assert _works(m, b"after")


def _garbage() -> list[bytes]:
    rng = random.Random(7)
    hello = bytes.fromhex("16030100a10100009d0303") + bytes(32)  # a ClientHello cut short
    return ([rng.randbytes(rng.randint(1, 600)) for _ in range(60)]
            + [b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", hello,
               b"\x16\x03\x01\xff\xff" + os.urandom(200)])


@pytest.mark.parametrize("kind", KINDS)
def test_garbage_instead_of_a_tls_handshake_is_refused_and_tls_clients_go_on(member_group, tmp_path, kind: str) -> None:
    procs.require(kind)
    ca = CA(tmp_path / "ca")
    server, client = ca.issue(f"{kind}-server"), ca.issue("client", server=False)
    m = member_group.new(kind, start=False, extra_args=["--cert-file", str(server.cert), "--key-file", str(server.key)])
    m.client_scheme = "https"
    m.client_tls = (ca.cert, client.cert, client.key)
    m.start()
    assert _works(m, b"before")
    for blob in _garbage():
        with socket.create_connection(("127.0.0.1", m.client_port), timeout=5) as s:
            try:
                s.sendall(blob)
                s.shutdown(socket.SHUT_WR)
                s.settimeout(5)
                answer = s.recv(4096)
            except (ConnectionResetError, BrokenPipeError, socket.timeout):
                answer = b""
        assert not answer.startswith((b"HTTP/", b"\x00\x00")), (blob[:20], answer[:40])
    assert _works(m, b"after")
    ctx = ssl.create_default_context(cafile=str(ca.cert))
    ctx.load_cert_chain(client.cert, client.key)
    with socket.create_connection(("127.0.0.1", m.client_port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


@pytest.mark.parametrize("kind", KINDS)
def test_random_frames_end_that_connection_only(member_group, kind: str) -> None:
    procs.require(kind)
    m = member_group.new(kind)
    rng = random.Random(11)
    for _ in range(30):
        with socket.create_connection(("127.0.0.1", m.client_port), timeout=5) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + rng.randbytes(rng.randint(9, 2000)))
            s.settimeout(5)
            try:
                while s.recv(65536):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
        assert _works(m, b"k%d" % rng.randrange(100))
