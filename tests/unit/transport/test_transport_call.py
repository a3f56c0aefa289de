"""Request/response calls: round trips, errors, timeouts, pipelining, and fetch by a joining member."""

from __future__ import annotations

import asyncio
import logging

import pytest
from transport_testkit import CLUSTER, Member, eventually, free_port, mesh, run, url

from etcdx.transport import RemoteError, TransportError, fetch
from etcdx.transport.wire import Handshake


class Handler:
    """A request handler with a few methods, counting concurrent requests."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, method: str, payload: bytes) -> bytes:
        if method == "echo":
            return b"echo:" + payload
        if method == "refuse":
            raise RemoteError("not the leader")
        if method == "crash":
            raise KeyError("bug")
        if method == "slow":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(0.1)
            finally:
                self.in_flight -= 1
            return payload
        if method == "hang":
            await asyncio.Event().wait()
        raise RemoteError(f"unknown method {method}")


def test_call_round_trip_and_errors(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="etcdx.transport")

    async def scenario():
        async with Member(1, str(tmp_path)) as a, Member(2, str(tmp_path), request_handler=Handler()) as b:
            mesh(a, b)
            assert await a.transport.call(2, "echo", b"hi", timeout=2) == b"echo:hi"
            assert await a.transport.call(2, "echo", b"x" * 300_000, timeout=2) == b"echo:" + b"x" * 300_000
            with pytest.raises(RemoteError) as refused:
                await a.transport.call(2, "refuse", b"", timeout=2)
            assert refused.value.message == "not the leader"
            with pytest.raises(RemoteError) as crashed:
                await a.transport.call(2, "crash", b"", timeout=2)
            assert crashed.value.message == "internal error"
            # a member without a handler answers, with an error
            with pytest.raises(RemoteError):
                await b.transport.call(1, "echo", b"", timeout=2)
    run(scenario)
    assert any(r.getMessage() == "request handler failed" for r in caplog.records)


def test_call_timeout_raises_transport_error_and_the_connection_survives(tmp_path):
    async def scenario():
        async with Member(1, str(tmp_path)) as a, Member(2, str(tmp_path), request_handler=Handler()) as b:
            mesh(a, b)
            loop = asyncio.get_running_loop()
            started = loop.time()
            with pytest.raises(TransportError) as err:
                await a.transport.call(2, "hang", b"", timeout=0.2)
            assert not isinstance(err.value, RemoteError)
            assert 0.15 < loop.time() - started < 1.0
            assert await a.transport.call(2, "echo", b"after", timeout=2) == b"echo:after"
    run(scenario)


def test_call_to_a_down_or_unknown_peer_fails(tmp_path):
    async def scenario():
        async with Member(1, str(tmp_path)) as a:
            a.transport.add_peer(2, [url(free_port())])
            with pytest.raises(TransportError):
                await a.transport.call(2, "echo", b"", timeout=1)
            with pytest.raises(TransportError, match="unknown peer"):
                await a.transport.call(3, "echo", b"", timeout=1)
    run(scenario)


def test_thousand_concurrent_calls_are_pipelined_on_one_connection(tmp_path):
    handler = Handler()

    async def scenario():
        async with Member(1, str(tmp_path)) as a, Member(2, str(tmp_path), request_handler=handler) as b:
            mesh(a, b)
            await eventually(lambda: a.transport.is_active(2), "stream up")
            loop = asyncio.get_running_loop()
            started = loop.time()
            payloads = [i.to_bytes(4, "big") for i in range(1000)]
            results = await asyncio.gather(*(a.transport.call(2, "slow", p, timeout=5) for p in payloads))
            took = loop.time() - started
            assert results == payloads
            assert handler.max_in_flight > 500  # served concurrently, not one after another
            assert took < 2.0, f"1000 calls of 0.1 s each took {took:.2f}s"
            call_conns = [w for w in b.transport._inbound[1]]  # the stream and one call connection
            assert len(call_conns) == 2
    run(scenario)


def test_calls_fail_when_the_connection_drops_and_the_next_call_redials(tmp_path):
    port = free_port()

    async def scenario():
        async with Member(1, str(tmp_path)) as a:
            a.transport.add_peer(2, [url(port)])
            async with Member(2, str(tmp_path), port=port, request_handler=Handler()):
                assert await a.transport.call(2, "echo", b"1", timeout=2) == b"echo:1"
                pending = asyncio.ensure_future(a.transport.call(2, "hang", b"", timeout=5))
                await asyncio.sleep(0.05)
            with pytest.raises(TransportError):
                await pending
            async with Member(2, str(tmp_path), port=port, request_handler=Handler()):
                assert await a.transport.call(2, "echo", b"2", timeout=2) == b"echo:2"
    run(scenario)


def test_fetch_reaches_a_member_without_knowing_its_ids(tmp_path):
    async def scenario():
        async with Member(2, str(tmp_path), request_handler=Handler()) as b:
            dead = url(free_port())
            assert await fetch([dead, b.url], "echo", b"join", timeout=2) == b"echo:join"
            assert await fetch([b.url], "echo", b"x", local_id=9, cluster_id=CLUSTER) == b"echo:x"
            with pytest.raises(RemoteError, match="not the leader"):
                await fetch([b.url, dead], "refuse", b"", timeout=2)
            with pytest.raises(TransportError, match="no peer answered"):
                await fetch([dead], "echo", b"", timeout=0.5)
            with pytest.raises(TransportError, match="cluster ID mismatch"):
                await fetch([b.url], "echo", b"", cluster_id=CLUSTER + 1, timeout=1)
    run(scenario)


def test_cluster_zero_is_accepted_only_for_calls(tmp_path):
    async def scenario():
        async with Member(2, str(tmp_path)) as b:
            port = int(b.url.rsplit(":", 1)[1])
            for kind, answer in (("call", b"OK\n"), ("stream", b"ERR cluster ID mismatch\n"),
                                 ("snapshot", b"ERR cluster ID mismatch\n")):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(Handshake(kind, 0, 0, 0).line())
                assert await reader.readline() == answer, kind
                writer.close()
            assert b.received == []
    run(scenario)
