"""Listeners: unix sockets, SO_REUSEPORT sharing, protocol detection from the first bytes,
HTTP handler failures, and shutdown."""

from __future__ import annotations

import socket
import subprocess
import time

import grpc
import pytest

from etcdx.frontend import frames as fr
from etcdx.pb import rpc_pb2, rpc_pb2_grpc
from support.fake_etcd import ServerThread


def test_unix_socket_listener(tmp_path) -> None:
    path = tmp_path / "etcdx.sock"
    with ServerThread(url=f"unix://{path}"):
        ch = grpc.insecure_channel(f"unix:{path}")
        kv = rpc_pb2_grpc.KVStub(ch)
        kv.Put(rpc_pb2.PutRequest(key=b"u", value=b"nix"))
        assert kv.Range(rpc_pb2.RangeRequest(key=b"u")).kvs[0].value == b"nix"
        ch.close()


def test_two_front_ends_share_a_port_with_reuse_port() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    a = ServerThread(url=f"http://127.0.0.1:{port}", reuse_port=True).start()
    b = ServerThread(url=f"http://127.0.0.1:{port}", reuse_port=True).start()
    try:
        a.stop()
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        assert ch.unary_unary("/test.Test/Echo")(b"still served", timeout=10) == b"still served"
        ch.close()
    finally:
        a.stop()
        b.stop()


def test_without_reuse_port_a_second_listener_fails() -> None:
    with ServerThread() as a:
        with pytest.raises(OSError):
            ServerThread(url=f"http://127.0.0.1:{a.port}").start()


def test_preface_arriving_byte_by_byte_is_still_http2() -> None:
    with ServerThread() as s, socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        for b in fr.PREFACE:
            sock.sendall(bytes([b]))
        sock.sendall(fr.settings({}))
        head = sock.recv(9)
        assert head[3] == fr.SETTINGS                  # the server's own SETTINGS come first


def test_http1_request_on_the_grpc_port() -> None:
    with ServerThread() as s, socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b'{"health":"true"}')


def test_garbage_gets_400_and_the_connection_closes() -> None:
    with ServerThread() as s, socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"\x16\x03\x01 not http at all\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        assert data.startswith(b"HTTP/1.1 400 ")


@pytest.mark.parametrize("http2", [False, True])
@pytest.mark.parametrize("path", ["/fail", "/silent"])
def test_http_handler_failures_are_500(path: str, http2: bool) -> None:
    with ServerThread() as s:
        args = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", f"http://{s.endpoint}{path}"]
        if http2:
            args.insert(1, "--http2-prior-knowledge")
        assert subprocess.run(args, capture_output=True, text=True, timeout=30).stdout == "500"
        assert subprocess.run(["curl", "-s", f"http://{s.endpoint}/health"], capture_output=True,
                              timeout=30).stdout == b'{"health":"true"}'


def test_closed_front_end_refuses_connections() -> None:
    s = ServerThread().start()
    port = s.port
    s.stop()
    deadline = time.monotonic() + 5
    with pytest.raises(OSError):
        while time.monotonic() < deadline:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_pipelined_http1_requests_are_answered_in_order() -> None:
    with ServerThread() as s, socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                     b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.count(b"HTTP/1.1 200 ") == 3
        assert data.index(b"etcdserver") < data.index(b"hello") < data.index(b'"health"')


def test_http10_request_gets_a_close_delimited_answer() -> None:
    with ServerThread() as s, socket.create_connection(("127.0.0.1", s.port), timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b'{"health":"true"}')
