"""The sans-IO HTTP/2 server connection against the h2 package as client, and against raw frames."""

from __future__ import annotations

import h2.events
import h2.settings
import pytest

from etcdx.frontend import frames as fr
from etcdx.frontend import headers as hd
from etcdx.frontend.connection import DataReceived, GoAwayReceived, PingAcked, RequestReceived, SendReady, StreamReset

from .peers import GRPC_REQUEST, H2Pair, RawClient, received


def respond(pair: H2Pair, sid: int, body: bytes, trailers: bool = True) -> None:
    pair.server.send_headers(sid, hd.GRPC_RESPONSE_HEADERS)
    pair.server.send_data(sid, body)
    if trailers:
        pair.server.send_trailers(sid, hd.GRPC_OK_TRAILERS)


def body_of(events: list, sid: int) -> bytes:
    return b"".join(e.data for e in received(events, h2.events.DataReceived) if e.stream_id == sid)


def test_request_arrives_as_head_then_data() -> None:
    pair = H2Pair()
    sid = pair.request(b"hello")
    sev, _ = pair.pump()
    (req,) = received(sev, RequestReceived)
    assert req.head.path == "/etcdserverpb.KV/Put" and req.head.is_grpc and not req.end_stream
    (data,) = received(sev, DataReceived)
    assert (data.stream_id, data.data, data.end_stream) == (sid, b"hello", True)


def test_response_with_trailers_reaches_the_client() -> None:
    pair = H2Pair()
    sid = pair.request(b"x")
    pair.pump()
    respond(pair, sid, b"reply")
    _, cev = pair.pump()
    (resp,) = received(cev, h2.events.ResponseReceived)
    assert dict(resp.headers)[":status"] == "200"
    assert body_of(cev, sid) == b"reply"
    (trailers,) = received(cev, h2.events.TrailersReceived)
    assert dict(trailers.headers) == {"grpc-status": "0"}
    assert received(cev, h2.events.StreamEnded)
    assert pair.server.open_streams == 0


def test_response_larger_than_the_peers_windows_waits_for_window_updates() -> None:
    pair = H2Pair()
    sid = pair.request(b"x")
    pair.pump()
    body = bytes(range(256)) * 2000          # 512,000 bytes; the client grants 65,535
    respond(pair, sid, body)
    _, cev = pair.pump()
    got = body_of(cev, sid)
    assert len(got) == 65_535
    assert not received(cev, h2.events.TrailersReceived)   # trailers wait behind the data
    for _ in range(100):
        for e in received(cev, h2.events.DataReceived):
            pair.client.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        _, cev = pair.pump()
        got += body_of(cev, sid)
        if received(cev, h2.events.TrailersReceived):
            break
    assert got == body
    assert pair.server.open_streams == 0


def test_data_frames_respect_the_peers_max_frame_size() -> None:
    pair = H2Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    pair.client.increment_flow_control_window(1 << 20)
    sid = pair.request(b"x")
    pair.pump()
    respond(pair, sid, b"z" * 100_000)
    _, cev = pair.pump()
    sizes = [len(e.data) for e in received(cev, h2.events.DataReceived)]
    assert sum(sizes) == 100_000 and max(sizes) <= 16_384


def test_larger_peer_max_frame_size_allows_larger_frames() -> None:
    pair = H2Pair(client_settings={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20,
                                   h2.settings.SettingCodes.MAX_FRAME_SIZE: 1 << 17})
    pair.client.increment_flow_control_window(1 << 20)
    sid = pair.request(b"x")
    pair.pump()
    respond(pair, sid, b"z" * 100_000)
    _, cev = pair.pump()
    assert [len(e.data) for e in received(cev, h2.events.DataReceived)] == [100_000]


