"""The serializable-read check: per-incarnation monotonic revisions, values as of the header revision."""

from __future__ import annotations

from etcdx.check.etcd_ops import Change, GetResult, KeyValue
from faults.checks import check_serializable
from faults.history import SerializableRead

# Revision 2 puts a=1, 3 puts b=x, 4 puts a=2, 5 deletes a.
LOG = {2: [Change("a", "1")], 3: [Change("b", "x")], 4: [Change("a", "2")], 5: [Change("a", None)]}


def read(call: float, revision: int, value: str | None, mod: int = 0, member: str = "m1", key: str = "a"):
    kv = None if value is None else KeyValue(value, 2, mod, 1)
    return SerializableRead(0, member, key, call, call + 0.1, GetResult(kv, revision))


def test_reads_that_match_the_log_pass():
    reads = [read(0.0, 3, "1", 2), read(1.0, 4, "2", 4), read(2.0, 5, None), read(3.0, 1, None, member="m2")]
    assert check_serializable(reads, {}, LOG) == []


def test_a_value_other_than_the_one_at_the_header_revision_is_caught():
    [problem] = check_serializable([read(0.0, 4, "1", 2)], {}, LOG)
    assert "held '2' (mod 4) at revision 4" in problem


def test_a_key_read_before_its_delete_was_undone_is_caught():
    [problem] = check_serializable([read(0.0, 5, "2", 4)], {}, LOG)
    assert "absent at revision 5" in problem


def test_revision_going_backwards_on_one_member_is_caught_unless_it_was_killed_between():
    reads = [read(0.0, 4, "2", 4), read(1.0, 3, "1", 2)]
    [problem] = check_serializable(reads, {}, LOG)
    assert "m1: revision went backwards" in problem
    assert check_serializable(reads, {"m1": [0.5]}, LOG) == []


def test_other_members_may_be_behind():
    assert check_serializable([read(0.0, 4, "2", 4), read(1.0, 3, "1", 2, member="m2")], {}, LOG) == []


def test_revisions_beyond_the_log_are_not_judged_but_beyond_the_final_revision_are():
    assert check_serializable([read(0.0, 9, "z", 9)], {}, LOG) == []
    [problem] = check_serializable([read(0.0, 9, "z", 9)], {}, LOG, final_revision=5)
    assert "above the final revision 5" in problem
