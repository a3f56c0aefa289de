"""Header blocks: HPACK decoding with per-connection caches, request checks, encoding.

Clients send nearly the same header block for every request, so
`RequestDecoder` remembers checked request heads at two levels:
- by the block's bytes, valid only while the dynamic table is unchanged
  (decoding depends on the table, which counts its changes in `generation`):
  grpc-go's steady state without deadlines, where every field is indexed;
- by the decoded fields less `grpc-timeout`, whatever the table: clients that
  send a new deadline with every call insert it into the table each time, which
  moves every index and changes the block's bytes, but not its fields.
A head is built and checked once per distinct field list; the timeout is
returned beside it.

Encoding never touches the dynamic table (literal fields without indexing), so
we need no encoder state, our blocks are valid whatever table size the peer
allows, and the common response blocks are computed once (`GRPC_RESPONSE_HEADERS`,
`GRPC_OK_TRAILERS`).
"""

from __future__ import annotations

import base64
import binascii
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass

from hpack.hpack import encode_integer
from hpack.table import HeaderTable

from etcdx.frontend.hpack_decoder import HeaderListTooLarge, HpackDecoder, HpackError

_CONNECTION_SPECIFIC = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"]
)
_REQUEST_PSEUDO = frozenset([b":method", b":scheme", b":authority", b":path"])
# RFC 9110 token characters, lower case only (RFC 9113 8.2.1: upper case is malformed).
_VALID_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_CACHE_ENTRIES = 128
# gRPC's reserved headers (grpc-go's list): not metadata for handlers.
_RESERVED = frozenset(["content-type", "te", "grpc-timeout", "grpc-encoding", "grpc-accept-encoding",
                       "grpc-message-type", "grpc-message", "grpc-status", "grpc-status-details-bin"])


class MalformedHeaders(Exception):
    """The block decoded but is not a valid request (or trailers): a stream error."""


class CompressionError(Exception):
    """The block does not decode; the HPACK state is lost: a connection error."""


