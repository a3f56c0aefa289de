"""The key index: user key + revision -> live/tombstone, stored in the backend.

Every revision of every key has one entry, so "the latest revision <= R of
key K" is one cursor seek and a range at R is one ordered walk; nothing per
key lives in RAM.

Layout. A user key is encoded order-preservingly and prefix-free: 0x00 becomes
0x00 0xFF and the result ends with 0x00 0x01 (``encode_key``). Its entries
are ``stem + inverted(main) + inverted(sub)`` -> ``b"\\x00"`` (live) or
``b"\\x01"`` (tombstone); inverted revisions make the newest entry of a key
come first, so a seek to ``stem + inverted(R)`` lands on the latest <= R.

LMDB keys are at most 511 bytes but etcd keys reach 1.5 MiB, so encodings
longer than ``CHUNK`` bytes are stored in a trie of ``CHUNK``-byte pieces: a
node holds leaf entries (a remaining tail of at most ``CHUNK`` bytes, as
above) and pointer entries (exactly ``CHUNK`` bytes -> 16-byte child node id).
The root node is the ``index`` bucket; deeper nodes live in ``index_tree``
under their id, ``blake2b(parent id + piece)``. Because encodings are
prefix-free, a tail never starts with a sibling's piece nor the reverse, so
within a node leaves and pointers interleave in key order and an in-order
walk of the trie visits keys in byte order.
"""

from __future__ import annotations

import functools
import hashlib
import struct
from collections.abc import Generator, Iterator
from typing import NamedTuple

import lmdb

from etcdx.backend import ReadTxn, buckets

CHUNK = 448
_NODE_ID_LEN = 16
_MAX = (1 << 64) - 1
_INV = struct.Struct(">QQ")
_INV_LEN = _INV.size
_LIVE = b"\x00"
_TOMBSTONE = b"\x01"
_AFTER_KEY = b"\xff" * _INV_LEN  # inverted (0, 0): sorts after every revision of a key
_NEXT_BEFORE_SEEK = 4  # older revisions stepped over before seeking past them


def encode_key(key: bytes) -> bytes:
    """Order-preserving, prefix-free encoding of a user key."""
    return key.replace(b"\x00", b"\x00\xff") + b"\x00\x01"


def decode_key(encoded: bytes) -> bytes:
    return encoded[:-2].replace(b"\x00\xff", b"\x00")


def _inverted(main: int, sub: int) -> bytes:
    return _INV.pack(_MAX - main, _MAX - sub)


def _child_id(node: bytes, piece: bytes) -> bytes:
    return hashlib.blake2b(node + piece, digest_size=_NODE_ID_LEN).digest()


class IndexEntry(NamedTuple):
    main: int
    sub: int
    tombstone: bool


class KeyRef(NamedTuple):
    """Where a key's entries live: ``stem`` in the root node or in the tree."""

    encoded: bytes  # the full encoded user key
    in_tree: bool
    stem: bytes


def _entry(db_key: bytes, flag: bytes) -> IndexEntry:
    inv_main, inv_sub = _INV.unpack_from(db_key, len(db_key) - _INV_LEN)
    return IndexEntry(_MAX - inv_main, _MAX - inv_sub, flag == _TOMBSTONE)


