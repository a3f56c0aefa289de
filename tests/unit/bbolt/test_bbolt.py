"""The bbolt writer and reader agree with each other and with bbolt's format rules.

What etcd's own bbolt makes of these files is pinned in
tests/conformance/test_snapshot_bbolt.py; here the two halves are checked
against each other and against the format's invariants (``Reader.check``).
"""

from __future__ import annotations

import pathlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.bbolt import CorruptDatabaseError, Reader, Writer
from etcdx.bbolt import format as fmt

PAGE = fmt.DEFAULT_PAGE_SIZE

# A database: top-level bucket name -> {key: value (bytes) or a nested bucket (dict)}.
_keys = st.binary(min_size=1, max_size=40)
_big = st.builds(lambda byte, n: bytes([byte]) * n, st.integers(0, 255), st.integers(1000, 9000))
_values = st.one_of(st.binary(max_size=64), _big)
_leaf_bucket = st.dictionaries(_keys, _values, max_size=30)
_bucket = st.dictionaries(_keys, st.one_of(_values, _leaf_bucket), max_size=120)
_databases = st.dictionaries(_keys, _bucket, max_size=5)


def write_db(path: pathlib.Path, db: dict) -> int:
    def fill(bw, content: dict) -> None:
        for key in sorted(content):
            value = content[key]
            if isinstance(value, dict):
                with bw.bucket(key) as child:
                    fill(child, value)
            else:
                bw.put(key, value)

    with open(path, "w+b") as fh:
        w = Writer(fh)
        for name in sorted(db):
            with w.bucket(name) as bw:
                fill(bw, db[name])
        return w.close()


def read_bucket(bucket) -> dict:
    out = {}
    for key, value in bucket.items():
        out[key] = read_bucket(bucket.bucket(key)) if value is None else value
    return out


@settings(max_examples=60, deadline=None)
@given(db=_databases)
def test_what_is_written_reads_back_and_passes_the_consistency_check(tmp_path_factory, db):
    path = tmp_path_factory.mktemp("db") / "x.db"
    size = write_db(path, db)
    assert path.stat().st_size == size
    with Reader(path) as r:
        assert r.check() == []
        assert r.size == size
        assert read_bucket(r.root()) == db
        for name, content in db.items():
            bucket = r.bucket(name)
            for key, value in content.items():
                if isinstance(value, dict):
                    assert bucket.get(key) is None
                    assert read_bucket(bucket.bucket(key)) == value
                else:
                    assert bucket.get(key) == value
            assert bucket.get(b"\xff" * 41) is None


def test_a_large_bucket_spans_branch_levels_and_seeks_every_key(tmp_path):
    db = {b"key": {struct.pack(">Q", i): b"v%d" % i for i in range(60_000)}}
    write_db(tmp_path / "x.db", db)
    with Reader(tmp_path / "x.db") as r:
        assert r.check() == []
        bucket = r.bucket(b"key")
        pages = list(r.tree_pages(bucket.root))
        assert sum(1 for _, flags, _ in pages if flags & fmt.BRANCH_PAGE) > 1
        for i in range(0, 60_000, 997):
            assert bucket.get(struct.pack(">Q", i)) == b"v%d" % i
        assert [k for k, _ in bucket.items()] == sorted(db[b"key"])