def test_window_growth_by_settings_releases_queued_data() -> None:
    pair = H2Pair()
    sid = pair.request(b"x")
    pair.pump()
    pair.client.increment_flow_control_window(1 << 20)   # connection window no longer limits
    pair.pump()
    respond(pair, sid, b"q" * 100_000)
    _, cev = pair.pump()
    assert len(body_of(cev, sid)) == 65_535
    pair.client.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 200_000})
    _, cev = pair.pump()
    assert len(body_of(cev, sid)) == 100_000 - 65_535
    assert received(cev, h2.events.StreamEnded)


def test_send_ready_reports_a_drained_queue() -> None:
    pair = H2Pair()
    sid = pair.request(b"x", end_stream=False)
    pair.pump()
    pair.server.send_headers(sid, hd.GRPC_RESPONSE_HEADERS)
    pair.server.send_data(sid, b"d" * 200_000)
    assert pair.server.pending_bytes(sid) == 200_000 - 65_535
    pair.server.want_ready(sid)
    _, cev = pair.pump()
    for _ in range(10):
        for e in received(cev, h2.events.DataReceived):
            pair.client.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        sev, cev = pair.pump()
        if received(sev, SendReady):
            break
    assert received(pair.server_events, SendReady) == [SendReady(sid)]
    assert pair.server.pending_bytes(sid) < pair.server.settings.send_low_water


def test_large_header_block_arrives_through_continuation_frames() -> None:
    pair = H2Pair()
    big = "v" * 40_000
    sid = pair.request(b"", headers=GRPC_REQUEST + [("token", big)])
    sev, _ = pair.pump()
    (req,) = received(sev, RequestReceived)
    assert req.stream_id == sid and req.head.metadata["token"] == big


def test_large_response_headers_are_split_into_continuation_frames() -> None:
    pair = H2Pair()
    sid = pair.request(b"x")
    pair.pump()
    block = hd.encode([(b":status", b"200"), (b"x-big", b"b" * 40_000)])
    pair.server.send_headers(sid, block, end_stream=True)
    _, cev = pair.pump()
    (resp,) = received(cev, h2.events.ResponseReceived)
    assert dict(resp.headers)["x-big"] == "b" * 40_000


def test_consumed_data_is_returned_with_window_updates() -> None:
    pair = H2Pair(initial_window_size=20_000, connection_window=20_000)
    sid = pair.request(b"a" * 16_000, end_stream=False)
    sev, _ = pair.pump()
    (data,) = received(sev, DataReceived)
    assert pair.client.local_flow_control_window(sid) == 4_000
    pair.server.consumed(sid, data.flow_length)
    pair.pump()
    assert pair.client.local_flow_control_window(sid) == 20_000


def test_unconsumed_data_stops_the_peer_at_the_window() -> None:
    raw = RawClient(initial_window_size=1000, connection_window=65_535).preface()
    raw.headers(1, end_stream=False)
    raw.send(fr.frame(fr.DATA, 0, 1, b"x" * 1000))
    assert not raw.resets()
    raw.send(fr.frame(fr.DATA, 0, 1, b"x"))
    assert raw.resets() == {1: fr.FLOW_CONTROL_ERROR}
    assert StreamReset(1, fr.FLOW_CONTROL_ERROR, False) in raw.events


def test_ping_is_answered_with_the_same_payload() -> None:
    pair = H2Pair()
    pair.client.ping(b"12345678")
    _, cev = pair.pump()
    (ack,) = received(cev, h2.events.PingAckReceived)
    assert ack.ping_data == b"12345678"


def test_pings_more_often_than_allowed_end_the_connection() -> None:
    pair = H2Pair(min_ping_interval=5.0, max_ping_strikes=2)
    for i in range(3):
        pair.clock.now += 1.0
        pair.client.ping(b"%08d" % i)
        pair.pump()
    assert not pair.server.closed            # two strikes are allowed
    pair.clock.now += 1.0
    pair.client.ping(b"00000004")
    _, cev = pair.pump()
    (ended,) = received(cev, h2.events.ConnectionTerminated)
    assert ended.error_code == fr.ENHANCE_YOUR_CALM and ended.additional_data == b"too_many_pings"


