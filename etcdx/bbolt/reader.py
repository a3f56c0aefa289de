"""Read a bbolt file without loading it: buckets and keys straight from an mmap.

Every page is checked as it is read (its id, type and bounds, each element
inside its page), so a damaged or foreign file raises ``CorruptDatabaseError``
with a message instead of crashing or returning garbage. ``check()`` adds
bbolt's whole-file consistency check (every page below the high-water mark
reachable exactly once or free), which ``etcdctl snapshot status`` runs too.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator
from types import TracebackType

from etcdx.bbolt import format as fmt

_MIN_READ = 0x1000  # bbolt reads this much to find the page size
_MAX_DEPTH = 64


class CorruptDatabaseError(ValueError):
    """The file is not a (valid) bbolt database; the message says why."""


class Reader:
    """An open bbolt file (read-only). Use as a context manager or ``close()``.

    Bytes after the last page (etcd's SHA-256 trailer) are ignored, as bbolt
    ignores them.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self._file = open(path, "rb")
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise

    def _open(self) -> None:
        file_size = os.fstat(self._file.fileno()).st_size
        if file_size < _MIN_READ:
            raise CorruptDatabaseError("invalid database")
        self._mmap = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
        self._buf = self._mmap  # slices are copies (bytes): nothing points into the map once it is closed
        self.file_size = file_size
        meta0, err0 = self._meta_at(0)
        page_size = meta0.page_size if err0 is None else fmt.DEFAULT_PAGE_SIZE
        if file_size < 2 * page_size:
            raise CorruptDatabaseError("file size too small")
        meta1, err1 = self._meta_at(page_size)
        if err0 is not None and err1 is not None:
            raise CorruptDatabaseError(err0)
        if err0 is None and (err1 is not None or meta0.txid >= meta1.txid):
            self.meta = meta0
        else:
            self.meta = meta1
        self.page_size = self.meta.page_size
        if self.page_size < 512 or self.page_size & (self.page_size - 1):
            raise CorruptDatabaseError(f"invalid page size {self.page_size}")
        if self.meta.pgid * self.page_size > file_size:
            raise CorruptDatabaseError(
                f"file is truncated: {file_size} bytes, but its meta page says "
                f"{self.meta.pgid} pages of {self.page_size} bytes")

    def _meta_at(self, offset: int) -> tuple[fmt.Meta, str | None]:
        raw = self._buf[offset + fmt.PAGE_HEADER.size:offset + fmt.PAGE_HEADER.size + fmt.META.size]
        meta = fmt.decode_meta(raw)
        return meta, fmt.meta_error(meta, raw)

    @property
    def size(self) -> int:
        """The database's size: pages in use times the page size (bbolt's ``Tx.Size``)."""
        return self.meta.pgid * self.page_size

    def root(self) -> Bucket:
        """The root bucket, whose keys are the top-level buckets."""
        return Bucket(self, self.meta.root, None, b"")

    def bucket(self, name: bytes) -> Bucket | None:
        return self.root().bucket(name)

    # -- pages ------------------------------------------------------------------

    def page(self, pgid: int, kinds: int) -> tuple[int, int, int, int]:
        """(offset, flags, count, overflow) of page ``pgid``, which must be one of ``kinds``."""
        if pgid >= self.meta.pgid:
            raise CorruptDatabaseError(f"page {pgid}: out of bounds: {self.meta.pgid}")
        offset = pgid * self.page_size
        pid, flags, count, overflow = fmt.PAGE_HEADER.unpack_from(self._buf, offset)
        if pid != pgid:
            raise CorruptDatabaseError(f"page {pgid}: header says it is page {pid}")
        if not flags & kinds:
            raise CorruptDatabaseError(f"page {pgid}: invalid type: {_page_type(flags)}")
        if pgid + 1 + overflow > self.meta.pgid:
            raise CorruptDatabaseError(f"page {pgid}: {overflow} overflow pages run past the end")
        return offset, flags, count, overflow

    def freelist(self) -> list[int] | None:
        """The free page ids, or None when the freelist is not stored (bbolt's NoFreelistSync)."""
        if self.meta.freelist == fmt.NO_FREELIST:
            return None
        offset, _, count, overflow = self.page(self.meta.freelist, fmt.FREELIST_PAGE)
        start = offset + fmt.PAGE_HEADER.size
        if count == 0xFFFF:  # the real count is the first element
            count = fmt.PGID.unpack_from(self._buf, start)[0]
            start += fmt.PGID.size
        end = offset + (overflow + 1) * self.page_size
        if start + count * fmt.PGID.size > end:
            raise CorruptDatabaseError(f"freelist page {self.meta.freelist}: {count} ids do not fit")
        return [pgid for (pgid,) in fmt.PGID.iter_unpack(self._buf[start:start + count * fmt.PGID.size])]

    def tree_pages(self, root: int) -> Iterator[tuple[int, int, int]]:
        """(pgid, flags, overflow) of every page of the tree at ``root``, depth first."""
        stack = [(root, 0)]
        while stack:
            pgid, depth = stack.pop()
            if depth > _MAX_DEPTH:
                raise CorruptDatabaseError(f"page {pgid}: tree deeper than {_MAX_DEPTH} (a cycle?)")
            offset, flags, count, overflow = self.page(pgid, fmt.BRANCH_PAGE | fmt.LEAF_PAGE)
            yield pgid, flags, overflow
            if flags & fmt.BRANCH_PAGE:
                children = [child for _, child in self._branch(offset, count, overflow, pgid)]
                stack.extend((child, depth + 1) for child in reversed(children))

    def _branch(self, offset: int, count: int, overflow: int, pgid: int) -> Iterator[tuple[bytes, int]]:
        end = offset + (overflow + 1) * self.page_size
        element = offset + fmt.PAGE_HEADER.size
        if element + count * fmt.ELEMENT_SIZE > end:
            raise CorruptDatabaseError(f"page {pgid}: {count} elements do not fit")
        buf = self._buf
        for pos, ksize, child in fmt.BRANCH_ELEMENT.iter_unpack(buf[element:element + count * fmt.ELEMENT_SIZE]):
            start = element + pos
            if start + ksize > end:
                raise CorruptDatabaseError(f"page {pgid}: a key runs past the page")
            yield buf[start:start + ksize], child
            element += fmt.ELEMENT_SIZE

    def check(self, limit: int = 100) -> list[str]:
        """bbolt's consistency check; up to ``limit`` problems, in its words (none: consistent).

        Every page below the high-water mark must be reachable exactly once
        (meta, freelist, the pages of every bucket) or be free. When the
        freelist is not stored, the unreachable pages are the free ones.
        """
        errors: list[str] = []
        total = self.meta.pgid
        freed = bytearray(total)
        free = self.freelist()
        for pgid in free or []:
            if pgid >= total:
                errors.append(f"page {pgid}: freed page out of bounds: {total}")
            elif freed[pgid]:
                errors.append(f"page {pgid}: already freed")
            else:
                freed[pgid] = 1
        reachable = bytearray(total)
        reachable[0] = reachable[1] = 1
        if free is not None:
            _, _, _, overflow = self.page(self.meta.freelist, fmt.FREELIST_PAGE)
            for i in range(overflow + 1):
                reachable[self.meta.freelist + i] = 1
        for root in self._bucket_roots(self.root()):
            for pgid, _, overflow in self.tree_pages(root):
                for i in range(overflow + 1):
                    if reachable[pgid + i]:
                        errors.append(f"page {pgid + i}: multiple references")
                    reachable[pgid + i] = 1
                if freed[pgid]:
                    errors.append(f"page {pgid}: reachable freed")
                if len(errors) >= limit:
                    return errors[:limit]
        if free is not None:
            errors.extend(f"page {pgid}: unreachable unfreed" for pgid in range(total)
                          if not reachable[pgid] and not freed[pgid])
        return errors[:limit]

    def _bucket_roots(self, bucket: Bucket) -> Iterator[int]:
        if bucket.root:
            yield bucket.root
        for _, child in bucket.buckets():
            yield from self._bucket_roots(child)

    def close(self) -> None:
        if getattr(self, "_mmap", None) is not None:
            self._mmap.close()
        self._file.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Bucket:
    """One bucket: a tree at page ``root``, or an inline page (``root`` 0)."""

    def __init__(self, reader: Reader, root: int, inline: bytes | None, name: bytes) -> None:
        self.reader = reader
        self.root = root
        self.name = name
        self._inline = inline

    def items(self) -> Iterator[tuple[bytes, bytes | None]]:
        """Every (key, value) in key order; the value is None for a nested bucket
        (as bbolt's ``Bucket.ForEach`` gives them)."""
        for flags, key, value in self.elements():
            yield key, None if flags & fmt.BUCKET_LEAF else value

    def buckets(self) -> Iterator[tuple[bytes, Bucket]]:
        """The nested buckets, in key order."""
        for flags, key, value in self.elements():
            if flags & fmt.BUCKET_LEAF:
                yield key, self._child(key, value)

    def bucket(self, name: bytes) -> Bucket | None:
        for flags, key, value in self._seek(name):
            if key == name and flags & fmt.BUCKET_LEAF:
                return self._child(key, value)
            return None
        return None

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``; None if absent or a nested bucket."""
        for flags, found, value in self._seek(key):
            if found == key and not flags & fmt.BUCKET_LEAF:
                return value
            return None
        return None

    def elements(self) -> Iterator[tuple[int, bytes, bytes]]:
        """(flags, key, value) of every element, in key order."""
        if self._inline is not None:
            yield from _inline_elements(self._inline, self.name)
            return
        reader = self.reader
        stack = [(self.root, 0)]
        while stack:
            pgid, depth = stack.pop()
            if depth > _MAX_DEPTH:
                raise CorruptDatabaseError(f"page {pgid}: tree deeper than {_MAX_DEPTH} (a cycle?)")
            offset, flags, count, overflow = reader.page(pgid, fmt.BRANCH_PAGE | fmt.LEAF_PAGE)
            if flags & fmt.BRANCH_PAGE:
                children = [child for _, child in reader._branch(offset, count, overflow, pgid)]
                stack.extend((child, depth + 1) for child in reversed(children))
            else:
                end = offset + (overflow + 1) * reader.page_size
                yield from _leaf_elements(reader._buf, offset, end, count, f"page {pgid}")

    def _seek(self, key: bytes) -> Iterator[tuple[int, bytes, bytes]]:
        """Elements from the first one >= ``key`` on (within its leaf page)."""
        if self._inline is not None:
            for element in _inline_elements(self._inline, self.name):
                if element[1] >= key:
                    yield element
            return
        reader = self.reader
        pgid = self.root
        for _ in range(_MAX_DEPTH):
            offset, flags, count, overflow = reader.page(pgid, fmt.BRANCH_PAGE | fmt.LEAF_PAGE)
            if flags & fmt.LEAF_PAGE:
                end = offset + (overflow + 1) * reader.page_size
                for element in _leaf_elements(reader._buf, offset, end, count, f"page {pgid}"):
                    if element[1] >= key:
                        yield element
                return
            child = None
            for first, candidate in reader._branch(offset, count, overflow, pgid):
                if child is not None and first > key:
                    break
                child = candidate
            if child is None:
                return
            pgid = child
        raise CorruptDatabaseError(f"bucket {self.name!r}: tree deeper than {_MAX_DEPTH} (a cycle?)")

    def _child(self, key: bytes, value: bytes) -> Bucket:
        if len(value) < fmt.BUCKET_HEADER.size:
            raise CorruptDatabaseError(f"bucket {key!r}: value of {len(value)} bytes is no bucket header")
        root, _ = fmt.BUCKET_HEADER.unpack_from(value)
        if root == 0:
            return Bucket(self.reader, 0, value[fmt.BUCKET_HEADER.size:], key)
        return Bucket(self.reader, root, None, key)


def _inline_elements(page: bytes, name: bytes) -> Iterator[tuple[int, bytes, bytes]]:
    if len(page) < fmt.PAGE_HEADER.size:
        raise CorruptDatabaseError(f"inline bucket {name!r}: no page header")
    _, flags, count, _ = fmt.PAGE_HEADER.unpack_from(page)
    if not flags & fmt.LEAF_PAGE:
        raise CorruptDatabaseError(f"inline bucket {name!r}: invalid type: {_page_type(flags)}")
    yield from _leaf_elements(page, 0, len(page), count, f"inline bucket {name!r}")


def _leaf_elements(buf: mmap.mmap | bytes, offset: int, end: int, count: int,
                   where: str) -> Iterator[tuple[int, bytes, bytes]]:
    element = offset + fmt.PAGE_HEADER.size
    if element + count * fmt.ELEMENT_SIZE > end:
        raise CorruptDatabaseError(f"{where}: {count} elements do not fit")
    for flags, pos, ksize, vsize in fmt.LEAF_ELEMENT.iter_unpack(buf[element:element + count * fmt.ELEMENT_SIZE]):
        start = element + pos
        stop = start + ksize + vsize
        if stop > end:
            raise CorruptDatabaseError(f"{where}: an element runs past the page")
        yield flags, buf[start:start + ksize], buf[start + ksize:stop]
        element += fmt.ELEMENT_SIZE


def _page_type(flags: int) -> str:
    names = {fmt.BRANCH_PAGE: "branch", fmt.LEAF_PAGE: "leaf", fmt.META_PAGE: "meta",
             fmt.FREELIST_PAGE: "freelist"}
    return names.get(flags, f"unknown<{flags:02x}>")
