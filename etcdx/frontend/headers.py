"""Header blocks: HPACK decoding with a per-connection cache, request checks, encoding.

Decoding uses the `hpack` package. Clients send nearly the same header block
for every request (grpc-go: all fields indexed into the dynamic table after the
first request), so `RequestDecoder` remembers the parsed result per block.
Decoding is a function of the block's bytes *and* the dynamic table's state,
so the table counts its changes (`generation`) and a cached entry is used only
while the generation it was decoded at is still current. A block that changes
the table (an insertion or a size update) is decoded every time and never
cached; a block that only refers to the table gives the same headers for as
long as the table is unchanged.

Encoding never touches the dynamic table (literal fields without indexing), so
we need no encoder state, our blocks are valid whatever table size the peer
allows, and the common response blocks can be computed once (`GRPC_RESPONSE_HEADERS`,
`GRPC_OK_TRAILERS`).
"""

from __future__ import annotations

import base64
import binascii
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass

import hpack
from hpack.hpack import encode_integer
from hpack.table import HeaderTable

_CONNECTION_SPECIFIC = frozenset(
    [b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"]
)
_REQUEST_PSEUDO = frozenset([b":method", b":scheme", b":authority", b":path"])
# RFC 9110 token characters, lower case only (RFC 9113 8.2.1: upper case is malformed).
_VALID_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")
_BAD_VALUE = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")
_CACHE_ENTRIES = 128


class MalformedHeaders(Exception):
    """The block decoded but is not a valid request (or trailers): a stream error."""


class CompressionError(Exception):
    """The block does not decode; the HPACK state is lost: a connection error."""


class _CountingTable(HeaderTable):
    """hpack's dynamic table, counting every change so decoded blocks can be cached."""

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    @HeaderTable.maxsize.setter  # type: ignore[attr-defined]
    def maxsize(self, newmax: int) -> None:
        self.generation += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A checked request header block. Shared between requests: never mutate."""

    method: str
    path: str
    scheme: str
    authority: str
    content_type: str
    is_grpc: bool
    metadata: Mapping[str, str | bytes]  # regular headers; "-bin" values base64-decoded
    headers: tuple[tuple[str, str], ...]  # regular headers as sent, in order (for HTTP)
    grpc_timeout: str | None
    grpc_encoding: str | None
    content_length: int | None


class RequestDecoder:
    """One connection's HPACK decoder plus the cache of checked request heads.

    ``max_header_list_size`` bounds the decoded size of one block (RFC 9113
    SETTINGS_MAX_HEADER_LIST_SIZE accounting), ``table_size`` is the
    SETTINGS_HEADER_TABLE_SIZE we advertise.
    """

    def __init__(self, max_header_list_size: int, table_size: int = 4096) -> None:
        self._decoder = hpack.Decoder(max_header_list_size=max_header_list_size)
        self._table = _CountingTable()
        self._decoder.header_table = self._table
        self._decoder.max_allowed_table_size = table_size
        self._table.maxsize = table_size
        self._cache: dict[bytes, tuple[int, RequestHead]] = {}

    @property
    def generation(self) -> int:
        return self._table.generation

    def _decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        try:
            return self._decoder.decode(block, raw=True)
        except (hpack.HPACKError, IndexError, ValueError) as e:
            raise CompressionError(str(e)) from e

    def request(self, block: bytes) -> RequestHead:
        """The request head for ``block``; raises MalformedHeaders or CompressionError."""
        hit = self._cache.get(block)
        generation = self._table.generation
        if hit is not None and hit[0] == generation:
            return hit[1]
        fields = self._decode(block)
        head = parse_request(fields)  # a malformed block is still decoded (HPACK state stays in step)
        if self._table.generation == generation:
            if len(self._cache) >= _CACHE_ENTRIES:
                self._cache.clear()
            self._cache[block] = (generation, head)
        return head

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
    content_length = None
    if "content-length" in metadata:
        cl = metadata["content-length"]
        if not isinstance(cl, str) or not cl.isdigit():
            raise MalformedHeaders("invalid content-length")
        content_length = int(cl)
    method = pseudo[b":method"].decode("latin-1")
    content_type = str(metadata.get("content-type", ""))
    is_grpc = method == "POST" and (
        content_type == "application/grpc" or content_type.startswith(("application/grpc+", "application/grpc;"))
    )
    timeout = metadata.get("grpc-timeout")
    encoding = metadata.get("grpc-encoding")
    return RequestHead(
        method=method,
        path=pseudo[b":path"].decode("latin-1"),
        scheme=pseudo[b":scheme"].decode("latin-1"),
        authority=pseudo.get(b":authority", b"").decode("latin-1"),
        content_type=content_type,
        is_grpc=is_grpc,
        metadata=types.MappingProxyType(metadata),
        headers=tuple(regular),
        grpc_timeout=timeout if isinstance(timeout, str) else None,
        grpc_encoding=encoding if isinstance(encoding, str) and encoding != "identity" else None,
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
