"""Crash recovery: a torn last write is trimmed; any other damage stops the member from starting."""

from __future__ import annotations

import logging
import os
import shutil

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.raft.types import Entry, HardState
from etcdx.wal import WAL, CorruptWALError
from etcdx.wal.codec import peek_wal_id
from etcdx.wal.record import HEADER_SIZE, Record, read_at, salt_for
from etcdx.wal.segment import list_segments

SMALL = 4096
SEGMENT = 64 << 10  # small preallocation keeps the per-byte trials cheap


def entries(first: int, last: int) -> list[Entry]:
    return [Entry(1, i, data=b"v%d" % i * 20) for i in range(first, last + 1)]


def segment_paths(path: str) -> list[str]:
    return [os.path.join(path, n.filename) for n in list_segments(path)]


def records(segment: str) -> list[Record]:
    """Every valid record of a segment, in order."""
    seq = int(os.path.basename(segment).split("-")[0], 16)
    with open(segment, "rb") as f:
        data = memoryview(f.read())
    salt = salt_for(peek_wal_id(data[HEADER_SIZE:]), seq)
    out, offset = [], 0
    while isinstance(rec := read_at(data, salt, offset), Record):
        out.append(rec)
        offset += HEADER_SIZE + len(rec.payload)
    return out


def end_of(rec: Record) -> int:
    return rec.offset + HEADER_SIZE + len(rec.payload)


@pytest.fixture
def path(tmp_path) -> str:
    """A WAL of one segment whose last record is a batch of entries 6..8."""
    p = str(tmp_path / "wal")
    wal = WAL.create(p, b"m", segment_size=SEGMENT)
    wal.save(HardState(1, 1, 0), entries(1, 5))
    wal.save(HardState(1, 1, 5), entries(6, 8))
    wal.close()
    return p


def open_state(path: str, segment_size: int = SEGMENT):
    wal, state = WAL.open(path, segment_size=segment_size)
    wal.close()
    return state