def test_pings_at_the_allowed_interval_are_fine_forever() -> None:
    pair = H2Pair(min_ping_interval=5.0, max_ping_strikes=0)
    for i in range(20):
        pair.clock.now += 5.0
        pair.client.ping(b"%08d" % i)
        pair.pump()
    assert not pair.server.closed


def test_pings_after_response_data_are_no_strike() -> None:
    pair = H2Pair(min_ping_interval=5.0, max_ping_strikes=0)
    for i in range(5):
        sid = pair.request(b"x")
        pair.pump()
        respond(pair, sid, b"y")
        pair.client.ping(b"%08d" % i)
        pair.pump()
    assert not pair.server.closed


def test_server_ping_ack_is_reported() -> None:
    pair = H2Pair()
    pair.server.ping(b"abcdefgh")
    sev, _ = pair.pump()
    assert PingAcked(b"abcdefgh") in sev


def test_close_sends_goaway_and_lets_streams_in_flight_finish() -> None:
    pair = H2Pair()
    first = pair.request(b"x", end_stream=False)
    pair.pump()
    pair.server.close()
    _, cev = pair.pump()
    (ended,) = received(cev, h2.events.ConnectionTerminated)
    assert ended.error_code == 0 and ended.last_stream_id == first
    raw = RawClient().preface()
    raw.headers(1)
    raw.server.close()
    respond(raw, 1, b"done")
    raw.send(b"")
    assert [f.type for f in raw.frames[-4:]] == [fr.GOAWAY, fr.HEADERS, fr.DATA, fr.HEADERS]
    assert raw.frames[-2].payload == b"done"


def test_streams_opened_after_goaway_get_no_events() -> None:
    raw = RawClient().preface()
    raw.headers(1, end_stream=False)
    raw.server.close()
    ev = raw.headers(3)
    assert not received(ev, RequestReceived)
    ev = raw.headers(5, headers=GRPC_REQUEST + [("x", "y")])   # HPACK state stays in step
    assert not raw.server.closed


def test_client_reset_is_reported_as_stream_reset() -> None:
    pair = H2Pair()
    sid = pair.request(b"x", end_stream=False)
    pair.pump()
    pair.client.reset_stream(sid, error_code=fr.CANCEL)
    sev, _ = pair.pump()
    assert received(sev, StreamReset) == [StreamReset(sid, fr.CANCEL, True)]
    assert not pair.server.send_data(sid, b"late")


def test_ending_before_the_client_half_closed_resets_with_no_error() -> None:
    raw = RawClient().preface()
    raw.headers(1, end_stream=False)
    raw.server.send_headers(1, hd.encode_status(3, "bad", with_response_headers=True), end_stream=True)
    raw.send(b"")
    assert raw.resets() == {1: fr.NO_ERROR}
    raw.send(fr.frame(fr.DATA, fr.FLAG_END_STREAM, 1, b"late data"))  # in flight: ignored
    assert not raw.server.closed and raw.goaway() is None


def test_streams_over_the_concurrency_limit_are_refused() -> None:
    raw = RawClient(max_concurrent_streams=2).preface()
    for sid in (1, 3, 5):
        raw.headers(sid, end_stream=False)
    assert [e.stream_id for e in received(raw.events, RequestReceived)] == [1, 3]
    assert raw.resets() == {5: fr.REFUSED_STREAM}


def test_content_length_must_match_the_data() -> None:
    raw = RawClient().preface()
    raw.headers(1, headers=GRPC_REQUEST + [("content-length", "3")], end_stream=False)
    raw.send(fr.frame(fr.DATA, fr.FLAG_END_STREAM, 1, b"four"))
    assert raw.resets() == {1: fr.PROTOCOL_ERROR}


