"""The WAL's promises: what is saved comes back, raft's truncations and snapshots resolve, segments roll and release."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.raft.types import Entry, EntryType, HardState
from etcdx.wal import WAL, CorruptWALError, WALLockedError, WalState
from etcdx.wal.replay import GapError, Replay
from etcdx.wal.segment import list_segments

SMALL = 4096
SEGMENT = 64 << 10  # keeps preallocation, and reading it back, cheap


def entries(first: int, last: int, term: int = 1, size: int = 100) -> list[Entry]:
    return [Entry(term, i, EntryType.NORMAL, bytes([i % 256]) * size) for i in range(first, last + 1)]


def reopen(path: str, wal: WAL, segment_size: int = SEGMENT) -> WalState:
    wal.close()
    wal, state = WAL.open(path, segment_size=segment_size)
    wal.close()
    return state


@pytest.fixture
def path(tmp_path) -> str:
    return str(tmp_path / "member" / "wal")


def test_saved_entries_and_hard_state_come_back_on_open(path):
    wal = WAL.create(path, b"member=1,cluster=2", segment_size=SEGMENT)
    wal.save(HardState(2, 1, 3), entries(1, 5, term=2))
    wal.save(HardState(2, 1, 5), [])
    state = reopen(path, wal)
    assert state.metadata == b"member=1,cluster=2"
    assert state.hard_state == HardState(2, 1, 5)
    assert state.entries == entries(1, 5, term=2)
    assert (state.snapshot_index, state.snapshot_term) == (0, 0)


def test_fresh_wal_opens_empty(path):
    state = reopen(path, WAL.create(path, b"m", segment_size=SEGMENT))
    assert state == WalState(b"m", HardState(), [], 0, 0)


def test_entry_types_and_empty_data_round_trip(path):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    ents = [Entry(1, 1, EntryType.CONF_CHANGE, b"cc"), Entry(1, 2, EntryType.CONF_CHANGE_V2, b""), Entry(1, 3)]
    wal.save(None, ents)
    assert reopen(path, wal).entries == ents


def test_later_entry_with_same_index_replaces_it_and_the_rest_of_the_tail(path):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    wal.save(HardState(1, 1, 0), entries(1, 10, term=1))
    wal.save(HardState(2, 2, 0), entries(6, 8, term=2))
    assert reopen(path, wal).entries == entries(1, 5, term=1) + entries(6, 8, term=2)


def test_entries_start_after_the_last_snapshot_marker(path):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    wal.save(HardState(1, 1, 10), entries(1, 10))
    wal.save_snapshot(7, 1)
    state = reopen(path, wal)
    assert (state.snapshot_index, state.snapshot_term) == (7, 1)
    assert state.entries == entries(8, 10)


def test_installed_snapshot_beyond_the_log_is_followed_by_its_entries(path):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    wal.save(HardState(1, 1, 3), entries(1, 3))
    wal.save_snapshot(100, 4)
    wal.save(HardState(4, 0, 101), entries(101, 102, term=4))
    state = reopen(path, wal)
    assert state.snapshot_index == 100
    assert state.entries == entries(101, 102, term=4)


def test_save_refuses_entries_that_would_leave_a_gap(path):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    wal.save(None, entries(1, 3))
    with pytest.raises(ValueError):
        wal.save(None, entries(6, 7))
    with pytest.raises(ValueError):
        wal.save(None, [Entry(1, 4), Entry(1, 6)])
    assert reopen(path, wal).entries == entries(1, 3)


def test_a_snapshot_that_disagrees_with_the_log_discards_the_old_tail(path):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    wal.save(HardState(1, 1, 5), entries(1, 10, term=1))
    wal.save_snapshot(8, 2)  # the leader's snapshot: index 8 has term 2 there, 1 here
    state = reopen(path, wal)
    assert (state.snapshot_index, state.snapshot_term, state.entries) == (8, 2, [])


def test_a_snapshot_that_agrees_with_the_log_keeps_the_tail(path):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    wal.save(HardState(1, 1, 8), entries(1, 10, term=1))
    wal.save_snapshot(8, 1)
    assert reopen(path, wal).entries == entries(9, 10, term=1)


def test_replay_refuses_entries_missing_after_the_snapshot():
    replay = Replay()
    replay.metadata = b"m"
    replay.batch(None, entries(1, 3))
    replay.snapshot(3, 1)
    replay.batch(None, entries(4, 9))
    replay.batch(None, entries(11, 12))  # only a writer bug leaves this; save() refuses it
    with pytest.raises(GapError, match="4..10"):
        replay.state()


def test_replay_accepts_a_jump_covered_by_a_snapshot():
    replay = Replay()
    replay.metadata = b"m"
    replay.batch(None, entries(1, 3))
    replay.snapshot(100, 2)
    replay.batch(None, entries(101, 102, term=2))
    assert replay.state().entries == entries(101, 102, term=2)


def test_empty_save_writes_nothing(path):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    segment = os.path.join(path, list_segments(path)[0].filename)
    with open(segment, "rb") as f:
        before = f.read()
    wal.save(None, [])
    wal.save(HardState(), [])
    assert reopen(path, wal).hard_state == HardState()
    with open(segment, "rb") as f:
        assert f.read() == before


def test_save_is_one_write_and_one_fdatasync(path, monkeypatch):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    calls: list[str] = []
    real_pwrite, real_fdatasync = os.pwrite, os.fdatasync
    monkeypatch.setattr(os, "pwrite", lambda *a: calls.append("write") or real_pwrite(*a))
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append("sync") or real_fdatasync(fd))
    wal.save(HardState(1, 1, 100), entries(1, 100))
    assert calls == ["write", "sync"]
    calls.clear()
    wal.save(None, entries(101, 101), sync=False)
    assert calls == ["write"]
    monkeypatch.undo()
    wal.close()


def test_a_failed_sync_makes_the_wal_refuse_further_writes(path, monkeypatch):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)

    def fail(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fdatasync", fail)
    with pytest.raises(OSError):
        wal.save(None, entries(1, 1))
    monkeypatch.undo()
    with pytest.raises(OSError, match="unusable"):
        wal.save(None, entries(1, 1))
    wal.close()


def test_create_refuses_an_existing_wal_and_exists_says_so(path):
    assert not WAL.exists(path)
    WAL.create(path, b"m", segment_size=SEGMENT).close()
    assert WAL.exists(path)
    with pytest.raises(FileExistsError):
        WAL.create(path, b"m", segment_size=SEGMENT)


def test_a_second_writer_is_locked_out_until_the_first_closes(path):
    wal = WAL.create(path, b"m", segment_size=SEGMENT)
    with pytest.raises(WALLockedError):
        WAL.open(path, segment_size=SEGMENT)
    wal.close()
    wal, _ = WAL.open(path, segment_size=SEGMENT)
    with pytest.raises(WALLockedError):
        WAL.open(path, segment_size=SEGMENT)
    wal.close()


def test_create_accepts_an_empty_directory_the_host_made(path):
    os.makedirs(path)
    WAL.create(path, b"m", segment_size=SEGMENT).close()
    assert WAL.exists(path)


def test_open_without_a_wal_is_file_not_found(path):
    os.makedirs(path)
    with pytest.raises(FileNotFoundError):
        WAL.open(path)


def test_appends_after_reopen_continue_the_log(path):
    wal = WAL.create(path, b"m", segment_size=SMALL)
    wal.save(HardState(1, 1, 1), entries(1, 20))
    wal.close()
    for first in (21, 41):
        wal, _ = WAL.open(path, segment_size=SMALL)
        wal.save(HardState(1, 1, first), entries(first, first + 19))
        wal.close()
    wal, state = WAL.open(path, segment_size=SMALL)
    wal.close()
    assert state.entries == entries(1, 60)
    assert state.hard_state == HardState(1, 1, 41)


def test_segments_roll_at_the_configured_size(path):
    wal = WAL.create(path, b"m", segment_size=SMALL)
    for i in range(1, 101):
        wal.save(HardState(1, 1, i), entries(i, i))
    names = list_segments(path)
    assert len(names) > 3
    assert [n.seq for n in names] == list(range(len(names)))
    for n in names[:-1]:
        assert os.path.getsize(os.path.join(path, n.filename)) <= SMALL
    assert reopen(path, wal, SMALL).entries == entries(1, 100)


def test_a_batch_larger_than_a_segment_gets_a_segment_of_its_own(path):
    wal = WAL.create(path, b"m", segment_size=SMALL)
    wal.save(None, entries(1, 100))
    wal.save(None, entries(101, 101))
    assert reopen(path, wal, SMALL).entries == entries(1, 101)


def test_release_keeps_the_segment_holding_the_index_and_the_state_survives(path):
    wal = WAL.create(path, b"m", segment_size=SMALL)
    for i in range(1, 201):
        wal.save(HardState(3, 2, i - 1), entries(i, i, term=3))
    wal.save_snapshot(150, 3)
    before = list_segments(path)
    wal.release_to(150)
    after = list_segments(path)
    assert after == [n for n in before if n >= after[0]]
    assert after[0].first_index <= 150 and len(after) < len(before)
    state = reopen(path, wal, SMALL)
    assert state.metadata == b"m"
    assert (state.snapshot_index, state.hard_state) == (150, HardState(3, 2, 199))
    assert state.entries == entries(151, 200, term=3)


def test_hard_state_outlives_the_segment_it_was_saved_in(path):
    wal = WAL.create(path, b"m", segment_size=SMALL)
    wal.save(HardState(7, 3, 0), [])
    for i in range(1, 201):
        wal.save(None, entries(i, i, term=7))
    wal.save_snapshot(150, 7)
    wal.release_to(150)
    assert list_segments(path)[0].seq > 0
    state = reopen(path, wal, SMALL)
    assert state.hard_state == HardState(7, 3, 0)
    assert (state.snapshot_index, state.snapshot_term) == (150, 7)
    assert state.entries == entries(151, 200, term=7)


def test_release_never_goes_past_the_last_snapshot(path):
    wal = WAL.create(path, b"m", segment_size=SMALL)
    for i in range(1, 201):
        wal.save(HardState(1, 1, i), entries(i, i))
    wal.save_snapshot(60, 1)
    wal.release_to(190)
    assert reopen(path, wal, SMALL).entries == entries(61, 200)


def test_release_then_more_appends_then_open(path):
    wal = WAL.create(path, b"m", segment_size=SMALL)
    for i in range(1, 101):
        wal.save(HardState(1, 1, i), entries(i, i))
    wal.save_snapshot(90, 1)
    wal.release_to(90)
    for i in range(101, 151):
        wal.save(HardState(1, 1, i), entries(i, i))
    state = reopen(path, wal, SMALL)
    assert state.entries == entries(91, 150)
    assert state.hard_state == HardState(1, 1, 150)


def test_release_before_the_first_segment_is_a_no_op(path):
    wal = WAL.create(path, b"m", segment_size=SMALL)
    wal.save(None, entries(1, 100))
    before = list_segments(path)
    wal.release_to(0)
    assert list_segments(path) == before
    wal.close()


def test_a_segment_left_half_created_by_a_crash_is_ignored(path):
    wal = WAL.create(path, b"m", segment_size=SMALL)
    wal.save(None, entries(1, 5))
    with open(os.path.join(path, "0000000000000001-0000000000000006.wal.tmp"), "wb") as f:
        f.write(b"\x01partial")
    state = reopen(path, wal, SMALL)
    assert state.entries == entries(1, 5)
    assert not any(f.endswith(".tmp") for f in os.listdir(path))


@st.composite
def histories(draw):
    """A raft-like history: appends that may rewrite the uncommitted tail, snapshots, hard states."""
    ops = []
    last = 0
    term = 1
    snap = 0
    for _ in range(draw(st.integers(1, 30))):
        kind = draw(st.sampled_from(["append", "append", "rewrite", "snapshot", "hardstate"]))
        if kind == "rewrite" and last > snap + 1:
            term += 1
            first = draw(st.integers(snap + 1, last))
        elif kind == "snapshot" and last > snap:
            snap = draw(st.integers(snap + 1, last))
            ops.append(("snapshot", snap))
            continue
        elif kind == "hardstate":
            ops.append(("save", HardState(term, 1, snap), []))
            continue
        else:
            first = last + 1
        n = draw(st.integers(1, 12))
        size = draw(st.sampled_from([0, 10, 300]))
        ops.append(("save", HardState(term, 1, snap), entries(first, first + n - 1, term=term, size=size)))
        last = first + n - 1
    return ops


@settings(max_examples=60, deadline=None)
@given(histories(), st.sampled_from([1024, 4096, 1 << 20]))
def test_open_returns_what_a_model_log_holds_after_any_history(tmp_path_factory, ops, segment_size):
    path = str(tmp_path_factory.mktemp("h") / "wal")
    wal = WAL.create(path, b"m", segment_size=segment_size)
    log: dict[int, Entry] = {}
    hard_state, snap = HardState(), (0, 0)
    for op in ops:
        if op[0] == "snapshot":
            snap = (op[1], log[op[1]].term)  # a snapshot of this log, as raft takes them
            wal.save_snapshot(*snap)
            continue
        _, hs, ents = op
        wal.save(hs, ents, sync=False)
        hard_state = hs
        for e in ents:
            for i in [i for i in log if i >= e.index]:
                del log[i]
            log[e.index] = e
        if len(list_segments(path)) > 2:
            wal.release_to(snap[0])
    state = reopen(path, wal, segment_size)
    assert state.hard_state == hard_state
    assert (state.snapshot_index, state.snapshot_term) == snap
    assert state.entries == [log[i] for i in sorted(log) if i > snap[0]]
