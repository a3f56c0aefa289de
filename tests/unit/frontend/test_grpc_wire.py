"""gRPC wire rules: message framing, size limits, timeouts, compression, grpc-go's error texts."""

from __future__ import annotations

import gzip
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from etcdx.frontend import grpc as g


def framed(payload: bytes, compressed: bool = False) -> bytes:
    return struct.pack(">BL", int(compressed), len(payload)) + payload


@given(st.lists(st.binary(max_size=300), max_size=8), st.data())
def test_messages_survive_any_split_into_data_frames(messages: list[bytes], data) -> None:
    wire = b"".join(framed(m) for m in messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    reader = g.MessageReader(1000)
    got = []
    prev = 0
    for cut in cuts + [len(wire)]:
        got += [m for _, m in reader.feed(wire[prev:cut])]
        prev = cut
    assert got == messages
    assert not reader.partial


def test_oversized_message_is_refused_from_its_prefix() -> None:
    reader = g.MessageReader(1000)
    with pytest.raises(g.RpcError) as e:
        reader.feed(struct.pack(">BL", 0, 3_145_731))
    assert e.value.code == g.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.message == "grpc: received message larger than max (3145731 vs. 1000)"


@pytest.mark.parametrize("value, seconds", [("5S", 5.0), ("100m", 0.1), ("2M", 120.0), ("1H", 3600.0),
                                            ("99999999u", 99.999999), ("7n", 7e-9)])
def test_timeouts_parse(value: str, seconds: float) -> None:
    assert g.parse_timeout(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", ["", "S", "5", "5s", "123456789S", "-1S", "1.5S", "٣S"])
def test_malformed_timeouts_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        g.parse_timeout(value)


def test_gzip_messages_are_decompressed() -> None:
    assert g.decompress(gzip.compress(b"hello" * 100), "gzip", 1000) == b"hello" * 100


def test_decompression_stops_past_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (50 << 20))
    with pytest.raises(g.RpcError) as e:
        g.decompress(bomb, "gzip", 1 << 20)
    assert e.value.code == g.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.message.startswith("grpc: received message after decompression larger than max (")


def test_unknown_encoding_and_flag_without_encoding_use_grpc_go_texts() -> None:
    with pytest.raises(g.RpcError) as e:
        g.decompress(b"x", "snappy", 10)
    assert (e.value.code, e.value.message) == (
        g.StatusCode.UNIMPLEMENTED, 'grpc: Decompressor is not installed for grpc-encoding "snappy"')
    with pytest.raises(g.RpcError) as e:
        g.decompress(b"x", None, 10)
    assert e.value.code == g.StatusCode.INTERNAL


def test_unknown_paths_are_answered_like_etcd_3_4() -> None:
    services = {"etcdserverpb.KV"}
    e = g.unknown_path("/etcdserverpb.KV/Nope", services)
    assert (e.code, e.message) == (g.StatusCode.UNIMPLEMENTED, "unknown method Nope for service etcdserverpb.KV")
    e = g.unknown_path("/etcdserverpb.Nope/Put", services)
    assert (e.code, e.message) == (g.StatusCode.UNIMPLEMENTED, "unknown service etcdserverpb.Nope")
    e = g.unknown_path("/x", services)
    assert (e.code, e.message) == (g.StatusCode.RESOURCE_EXHAUSTED, 'malformed method name: "/x"')
