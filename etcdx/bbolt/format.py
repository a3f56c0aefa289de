"""bbolt's on-disk format: pages, elements, meta, and the meta checksum.

A bbolt file is an array of fixed-size pages (the size is in the meta page).
Every page starts with a 16-byte header; all integers are little-endian (the
byte order of the amd64 and arm64 machines etcd runs on)::

    page header   id u64 | flags u16 | count u16 | overflow u32

``overflow`` more pages follow a page whose content does not fit in one.
Pages 0 and 1 are the two meta pages; the valid one with the higher txid is
current. The meta names the root bucket's page, the freelist page (or
``NO_FREELIST`` when the freelist is not stored) and ``pgid``, the number of
pages in use (the file's high-water mark).

A bucket is a B+tree. Branch pages hold ``count`` elements
``pos u32 | ksize u32 | pgid u64`` (first key of the child, and the child);
leaf pages hold ``flags u32 | pos u32 | ksize u32 | vsize u32``. ``pos`` is
the offset of the element's key from the element itself; its value follows
the key. A leaf element with ``BUCKET_LEAF`` set is a nested bucket whose value
is ``root u64 | sequence u64``; root 0 means an *inline* bucket whose leaf page
(header with id 0, elements, data) follows in the value itself.

The root bucket is a tree like any other, whose elements are all buckets.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

MAGIC = 0xED0CDAED
VERSION = 2
DEFAULT_PAGE_SIZE = 4096

BRANCH_PAGE = 0x01
LEAF_PAGE = 0x02
META_PAGE = 0x04
FREELIST_PAGE = 0x10

BUCKET_LEAF = 0x01
NO_FREELIST = 0xFFFF_FFFF_FFFF_FFFF
"""The meta's freelist when the freelist is not persisted (bbolt's NoFreelistSync, as etcd runs)."""

MAX_KEY_SIZE = 32768
MAX_VALUE_SIZE = (1 << 31) - 2

PAGE_HEADER = struct.Struct("<QHHI")
BRANCH_ELEMENT = struct.Struct("<IIQ")
LEAF_ELEMENT = struct.Struct("<IIII")
BUCKET_HEADER = struct.Struct("<QQ")
META = struct.Struct("<IIIIQQQQQQ")
PGID = struct.Struct("<Q")

ELEMENT_SIZE = 16
assert PAGE_HEADER.size == BRANCH_ELEMENT.size == LEAF_ELEMENT.size == BUCKET_HEADER.size == ELEMENT_SIZE
_CHECKSUMMED = META.size - 8  # the checksum covers every meta field before it

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_U64 = (1 << 64) - 1


class Meta(NamedTuple):
    magic: int
    version: int
    page_size: int
    flags: int
    root: int
    sequence: int
    freelist: int
    pgid: int
    txid: int
    checksum: int


def fnv64a(data: bytes) -> int:
    """FNV-1a, 64 bits: bbolt's meta checksum (56 bytes per meta, so a loop is enough)."""
    h = _FNV_OFFSET
    for byte in data:
        h = ((h ^ byte) * _FNV_PRIME) & _U64
    return h


def encode_meta(*, page_size: int, root: int, freelist: int, pgid: int, txid: int,
                sequence: int = 0) -> bytes:
    """The meta struct with its checksum (to be placed after a meta page's header)."""
    fields = (MAGIC, VERSION, page_size, 0, root, sequence, freelist, pgid, txid)
    body = META.pack(*fields, 0)[:_CHECKSUMMED]
    return body + PGID.pack(fnv64a(body))


def decode_meta(raw: bytes) -> Meta:
    return Meta(*META.unpack_from(raw))


def meta_error(meta: Meta, raw: bytes) -> str | None:
    """Why a meta is invalid, in bbolt's words; None if valid."""
    if meta.magic != MAGIC:
        return "invalid database"
    if meta.version != VERSION:
        return "version mismatch"
    if fnv64a(bytes(raw[:_CHECKSUMMED])) != meta.checksum:
        return "checksum error"
    return None