def test_a_huge_value_goes_to_overflow_pages(tmp_path):
    big = bytes(range(256)) * 6000  # 1.5 MB
    write_db(tmp_path / "x.db", {b"b": {b"a": b"1", b"big": big, b"c": b"3"}})
    with Reader(tmp_path / "x.db") as r:
        assert r.check() == []
        assert r.bucket(b"b").get(b"big") == big
        overflows = [ovf for _, _, ovf in r.tree_pages(r.bucket(b"b").root)]
        assert max(overflows) == -(-(len(big) + 3 * fmt.ELEMENT_SIZE + 3) // PAGE) - 1


def test_small_buckets_are_inline_and_big_ones_get_pages(tmp_path):
    write_db(tmp_path / "x.db", {b"empty": {}, b"small": {b"k": b"v"}, b"big": {b"k": b"v" * 2000},
                                 b"nested": {b"child": {b"k": b"v"}}})
    with Reader(tmp_path / "x.db") as r:
        assert r.bucket(b"empty").root == 0
        assert r.bucket(b"small").root == 0
        assert r.bucket(b"big").root != 0
        assert r.bucket(b"nested").root != 0  # a bucket with a nested bucket is never inline
        assert r.bucket(b"nested").bucket(b"child").root == 0


def test_the_meta_pages_carry_bbolts_checksum(tmp_path):
    write_db(tmp_path / "x.db", {b"a": {b"k": b"v"}})
    raw = (tmp_path / "x.db").read_bytes()
    for pgid in (0, 1):
        meta = raw[pgid * PAGE + 16:pgid * PAGE + 16 + fmt.META.size]
        assert fmt.decode_meta(meta).checksum == fmt.fnv64a(meta[:56])
    assert fmt.fnv64a(b"") == 0xCBF29CE484222325
    assert fmt.fnv64a(b"a") == 0xAF63DC4C8601EC8C  # FNV-1a 64 test vector


@pytest.mark.parametrize("keys", [[b"b", b"a"], [b"a", b"a"], [b""]])
def test_keys_must_arrive_strictly_increasing_and_non_empty(tmp_path, keys):
    with open(tmp_path / "x.db", "w+b") as fh:
        w = Writer(fh)
        with pytest.raises(ValueError):
            with w.bucket(b"b") as bw:
                for key in keys:
                    bw.put(key, b"")


def test_a_parent_waits_for_its_open_child(tmp_path):
    with open(tmp_path / "x.db", "w+b") as fh:
        w = Writer(fh)
        parent = w.bucket(b"p")
        parent.bucket(b"c")
        with pytest.raises(ValueError, match="still open"):
            parent.put(b"d", b"")


def corrupt(tmp_path, mutate) -> pathlib.Path:
    write_db(tmp_path / "x.db", {b"a": {struct.pack(">Q", i): b"v" * 50 for i in range(2000)}})
    raw = bytearray((tmp_path / "x.db").read_bytes())
    mutate(raw)
    (tmp_path / "y.db").write_bytes(raw)
    return tmp_path / "y.db"


def read_all(path) -> None:
    with Reader(path) as r:
        read_bucket(r.root())
        assert r.check() == []


@pytest.mark.parametrize("mutate, message", [
    (lambda raw: raw.__setitem__(slice(0, len(raw)), b"\x00" * len(raw)), "invalid database"),
    (lambda raw: raw.__delitem__(slice(100, None)), "invalid database"),
    (lambda raw: raw.__delitem__(slice(5000, None)), "file size too small"),
    (lambda raw: raw.__delitem__(slice(len(raw) - PAGE, None)), "truncated"),
    (lambda raw: [raw.__setitem__(o + 16 + 30, 0x55) for o in (0, PAGE)], "checksum error"),
    (lambda raw: [raw.__setitem__(o + 16 + 4, 9) for o in (0, PAGE)], "version mismatch"),
    (lambda raw: raw.__setitem__(slice(3 * PAGE, 4 * PAGE), b"\xff" * PAGE), "page 3"),
])
def test_damaged_files_raise_a_clear_error(tmp_path, mutate, message):
    with pytest.raises(CorruptDatabaseError, match=message):
        read_all(corrupt(tmp_path, mutate))


def test_one_damaged_meta_page_falls_back_to_the_other(tmp_path):
    path = corrupt(tmp_path, lambda raw: raw.__setitem__(16 + 30, 0x55))
    read_all(path)


def test_a_page_no_one_references_is_reported_by_check(tmp_path):
    path = tmp_path / "x.db"
    write_db(path, {b"a": {b"k": b"v"}})
    raw = bytearray(path.read_bytes())
    # Raise the high-water mark by one page that is neither reachable nor free.
    for pgid in (0, 1):
        at = pgid * PAGE + 16
        meta = fmt.decode_meta(raw[at:at + fmt.META.size])
        raw[at:at + fmt.META.size] = fmt.encode_meta(page_size=PAGE, root=meta.root, freelist=meta.freelist,
                                                     pgid=meta.pgid + 1, txid=meta.txid)
    raw += bytes(PAGE)
    path.write_bytes(raw)
    with Reader(path) as r:
        assert r.check() == [f"page {r.meta.pgid - 1}: unreachable unfreed"]
