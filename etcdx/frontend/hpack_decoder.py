"""An HPACK decoder (RFC 7541) for the request hot path.

The `hpack` package decodes correctly but slowly (about 30 µs for a grpc-go
request block whose `grpc-timeout` changes every request, 7 µs of it one
Huffman string), and real clients send a fresh deadline with nearly every
call. This decoder keeps the same dynamic-table semantics with a tighter loop
and a byte-at-a-time Huffman state machine derived from `hpack`'s code table
(`hpack.huffman_constants`) and static table, so the two cannot drift apart;
tests check it against `hpack.Encoder` output and `hpack.Decoder` results.
"""

from __future__ import annotations

import array
from collections import deque

from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hpack.table import HeaderTable

STATIC: tuple[tuple[bytes, bytes], ...] = tuple(HeaderTable.STATIC_TABLE)
_STATIC_LEN = len(STATIC)
_ENTRY_OVERHEAD = 32
_MAX_INT = 1 << 31


class HpackError(Exception):
    """The block cannot be decoded: a COMPRESSION_ERROR for the connection."""


class HeaderListTooLarge(HpackError):
    """The decoded block exceeds the header list size we advertised."""


# -- Huffman -------------------------------------------------------------------------

def _build_huffman() -> tuple[array.array, frozenset[int]]:
    """A byte-driven automaton over the Huffman code tree.

    States are the tree's internal nodes (0 = root). ``table[state * 256 + byte]``
    packs the step into one int: the next state (bits 0-7), how many symbols
    the byte completes (bits 8-9; at most 2, as codes are at least 5 bits) and
    those symbols (bits 10-17, 18-25); ``_EOS`` where the byte would decode
    EOS. An array of packed ints costs 256 KiB; tuples cost ~9 MiB of RSS.
    Valid padding ends in a state reached from the root by at most 7 one-bits.
    """
    children: list[list] = [[None, None]]
    for sym, (code, length) in enumerate(zip(REQUEST_CODES, REQUEST_CODES_LENGTH)):
        node = 0
        for i in range(length - 1, -1, -1):
            bit = (code >> i) & 1
            if i == 0:
                children[node][bit] = -1 - sym
            else:
                if children[node][bit] is None:
                    children.append([None, None])
                    children[node][bit] = len(children) - 1
                node = children[node][bit]
    accept = {0}
    node = 0
    for _ in range(7):
        node = children[node][1]
        accept.add(node)
    assert len(children) <= 256
    table = array.array("I")
    for state in range(len(children)):
        for byte in range(256):
            node, out = state, []
            for i in range(7, -1, -1):
                child = children[node][(byte >> i) & 1]
                if child < 0:
                    if child == -257:
                        out = None
                        break
                    out.append(-1 - child)
                    node = 0
                else:
                    node = child
            if out is None:
                table.append(_EOS)
            else:
                assert len(out) <= 2
                packed = node | (len(out) << 8)
                for k, sym in enumerate(out):
                    packed |= sym << (10 + 8 * k)
                table.append(packed)
    return table, frozenset(accept)


_EOS = 0xFFFFFFFF
_HUFFMAN, _ACCEPT = _build_huffman()


def huffman_decode(data: bytes) -> bytes:
    state = 0
    out = bytearray()
    table = _HUFFMAN
    for byte in data:
        step = table[state * 256 + byte]
        if step == _EOS:
            raise HpackError("EOS in Huffman string")
        state = step & 0xFF
        n = (step >> 8) & 3
        if n:
            out.append((step >> 10) & 0xFF)
            if n == 2:
                out.append(step >> 18)
    if state not in _ACCEPT:
        raise HpackError("invalid Huffman padding")
    return bytes(out)


# -- decoding -------------------------------------------------------------------------

