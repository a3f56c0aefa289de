"""Each safety check fires on a fabricated cluster history that breaks its property."""

import pytest

from etcdx.raft.storage import MemoryStorage
from etcdx.raft.types import Entry
from etcdx.sim.invariants import (
    ELECTION_SAFETY,
    LEADER_COMPLETENESS,
    LOG_MATCHING,
    STATE_MACHINE_SAFETY,
    SafetyMonitor,
    Violation,
)


def _log(*terms: int, data: bytes = b"x") -> list[Entry]:
    return [
        Entry(term=t, index=i, data=data + bytes([i]))
        for i, t in enumerate(terms, start=1)
    ]


def _persist(
    mon: SafetyMonitor, node: int, disk: MemoryStorage, entries: list[Entry]
) -> None:
    mon.entries_persisting(node, disk, disk.hard_state.commit, entries)
    disk.append(entries)


def test_two_leaders_in_one_term_break_election_safety():
    mon = SafetyMonitor()
    mon.leader_elected(1, 3, MemoryStorage(), [[1]])
    mon.leader_elected(
        1, 3, MemoryStorage(), [[1]]
    )  # the same leader seen twice is fine
    with pytest.raises(Violation) as v:
        mon.leader_elected(2, 3, MemoryStorage(), [[2]])
    assert v.value.kind == ELECTION_SAFETY


def test_same_index_and_term_with_different_data_breaks_log_matching():
    mon = SafetyMonitor()
    _persist(mon, 1, MemoryStorage(), _log(1, 1, 2))
    with pytest.raises(Violation) as v:
        _persist(
            mon,
            2,
            MemoryStorage(),
            _log(1, 1) + [Entry(term=2, index=3, data=b"other")],
        )
    assert v.value.kind == LOG_MATCHING


def test_same_index_and_term_after_a_different_previous_term_breaks_log_matching():
    mon = SafetyMonitor()
    _persist(mon, 1, MemoryStorage(), _log(1, 1, 3))
    other = _log(1, 2)
    other.append(Entry(term=3, index=3, data=b"x\x03"))
    with pytest.raises(Violation) as v:
        _persist(mon, 2, MemoryStorage(), other)
    assert v.value.kind == LOG_MATCHING


def test_diverging_uncommitted_suffixes_are_allowed():
    mon = SafetyMonitor()
    _persist(mon, 1, MemoryStorage(), _log(1, 2, 2))
    _persist(mon, 2, MemoryStorage(), _log(1, 3, 3))


def test_new_leader_missing_a_committed_entry_breaks_leader_completeness():
    mon = SafetyMonitor()
    d1, d2 = MemoryStorage(), MemoryStorage()
    _persist(mon, 1, d1, _log(1, 1, 1))
    mon.commit_advanced(1, 1, 0, 3, d1)
    _persist(mon, 2, d2, _log(1, 1))
    with pytest.raises(Violation) as v:
        mon.leader_elected(2, 2, d2, [[2]])
    assert v.value.kind == LEADER_COMPLETENESS


def test_entry_committed_under_a_sitting_leader_it_lacks_breaks_leader_completeness():
    mon = SafetyMonitor()
    d1, d2 = MemoryStorage(), MemoryStorage()
    _persist(mon, 2, d2, _log(1))
    mon.leader_elected(2, 5, d2, [[2]])
    _persist(mon, 1, d1, _log(1, 1))
    with pytest.raises(Violation) as v:
        mon.commit_advanced(1, 4, 0, 2, d1)
    assert v.value.kind == LEADER_COMPLETENESS


def test_stale_leader_need_not_hold_entries_committed_in_later_terms():
    mon = SafetyMonitor()
    d1, d2 = MemoryStorage(), MemoryStorage()
    _persist(mon, 2, d2, _log(1))
    mon.leader_elected(2, 1, d2, [[2]])
    _persist(mon, 1, d1, _log(1, 3))
    mon.commit_advanced(1, 3, 0, 2, d1)


def test_two_nodes_committing_different_entries_at_one_index_break_state_machine_safety():
    mon = SafetyMonitor()
    d1, d2 = MemoryStorage(), MemoryStorage()
    _persist(mon, 1, d1, _log(1, 2))
    mon.commit_advanced(1, 2, 0, 2, d1)
    _persist(mon, 2, d2, _log(1, 3))
    with pytest.raises(Violation) as v:
        mon.commit_advanced(2, 3, 0, 2, d2)
    assert v.value.kind == STATE_MACHINE_SAFETY


def test_overwriting_an_entry_at_or_below_commit_breaks_state_machine_safety():
    mon = SafetyMonitor()
    d1 = MemoryStorage()
    _persist(mon, 1, d1, _log(1, 1))
    mon.commit_advanced(1, 1, 0, 2, d1)
    d1.set_hard_state(d1.hard_state.__class__(term=1, commit=2))
    with pytest.raises(Violation) as v:
        mon.entries_persisting(1, d1, 2, [Entry(term=2, index=2, data=b"y")])
    assert v.value.kind == STATE_MACHINE_SAFETY


def test_commit_going_back_breaks_state_machine_safety():
    mon = SafetyMonitor()
    with pytest.raises(Violation) as v:
        mon.commit_advanced(1, 1, 5, 4, MemoryStorage())
    assert v.value.kind == STATE_MACHINE_SAFETY


def test_applying_an_uncommitted_or_skipped_entry_breaks_state_machine_safety():
    mon = SafetyMonitor()
    d1 = MemoryStorage()
    _persist(mon, 1, d1, _log(1, 1, 1))
    mon.commit_advanced(1, 1, 0, 2, d1)
    mon.restored(1, 0)
    mon.applying(1, d1.entries(1, 2)[0])
    with pytest.raises(Violation) as skipped:
        mon.applying(1, d1.entries(3, 4)[0])
    mon.applying(1, d1.entries(2, 3)[0])
    with pytest.raises(Violation) as uncommitted:
        mon.applying(1, d1.entries(3, 4)[0])
    assert skipped.value.kind == uncommitted.value.kind == STATE_MACHINE_SAFETY


def test_a_node_granting_two_candidates_one_term_breaks_election_safety():
    mon = SafetyMonitor()
    mon.vote_cast(3, 1, 4)
    mon.vote_cast(3, 1, 4)  # a repeated grant to the same candidate is fine
    with pytest.raises(Violation) as v:
        mon.vote_cast(3, 2, 4)
    assert v.value.kind == ELECTION_SAFETY


def test_leader_without_a_quorum_of_votes_from_its_own_term_breaks_election_safety():
    mon = SafetyMonitor()
    mon.vote_cast(2, 1, 4)  # granted in an earlier term: does not count in term 5
    with pytest.raises(Violation) as v:
        mon.leader_elected(1, 5, MemoryStorage(), [[1, 2, 3], []])
    assert v.value.kind == ELECTION_SAFETY
    mon.vote_cast(2, 1, 5)
    mon.leader_elected(1, 5, MemoryStorage(), [[1, 2, 3], []])


def test_joint_leader_needs_a_majority_in_both_configurations():
    mon = SafetyMonitor()
    mon.vote_cast(2, 1, 7)
    with pytest.raises(Violation) as v:
        mon.leader_elected(1, 7, MemoryStorage(), [[1, 2, 3], [1, 4, 5]])
    assert v.value.kind == ELECTION_SAFETY
