"""Quorum arithmetic checked against brute-force definitions."""

from __future__ import annotations

from itertools import combinations

from hypothesis import given
from hypothesis import strategies as st

from etcdx.raft.quorum import INFINITE_INDEX, JointConfig, MajorityConfig, VoteResult

ids = st.sets(st.integers(1, 9), max_size=7)
acks = st.dictionaries(st.integers(1, 9), st.integers(0, 20))
votes = st.dictionaries(st.integers(1, 9), st.booleans())


def brute_committed(voters: set[int], acked: dict[int, int]) -> int:
    """The largest index i such that some majority of voters all acked >= i."""
    if not voters:
        return INFINITE_INDEX
    q = len(voters) // 2 + 1
    best = 0
    for group in combinations(sorted(voters), q):
        best = max(best, min(acked.get(v, 0) for v in group))
    return best


def brute_vote(voters: set[int], v: dict[int, bool]) -> VoteResult:
    if not voters:
        return VoteResult.WON
    q = len(voters) // 2 + 1
    yes = sum(1 for i in voters if v.get(i) is True)
    undecided = sum(1 for i in voters if i not in v)
    if yes >= q:
        return VoteResult.WON
    if yes + undecided >= q:
        return VoteResult.PENDING
    return VoteResult.LOST


@given(ids, acks)
def test_majority_committed_index_is_the_largest_index_a_majority_acked(voters, acked):
    assert MajorityConfig(voters).committed_index(lambda i: acked.get(i, 0)) == brute_committed(voters, acked)


@given(ids, ids, acks)
def test_joint_committed_index_is_the_minimum_of_both_halves(incoming, outgoing, acked):
    jc = JointConfig(MajorityConfig(incoming), MajorityConfig(outgoing))
    expected = min(brute_committed(incoming, acked), brute_committed(outgoing, acked))
    assert jc.committed_index(lambda i: acked.get(i, 0)) == expected


@given(ids, votes)
def test_majority_vote_result(voters, v):
    assert MajorityConfig(voters).vote_result(v) == brute_vote(voters, v)


@given(ids, ids, votes)
def test_joint_vote_needs_both_halves(incoming, outgoing, v):
    r1, r2 = brute_vote(incoming, v), brute_vote(outgoing, v)
    if VoteResult.LOST in (r1, r2):
        expected = VoteResult.LOST
    elif r1 == r2 == VoteResult.WON:
        expected = VoteResult.WON
    else:
        expected = VoteResult.PENDING
    assert JointConfig(MajorityConfig(incoming), MajorityConfig(outgoing)).vote_result(v) == expected


def test_even_sized_config_needs_more_than_half():
    mc = MajorityConfig([1, 2, 3, 4])
    assert mc.committed_index({1: 5, 2: 5, 3: 1, 4: 1}.__getitem__) == 1
    assert mc.vote_result({1: True, 2: True, 3: False, 4: False}) == VoteResult.LOST
    assert mc.vote_result({1: True, 2: True}) == VoteResult.PENDING
