"""What goes over a peer connection, as bytes: URLs, the handshake line, frames.

Pure functions only; the I/O lives in ``conn.py`` and the senders/receivers.

Every connection opens with one ASCII line from the dialer::

    ETCDX-PEER/1 <kind> from=<16 hex> to=<16 hex> cluster=<16 hex>\\n

answered by ``OK\\n`` or ``ERR <message>\\n``. The format is fixed: the
fault-injecting test proxy parses it to tell which link a connection is.
After it, everything is frames: ``u32 big-endian length`` + payload.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import urlsplit

from etcdx.raft.codec import decode_message, encode_message
from etcdx.raft.types import Message

PROTOCOL = "ETCDX-PEER/1"
KINDS = ("stream", "snapshot", "call")
OK_LINE = b"OK\n"

MAX_BATCH_FRAME = 4 << 20
"""A stream frame holds messages up to about this many bytes (one larger message gets a frame alone)."""

MAX_FRAME = 1 << 30
"""Larger length prefixes are garbage, not data: the connection is dropped instead of allocating."""

U32 = struct.Struct(">I")
U64 = struct.Struct(">Q")
_CALL_REQUEST = struct.Struct(">QH")  # request id, method length; then method, payload
_CALL_RESPONSE = struct.Struct(">QB")  # request id, status; then payload or error text

CALL_OK = 0
CALL_ERROR = 1


class Address(NamedTuple):
    """Where a peer URL points; ``tls`` for ``https`` (TLS is never optional on such a URL)."""

    host: str
    port: int
    tls: bool = False


def parse_url(url: str) -> Address:
    """The address of an ``http://host:port`` or ``https://host:port`` peer URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.port is None:
        raise ValueError(f"peer URL {url!r}: want http://host:port or https://host:port")
    return Address(parts.hostname, parts.port, parts.scheme == "https")


@dataclass(frozen=True, slots=True)
class Handshake:
    kind: str
    from_id: int
    to_id: int
    cluster_id: int

    def line(self) -> bytes:
        return (f"{PROTOCOL} {self.kind} from={self.from_id:016x} to={self.to_id:016x} "
                f"cluster={self.cluster_id:016x}\n").encode("ascii")


def parse_handshake(line: bytes) -> Handshake:
    """The dialer's first line; ValueError if it is not one."""
    words = line.decode("ascii").rstrip("\n").split(" ")
    if len(words) != 5 or words[0] != PROTOCOL or words[1] not in KINDS:
        raise ValueError(f"bad handshake {line[:120]!r}")
    ids = []
    for word, key in zip(words[2:], ("from", "to", "cluster")):
        name, _, value = word.partition("=")
        if name != key or len(value) != 16:
            raise ValueError(f"bad handshake {line[:120]!r}")
        ids.append(int(value, 16))
    return Handshake(words[1], ids[0], ids[1], ids[2])


def error_line(message: str) -> bytes:
    return f"ERR {message}\n".encode("ascii", "replace")


def take_frame(queue: deque[Message], carry: bytes | None = None) -> tuple[bytes, bytes | None]:
    """Pop messages off the front of ``queue`` into one frame (length prefix included).

    The payload stops short of MAX_BATCH_FRAME unless a single message is larger.
    ``carry`` is a message already encoded and popped that goes first; the
    returned carry is the one that did not fit (pass it to the next call).
    Taking one frame at a time keeps the messages waiting behind a slow
    ``drain()`` in the queue, where its bound counts them.
    """
    parts: list[bytes] = [b""]  # parts[0] becomes the frame's length prefix
    size = 0
    pack = U32.pack
    if carry is not None:
        parts.append(pack(len(carry)))
        parts.append(carry)
        size = 4 + len(carry)
        carry = None
    while queue:
        b = encode_message(queue.popleft())
        if size and size + 4 + len(b) > MAX_BATCH_FRAME:
            carry = b
            break
        parts.append(pack(len(b)))
        parts.append(b)
        size += 4 + len(b)
    parts[0] = pack(size)
    return b"".join(parts), carry


def decode_batch(payload: bytes) -> list[Message]:
    """The messages of one stream frame's payload; ValueError if it is malformed."""
    out: list[Message] = []
    view = memoryview(payload)
    end = len(payload)
    pos = 0
    unpack = U32.unpack_from
    while pos < end:
        if pos + 4 > end:
            raise ValueError("truncated message length in batch")
        (n,) = unpack(payload, pos)
        pos += 4
        if pos + n > end:
            raise ValueError("truncated message in batch")
        out.append(decode_wire_message(view[pos:pos + n]))
        pos += n
    return out


def decode_wire_message(b: bytes | memoryview) -> Message:
    """decode_message, with every malformed input reported as ValueError."""
    try:
        return decode_message(b)
    except Exception as err:  # noqa: BLE001 - protobuf's DecodeError, or an enum value we do not know
        raise ValueError(f"undecodable raft message: {err}") from None


def frame(payload: bytes) -> bytes:
    return U32.pack(len(payload)) + payload


def encode_call_request(request_id: int, method: str, payload: bytes) -> bytes:
    m = method.encode()
    body = _CALL_REQUEST.pack(request_id, len(m)) + m + payload
    return U32.pack(len(body)) + body


def decode_call_request(body: bytes) -> tuple[int, str, bytes]:
    request_id, n = _CALL_REQUEST.unpack_from(body)
    start = _CALL_REQUEST.size
    if start + n > len(body):
        raise ValueError("truncated call request")
    return request_id, body[start:start + n].decode(), body[start + n:]


def encode_call_response(request_id: int, status: int, payload: bytes) -> bytes:
    body = _CALL_RESPONSE.pack(request_id, status) + payload
    return U32.pack(len(body)) + body


def decode_call_response(body: bytes) -> tuple[int, int, bytes]:
    request_id, status = _CALL_RESPONSE.unpack_from(body)
    return request_id, status, body[_CALL_RESPONSE.size:]
