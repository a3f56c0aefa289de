"""HTTP/2 frames (RFC 9113 section 4 and 6): constants, a parser and serialisers.

Pure functions over bytes. The parser only cuts the byte stream into frames
(9-byte header + payload) and enforces the advertised maximum frame size; what
a frame means, and whether it is allowed in the current state, is the
connection's business (`connection.py`).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Frame types.
DATA = 0x0
HEADERS = 0x1
PRIORITY = 0x2
RST_STREAM = 0x3
SETTINGS = 0x4
PUSH_PROMISE = 0x5
PING = 0x6
GOAWAY = 0x7
WINDOW_UPDATE = 0x8
CONTINUATION = 0x9

# Flags.
FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8
FLAG_PRIORITY = 0x20

# Settings identifiers.
SETTINGS_HEADER_TABLE_SIZE = 0x1
SETTINGS_ENABLE_PUSH = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3
SETTINGS_INITIAL_WINDOW_SIZE = 0x4
SETTINGS_MAX_FRAME_SIZE = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE = 0x6

# Error codes (section 7).
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
SETTINGS_TIMEOUT = 0x4
STREAM_CLOSED = 0x5
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
COMPRESSION_ERROR = 0x9
CONNECT_ERROR = 0xA
ENHANCE_YOUR_CALM = 0xB
INADEQUATE_SECURITY = 0xC
HTTP_1_1_REQUIRED = 0xD

DEFAULT_MAX_FRAME_SIZE = 16_384
MAX_MAX_FRAME_SIZE = 2**24 - 1
DEFAULT_WINDOW = 65_535
MAX_WINDOW = 2**31 - 1
FRAME_HEADER_SIZE = 9

_HEADER = struct.Struct(">HBBBL")  # 24-bit length as (high 16, low 8), type, flags, stream id
_U32 = struct.Struct(">L")
_GOAWAY = struct.Struct(">LL")
_SETTING = struct.Struct(">HL")


class Frame(NamedTuple):
    type: int
    flags: int
    stream_id: int
    payload: bytes


def parse_frames(data: bytes, max_frame_size: int) -> tuple[list[Frame], int, bool]:
    """Every complete frame at the front of ``data``, how many bytes they took, and
    whether the next frame header announces more than ``max_frame_size`` bytes of
    payload (a FRAME_SIZE_ERROR: the caller must not wait for such a frame, since
    that would let a peer make us buffer 16 MiB per connection).
    """
    frames: list[Frame] = []
    pos = 0
    end = len(data)
    unpack = _HEADER.unpack_from
    new = tuple.__new__
    while end - pos >= FRAME_HEADER_SIZE:
        hi, lo, ftype, flags, sid = unpack(data, pos)
        length = (hi << 8) | lo
        if length > max_frame_size:
            return frames, pos, True
        stop = pos + FRAME_HEADER_SIZE + length
        if stop > end:
            break
        frames.append(new(Frame, (ftype, flags, sid & 0x7FFFFFFF, data[pos + FRAME_HEADER_SIZE:stop])))
        pos = stop
    return frames, pos, False


def frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame; the caller keeps ``payload`` within the peer's maximum frame size."""
    n = len(payload)
    return _HEADER.pack(n >> 8, n & 0xFF, ftype, flags, stream_id) + payload


def frame_header(ftype: int, flags: int, stream_id: int, length: int) -> bytes:
    return _HEADER.pack(length >> 8, length & 0xFF, ftype, flags, stream_id)


def settings(values: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in values.items()))


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    """(identifier, value) pairs; the caller checks that len(payload) % 6 == 0."""
    return [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]


SETTINGS_ACK = frame(SETTINGS, FLAG_ACK, 0)


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def rst_stream(stream_id: int, error_code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, _U32.pack(error_code))


def goaway(last_stream_id: int, error_code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, _GOAWAY.pack(last_stream_id, error_code) + debug)


def ping(payload: bytes, ack: bool = False) -> bytes:
    return frame(PING, FLAG_ACK if ack else 0, 0, payload)


def headers(stream_id: int, block: bytes, end_stream: bool, max_frame_size: int) -> bytes:
    """A HEADERS frame, plus CONTINUATION frames when ``block`` exceeds the peer's frame size."""
    es = FLAG_END_STREAM if end_stream else 0
    if len(block) <= max_frame_size:
        return frame(HEADERS, es | FLAG_END_HEADERS, stream_id, block)
    pieces = [block[i:i + max_frame_size] for i in range(0, len(block), max_frame_size)]
    out = [frame(HEADERS, es, stream_id, pieces[0])]
    for piece in pieces[1:-1]:
        out.append(frame(CONTINUATION, 0, stream_id, piece))
    out.append(frame(CONTINUATION, FLAG_END_HEADERS, stream_id, pieces[-1]))
    return b"".join(out)


def u32(payload: bytes, offset: int = 0) -> int:
    return _U32.unpack_from(payload, offset)[0]


def parse_goaway(payload: bytes) -> tuple[int, int, bytes]:
    last, code = _GOAWAY.unpack_from(payload)
    return last & 0x7FFFFFFF, code, payload[8:]
