"""The asyncio HTTP/2 session on a recording transport: the fast path's promises
(one write per batch, no Task per unary call), completions batched per loop
iteration, back-pressure of streams and the server's keepalive."""

from __future__ import annotations

import asyncio

import hpack

from etcdx.frontend import frames as fr
from etcdx.frontend.http2 import Http2Session
from etcdx.frontend.options import Options
from etcdx.frontend.rpc import Router

from .peers import GRPC_REQUEST


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def frames(self) -> list[fr.Frame]:
        data = b"".join(self.writes)
        return fr.parse_frames(data, fr.MAX_MAX_FRAME_SIZE)[0]


def grpc_request(sid: int, message: bytes, encoder: hpack.Encoder, path: str = "/etcdserverpb.KV/Put") -> bytes:
    headers = [(k, path if k == ":path" else v) for k, v in GRPC_REQUEST]
    body = b"\0" + len(message).to_bytes(4, "big") + message
    return (fr.frame(fr.HEADERS, fr.FLAG_END_HEADERS, sid, encoder.encode(headers))
            + fr.frame(fr.DATA, fr.FLAG_END_STREAM, sid, body))


def session(router: Router, **options) -> tuple[Http2Session, RecordingTransport]:
    transport = RecordingTransport()
    s = Http2Session(Options(router, None, 1 << 20, **options), asyncio.get_running_loop(), transport,
                     ("127.0.0.1", 1), None)
    s.data_received(fr.PREFACE + fr.settings({}))
    transport.writes.clear()
    return s, transport


def test_a_batch_of_unary_calls_costs_one_write_and_no_task() -> None:
    async def run() -> None:
        router = Router()
        router.unary("/etcdserverpb.KV/Put", lambda m, c: m.upper())
        s, transport = session(router)
        tasks_before = len(asyncio.all_tasks())
        enc = hpack.Encoder()
        s.data_received(b"".join(grpc_request(sid, b"put-%d" % sid, enc) for sid in range(1, 40, 2)))
        assert len(asyncio.all_tasks()) == tasks_before
        assert len(transport.writes) == 1
        data = [f.payload[5:] for f in transport.frames() if f.type == fr.DATA]
        assert data == [b"PUT-%d" % sid for sid in range(1, 40, 2)]
    asyncio.run(run())


def test_futures_completed_in_one_iteration_are_written_together() -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future] = []

        def put(m: bytes, c) -> asyncio.Future:
            f = loop.create_future()
            pending.append(f)
            return f
        router = Router()
        router.unary("/etcdserverpb.KV/Put", put)
        s, transport = session(router)
        enc = hpack.Encoder()
        s.data_received(b"".join(grpc_request(sid, b"x", enc) for sid in (1, 3, 5)))
        transport.writes.clear()
        for f in pending:
            f.set_result(b"done")
        for _ in range(3):
            await asyncio.sleep(0)
        assert len(transport.writes) == 1
        assert sum(1 for f in transport.frames() if f.type == fr.DATA) == 3
    asyncio.run(run())


def test_stream_send_waits_for_the_peers_window() -> None:
    async def run() -> None:
        sent: list[int] = []

        async def flood(stream, call) -> None:
            await stream.recv()
            for i in range(100):
                await stream.send(b"m" * 10_000)
                sent.append(i)
        router = Router()
        router.stream("/test.Test/Flood", flood)
        s, transport = session(router)
        s.data_received(grpc_request(1, b"go", hpack.Encoder(), "/test.Test/Flood"))
        for _ in range(20):
            await asyncio.sleep(0)
        # 65,535 bytes of window plus the low-water mark of queued bytes, then it waits.
        assert 6 <= len(sent) < 20
        stuck = len(sent)
        s.data_received(fr.window_update(0, 1 << 20) + fr.window_update(1, 1 << 20))
        for _ in range(50):
            await asyncio.sleep(0)
        assert len(sent) > stuck + 50
        s.connection_lost(None)
        if s.tasks:
            await asyncio.wait(s.tasks, timeout=5)
    asyncio.run(run())


def test_reset_stream_cancels_the_task_and_runs_cancel_callbacks() -> None:
    async def run() -> None:
        events: list[str] = []

        async def hang(stream, call) -> None:
            call.add_cancel_callback(lambda: events.append("callback"))
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                events.append("cancelled")
                raise
        router = Router()
        router.stream("/test.Test/Hang", hang)
        s, transport = session(router)
        s.data_received(grpc_request(1, b"", hpack.Encoder(), "/test.Test/Hang"))
        await asyncio.sleep(0)
        s.data_received(fr.rst_stream(1, fr.CANCEL))
        if s.tasks:
            await asyncio.wait(s.tasks, timeout=5)
        assert events == ["callback", "cancelled"]
        assert not s.busy
    asyncio.run(run())


def test_idle_client_is_pinged_and_dropped_when_silent() -> None:
    async def run() -> None:
        s, transport = session(Router(), keepalive_interval=0.05, keepalive_timeout=0.05)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not any(f.type == fr.PING and not f.flags for f in transport.frames()):
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        while not transport.aborted:
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        s.connection_lost(None)
    asyncio.run(run())


def test_client_answering_pings_is_kept() -> None:
    async def run() -> None:
        s, transport = session(Router(), keepalive_interval=0.05, keepalive_timeout=0.2)
        loop = asyncio.get_running_loop()
        answered = 0
        deadline = loop.time() + 5
        while answered < 3:
            assert loop.time() < deadline and not transport.aborted
            pings = [f for f in transport.frames() if f.type == fr.PING and not f.flags]
            transport.writes.clear()
            for p in pings:
                s.data_received(fr.ping(p.payload, ack=True))
                answered += 1
            await asyncio.sleep(0.01)
        assert not transport.aborted
        s.connection_lost(None)
    asyncio.run(run())


def test_shutdown_waits_for_a_response_held_back_by_flow_control() -> None:
    async def run() -> None:
        router = Router()
        router.unary("/etcdserverpb.KV/Put", lambda m, c: b"r" * 200_000)
        s, transport = session(router)
        s.data_received(grpc_request(1, b"x", hpack.Encoder()))
        s.shutdown()
        assert not transport.closed and s.busy               # 65,535 bytes out, the rest queued
        s.data_received(fr.window_update(0, 1 << 20) + fr.window_update(1, 1 << 20))
        assert transport.closed and not s.busy
        body = b"".join(f.payload for f in transport.frames() if f.type == fr.DATA)
        assert len(body) == 200_005
        assert [f.type for f in transport.frames()][-1] == fr.HEADERS   # the trailers, last
    asyncio.run(run())