@pytest.mark.parametrize("headers", [
    GRPC_REQUEST + [("Token", "x")],                                  # upper case
    [("content-type", "application/grpc")] + GRPC_REQUEST,            # pseudo after regular
    GRPC_REQUEST + [(":status", "200")],                              # response pseudo-header
    [h for h in GRPC_REQUEST if h[0] != ":path"],                     # missing :path
    GRPC_REQUEST + [("connection", "keep-alive")],                    # connection-specific
    GRPC_REQUEST + [("te", "gzip")],                                  # te other than trailers
    GRPC_REQUEST + [(":method", "GET")],                              # duplicate pseudo-header
])
def test_malformed_requests_reset_only_their_stream(headers) -> None:
    raw = RawClient().preface()
    raw.headers(1, end_stream=False)
    raw.headers(3, headers=headers)
    raw.headers(5)
    assert raw.resets() == {3: fr.PROTOCOL_ERROR}
    assert [e.stream_id for e in received(raw.events, RequestReceived)] == [1, 5]
    assert not raw.server.closed


@pytest.mark.parametrize("frame_bytes, code", [
    (fr.frame(fr.HEADERS, fr.FLAG_END_HEADERS, 2, b"\x82"), fr.PROTOCOL_ERROR),       # even stream id
    (fr.frame(fr.DATA, 0, 7, b"x"), fr.PROTOCOL_ERROR),                                 # idle stream
    (fr.frame(fr.WINDOW_UPDATE, 0, 0, b"\0\0\0\0"), fr.PROTOCOL_ERROR),                 # zero increment
    (fr.frame(fr.WINDOW_UPDATE, 0, 0, b"\x7f\xff\xff\xff"), fr.FLOW_CONTROL_ERROR),     # overflow
    (fr.frame(fr.PING, 0, 0, b"short"), fr.FRAME_SIZE_ERROR),
    (fr.frame(fr.SETTINGS, 0, 0, b"\0\x05\0\0\0\x01"), fr.PROTOCOL_ERROR),              # max frame size 1
    (fr.frame(fr.SETTINGS, 0, 0, b"\0\x04\x80\0\0\0"), fr.FLOW_CONTROL_ERROR),          # window 2^31
    (fr.frame(fr.SETTINGS, fr.FLAG_ACK, 0, b"\0\0\0\0\0\0"), fr.FRAME_SIZE_ERROR),
    (fr.frame(fr.CONTINUATION, fr.FLAG_END_HEADERS, 1, b""), fr.PROTOCOL_ERROR),
    (fr.frame(fr.PUSH_PROMISE, fr.FLAG_END_HEADERS, 1, b"\0\0\0\2"), fr.PROTOCOL_ERROR),
    (fr.frame(fr.RST_STREAM, 0, 9, b"\0\0\0\x08"), fr.PROTOCOL_ERROR),                  # idle stream
    (fr.frame(fr.HEADERS, fr.FLAG_END_HEADERS, 1, b"\xff\xff\xff\x0f"), fr.COMPRESSION_ERROR),
    (fr.frame_header(fr.DATA, 0, 1, 20_000), fr.FRAME_SIZE_ERROR),                      # over our max frame
])
def test_connection_errors_send_goaway_with_their_code(frame_bytes: bytes, code: int) -> None:
    raw = RawClient().preface()
    raw.send(frame_bytes)
    assert raw.server.closed
    assert raw.goaway()[1] == code
    assert raw.send(fr.frame(fr.PING, 0, 0, b"8 bytes!")) == []      # input after the error is ignored


def test_bad_preface_is_a_protocol_error() -> None:
    raw = RawClient()
    raw.send(b"GET / HTTP/1.1\r\n\r\n")
    assert raw.goaway() == (0, fr.PROTOCOL_ERROR)


def test_first_frame_must_be_settings() -> None:
    raw = RawClient()
    raw.send(fr.PREFACE + fr.frame(fr.PING, 0, 0, b"12345678"))
    assert raw.goaway() == (0, fr.PROTOCOL_ERROR)


