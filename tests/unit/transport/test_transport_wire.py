"""The bytes on a peer connection: handshake line, URLs, stream frames, call frames."""

from __future__ import annotations

import asyncio
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st
from transport_testkit import Member, app, run

from etcdx.raft.codec import encode_message
from etcdx.transport.wire import (
    MAX_BATCH_FRAME,
    U32,
    Handshake,
    decode_batch,
    decode_call_request,
    decode_call_response,
    encode_call_request,
    encode_call_response,
    parse_handshake,
    parse_url,
    take_frame,
)


def test_handshake_line_is_the_format_the_fault_proxy_parses():
    line = Handshake("stream", 0x8E9E05C52164694D, 2, 0xCDF818194E3A8C32).line()
    assert line == b"ETCDX-PEER/1 stream from=8e9e05c52164694d to=0000000000000002 cluster=cdf818194e3a8c32\n"
    assert parse_handshake(line) == Handshake("stream", 0x8E9E05C52164694D, 2, 0xCDF818194E3A8C32)


@pytest.mark.parametrize("line", [
    b"GET / HTTP/1.1\r\n",
    b"ETCDX-PEER/2 stream from=0000000000000001 to=0000000000000002 cluster=0000000000000003\n",
    b"ETCDX-PEER/1 gossip from=0000000000000001 to=0000000000000002 cluster=0000000000000003\n",
    b"ETCDX-PEER/1 stream from=1 to=0000000000000002 cluster=0000000000000003\n",
    b"ETCDX-PEER/1 stream to=0000000000000002 from=0000000000000001 cluster=0000000000000003\n",
    b"ETCDX-PEER/1 call from=000000000000000g to=0000000000000002 cluster=0000000000000003\n",
    b"\xff\xfe\n",
])
def test_malformed_handshakes_are_rejected(line):
    with pytest.raises(ValueError):
        parse_handshake(line)


def test_acceptor_answers_a_non_member_with_an_error_line(tmp_path):
    async def scenario():
        async with Member(2, str(tmp_path)) as b:
            reader, writer = await asyncio.open_connection("127.0.0.1", int(b.url.rsplit(":", 1)[1]))
            writer.write(b"GET /members HTTP/1.1\r\n\r\n")
            assert await reader.read() == b"ERR bad handshake\n"
            writer.close()
    run(scenario)


def test_peer_urls():
    assert parse_url("http://127.0.0.1:2380") == ("127.0.0.1", 2380, False)
    assert parse_url("http://[::1]:2380") == ("::1", 2380, False)
    assert parse_url("https://10.0.0.1:2380") == ("10.0.0.1", 2380, True)
    for bad in ("10.0.0.1:2380", "http://host", "unix://x:1", "https://host"):
        with pytest.raises(ValueError):
            parse_url(bad)


def frames_of(msgs):
    q, carry, frames = deque(msgs), None, []
    while q or carry is not None:
        f, carry = take_frame(q, carry)
        frames.append(f)
    return frames


def test_frames_split_near_four_mib_and_keep_order():
    msgs = [app(1, 2, i, size=100_000) for i in range(100)]  # ~10 MB
    frames = frames_of(msgs)
    assert len(frames) == 3
    decoded = []
    for f in frames:
        (n,) = U32.unpack_from(f)
        assert n == len(f) - 4 <= MAX_BATCH_FRAME
        decoded += decode_batch(f[4:])
    assert decoded == msgs


def test_a_message_larger_than_a_frame_travels_alone():
    big = app(1, 2, 1, size=MAX_BATCH_FRAME + 1000)
    msgs = [app(1, 2, 0), big, app(1, 2, 2)]
    frames = frames_of(msgs)
    assert [len(decode_batch(f[4:])) for f in frames] == [1, 1, 1]
    assert [m for f in frames for m in decode_batch(f[4:])] == msgs


@given(st.lists(st.integers(min_value=0, max_value=2000), max_size=30))
def test_batch_round_trip(sizes):
    msgs = [app(3, 4, i, size=s) for i, s in enumerate(sizes)]
    assert [m for f in frames_of(msgs) for m in decode_batch(f[4:])] == msgs


def test_truncated_batch_is_an_error():
    body = encode_message(app(1, 2, 0))
    payload = U32.pack(len(body)) + body
    with pytest.raises(ValueError):
        decode_batch(payload[:-1])
    with pytest.raises(ValueError):
        decode_batch(payload + b"\x00\x00")
    with pytest.raises(ValueError):
        decode_batch(U32.pack(3) + b"\xff\xff\xff")  # not a protobuf message


def test_call_frames_round_trip():
    req = encode_call_request(7, "lease/keepalive", b"\x00\x01")
    assert U32.unpack_from(req)[0] == len(req) - 4
    assert decode_call_request(req[4:]) == (7, "lease/keepalive", b"\x00\x01")
    resp = encode_call_response(2**64 - 1, 1, b"not the leader")
    assert decode_call_response(resp[4:]) == (2**64 - 1, 1, b"not the leader")