class HpackDecoder:
    """One connection's decoding context: the dynamic table and the size limits.

    ``generation`` counts changes to the dynamic table (insertions, size
    updates), so callers may cache what a block decodes to for as long as
    the generation is unchanged.
    """

    def __init__(self, max_table_size: int = 4096, max_header_list_size: int = 1 << 20) -> None:
        self._entries: deque[tuple[bytes, bytes]] = deque()
        self._size = 0
        self._max = max_table_size
        self.allowed_table_size = max_table_size   # our SETTINGS_HEADER_TABLE_SIZE
        self.max_header_list_size = max_header_list_size
        self.generation = 0

    def decode(self, block: bytes) -> list[tuple[bytes, bytes]]:
        fields: list[tuple[bytes, bytes]] = []
        pos = 0
        end = len(block)
        total = 0
        try:
            while pos < end:
                b = block[pos]
                if b & 0x80:                                    # indexed field
                    index = b & 0x7F
                    pos += 1
                    if index == 0x7F:
                        index, pos = _integer(block, pos, index)
                    field = self._lookup(index)
                elif b & 0x40:                                  # literal, incremental indexing
                    index = b & 0x3F
                    pos += 1
                    if index == 0x3F:
                        index, pos = _integer(block, pos, index)
                    if index:
                        name = self._lookup(index)[0]
                    else:
                        name, pos = _string(block, pos)
                    value, pos = _string(block, pos)
                    field = (name, value)
                    self._add(name, value)
                elif b & 0x20:                                  # dynamic table size update
                    if fields:
                        raise HpackError("table size update after a field")
                    size = b & 0x1F
                    pos += 1
                    if size == 0x1F:
                        size, pos = _integer(block, pos, size)
                    if size > self.allowed_table_size:
                        raise HpackError("table size update above the allowed size")
                    self._max = size
                    self._evict(0)
                    self.generation += 1
                    continue
                else:                                           # literal without indexing / never indexed
                    index = b & 0x0F
                    pos += 1
                    if index == 0x0F:
                        index, pos = _integer(block, pos, index)
                    if index:
                        name = self._lookup(index)[0]
                    else:
                        name, pos = _string(block, pos)
                    value, pos = _string(block, pos)
                    field = (name, value)
                total += len(field[0]) + len(field[1]) + _ENTRY_OVERHEAD
                if total > self.max_header_list_size:
                    raise HeaderListTooLarge(f"header list larger than {self.max_header_list_size}")
                fields.append(field)
        except IndexError as e:
            raise HpackError("truncated header block") from e
        return fields

    def _lookup(self, index: int) -> tuple[bytes, bytes]:
        if 0 < index <= _STATIC_LEN:
            return STATIC[index - 1]
        index -= _STATIC_LEN + 1
        if 0 <= index < len(self._entries):
            return self._entries[index]
        raise HpackError(f"invalid table index {index + _STATIC_LEN + 1}")

    def _add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        size = len(name) + len(value) + _ENTRY_OVERHEAD
        if size > self._max:
            self._entries.clear()
            self._size = 0
            return
        self._evict(size)
        self._entries.appendleft((name, value))
        self._size += size

    def _evict(self, room: int) -> None:
        entries = self._entries
        while entries and self._size + room > self._max:
            name, value = entries.pop()
            self._size -= len(name) + len(value) + _ENTRY_OVERHEAD


def _integer(block: bytes, pos: int, value: int) -> tuple[int, int]:
    """The continuation bytes of an integer whose prefix was all ones (RFC 7541 5.1)."""
    shift = 0
    while True:
        b = block[pos]
        pos += 1
        value += (b & 0x7F) << shift
        if value > _MAX_INT:
            raise HpackError("integer too large")
        if not b & 0x80:
            return value, pos
        shift += 7


def _string(block: bytes, pos: int) -> tuple[bytes, int]:
    b = block[pos]
    length = b & 0x7F
    pos += 1
    if length == 0x7F:
        length, pos = _integer(block, pos, length)
    stop = pos + length
    if stop > len(block):
        raise HpackError("truncated string")
    raw = block[pos:stop]
    return (huffman_decode(raw) if b & 0x80 else raw), stop
