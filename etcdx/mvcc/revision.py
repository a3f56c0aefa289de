"""etcd's revision encoding, the keys of the ``key`` bucket.

A revision is (main, sub): main counts write transactions, sub counts changes
inside one. Encoded as 8-byte big-endian main, ``_``, 8-byte big-endian sub
(17 bytes, so byte order is revision order), with a trailing ``t`` when the
entry is a tombstone (a delete). This is etcd's layout byte for byte, so the
``key`` bucket hashes the same as etcd's.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

_PACK = struct.Struct(">Q1sQ")
REVISION_BYTES = _PACK.size  # 17
TOMBSTONE_MARK = b"t"


class Revision(NamedTuple):
    main: int
    sub: int = 0
    tombstone: bool = False


def encode(main: int, sub: int = 0, tombstone: bool = False) -> bytes:
    raw = _PACK.pack(main, b"_", sub)
    return raw + TOMBSTONE_MARK if tombstone else raw


def decode(raw: bytes) -> Revision:
    main, _, sub = _PACK.unpack_from(raw)
    return Revision(main, sub, len(raw) > REVISION_BYTES and raw[REVISION_BYTES:] == TOMBSTONE_MARK)


def main_of(raw: bytes) -> int:
    """The main revision of an encoded revision, without decoding the rest."""
    return int.from_bytes(raw[:8], "big")