class TooLarge(Exception):
    """The decoded block exceeds our header list size; the HPACK state is lost: a connection error."""


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A checked request header block. Shared between requests: never mutate."""

    method: str
    path: str
    scheme: str
    authority: str
    content_type: str
    is_grpc: bool
    metadata: Mapping[str, str | bytes]  # regular headers less gRPC's reserved ones; "-bin" base64-decoded
    headers: tuple[tuple[str, str], ...]  # regular headers as sent, in order (for HTTP; no grpc-timeout)
    grpc_encoding: str | None
    content_length: int | None


class RequestDecoder:
    """One connection's HPACK decoder plus the caches of checked request heads.

    ``max_header_list_size`` bounds the decoded size of one block (RFC 9113
    SETTINGS_MAX_HEADER_LIST_SIZE accounting), ``table_size`` is the
    SETTINGS_HEADER_TABLE_SIZE we advertise.
    """

    def __init__(self, max_header_list_size: int, table_size: int = 4096) -> None:
        self._decoder = HpackDecoder(table_size, max_header_list_size)
        self._by_block: dict[bytes, tuple[int, RequestHead, str | None]] = {}
        self._by_fields: dict[tuple, RequestHead] = {}

    @property
    def generation(self) -> int:
        return self._decoder.generation

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return self._decoder.decode(block)
        except HeaderListTooLarge as e:
            raise TooLarge(str(e)) from e
        except HpackError as e:
            raise CompressionError(str(e)) from e

    def request(self, block: bytes) -> tuple[RequestHead, str | None]:
        """The request head for ``block`` and its grpc-timeout; raises MalformedHeaders,
        CompressionError or TooLarge."""
        hit = self._by_block.get(block)
        generation = self._decoder.generation
        if hit is not None and hit[0] == generation:
            return hit[1], hit[2]
        fields = self._decode(block)    # a malformed block is still decoded: HPACK state stays in step
        timeout = None
        for i, (name, value) in enumerate(fields):
            if name == b"grpc-timeout":
                timeout = value.decode("latin-1")
                fields = fields[:i] + fields[i + 1:]
                break
        key = tuple(fields)
        head = self._by_fields.get(key)
        if head is None:
            head = parse_request(fields)
            if len(self._by_fields) >= _CACHE_ENTRIES:
                self._by_fields.clear()
            self._by_fields[key] = head
        if self._decoder.generation == generation:
            if len(self._by_block) >= _CACHE_ENTRIES:
                self._by_block.clear()
            self._by_block[block] = (generation, head, timeout)
        return head, timeout

    def trailers(self, block: bytes) -> list[tuple[bytes, bytes]]:
        """Request trailers: decoded, and checked to hold no pseudo-headers."""
        fields = self._decode(block)
        for name, value in fields:
            if name.startswith(b":"):
                raise MalformedHeaders("pseudo-header in trailers")
            _check_field(name, value)
        return fields


def _check_field(name: bytes, value: bytes) -> None:
    if not _VALID_NAME.match(name):
        raise MalformedHeaders(f"invalid header name {name!r}")
    if value and _BAD_VALUE.search(value):
        raise MalformedHeaders(f"invalid value for header {name!r}")
    if name in _CONNECTION_SPECIFIC:
        raise MalformedHeaders(f"connection-specific header {name!r}")
    if name == b"te" and value != b"trailers":
        raise MalformedHeaders("te other than trailers")


def parse_request(fields: list[tuple[bytes, bytes]]) -> RequestHead:
    """Check a decoded request block per RFC 9113 8.3 and pick out what gRPC needs."""
    pseudo: dict[bytes, bytes] = {}
    regular: list[tuple[str, str]] = []
    metadata: dict[str, str | bytes] = {}
    seen_regular = False
    for name, value in fields:
        if name[:1] == b":":
            if seen_regular:
                raise MalformedHeaders("pseudo-header after a regular header")
            if name not in _REQUEST_PSEUDO:
                raise MalformedHeaders(f"unknown pseudo-header {name!r}")
            if name in pseudo:
                raise MalformedHeaders(f"duplicate pseudo-header {name!r}")
            if _BAD_VALUE.search(value):
                raise MalformedHeaders(f"invalid value for {name!r}")
            pseudo[name] = value
            continue
        seen_regular = True
        _check_field(name, value)
        key = name.decode("ascii")
        text = value.decode("latin-1")
        regular.append((key, text))
        if key in _RESERVED:
            continue
        if key.endswith("-bin"):
            try:
                metadata[key] = base64.b64decode(value + b"=" * (-len(value) % 4))
            except binascii.Error as e:
                raise MalformedHeaders(f"bad base64 in {key}") from e
        else:
            metadata[key] = text
    for required in (b":method", b":scheme", b":path"):
        if not pseudo.get(required):
            raise MalformedHeaders(f"missing or empty {required.decode()}")
    plain = dict(regular)
    content_length = None
    if "content-length" in plain:
        cl = plain["content-length"]
        if not cl.isdigit():
            raise MalformedHeaders("invalid content-length")
        content_length = int(cl)
    method = pseudo[b":method"].decode("latin-1")
    content_type = plain.get("content-type", "")
    is_grpc = method == "POST" and (
        content_type == "application/grpc" or content_type.startswith(("application/grpc+", "application/grpc;"))
    )
    encoding = plain.get("grpc-encoding")
    return RequestHead(
        method=method,
        path=pseudo[b":path"].decode("latin-1"),
        scheme=pseudo[b":scheme"].decode("latin-1"),
        authority=pseudo.get(b":authority", b"").decode("latin-1"),
        content_type=content_type,
        is_grpc=is_grpc,
        metadata=types.MappingProxyType(metadata),
        headers=tuple(regular),
        grpc_encoding=encoding if encoding and encoding != "identity" else None,
        content_length=content_length,
    )


# -- encoding -------------------------------------------------------------------

_STATIC_NAMES: dict[bytes, int] = {}
for _i, (_n, _v) in enumerate(HeaderTable.STATIC_TABLE, start=1):
    _STATIC_NAMES.setdefault(_n, _i)
_STATUS_INDEX = {b"200": 8, b"204": 9, b"206": 10, b"304": 11, b"400": 12, b"404": 13, b"500": 14}


def _string(data: bytes) -> bytes:
    return bytes(encode_integer(len(data), 7)) + data


def encode_field(name: bytes, value: bytes) -> bytes:
    """One field as a literal without indexing (no Huffman): stateless and always valid."""
    if name == b":status" and value in _STATUS_INDEX:
        return bytes([0x80 | _STATUS_INDEX[value]])
    index = _STATIC_NAMES.get(name)
    if index is not None:
        return bytes(encode_integer(index, 4)) + _string(value)
    return b"\x00" + _string(name) + _string(value)


def encode(fields: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(encode_field(n, v) for n, v in fields)


def encode_response(status: int, headers: list[tuple[str, str]]) -> bytes:
    """An HTTP response head; header names are sent in lower case as HTTP/2 requires."""
    fields = [(b":status", str(status).encode())]
    fields += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers
               if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection")]
    return encode(fields)


GRPC_RESPONSE_HEADERS = encode([(b":status", b"200"), (b"content-type", b"application/grpc")])
GRPC_OK_TRAILERS = encode([(b"grpc-status", b"0")])

_UNRESERVED = frozenset(range(0x20, 0x7F)) - {ord("%")}


def percent_encode(message: str) -> bytes:
    """grpc-message encoding: UTF-8, then %XX for every byte outside 0x20-0x7E and for '%'."""
    raw = message.encode("utf-8", "surrogatepass")
    if all(b in _UNRESERVED for b in raw):
        return raw
    return b"".join(bytes([b]) if b in _UNRESERVED else b"%%%02X" % b for b in raw)


def encode_status(code: int, message: str, *, with_response_headers: bool) -> bytes:
    """The block that ends a gRPC call; with the response headers for a trailers-only answer."""
    fields = [(b"grpc-status", str(code).encode())]
    if message:
        fields.append((b"grpc-message", percent_encode(message)))
    block = encode(fields)
    return GRPC_RESPONSE_HEADERS + block if with_response_headers else block