class KeyIndex:
    """The key index as seen through one backend transaction."""

    def __init__(self, txn: ReadTxn) -> None:
        self._txn = txn
        self._root = txn.cursor(buckets.INDEX)

    @functools.cached_property
    def _tree(self) -> lmdb.Cursor:
        """Cursor over the trie's deeper nodes, opened only for long keys."""
        return self._txn.cursor(buckets.INDEX_TREE)

    def ref(self, key: bytes, *, create: bool = False) -> KeyRef | None:
        """Locate ``key``'s entries; None if a long key's trie path is absent
        (create=True builds the path, in a write transaction)."""
        encoded = encode_key(key)
        if len(encoded) <= CHUNK:
            return KeyRef(encoded, False, encoded)
        node, rest = b"", encoded
        while len(rest) > CHUNK:
            piece, rest = rest[:CHUNK], rest[CHUNK:]
            cursor = self._tree if node else self._root
            child = cursor.get(node + piece)
            if child is None:
                if not create:
                    return None
                child = _child_id(node, piece)
                cursor.put(node + piece, child)
            node = child
        return KeyRef(encoded, True, node + rest)

    def latest(self, ref: KeyRef, at_main: int) -> IndexEntry | None:
        """The newest entry of the key with main revision <= at_main."""
        cursor = self._tree if ref.in_tree else self._root
        if not cursor.set_range(ref.stem + _INV.pack(_MAX - at_main, 0)):
            return None
        db_key = cursor.key()
        if len(db_key) != len(ref.stem) + _INV_LEN or not db_key.startswith(ref.stem):
            return None
        return _entry(db_key, cursor.value())

    def entries(self, ref: KeyRef, at_main: int = _MAX) -> Iterator[IndexEntry]:
        """Entries of the key with main <= at_main, newest first."""
        cursor = self._tree if ref.in_tree else self._root
        if not cursor.set_range(ref.stem + _INV.pack(_MAX - at_main, 0)):
            return
        want = len(ref.stem) + _INV_LEN
        for db_key, flag in cursor:
            if len(db_key) != want or not db_key.startswith(ref.stem):
                return
            yield _entry(db_key, flag)

    def walk(self, start: bytes, end: bytes | None) -> Iterator[tuple[KeyRef, IndexEntry]]:
        """Every indexed key in [start, end) in byte order (end None: no bound),
        with its newest entry. The index must not change during the walk."""
        end_encoded = encode_key(end) if end is not None else None
        # Frames: [prefix, accumulated encoding, next db-key suffix to seek].
        stack: list[list[bytes]] = []
        node, rest, acc = b"", encode_key(start), b""
        while len(rest) > CHUNK:
            piece = rest[:CHUNK]
            stack.append([node, acc, piece + b"\x00"])
            child = (self._tree if node else self._root).get(node + piece)
            if child is None:
                break
            node, rest, acc = child, rest[CHUNK:], acc + piece
        else:
            stack.append([node, acc, rest])
        while stack:
            frame = stack[-1]
            prefix, acc, lo = frame
            if not prefix:
                descend = yield from self._walk_root(frame, end_encoded)
                if descend is None:
                    return
                if not descend:
                    stack.pop()
                else:
                    stack.append(descend)
                continue
            cursor = self._tree if prefix else self._root
            if not cursor.set_range(prefix + lo):
                stack.pop()
                continue
            db_key = cursor.key()
            if not db_key.startswith(prefix):
                stack.pop()
                continue
            value = cursor.value()
            rel = db_key[len(prefix):]
            if len(value) == _NODE_ID_LEN:
                frame[2] = rel + b"\x00"
                stack.append([value, acc + rel, b""])
                continue
            tail = rel[:-_INV_LEN]
            encoded = acc + tail
            if end_encoded is not None and encoded >= end_encoded:
                return
            frame[2] = tail + _AFTER_KEY
            yield KeyRef(encoded, bool(prefix), prefix + tail), _entry(db_key, value)

    def count(self, start: bytes, end: bytes | None, at_main: int) -> int:
        """How many keys in [start, end) are live at ``at_main``: ``walk``'s
        answer, in a tight loop over the root node for the common case."""
        start_encoded = encode_key(start)
        if len(start_encoded) > CHUNK:
            return self._count_walk(start, end, at_main)
        end_encoded = encode_key(end) if end is not None else None
        newer = _INV.pack(_MAX - at_main, 0)[:8]  # inverted mains below this are > at_main
        cursor = self._txn.cursor(buckets.INDEX)
        if not cursor.set_range(start_encoded):
            return 0
        live = 0
        stem = b""
        for db_key, value in cursor:
            if stem and db_key.startswith(stem):
                continue  # an older revision of the key just counted
            if len(value) == _NODE_ID_LEN:  # a long key's trie: finish the slow way
                resume = decode_key(stem) + b"\x00" if stem else start
                return live + self._count_walk(resume, end, at_main)
            stem = db_key[:-_INV_LEN]
            if end_encoded is not None and stem >= end_encoded:
                break
            if db_key[-_INV_LEN:-8] < newer:
                entry = self.latest(KeyRef(stem, False, stem), at_main)
                live += entry is not None and not entry.tombstone
            else:
                live += value == _LIVE
        return live

    def _count_walk(self, start: bytes, end: bytes | None, at_main: int) -> int:
        live = 0
        for ref, entry in self.walk(start, end):
            latest = entry if entry.main <= at_main else self.latest(ref, at_main)
            live += latest is not None and not latest.tombstone
        return live

    def _walk_root(self, frame: list[bytes], end_encoded: bytes | None,
                   ) -> Generator[tuple[KeyRef, IndexEntry], None, list[bytes] | None]:
        """The hot path of ``walk``: step through the root node with ``next``,
        skipping a key's older revisions, until a trie pointer (returns its
        child frame), the end of the range (None) or of the node ([]). Its own
        cursor stays put while the caller looks keys up between steps."""
        root = self._txn.cursor(buckets.INDEX)
        if not root.set_range(frame[2]):
            return []
        while True:
            db_key, value = root.item()
            if len(value) == _NODE_ID_LEN:
                frame[2] = db_key + b"\x00"
                return [value, db_key, b""]
            stem = db_key[:-_INV_LEN]
            if end_encoded is not None and stem >= end_encoded:
                return None
            yield KeyRef(stem, False, stem), _entry(db_key, value)
            # No other root key starts with a whole encoded key (prefix-free).
            for _ in range(_NEXT_BEFORE_SEEK):
                if not root.next():
                    return []
                if not root.key().startswith(stem):
                    break
            else:
                if not root.set_range(stem + _AFTER_KEY):
                    return []

    def add(self, ref: KeyRef, main: int, sub: int, tombstone: bool) -> None:
        cursor = self._tree if ref.in_tree else self._root
        cursor.put(ref.stem + _inverted(main, sub), _TOMBSTONE if tombstone else _LIVE)

    def remove(self, ref: KeyRef, main: int, sub: int) -> None:
        """Remove one entry; a long key's emptied trie nodes are pruned."""
        cursor = self._tree if ref.in_tree else self._root
        if cursor.set_key(ref.stem + _inverted(main, sub)):
            cursor.delete()
        if ref.in_tree:
            self._prune(ref.encoded)

    def _prune(self, encoded: bytes) -> None:
        path: list[tuple[bytes, bytes, bytes]] = []  # (parent, piece, child)
        node, rest = b"", encoded
        while len(rest) > CHUNK:
            piece, rest = rest[:CHUNK], rest[CHUNK:]
            child = _child_id(node, piece)
            path.append((node, piece, child))
            node = child
        for parent, piece, child in reversed(path):
            if self._tree.set_range(child) and self._tree.key().startswith(child):
                return
            cursor = self._tree if parent else self._root
            if cursor.set_key(parent + piece):
                cursor.delete()
