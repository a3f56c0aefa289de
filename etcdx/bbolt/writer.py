"""Write a bbolt file in one pass from sorted input, in bounded memory.

The trees are built bottom-up: keys arrive in order, a leaf page is written
as soon as the next element would not fit in it, and its first key goes up to
the branch level above, which is written the same way. So RAM holds at most
one unfinished page per tree level of each bucket being written (plus one
element's key and value), whatever the size of the database, and pages reach
the file in allocation order (an append, apart from the three reserved pages
at the start that are written last).

A bucket whose content stays within a quarter of a page and has no nested
buckets is stored inline in its parent, as bbolt stores it.

The result is what bbolt itself would accept as a compacted database: both
meta pages name the same root (as ``bbolt.Tx.WriteTo`` writes them), the
freelist is stored and empty, and every page below the high-water mark is
reachable exactly once, so ``bbolt check`` (and ``etcdctl snapshot status``,
which runs it) finds nothing to report.
"""

from __future__ import annotations

from types import TracebackType
from typing import BinaryIO

from etcdx.bbolt import format as fmt

_META_PAGES = (0, 1)
_FREELIST_PGID = 2
_FIRST_DATA_PGID = 3


class _Pager:
    """Hands out page ids in order and appends the pages to the file."""

    def __init__(self, out: BinaryIO, page_size: int) -> None:
        self.out = out
        self.page_size = page_size
        self.next_pgid = _FIRST_DATA_PGID
        out.seek(_FIRST_DATA_PGID * page_size)

    def pages_for(self, nbytes: int) -> int:
        return max(1, -(-nbytes // self.page_size))

    def write(self, npages: int, build) -> int:
        """Allocate ``npages`` pages, fill them with ``build(pgid, buffer)``, append them."""
        pgid = self.next_pgid
        self.next_pgid += npages
        buf = bytearray(npages * self.page_size)
        build(pgid, buf)
        self.out.write(buf)
        return pgid


def _leaf_page(buf: bytearray, base: int, pgid: int, overflow: int,
               elements: list[tuple[int, bytes, bytes]]) -> None:
    """Lay out a leaf page (header, elements, then each key and its value) at ``base``."""
    n = len(elements)
    fmt.PAGE_HEADER.pack_into(buf, base, pgid, fmt.LEAF_PAGE, n, overflow)
    element = base + fmt.ELEMENT_SIZE
    data = element + n * fmt.ELEMENT_SIZE
    pack = fmt.LEAF_ELEMENT.pack_into
    for flags, key, value in elements:
        klen, vlen = len(key), len(value)
        pack(buf, element, flags, data - element, klen, vlen)
        buf[data:data + klen] = key
        data += klen
        buf[data:data + vlen] = value
        data += vlen
        element += fmt.ELEMENT_SIZE


def _branch_page(buf: bytearray, pgid: int, overflow: int, elements: list[tuple[bytes, int]]) -> None:
    n = len(elements)
    fmt.PAGE_HEADER.pack_into(buf, 0, pgid, fmt.BRANCH_PAGE, n, overflow)
    element = fmt.ELEMENT_SIZE
    data = element + n * fmt.ELEMENT_SIZE
    pack = fmt.BRANCH_ELEMENT.pack_into
    for key, child in elements:
        klen = len(key)
        pack(buf, element, data - element, klen, child)
        buf[data:data + klen] = key
        data += klen
        element += fmt.ELEMENT_SIZE


class _Level:
    """The unfinished page of one tree level (0: leaves); ``used`` counts elements and data."""

    def __init__(self, tree: _Tree, depth: int) -> None:
        self.tree = tree
        self.depth = depth
        self.elements: list = []
        self.used = 0
        self.flushed = False

    def add(self, element: tuple, size: int) -> None:
        if self.elements and fmt.ELEMENT_SIZE + self.used + size > self.tree.pager.page_size:
            self.flush_up()
        self.elements.append(element)
        self.used += size

    def write(self) -> tuple[int, bytes]:
        """Write the unfinished page and start anew; returns its page id and first key."""
        pager = self.tree.pager
        elements = self.elements
        npages = pager.pages_for(fmt.ELEMENT_SIZE + self.used)
        if self.depth == 0:
            pgid = pager.write(npages, lambda p, buf: _leaf_page(buf, 0, p, npages - 1, elements))
            first = elements[0][1] if elements else b""
        else:
            pgid = pager.write(npages, lambda p, buf: _branch_page(buf, p, npages - 1, elements))
            first = elements[0][0]
        self.elements = []
        self.used = 0
        self.flushed = True
        return pgid, first

    def flush_up(self) -> None:
        """Write the page and hand its first key and id to the level above."""
        pgid, first = self.write()
        self.tree.level(self.depth + 1).add((first, pgid), fmt.ELEMENT_SIZE + len(first))


class _Tree:
    """One bucket's B+tree being written bottom-up."""

    def __init__(self, pager: _Pager) -> None:
        self.pager = pager
        self.levels: list[_Level] = [_Level(self, 0)]

    def level(self, depth: int) -> _Level:
        if depth == len(self.levels):
            self.levels.append(_Level(self, depth))
        return self.levels[depth]

    def add(self, flags: int, key: bytes, value: bytes) -> None:
        self.levels[0].add((flags, key, value), fmt.ELEMENT_SIZE + len(key) + len(value))

    def finish(self) -> int:
        """Write what is left of every level; returns the root page id.

        A level that never filled a page is the top one and its page is the
        root (an empty leaf for an empty bucket). Below it, every level has
        passed a page up before, so the level above ends with two or more
        children and a root never has a single child.
        """
        depth = 0
        while True:
            level = self.levels[depth]
            if not level.flushed:
                return level.write()[0]
            if level.elements:
                level.flush_up()
            depth += 1


class BucketWriter:
    """Puts keys, in strictly increasing order, into one bucket; see ``Writer``.

    A nested bucket opened with ``bucket()`` must be closed before the next
    ``put`` or ``bucket`` on its parent. Use as a context manager, or call
    ``close()``.
    """

    def __init__(self, writer: Writer, parent: BucketWriter | None, name: bytes,
                 sequence: int = 0, *, root: bool = False) -> None:
        self._writer = writer
        self._parent = parent
        self._name = name
        self._sequence = sequence
        self._last: bytes | None = None
        self._child: BucketWriter | None = None
        self._closed = False
        # Until it outgrows a quarter page (or gets a nested bucket) a bucket may be inline.
        self._inline: list[tuple[int, bytes, bytes]] | None = None if root else []
        self._inline_size = fmt.ELEMENT_SIZE  # bbolt counts the page header too
        self._tree: _Tree | None = _Tree(writer.pager) if root else None

    def put(self, key: bytes, value: bytes) -> None:
        self._admit(key)
        if len(value) > fmt.MAX_VALUE_SIZE:
            raise ValueError(f"value of {len(value)} bytes is larger than bbolt's limit")
        self._add(0, key, value)

    def bucket(self, name: bytes, sequence: int = 0) -> BucketWriter:
        """Open a nested bucket named ``name`` (it takes the place of a key)."""
        self._admit(name)
        if self._inline is not None:
            self._to_tree()
        self._child = BucketWriter(self._writer, self, name, sequence)
        return self._child

    def close(self) -> None:
        """Write what is left of the bucket and hand it to its parent."""
        if self._closed:
            return
        value = self._finish()
        self._parent._child = None
        self._parent._add(fmt.BUCKET_LEAF, self._name, value)

    def _finish(self) -> bytes:
        """Write what is left; returns the bucket's value in its parent (header, and the page if inline)."""
        if self._child is not None:
            raise ValueError(f"bucket {self._child._name!r} is still open")
        self._closed = True
        if self._tree is not None:
            return fmt.BUCKET_HEADER.pack(self._tree.finish(), self._sequence)
        page = bytearray(self._inline_size)
        _leaf_page(page, 0, 0, 0, self._inline)
        return fmt.BUCKET_HEADER.pack(0, self._sequence) + bytes(page)

    def _admit(self, key: bytes) -> None:
        if self._closed:
            raise ValueError("bucket is closed")
        if self._child is not None:
            raise ValueError(f"bucket {self._child._name!r} is still open")
        if not key:
            raise ValueError("empty key")
        if len(key) > fmt.MAX_KEY_SIZE:
            raise ValueError(f"key of {len(key)} bytes is larger than bbolt's limit")
        if self._last is not None and key <= self._last:
            raise ValueError(f"keys out of order: {key[:64]!r} after {self._last[:64]!r}")
        self._last = key

    def _add(self, flags: int, key: bytes, value: bytes) -> None:
        if self._inline is None:
            self._tree.add(flags, key, value)
            return
        self._inline.append((flags, key, value))
        self._inline_size += fmt.ELEMENT_SIZE + len(key) + len(value)
        if flags & fmt.BUCKET_LEAF or self._inline_size > self._writer.pager.page_size // 4:
            self._to_tree()

    def _to_tree(self) -> None:
        self._tree = _Tree(self._writer.pager)
        for element in self._inline:
            self._tree.add(*element)
        self._inline = None

    def __enter__(self) -> BucketWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()


class Writer:
    """A new bbolt database written to ``out`` (a seekable binary file, empty).

    Top-level buckets are opened with ``bucket()`` in increasing name order;
    ``close()`` writes the meta pages and returns the file's size. Nothing is
    valid until ``close()`` has returned; a failed write leaves a file that
    bbolt refuses (its meta pages are zero).
    """

    def __init__(self, out: BinaryIO, page_size: int = fmt.DEFAULT_PAGE_SIZE, txid: int = 1) -> None:
        if page_size < 1024 or page_size & (page_size - 1):
            raise ValueError(f"page size {page_size} is not a power of two >= 1024")
        self.pager = _Pager(out, page_size)
        self._txid = txid
        self._root = BucketWriter(self, None, b"", root=True)

    def bucket(self, name: bytes, sequence: int = 0) -> BucketWriter:
        return self._root.bucket(name, sequence)

    @property
    def size(self) -> int:
        """Bytes written so far (the file's size once closed)."""
        return self.pager.next_pgid * self.pager.page_size

    def close(self) -> int:
        root_page, _ = fmt.BUCKET_HEADER.unpack_from(self._root._finish())
        pager, out = self.pager, self.pager.out
        page_size = pager.page_size
        head = bytearray(_FIRST_DATA_PGID * page_size)
        for pgid in _META_PAGES:
            fmt.PAGE_HEADER.pack_into(head, pgid * page_size, pgid, fmt.META_PAGE, 0, 0)
            meta = fmt.encode_meta(page_size=page_size, root=root_page, freelist=_FREELIST_PGID,
                                   pgid=pager.next_pgid, txid=self._txid)
            head[pgid * page_size + fmt.ELEMENT_SIZE:pgid * page_size + fmt.ELEMENT_SIZE + len(meta)] = meta
        fmt.PAGE_HEADER.pack_into(head, _FREELIST_PGID * page_size, _FREELIST_PGID, fmt.FREELIST_PAGE, 0, 0)
        out.seek(0)
        out.write(head)
        out.seek(self.size)
        out.flush()
        return self.size

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
