"""gRPC over HTTP/2, the wire pieces: status codes, message framing, timeouts, compression.

Pure functions and small value types; the asyncio side lives in `http2.py`.
Error texts are grpc-go's (the server library etcd is built with), because
clients and people compare them: checked against etcd 3.4 on this machine.
"""

from __future__ import annotations

import enum
import struct
import zlib

_PREFIX = struct.Struct(">BL")


class StatusCode(enum.IntEnum):
    OK = 0
    CANCELLED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class RpcError(Exception):
    """Raised by a handler (or set on its Future) to end the call with a gRPC status."""

    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(code, message)
        self.code = int(code)
        self.message = message

    def __str__(self) -> str:
        return f"rpc error: code = {self.code} desc = {self.message}"


def status_of(exc: BaseException) -> RpcError | None:
    """The gRPC status an exception from a handler stands for, or None (a bug: INTERNAL).

    Besides ``RpcError``, any exception whose ``code`` is a status code *name*
    and whose ``message`` is a string counts: the services' own error type
    (etcd's ``EtcdError``) then needs no translation on every call.
    """
    if isinstance(exc, RpcError):
        return exc
    code = getattr(exc, "code", None)
    message = getattr(exc, "message", None)
    if isinstance(code, str) and isinstance(message, str):
        number = _CODE_NUMBERS.get(code)
        if number is not None:
            return RpcError(number, message)
    return None


_CODE_NUMBERS = {c.name: int(c) for c in StatusCode}


# grpc-go's texts.
def too_large_received(size: int, limit: int) -> RpcError:
    return RpcError(StatusCode.RESOURCE_EXHAUSTED, f"grpc: received message larger than max ({size} vs. {limit})")


def too_large_decompressed(size: int, limit: int) -> RpcError:
    return RpcError(StatusCode.RESOURCE_EXHAUSTED,
                    f"grpc: received message after decompression larger than max ({size} vs. {limit})")


def too_large_to_send(size: int, limit: int) -> RpcError:
    return RpcError(StatusCode.RESOURCE_EXHAUSTED, f"grpc: trying to send message larger than max ({size} vs. {limit})")


def no_decompressor(encoding: str) -> RpcError:
    return RpcError(StatusCode.UNIMPLEMENTED, f'grpc: Decompressor is not installed for grpc-encoding "{encoding}"')


COMPRESSED_WITHOUT_ENCODING = RpcError(StatusCode.INTERNAL, "grpc: compressed flag set with identity or empty encoding")
DEADLINE_EXCEEDED = RpcError(StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded")
NO_REQUEST_MESSAGE = RpcError(StatusCode.INTERNAL, "grpc: unary call ended without a request message")
INTERNAL = RpcError(StatusCode.INTERNAL, "grpc: internal server error")
SERVER_SHUTDOWN = RpcError(StatusCode.UNAVAILABLE, "grpc: the server has been stopped")


def unknown_path(path: str, known_services: set[str] | frozenset[str]) -> RpcError:
    """grpc-go's answer for a path no handler serves (its odd RESOURCE_EXHAUSTED included)."""
    slash = path.rfind("/")
    if not path.startswith("/") or slash <= 0:
        return RpcError(StatusCode.RESOURCE_EXHAUSTED, f"malformed method name: {_go_quote(path)}")
    service, method = path[1:slash], path[slash + 1:]
    if service in known_services:
        return RpcError(StatusCode.UNIMPLEMENTED, f"unknown method {method} for service {service}")
    return RpcError(StatusCode.UNIMPLEMENTED, f"unknown service {service}")


def _go_quote(s: str) -> str:
    """Go's %q for the printable ASCII paths we expect (escapes quotes and backslashes)."""
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch) & 0xFF:02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
    return '"' + "".join(out) + '"'


_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def parse_timeout(value: str) -> float:
    """Seconds from a grpc-timeout header ("1-8 digits" + H/M/S/m/u/n); ValueError if malformed."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit() or not value[:-1].isascii():
        raise ValueError(f"malformed grpc-timeout {value!r}")
    unit = _TIMEOUT_UNITS.get(value[-1])
    if unit is None:
        raise ValueError(f"malformed grpc-timeout {value!r}")
    return int(value[:-1]) * unit


def malformed_timeout(value: str) -> RpcError:
    return RpcError(StatusCode.INTERNAL, f"transport: malformed time-out: {value!r}")


def frame_message(message: bytes) -> bytes:
    """A length-prefixed, uncompressed gRPC message."""
    return b"".join((_PREFIX.pack(0, len(message)), message))   # join: also for memoryview/bytearray


class MessageReader:
    """Cuts one stream's DATA bytes into gRPC messages (5-byte prefix: flag, length).

    A message whose announced length exceeds ``limit`` is refused as soon as its
    prefix arrives (grpc-go's RESOURCE_EXHAUSTED), so a peer cannot make us
    buffer more than ``limit`` + 5 bytes per stream.
    """

    __slots__ = ("_buf", "_limit")

    def __init__(self, limit: int) -> None:
        self._buf = b""
        self._limit = limit

    @property
    def partial(self) -> bool:
        """True while part of a message is buffered."""
        return bool(self._buf)

    def feed(self, data: bytes) -> list[tuple[bool, bytes]]:
        """(compressed, payload) for every message completed by ``data``; raises RpcError."""
        if not self._buf and len(data) >= 5:
            flag, n = _PREFIX.unpack_from(data)
            if n > self._limit:
                raise too_large_received(n, self._limit)
            if len(data) == n + 5:      # the common case: one whole message per DATA frame
                return [(bool(flag), data[5:])]
        buf = self._buf + data if self._buf else data
        out: list[tuple[bool, bytes]] = []
        pos = 0
        while len(buf) - pos >= 5:
            flag, n = _PREFIX.unpack_from(buf, pos)
            if n > self._limit:
                raise too_large_received(n, self._limit)
            if len(buf) - pos - 5 < n:
                break
            out.append((bool(flag), buf[pos + 5:pos + 5 + n]))
            pos += 5 + n
        self._buf = buf[pos:]
        return out


def decompress(payload: bytes, encoding: str | None, limit: int) -> bytes:
    """The message of a compressed-flag payload; RpcError with grpc-go's text otherwise.

    Only gzip is known. Decompression stops one byte past ``limit`` so a small
    bomb cannot inflate into memory.
    """
    if encoding is None:
        raise COMPRESSED_WITHOUT_ENCODING
    if encoding != "gzip":
        raise no_decompressor(encoding)
    d = zlib.decompressobj(wbits=31)
    try:
        out = d.decompress(payload, limit + 1)
    except zlib.error as e:
        raise RpcError(StatusCode.INTERNAL, f"grpc: failed to decompress the received message: {e}") from e
    if len(out) > limit:
        raise too_large_decompressed(len(out), limit)
    return out
