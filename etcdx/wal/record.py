"""Record framing: how one unit of the log sits in a segment file.

A record is a 13-byte little-endian header followed by its payload::

    crc u32 | prev u32 | length u32 | type u8 | payload[length]

``crc = zlib.crc32(salt | length | type | payload, prev)``, where ``prev`` is
the crc of the record before it (in the same segment or at the end of the
previous one) and ``salt`` is the WAL's random id and the segment's sequence
number. zlib's CRC-32 (IEEE) is used rather than CRC-32C because it is in the
standard library and runs in C.

Two properties follow:

* Every record can be checked on its own (``crc`` covers ``prev`` and the
  content), so after a bad record we can tell whether valid records of this
  log follow it, which separates a torn last write from damage in the middle.
  The salt keeps records of any other WAL (say, one a user stored as a value)
  from passing for ours.
* ``prev`` must equal the crc of the record read just before, so a dropped,
  duplicated or reordered record, or a missing segment, breaks the chain.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

HEADER = struct.Struct("<IIIB")
HEADER_SIZE = HEADER.size
_LENGTH_TYPE = struct.Struct("<IB")
_SALT = struct.Struct("<QQ")


class RecordType(enum.IntEnum):
    METADATA = 1  # the host's opaque metadata; first record of every segment
    BATCH = 2  # the hard state and/or entries of one save(): one write tears one record
    SNAPSHOT = 3  # marker: entries up to and including an index are in a snapshot


_TYPES = frozenset(int(t) for t in RecordType)


@dataclass(slots=True)
class Record:
    type: RecordType
    payload: bytes
    offset: int
    crc: int
    prev: int


def salt_for(wal_id: int, seq: int) -> bytes:
    """What ties a record to its WAL and segment."""
    return _SALT.pack(wal_id, seq)


def encode(rtype: RecordType, payload: bytes, salt: bytes, prev: int) -> tuple[bytes, int]:
    """Frame ``payload`` for the segment of ``salt`` after a record whose crc is ``prev``.

    Returns the header (write it immediately before the payload) and the new crc.
    """
    tail = _LENGTH_TYPE.pack(len(payload), rtype)
    crc = zlib.crc32(payload, zlib.crc32(tail, zlib.crc32(salt, prev)))
    return HEADER.pack(crc, prev, len(payload), rtype), crc


def read_at(data: memoryview, salt: bytes, offset: int) -> Record | str:
    """The self-consistent record at ``offset``, or why there is none."""
    end = len(data)
    if offset + HEADER_SIZE > end:
        return "incomplete header"
    crc, prev, length, rtype = HEADER.unpack_from(data, offset)
    if rtype not in _TYPES:
        return f"unknown record type {rtype}"
    start = offset + HEADER_SIZE
    if start + length > end:
        return f"length {length} runs past the end of the file"
    payload = data[start : start + length]
    seed = zlib.crc32(data[offset + 8 : start], zlib.crc32(salt, prev))
    if zlib.crc32(payload, seed) != crc:
        return "crc mismatch"
    return Record(RecordType(rtype), bytes(payload), offset, crc, prev)


def possible_crcs(data: memoryview, salt: bytes, offset: int, prev: int) -> set[int]:
    """What the crc of a damaged record at ``offset`` may have been.

    The record after it chains from that crc; finding such a record proves
    the damage is in the middle of the log. We know ``prev`` (the record was
    lost altogether), the stored crc (its content was damaged) and, when its
    length is readable, the crc its content has (its crc field was damaged).
    """
    crcs = {prev}
    if offset + HEADER_SIZE <= len(data):
        stored, stored_prev, length, _ = HEADER.unpack_from(data, offset)
        crcs.add(stored)
        start = offset + HEADER_SIZE
        if start + length <= len(data):
            for p in (prev, stored_prev):
                crcs.add(zlib.crc32(data[offset + 8 : start + length], zlib.crc32(salt, p)))
    return crcs


def find_valid(data: memoryview, salt: bytes, start: int, content_end: int, chain: set[int]) -> int | None:
    """Offset of the first record of this log in ``[start, content_end)``, if any.

    A candidate must check on its own and either chain from one of ``chain``
    (see possible_crcs) or be followed by a record chaining from it, which
    finds the rest of the log even after a lost block took out whole headers.
    ``content_end`` is where trailing zeros begin: a type byte is never zero, so
    no record starts late enough to lie wholly in them. Used only after a bad
    record at the end of the last segment, over the bytes after it (at most
    one torn write, or garbage), so a byte-by-byte search is affordable.
    """
    for offset in range(start, content_end - HEADER_SIZE + 1):
        if data[offset + HEADER_SIZE - 1] not in _TYPES:
            continue
        rec = read_at(data, salt, offset)
        if not isinstance(rec, Record):
            continue
        if rec.prev in chain:
            return offset
        after = read_at(data, salt, offset + HEADER_SIZE + len(rec.payload))
        if isinstance(after, Record) and after.prev == rec.crc:
            return offset
    return None
