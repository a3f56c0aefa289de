"""Our HPACK decoder agrees with the `hpack` package on everything `hpack.Encoder` produces,
and fails only with HpackError on anything else."""

from __future__ import annotations

import hpack
import pytest
from hpack.huffman import HuffmanEncoder
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.frontend.hpack_decoder import HeaderListTooLarge, HpackDecoder, HpackError, huffman_decode

NAMES = st.sampled_from([b"token", b"grpc-timeout", b":path", b"content-type", b"x-long", b"user-agent",
                         b"te", b"authorization", b"x-a", b"x-b"])
FIELD = st.tuples(NAMES, st.binary(max_size=60), st.booleans())      # (name, value, sensitive)
BLOCK = st.tuples(st.lists(FIELD, max_size=8), st.booleans(), st.sampled_from([None, 0, 256, 1024, 4096]))


@settings(max_examples=300, deadline=None)
@given(st.lists(BLOCK, min_size=1, max_size=12))
def test_agrees_with_hpack_on_encoder_output(blocks) -> None:
    enc = hpack.Encoder()
    ours = HpackDecoder(4096, 1 << 20)
    theirs = hpack.Decoder(max_header_list_size=1 << 20)
    for fields, huffman, table_size in blocks:
        if table_size is not None:
            enc.header_table_size = table_size
        headers = [hpack.NeverIndexedHeaderTuple(n, v) if sensitive else (n, v) for n, v, sensitive in fields]
        block = enc.encode(headers, huffman=huffman)
        assert ours.decode(block) == [tuple(h) for h in theirs.decode(block, raw=True)]


@given(st.binary(max_size=100))
def test_huffman_round_trip(data: bytes) -> None:
    assert huffman_decode(HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(data)) == data


@settings(max_examples=500)
@given(st.binary(max_size=64))
def test_garbage_fails_only_with_hpack_error(block: bytes) -> None:
    decoder = HpackDecoder(4096, 2048)
    try:
        decoder.decode(block)
    except HpackError:
        pass


def test_huffman_padding_must_be_ones_and_short() -> None:
    with pytest.raises(HpackError):
        huffman_decode(b"\x00")                  # '0' decodes nothing whole; zero padding is invalid
    with pytest.raises(HpackError):
        huffman_decode(b"\xff\xff\xff\xff")      # 30+ one-bits: EOS


def test_table_size_update_above_the_allowed_size_fails() -> None:
    with pytest.raises(HpackError):
        HpackDecoder(4096).decode(b"\x3f\xe2\x1f")   # size update to 4097


def test_size_update_after_a_field_fails() -> None:
    with pytest.raises(HpackError):
        HpackDecoder(4096).decode(b"\x82\x20")


def test_header_list_size_is_enforced() -> None:
    with pytest.raises(HeaderListTooLarge):
        HpackDecoder(4096, 100).decode(hpack.Encoder().encode([(b"x", b"y" * 100)]))


def test_eviction_keeps_the_table_within_its_size() -> None:
    dec = HpackDecoder(4096)
    enc = hpack.Encoder()
    for i in range(200):
        dec.decode(enc.encode([(b"x-n", b"v" * 100 + str(i).encode())]))
    assert dec._size <= 4096
    assert dec._size == sum(len(n) + len(v) + 32 for n, v in dec._entries)
