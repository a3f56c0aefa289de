"""Payload encodings of WAL records: fixed-width struct fields, no protobuf.

The WAL is the hot path of every write, and struct packing of a few integers
is several times cheaper than building protobuf messages. These bytes never
leave the member, so they need no cross-language schema.
"""

from __future__ import annotations

import struct

from etcdx.raft.types import Entry, EntryType, HardState

_BATCH_HEAD = struct.Struct("<BI")  # has-hard-state flag, entry count
_HARD_STATE = struct.Struct("<QQQ")  # term, vote, commit
_ENTRY = struct.Struct("<QQBI")  # term, index, type, data length
_SNAPSHOT = struct.Struct("<QQ")  # index, term
_WAL_ID = struct.Struct("<Q")

_ENTRY_TYPES = {int(t): t for t in EntryType}


class PayloadError(ValueError):
    """A record passed its crc yet its payload does not decode: a writer bug or a forged record."""


def encode_batch(hard_state: HardState | None, entries: list[Entry]) -> bytes:
    parts = [_BATCH_HEAD.pack(hard_state is not None, len(entries))]
    if hard_state is not None:
        parts.append(_HARD_STATE.pack(hard_state.term, hard_state.vote, hard_state.commit))
    pack = _ENTRY.pack
    for e in entries:
        parts.append(pack(e.term, e.index, e.type, len(e.data)))
        parts.append(e.data)
    return b"".join(parts)


def decode_batch(payload: bytes) -> tuple[HardState | None, list[Entry]]:
    try:
        has_hard_state, count = _BATCH_HEAD.unpack_from(payload, 0)
        pos = _BATCH_HEAD.size
        hard_state = None
        if has_hard_state:
            hard_state = HardState(*_HARD_STATE.unpack_from(payload, pos))
            pos += _HARD_STATE.size
        entries = []
        unpack, size, types = _ENTRY.unpack_from, _ENTRY.size, _ENTRY_TYPES
        for _ in range(count):
            term, index, etype, length = unpack(payload, pos)
            pos += size
            data = payload[pos : pos + length]
            if len(data) != length:
                raise PayloadError("entry data runs past the end of the record")
            pos += length
            entries.append(Entry(term, index, types[etype], data))
    except (struct.error, KeyError) as exc:
        raise PayloadError(f"malformed batch: {exc!r}") from exc
    if pos != len(payload):
        raise PayloadError(f"{len(payload) - pos} stray bytes after the batch")
    return hard_state, entries


def encode_metadata(wal_id: int, metadata: bytes) -> bytes:
    """The WAL's own random id, then the host's metadata."""
    return _WAL_ID.pack(wal_id) + metadata


def decode_metadata(payload: bytes) -> tuple[int, bytes]:
    if len(payload) < _WAL_ID.size:
        raise PayloadError(f"metadata record of {len(payload)} bytes")
    return _WAL_ID.unpack_from(payload)[0], payload[_WAL_ID.size :]


def peek_wal_id(first_payload: memoryview) -> int:
    """The WAL id in a segment's first record, read before that record can be checked."""
    return _WAL_ID.unpack_from(first_payload)[0] if len(first_payload) >= _WAL_ID.size else 0


def encode_snapshot(index: int, term: int) -> bytes:
    return _SNAPSHOT.pack(index, term)


def decode_snapshot(payload: bytes) -> tuple[int, int]:
    if len(payload) != _SNAPSHOT.size:
        raise PayloadError(f"snapshot marker of {len(payload)} bytes")
    index, term = _SNAPSHOT.unpack(payload)
    return index, term
