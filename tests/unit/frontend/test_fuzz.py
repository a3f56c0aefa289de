"""Hostile input: random frame sequences never raise out of the connection, and memory stays bounded.

Two levels: the sans-IO connection alone, and the asyncio HTTP/2 session with
real handlers behind it (on a fake transport), where an escaping exception
would reach the event loop's exception handler.
"""

from __future__ import annotations

import asyncio

import hpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from etcdx.frontend import frames as fr
from etcdx.frontend.connection import ConnectionSettings, ServerConnection
from etcdx.frontend.http2 import Http2Session
from etcdx.frontend.options import Options
from etcdx.frontend.rpc import Router

from .peers import GRPC_REQUEST

STREAM_IDS = st.sampled_from([0, 1, 2, 3, 5, 7, 9, 0x7FFFFFFF])
_encoder_blocks = [
    hpack.Encoder().encode(GRPC_REQUEST),
    hpack.Encoder().encode(GRPC_REQUEST[:2] + [(":path", "/test.Test/Stream")] + GRPC_REQUEST[3:]),
    hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/health")]),
    b"\xbe\xbf",                       # references to dynamic entries that may not exist
    b"\x3f\xe2\x1f",                   # table size update beyond the limit
]


@st.composite
def frame_bytes(draw) -> bytes:
    ftype = draw(st.integers(0, 11))
    flags = draw(st.sampled_from([0, 1, 4, 5, 8, 0x20, 0x25, 0xFF]))
    sid = draw(STREAM_IDS)
    if ftype in (fr.HEADERS, fr.CONTINUATION) and draw(st.booleans()):
        payload = draw(st.sampled_from(_encoder_blocks))
    elif ftype == fr.DATA and draw(st.booleans()):
        body = draw(st.binary(max_size=40))
        payload = bytes([0]) + len(body).to_bytes(4, "big") + body     # a gRPC message
    elif ftype in (fr.WINDOW_UPDATE, fr.RST_STREAM):
        payload = draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
    elif ftype == fr.SETTINGS:
        payload = b"".join(draw(st.integers(0, 7)).to_bytes(2, "big") + draw(st.integers(0, 2**32 - 1)).to_bytes(4, "big")
                           for _ in range(draw(st.integers(0, 3))))
    else:
        payload = draw(st.binary(max_size=24))
    return fr.frame(ftype, flags, sid, payload)


SMALL = ConnectionSettings(max_concurrent_streams=3, initial_window_size=4096, connection_window=65_535,
                           max_header_list_size=2048, min_ping_interval=0.0)


def feed(conn: ServerConnection, data: bytes, cuts: list[int]) -> None:
    prev = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts) + [len(data)]:
        conn.receive(data[prev:cut])
        prev = cut
        assert len(conn._buf) <= SMALL.max_frame_size + fr.FRAME_HEADER_SIZE
        assert conn.open_streams <= SMALL.max_concurrent_streams
        conn.data_to_send()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame_bytes(), max_size=30), st.lists(st.integers(0, 10_000), max_size=5))
def test_random_frames_never_raise_and_stay_bounded(frames: list[bytes], cuts: list[int]) -> None:
    conn = ServerConnection(SMALL)
    conn.initiate()
    data = fr.PREFACE + fr.settings({}) + b"".join(frames)
    feed(conn, data, cuts)
    if conn.closed:
        assert conn.open_streams == 0


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_raise(data: bytes) -> None:
    conn = ServerConnection(SMALL)
    conn.receive(fr.PREFACE + data)
    conn.receive(data)


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def get_write_buffer_size(self) -> int:
        return 0

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed


def _router() -> Router:
    r = Router()
    r.unary("/etcdserverpb.KV/Put", lambda m, c: m)

    async def stream(s, c) -> None:
        while (m := await s.recv()) is not None:
            await s.send(m)
    r.stream("/test.Test/Stream", stream)
    return r


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame_bytes(), max_size=25))
def test_session_survives_random_frames(frames: list[bytes]) -> None:
    errors: list = []

    async def run() -> None:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
        transport = FakeTransport()
        session = Http2Session(Options(_router(), _http, 1024, h2=SMALL), loop, transport, ("peer", 1), None)
        session.data_received(fr.PREFACE + fr.settings({}))
        for f in frames:
            if transport.closed:
                break
            session.data_received(f)
            await asyncio.sleep(0)
        session.connection_lost(None)
        if session.tasks:
            await asyncio.wait(session.tasks, timeout=5)
        assert not session.tasks or all(t.done() for t in session.tasks)

    asyncio.run(run())
    assert errors == []


async def _http(request, response) -> None:
    response.start(200, [("content-length", "2")])
    await response.write(b"ok")
    await response.end()
