"""HPACK decoding with the per-connection caches, request checks, and our stateless encoding."""

from __future__ import annotations

import hpack
import pytest

from etcdx.frontend import headers as hd

REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/etcdserverpb.KV/Put"),
           ("content-type", "application/grpc")]
def head_of(dec: hd.RequestDecoder, block: bytes) -> hd.RequestHead:
    return dec.request(block)[0]


# The request as literals without indexing: decoding it leaves the dynamic table alone.
PLAIN = hd.encode([(k.encode(), v.encode()) for k, v in REQUEST])


def test_repeated_block_is_served_from_the_cache() -> None:
    enc = hpack.Encoder()
    dec = hd.RequestDecoder(65536)
    first = head_of(dec, enc.encode(REQUEST + [("token", "abc")]))   # inserts into the table
    block = enc.encode(REQUEST + [("token", "abc")])                  # now all indexed
    second = head_of(dec, block)
    assert head_of(dec, block) is second                               # cache hit: same object
    assert second.metadata["token"] == first.metadata["token"] == "abc"


def test_cached_block_is_decoded_again_after_the_dynamic_table_changes() -> None:
    """The same bytes mean different headers once the table has changed: the cache must notice."""
    dec = hd.RequestDecoder(65536)
    base = PLAIN
    insert_a = b"\x40" + bytes([5]) + b"x-key" + bytes([1]) + b"A"   # literal with indexing: x-key: A
    insert_b = b"\x40" + bytes([5]) + b"x-key" + bytes([1]) + b"B"
    refer = base + b"\xbe"                              # index 62: the newest dynamic entry
    head_of(dec, base + insert_a)
    assert head_of(dec, refer).metadata["x-key"] == "A"
    assert head_of(dec, refer).metadata["x-key"] == "A"
    generation = dec.generation
    head_of(dec, base + insert_b)
    assert dec.generation > generation
    assert head_of(dec, refer).metadata["x-key"] == "B"


def test_table_size_update_invalidates_the_cache() -> None:
    dec = hd.RequestDecoder(65536)
    base = PLAIN
    head_of(dec, base + b"\x40" + bytes([5]) + b"x-key" + bytes([1]) + b"A")
    refer = base + b"\xbe"
    assert head_of(dec, refer).metadata["x-key"] == "A"
    head_of(dec, b"\x20" + base)                         # size update to 0: table emptied
    with pytest.raises(hd.CompressionError):
        head_of(dec, refer)


def test_blocks_that_insert_are_not_cached() -> None:
    dec = hd.RequestDecoder(65536)
    block = PLAIN + b"\x40" + bytes([5]) + b"x-key" + bytes([1]) + b"A"
    before = dec.generation
    head_of(dec, block)
    head_of(dec, block)
    assert dec.generation == before + 2                 # decoded (and inserted) both times


def test_cache_stays_bounded() -> None:
    dec = hd.RequestDecoder(65536)
    enc = hpack.Encoder()
    for i in range(1000):
        head_of(dec, enc.encode(REQUEST + [("x-n", str(i))]))
    assert len(dec._by_block) <= 128 and len(dec._by_fields) <= 128


def test_metadata_has_bin_values_decoded_and_pseudo_headers_left_out() -> None:
    dec = hd.RequestDecoder(65536)
    head, timeout = dec.request(hpack.Encoder().encode(REQUEST + [("token", "t"), ("trace-bin", "AAEC"),
                                                                  ("grpc-timeout", "5S"), ("grpc-encoding", "gzip")]))
    assert head.metadata["trace-bin"] == b"\x00\x01\x02"
    assert head.metadata["token"] == "t"
    assert set(head.metadata) == {"token", "trace-bin"}    # no pseudo-headers, no reserved gRPC headers
    assert timeout == "5S" and head.grpc_encoding == "gzip"
    with pytest.raises(TypeError):
        head.metadata["token"] = "changed"              # shared between requests: read-only


@pytest.mark.parametrize("content_type, is_grpc", [
    ("application/grpc", True), ("application/grpc+proto", True), ("application/grpc;x=y", True),
    ("application/json", False), ("application/grpcx", False), ("", False),
])
def test_grpc_is_told_by_content_type(content_type: str, is_grpc: bool) -> None:
    fields = [(k.encode(), v.encode()) for k, v in REQUEST[:3]]
    if content_type:
        fields.append((b"content-type", content_type.encode()))
    assert hd.parse_request(fields).is_grpc is is_grpc


def test_encoded_fields_decode_with_an_independent_decoder() -> None:
    fields = [(b":status", b"200"), (b":status", b"418"), (b"content-type", b"application/grpc"),
              (b"grpc-status", b"13"), (b"x-long", b"v" * 300)]
    assert hpack.Decoder().decode(hd.encode(fields), raw=True) == fields


def test_precomputed_blocks_are_what_they_claim() -> None:
    d = hpack.Decoder()
    assert d.decode(hd.GRPC_RESPONSE_HEADERS) == [(":status", "200"), ("content-type", "application/grpc")]
    assert d.decode(hd.GRPC_OK_TRAILERS) == [("grpc-status", "0")]


@pytest.mark.parametrize("message, wire", [
    ("plain text", b"plain text"),
    ("100% sure", b"100%25 sure"),
    ("héllo", b"h%C3%A9llo"),
    ("line\nbreak", b"line%0Abreak"),
    ("etcdserver: key is not provided", b"etcdserver: key is not provided"),
])
def test_grpc_message_is_percent_encoded(message: str, wire: bytes) -> None:
    assert hd.percent_encode(message) == wire


def test_status_block_trailers_only_carries_the_response_headers() -> None:
    fields = hpack.Decoder().decode(hd.encode_status(5, "not found", with_response_headers=True))
    assert fields == [(":status", "200"), ("content-type", "application/grpc"),
                      ("grpc-status", "5"), ("grpc-message", "not found")]


def test_a_new_deadline_per_call_reuses_the_checked_head() -> None:
    """grpc-go inserts every new grpc-timeout into the table: the block's bytes change, its fields do not."""
    enc = hpack.Encoder()
    dec = hd.RequestDecoder(65536)
    heads = set()
    for i in range(300):
        head, timeout = dec.request(enc.encode(REQUEST + [("token", "abc"), ("grpc-timeout", f"{4_999_000 + i}u")]))
        assert timeout == f"{4_999_000 + i}u"
        heads.add(id(head))
    assert len(heads) == 1


def test_hpack_error_is_a_compression_error() -> None:
    with pytest.raises(hd.CompressionError):
        hd.RequestDecoder(65536).request(b"\xff\xff\xff\x0f")


def test_oversized_header_list_is_too_large() -> None:
    with pytest.raises(hd.TooLarge):
        hd.RequestDecoder(100).request(hpack.Encoder().encode(REQUEST + [("x", "y" * 200)]))
