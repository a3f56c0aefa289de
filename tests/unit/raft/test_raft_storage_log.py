"""MemoryStorage and the raft log's stable/unstable split."""

from __future__ import annotations

import pytest

from etcdx.raft import CompactedError, ConfState, Entry, MemoryStorage, UnavailableError
from etcdx.raft.log import RaftLog


def storage_with(*pairs: tuple[int, int]) -> MemoryStorage:
    s = MemoryStorage()
    s.append([Entry(term=t, index=i) for i, t in pairs])
    return s


def test_storage_append_truncates_a_conflicting_suffix():
    s = storage_with((1, 1), (2, 1), (3, 1))
    s.append([Entry(term=2, index=2)])
    assert s.last_index() == 2 and s.term(2) == 2
    with pytest.raises(UnavailableError):
        s.append([Entry(term=2, index=5)])


def test_storage_compact_keeps_the_term_of_the_compaction_point():
    s = storage_with((1, 1), (2, 2), (3, 3))
    s.create_snapshot(2, ConfState(voters=[1]), b"d")
    s.compact(2)
    assert s.first_index() == 3 and s.term(2) == 2
    with pytest.raises(CompactedError):
        s.term(1)
    with pytest.raises(CompactedError):
        s.entries(2, 4)
    assert [e.index for e in s.entries(3, 4)] == [3]


def test_storage_entries_respect_max_size_but_return_at_least_one():
    s = MemoryStorage()
    s.append([Entry(term=1, index=i, data=b"x" * 10) for i in range(1, 6)])
    assert len(s.entries(1, 6, max_size=25)) == 2
    assert len(s.entries(1, 6, max_size=1)) == 1
    assert len(s.entries(1, 6)) == 5


def test_log_reads_across_stable_and_unstable_entries():
    s = storage_with((1, 1), (2, 1))
    log = RaftLog(s)
    log.append([Entry(term=2, index=3), Entry(term=2, index=4)])
    assert log.last_index() == 4
    assert [e.index for e in log.entries(2)] == [2, 3, 4]
    assert log.term(4) == 2 and log.term(2) == 1
    log.stable_to(4, 2)
    assert log.unstable.entries == [] and log.unstable.offset == 5


def test_log_maybe_append_truncates_only_after_the_conflict():
    log = RaftLog(storage_with((1, 1), (2, 1), (3, 1)))
    assert log.maybe_append(1, 1, 2, [Entry(term=1, index=2), Entry(term=3, index=3)]) == 3
    assert log.term(3) == 3 and log.committed == 2
    # A mismatched previous entry is refused.
    assert log.maybe_append(3, 2, 3, []) is None


def test_stale_stable_to_after_truncation_keeps_the_new_entries():
    log = RaftLog(storage_with((1, 1)))
    log.append([Entry(term=1, index=2)])
    log.append([Entry(term=2, index=2)])
    log.stable_to(2, 1)  # the old entry 2 was persisted, but it has been replaced
    assert [e.term for e in log.unstable.entries] == [2]


def test_find_conflict_by_term_skips_entries_of_larger_terms():
    log = RaftLog(storage_with((1, 1), (2, 2), (3, 2), (4, 3), (5, 3)))
    assert log.find_conflict_by_term(5, 2) == (3, 2)
    assert log.find_conflict_by_term(5, 0) == (0, 0)
    assert log.find_conflict_by_term(5, 3) == (5, 3)


def test_a_long_log_gives_the_cycle_collector_nothing_to_walk():
    """100k entries between snapshots, kept as objects the collector tracks, made every full
    collection a 20-50 ms pause of the member's loop."""
    import gc

    s = MemoryStorage()
    gc.collect()
    before = len(gc.get_objects())
    s.append([Entry(term=1, index=i, data=b"x" * 8) for i in range(1, 10_001)])
    gc.collect()
    assert len(gc.get_objects()) - before < 100
    assert s.entries(5, 7) == [Entry(term=1, index=5, data=b"x" * 8), Entry(term=1, index=6, data=b"x" * 8)]