def test_headers_interrupted_before_continuation_is_a_protocol_error() -> None:
    raw = RawClient().preface()
    block = raw.block()
    raw.send(fr.frame(fr.HEADERS, 0, 1, block[:3]) + fr.frame(fr.PING, 0, 0, b"12345678"))
    assert raw.goaway()[1] == fr.PROTOCOL_ERROR


def test_header_block_larger_than_the_list_limit_is_refused_while_arriving() -> None:
    raw = RawClient(max_header_list_size=4096).preface()
    raw.send(fr.frame(fr.HEADERS, 0, 1, b"\0" * 3000))
    raw.send(fr.frame(fr.CONTINUATION, 0, 1, b"\0" * 3000))
    assert raw.goaway()[1] == fr.ENHANCE_YOUR_CALM


def test_data_after_end_stream_is_stream_closed() -> None:
    raw = RawClient().preface()
    raw.headers(1, end_stream=True)
    raw.send(fr.frame(fr.DATA, 0, 1, b"more"))
    assert raw.resets() == {1: fr.STREAM_CLOSED}
    assert not raw.server.closed


def test_headers_on_a_closed_stream_is_a_connection_error() -> None:
    raw = RawClient().preface()
    raw.headers(1, end_stream=True)
    raw.server.send_headers(1, hd.encode_status(0, "", with_response_headers=True), end_stream=True)
    raw.send(b"")
    raw.headers(1)
    assert raw.goaway()[1] == fr.STREAM_CLOSED


def test_priority_on_self_resets_the_stream() -> None:
    raw = RawClient().preface()
    raw.send(fr.frame(fr.PRIORITY, 0, 3, b"\0\0\0\x03\x10"))
    assert raw.resets() == {3: fr.PROTOCOL_ERROR}
    assert not raw.server.closed


def test_padded_data_counts_padding_against_the_window_and_returns_it() -> None:
    raw = RawClient().preface()
    raw.headers(1, end_stream=False)
    ev = raw.send(fr.frame(fr.DATA, fr.FLAG_PADDED, 1, b"\x05abc" + b"\0" * 5))
    (data,) = received(ev, DataReceived)
    assert data.data == b"abc" and data.flow_length == 3


def test_goaway_from_the_client_is_reported() -> None:
    raw = RawClient().preface()
    ev = raw.send(fr.goaway(0, fr.NO_ERROR, b"bye"))
    assert ev == [GoAwayReceived(fr.NO_ERROR, 0, b"bye")]


def test_rapid_resets_beyond_the_burst_end_the_connection() -> None:
    raw = RawClient(reset_burst=10, reset_rate=5.0).preface()
    sid = 1
    for _ in range(10):
        raw.headers(sid, end_stream=False)
        raw.send(fr.rst_stream(sid, fr.CANCEL))
        sid += 2
    assert not raw.server.closed
    raw.clock.now += 1.0                      # five more allowed after a second
    for _ in range(5):
        raw.headers(sid, end_stream=False)
        raw.send(fr.rst_stream(sid, fr.CANCEL))
        sid += 2
    assert not raw.server.closed
    raw.headers(sid, end_stream=False)
    raw.send(fr.rst_stream(sid, fr.CANCEL))
    assert raw.goaway()[1] == fr.ENHANCE_YOUR_CALM


def test_pings_without_calls_are_strikes_when_not_permitted() -> None:
    pair = H2Pair(min_ping_interval=5.0, max_ping_strikes=1, ping_without_calls=False)
    for i in range(2):
        pair.clock.now += 60.0
        pair.client.ping(b"%08d" % i)
        pair.pump()
    assert not pair.server.closed
    pair.clock.now += 60.0
    pair.client.ping(b"00000003")
    pair.pump()
    assert pair.server.closed and pair.server.error_code == fr.ENHANCE_YOUR_CALM
