from hypothesis import given
from hypothesis import strategies as st

from etcdx.mvcc import revision

revs = st.tuples(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))


def test_layout_is_etcds_17_bytes_plus_tombstone_mark():
    assert revision.encode(1, 2) == b"\x00" * 7 + b"\x01_" + b"\x00" * 7 + b"\x02"
    assert revision.encode(1, 2, True) == revision.encode(1, 2) + b"t"


@given(revs, st.booleans())
def test_round_trips(r, tomb):
    assert revision.decode(revision.encode(*r, tomb)) == (*r, tomb)


@given(revs, revs)
def test_byte_order_is_revision_order(a, b):
    assert (revision.encode(*a) < revision.encode(*b)) == (a < b)