def patch(segment: str, offset: int, data: bytes) -> None:
    with open(segment, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_a_last_record_cut_at_any_byte_loses_only_that_record(path, tmp_path):
    segment = segment_paths(path)[0]
    last = records(segment)[-1]
    for cut in range(last.offset, end_of(last)):
        trial = str(tmp_path / f"cut{cut}")
        shutil.copytree(path, trial)
        os.truncate(segment_paths(trial)[0], cut)
        state = open_state(trial)
        assert state.entries == entries(1, 5), cut
        assert state.hard_state == HardState(1, 1, 0)
        shutil.rmtree(trial)


def test_a_last_record_torn_into_zeros_loses_only_that_record(path, tmp_path):
    segment = segment_paths(path)[0]
    last = records(segment)[-1]
    for cut in range(last.offset, end_of(last), 7):
        trial = str(tmp_path / f"zero{cut}")
        shutil.copytree(path, trial)
        patch(segment_paths(trial)[0], cut, bytes(end_of(last) - cut))
        assert open_state(trial).entries == entries(1, 5), cut
        shutil.rmtree(trial)


def test_a_torn_tail_is_trimmed_with_a_warning_and_appending_resumes(path, caplog):
    segment = segment_paths(path)[0]
    last = records(segment)[-1]
    os.truncate(segment, end_of(last) - 3)
    with caplog.at_level(logging.WARNING, logger="etcdx.wal"):
        wal, state = WAL.open(path, segment_size=SEGMENT)
    assert "torn write" in caplog.text
    assert state.entries == entries(1, 5)
    wal.save(HardState(1, 1, 7), entries(6, 7))
    wal.close()
    assert open_state(path).entries == entries(1, 7)


def test_garbage_after_the_last_record_is_trimmed(path, caplog):
    segment = segment_paths(path)[0]
    last = records(segment)[-1]
    patch(segment, end_of(last), os.urandom(300))
    with caplog.at_level(logging.WARNING, logger="etcdx.wal"):
        state = open_state(path)
    assert "torn write" in caplog.text
    assert state.entries == entries(1, 8)


def test_a_flipped_byte_anywhere_in_an_earlier_record_is_corruption(path, tmp_path):
    segment = segment_paths(path)[0]
    early = records(segment)[-2]  # entries 1..5, followed by the valid last record
    for offset in range(early.offset, end_of(early)):
        trial = str(tmp_path / f"flip{offset}")
        shutil.copytree(path, trial)
        with open(segment_paths(trial)[0], "r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ 0x40]))
        with pytest.raises(CorruptWALError):
            open_state(trial)
        shutil.rmtree(trial)


def test_corruption_message_names_file_offset_and_record(path):
    segment = segment_paths(path)[0]
    early = records(segment)[-2]
    patch(segment, end_of(early) - 1, b"\xff")
    with pytest.raises(CorruptWALError) as info:
        open_state(path)
    err = info.value
    assert (err.path, err.offset, err.record_number) == (segment, early.offset, len(records(segment)))
    assert segment in str(err) and f"offset {early.offset}" in str(err)


def test_a_dropped_record_breaks_the_chain(path):
    segment = segment_paths(path)[0]
    recs = records(segment)
    with open(segment, "rb") as f:
        data = f.read()
    dropped = recs[-2]
    with open(segment, "wb") as f:
        f.write(data[: dropped.offset] + data[end_of(dropped) : end_of(recs[-1])])
    with pytest.raises(CorruptWALError, match="chain"):
        open_state(path)


def test_reordered_records_break_the_chain(path):
    segment = segment_paths(path)[0]
    a, b = records(segment)[-2:]
    with open(segment, "rb") as f:
        data = f.read()
    with open(segment, "wb") as f:
        f.write(data[: a.offset] + data[b.offset : end_of(b)] + data[a.offset : b.offset])
    with pytest.raises(CorruptWALError, match="chain"):
        open_state(path)


def test_a_lost_block_in_the_middle_is_corruption_not_a_torn_tail(tmp_path):
    path = str(tmp_path / "wal")
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    for i in range(1, 40):
        wal.save(None, entries(i, i))
    wal.close()
    segment = segment_paths(path)[0]
    recs = records(segment)
    patch(segment, recs[10].offset, bytes(end_of(recs[12]) - recs[10].offset + 5))
    with pytest.raises(CorruptWALError, match="valid record follows"):
        open_state(path)


def test_a_torn_write_of_a_value_holding_wal_bytes_is_still_a_torn_tail(path, tmp_path):
    """A user may store a WAL file as a value; torn, its records must not pass for ours."""
    other = str(tmp_path / "other")
    wal = WAL.create(other, b"m", segment_size=SEGMENT)
    wal.save(HardState(1, 1, 0), entries(1, 5))
    wal.close()
    with open(segment_paths(other)[0], "rb") as f:
        foreign = f.read().rstrip(b"\x00")
    wal, _ = WAL.open(path, segment_size=SEGMENT)
    wal.save(None, [Entry(1, 9, data=foreign * 3)])
    wal.close()
    segment = segment_paths(path)[0]
    last = records(segment)[-1]
    os.truncate(segment, end_of(last) - 10)
    assert open_state(path).entries == entries(1, 8)


def test_damage_in_a_segment_that_is_not_the_last_is_corruption(tmp_path):
    path = str(tmp_path / "wal")
    wal = WAL.create(path, b"m", segment_size=SMALL)
    for i in range(1, 60):
        wal.save(None, entries(i, i))
    wal.close()
    first = segment_paths(path)[0]
    size = os.path.getsize(first)
    os.truncate(first, size - 1)  # a torn tail is only believable in the last segment
    with pytest.raises(CorruptWALError, match="not the last"):
        open_state(path, SMALL)


def test_a_missing_middle_segment_is_corruption(tmp_path):
    path = str(tmp_path / "wal")
    wal = WAL.create(path, b"m", segment_size=SMALL)
    for i in range(1, 100):
        wal.save(None, entries(i, i))
    wal.close()
    os.unlink(segment_paths(path)[1])
    with pytest.raises(CorruptWALError, match="missing"):
        open_state(path, SMALL)


def test_a_segment_swapped_for_another_wal_breaks_the_chain(tmp_path):
    paths = []
    for name in ("a", "b"):
        p = str(tmp_path / name)
        wal = WAL.create(p, b"m", segment_size=SMALL)
        for i in range(1, 60):
            wal.save(None, [Entry(1, i, data=name.encode() * 60)])
        wal.close()
        paths.append(p)
    shutil.copy(segment_paths(paths[1])[1], segment_paths(paths[0])[1])
    with pytest.raises(CorruptWALError, match="chain"):
        open_state(paths[0], SMALL)


def test_a_segment_without_its_leading_records_is_corruption(path):
    segment = segment_paths(path)[0]
    os.truncate(segment, 5)
    with pytest.raises(CorruptWALError, match="leading records"):
        open_state(path)


@settings(max_examples=50, deadline=None)
@given(
    batch_sizes=st.lists(st.integers(1, 15), min_size=1, max_size=25),
    data=st.data(),
)
def test_a_crash_mid_save_loses_exactly_that_save_and_appending_resumes(tmp_path_factory, batch_sizes, data):
    path = str(tmp_path_factory.mktemp("crash") / "wal")
    wal = WAL.create(path, b"m", segment_size=SMALL)
    commits = [0]
    for n in batch_sizes:
        first = commits[-1] + 1
        wal.save(HardState(1, 1, first + n - 1), entries(first, first + n - 1))
        commits.append(first + n - 1)
    wal.close()
    segment = segment_paths(path)[-1]
    last = records(segment)[-1]
    cut = data.draw(st.integers(last.offset, end_of(last) - 1), label="cut")
    damage = data.draw(st.sampled_from(["truncate", "zeros", "garbage"]), label="damage")
    if damage == "truncate":
        os.truncate(segment, cut)
    else:
        size = data.draw(st.integers(1, 600), label="size")
        junk = bytes(size) if damage == "zeros" else data.draw(st.binary(min_size=size, max_size=size))
        os.truncate(segment, cut)
        patch(segment, cut, junk)
    survivor = commits[-2]
    wal, state = WAL.open(path, segment_size=SMALL)
    assert state.entries == entries(1, survivor)
    assert state.hard_state == (HardState(1, 1, survivor) if survivor else HardState())
    wal.save(HardState(1, 1, survivor + 1), entries(survivor + 1, survivor + 1))
    wal.close()
    assert open_state(path, SMALL).entries == entries(1, survivor + 1)
