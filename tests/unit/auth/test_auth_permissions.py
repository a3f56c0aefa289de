"""Key-range permissions: interval merging against a brute-force model, and etcd 3.4's corner cases."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.auth.permissions import (
    READ,
    READWRITE,
    WRITE,
    IntervalSet,
    UserPermissions,
    grant_interval,
    request_interval,
)
from etcdx.pb import auth_pb2

# Short keys over a tiny alphabet (with the zero byte) make overlaps, touching ends and
# prefixes of one another common.
keys = st.binary(min_size=0, max_size=3).map(lambda b: bytes(c % 3 for c in b))
nonempty_keys = keys.filter(bool)
range_ends = st.one_of(st.just(b""), st.just(b"\0"), keys)


def perm(kind: int, key: bytes, range_end: bytes = b"") -> auth_pb2.Permission:
    return auth_pb2.Permission(permType=kind, key=key, range_end=range_end)


def brute_covers(intervals: list[tuple[bytes, bytes | None]], begin: bytes, end: bytes | None) -> bool:
    """Whether the union of ``intervals`` covers ``[begin, end)``, from first principles.

    Membership of a key in a union of half-open intervals only changes at interval
    bounds, so it is enough to test ``begin`` and every bound inside ``[begin, end)``.
    """
    def member(key: bytes) -> bool:
        return any(b <= key and (e is None or key < e) for b, e in intervals)

    points = {begin} | {b for b, _ in intervals} | {e for _, e in intervals if e is not None}
    inside = [p for p in points if p >= begin and (end is None or p < end)]
    return all(member(p) for p in inside)


intervals = st.lists(
    st.tuples(nonempty_keys, range_ends).map(lambda kr: grant_interval(*kr)).filter(lambda i: i is not None),
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(intervals, nonempty_keys, range_ends)
def test_interval_set_covers_exactly_what_the_union_covers(ivls, key, range_end):
    begin, end = request_interval(key, range_end)
    assert IntervalSet(ivls).covers(begin, end) == brute_covers(ivls, begin, end)


@settings(max_examples=200, deadline=None)
@given(intervals)
def test_merged_intervals_are_sorted_disjoint_and_not_touching(ivls):
    merged = IntervalSet(ivls).intervals()
    for (b1, e1), (b2, _) in zip(merged, merged[1:]):
        assert e1 is not None and e1 < b2 and b1 < b2
    for begin, _ in ivls:
        assert IntervalSet(ivls).contains_key(begin)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([READ, WRITE, READWRITE]), nonempty_keys, range_ends), max_size=6),
       nonempty_keys, range_ends)
def test_user_permissions_split_grants_by_type(grants, key, range_end):
    perms = UserPermissions.merge(["r"], [perm(*g) for g in grants])
    begin, end = request_interval(key, range_end)
    for want, kinds in ((READ, (READ, READWRITE)), (WRITE, (WRITE, READWRITE))):
        ivls = [i for kind, k, e in grants if kind in kinds and (i := grant_interval(k, e)) is not None]
        assert perms.allows(key, range_end, want) == brute_covers(ivls, begin, end)


def test_adjacent_grants_join_into_one_range():
    perms = UserPermissions.merge(["r"], [perm(READ, b"a", b"c"), perm(READ, b"c", b"e")])
    assert perms.allows(b"a", b"e", READ)
    assert not perms.allows(b"a", b"f", READ)
    assert not perms.allows(b"a", b"e", WRITE)


def test_root_role_allows_everything():
    perms = UserPermissions.merge(["a", "root"], [])
    assert perms.allows(b"anything", b"\0", READWRITE)


# What etcd 3.4.23 answered for a user granted READ on "a", READWRITE on [k, l), WRITE on
# [k, kz) and b, READ from "z" on (tests/unit/auth/test_auth_checks.py replays the whole probe).
ETCD_GRANTS = [perm(READ, b"a"), perm(WRITE, b"b"), perm(READWRITE, b"k", b"l"),
               perm(WRITE, b"k", b"kz"), perm(READ, b"z", b"\0")]


def test_range_answers_match_etcd():
    perms = UserPermissions.merge(["r1"], ETCD_GRANTS)
    cases = {
        (b"a", b""): True, (b"k", b"l"): True, (b"k", b"m"): False, (b"z", b"\0"): True,
        (b"zz", b"\0"): True, (b"y", b"\0"): False,
        # empty ranges: the answer is the first key's
        (b"l", b"k"): False, (b"k1", b"k"): True, (b"q", b"p"): False, (b"q", b"a"): False,
        (b"kk", b"k0"): True, (b"k", b"k"): True, (b"q", b"q"): False,
    }
    for (key, end), allowed in cases.items():
        assert perms.allows(key, end, READ) == allowed, (key, end)


def test_grants_covering_no_key_are_ignored():
    assert grant_interval(b"", b"") is None
    assert grant_interval(b"", b"\0") is None
    assert grant_interval(b"b", b"a") is None
    assert grant_interval(b"b", b"b") is None
    perms = UserPermissions.merge(["r"], [perm(READ, b""), perm(READ, b"b", b"a")])
    assert not perms.allows(b"b", b"", READ)
    assert not perms.allows(b"\0", b"\0", READ)


def test_empty_request_key_is_never_covered():
    perms = UserPermissions.merge(["r"], [perm(READWRITE, b"\0", b"\0")])
    assert perms.allows(b"\0", b"\0", READ)  # etcdctl's "every key": key \0, range end \0
    assert not perms.allows(b"", b"", READ)
    assert not perms.allows(b"", b"\0", READ)
