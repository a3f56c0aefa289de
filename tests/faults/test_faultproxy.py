"""FaultProxy on its own: an echo server behind it, peers faked by their first bytes."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from support.faultproxy import FaultProxy

ME, PEER, OTHER = 0x2, 0x1, 0x3


class EchoServer:
    """Echoes every byte and remembers what each connection sent."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received: list[bytearray] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            got = bytearray()
            self.received.append(got)
            threading.Thread(target=self._echo, args=(conn, got), daemon=True).start()

    def _echo(self, conn: socket.socket, got: bytearray) -> None:
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                got += data
                conn.sendall(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def echo():
    server = EchoServer()
    yield server
    server.close()


@pytest.fixture
def proxy(echo):
    p = FaultProxy(echo.port, name="test", member_id=ME).start()
    yield p
    p.close()


def etcdx_hello(sender: int, receiver: int = ME) -> bytes:
    return f"ETCDX-PEER/1 raft from={sender:016x} to={receiver:016x} cluster={7:016x}\n".encode()


def etcd_request(sender: int | None) -> bytes:
    header = f"X-Server-From: {sender:x}\r\n" if sender is not None else ""
    return f"GET /raft/stream/message/{sender or 0:x} HTTP/1.1\r\nHost: x\r\n{header}\r\n".encode()


def dial(proxy: FaultProxy, first: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", proxy.port), timeout=2)
    s.sendall(first)
    return s


def recv_exactly(s: socket.socket, n: int, timeout: float = 2.0) -> bytes:
    s.settimeout(timeout)
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def nothing_arrives(s: socket.socket, wait: float = 0.3) -> bool:
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except TimeoutError:
        return True


def wait_for(condition, timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.01)


def test_sender_is_read_from_the_etcdx_hello_and_the_etcd_header(proxy):
    a = dial(proxy, etcdx_hello(PEER))
    b = dial(proxy, etcd_request(OTHER))
    c = dial(proxy, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: len(proxy.senders()) == 3)
    assert sorted(proxy.senders(), key=str) == sorted(
        [(PEER, "raft"), (OTHER, "stream:message"), (None, "http:/version")], key=str
    )
    for s in (a, b, c):
        s.close()


def test_bytes_pass_both_ways_without_rules(proxy):
    hello = etcdx_hello(PEER)
    s = dial(proxy, hello + b"ping")
    assert recv_exactly(s, len(hello) + 4) == hello + b"ping"
    s.close()


def test_block_to_the_member_discards_what_the_dialler_sends(proxy, echo):
    hello = etcdx_hello(PEER)
    s = dial(proxy, hello)
    assert recv_exactly(s, len(hello)) == hello
    proxy.block(PEER, ME)
    s.sendall(b"lost")
    assert nothing_arrives(s)
    assert bytes(echo.received[0]) == hello


def test_block_from_the_member_discards_only_the_answers(proxy, echo):
    hello = etcdx_hello(PEER)
    proxy.block(ME, PEER)
    s = dial(proxy, hello + b"ping")
    wait_for(lambda: echo.received and bytes(echo.received[0]) == hello + b"ping")
    assert nothing_arrives(s)


def test_heal_closes_connections_that_lost_bytes_and_keeps_the_others(proxy):
    hit = dial(proxy, etcdx_hello(PEER))
    spared = dial(proxy, etcdx_hello(OTHER))
    recv_exactly(hit, len(etcdx_hello(PEER)))
    recv_exactly(spared, len(etcdx_hello(OTHER)))
    proxy.block(PEER, ME)
    hit.sendall(b"lost")
    wait_for(lambda: proxy.stats.bytes_discarded > 0)
    proxy.heal()
    hit.settimeout(2)
    with pytest.raises(ConnectionResetError):
        while hit.recv(1):
            pass
    spared.sendall(b"kept")
    assert recv_exactly(spared, 4) == b"kept"


def test_partition_leaves_unknown_senders_alone_but_isolate_cuts_them(proxy):
    probe = b"GET /raft/probing HTTP/1.1\r\nHost: x\r\n\r\n"
    proxy.partition([PEER], [ME])
    s = dial(proxy, probe)
    assert recv_exactly(s, len(probe)) == probe
    proxy.isolate(ME)
    s.sendall(b"x")
    assert nothing_arrives(s)


def test_partition_blocks_both_directions_of_a_known_link(proxy):
    proxy.partition([PEER], [ME])
    s = dial(proxy, etcd_request(PEER))
    assert nothing_arrives(s)
    other = dial(proxy, etcd_request(OTHER))
    assert recv_exactly(other, len(etcd_request(OTHER))) == etcd_request(OTHER)


def test_delay_holds_bytes_for_the_link_only(proxy):
    proxy.delay(PEER, ME, 0.3)
    hello = etcdx_hello(PEER)
    start = time.monotonic()
    s = dial(proxy, hello)
    assert recv_exactly(s, len(hello)) == hello
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    t = dial(proxy, etcdx_hello(OTHER))
    recv_exactly(t, len(etcdx_hello(OTHER)))
    assert time.monotonic() - start < 0.25


def test_drop_connections_resets_the_link_now(proxy):
    s = dial(proxy, etcdx_hello(PEER))
    t = dial(proxy, etcdx_hello(OTHER))
    recv_exactly(s, len(etcdx_hello(PEER)))
    recv_exactly(t, len(etcdx_hello(OTHER)))
    assert proxy.drop_connections(PEER, None) == 1
    s.settimeout(2)
    with pytest.raises(ConnectionResetError):
        while s.recv(1):
            pass
    t.sendall(b"still")
    assert recv_exactly(t, 5) == b"still"


def test_rules_apply_to_connections_opened_before_the_member_id_was_known(echo):
    proxy = FaultProxy(echo.port, name="late").start()
    try:
        hello = etcdx_hello(PEER)
        s = dial(proxy, hello)
        assert recv_exactly(s, len(hello)) == hello
        proxy.member_id = ME
        proxy.block(ME, PEER)
        s.sendall(b"ping")
        wait_for(lambda: bytes(echo.received[0]) == hello + b"ping")
        assert nothing_arrives(s)
    finally:
        proxy.close()
