"""etcd's KV semantics and revision order, as the checker enforces them."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.check.etcd_model import EtcdModel
from etcdx.check.etcd_ops import (
    Change,
    Compare,
    Delete,
    DeleteResult,
    Get,
    GetResult,
    KeyValue,
    LeaseRevoke,
    Put,
    PutResult,
    Range,
    RangeResult,
    Txn,
    TxnResult,
)
from etcdx.check.etcd_revisions import narrow_to_revision_order, resolve_lost_writes
from etcdx.check.linearizability import CheckResult, Operation, check_operations
from etcdx.check.synthetic import random_etcd_history

INF = math.inf


def op(client: int, input, call: float, ret: float, output=None) -> Operation:
    return Operation(client_id=client, input=input, call=call, output=output, return_time=ret)


def kv(value, create: int, mod: int, version: int, lease: int = 0) -> KeyValue:
    return KeyValue(value, create, mod, version, lease)


def check(history: list[Operation]) -> CheckResult:
    return check_operations(EtcdModel(), history, timeout=30)


def test_concurrent_puts_and_reads_in_revision_order_pass():
    history = [
        op(0, Put("a", "1"), 0, 4, PutResult(3)),
        op(1, Put("b", "1"), 0, 4, PutResult(2)),
        op(2, Get("a"), 1, 5, GetResult(None, 2)),
        op(3, Get("b"), 1, 5, GetResult(kv("1", 2, 2, 1), 2)),
        op(4, Get("a"), 6, 7, GetResult(kv("1", 3, 3, 1), 3)),
    ]
    assert check(history).ok is True


def test_stale_read_is_caught():
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(2)),
        op(0, Put("a", "2"), 2, 3, PutResult(3)),
        op(1, Get("a"), 4, 5, GetResult(kv("1", 2, 2, 1), 2)),
    ]
    result = check(history)
    assert result.ok is False
    assert "revision went backwards" in result.explanation


def test_stale_read_with_a_current_header_revision_is_caught():
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(2)),
        op(0, Put("a", "2"), 2, 3, PutResult(3)),
        op(1, Get("a"), 4, 5, GetResult(kv("1", 2, 2, 1), 3)),
    ]
    result = check(history)
    assert result.ok is False
    assert "get('a') -> '1'" in result.explanation


def test_lost_acknowledged_write_is_caught():
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(2)),
        op(1, Put("b", "1"), 2, 3, PutResult(3)),
        op(2, Get("b"), 4, 5, GetResult(None, 3)),
    ]
    assert check(history).ok is False


def test_write_applied_twice_is_caught():
    # The put was retried and applied twice: version 2 and an extra revision.
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(2)),
        op(1, Get("a"), 2, 3, GetResult(kv("1", 2, 3, 2), 3)),
    ]
    result = check(history)
    assert result.ok is False
    assert "revision 3 was created by no write" in result.explanation


def test_two_writes_with_one_revision_are_caught():
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(2)),
        op(1, Put("b", "1"), 0, 1, PutResult(2)),
    ]
    result = check(history)
    assert result.ok is False
    assert "revision 2 created twice" in result.explanation


def test_read_of_a_value_never_written_is_caught():
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(2)),
        op(1, Get("a"), 2, 3, GetResult(kv("9", 2, 2, 1), 2)),
    ]
    assert check(history).ok is False


def test_revisions_out_of_real_time_order_across_keys_are_caught():
    # Each key on its own is fine; across keys the revision went backwards.
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(3)),
        op(1, Put("b", "1"), 2, 3, PutResult(2)),
    ]
    result = check(history)
    assert result.ok is False
    assert "revision went backwards in real time" in result.explanation


def test_read_that_misses_a_write_below_its_header_revision_is_caught():
    # b was written at revision 2 and the read claims revision 3 but sees no b.
    history = [
        op(0, Put("b", "1"), 0, 10, PutResult(2)),
        op(1, Put("a", "1"), 0, 10, PutResult(3)),
        op(2, Get("b"), 0, 10, GetResult(None, 3)),
    ]
    assert check(history).ok is False


def test_indeterminate_put_that_took_effect_passes():
    history = [
        op(0, Put("a", "1"), 0, INF),
        op(1, Put("b", "1"), 1, 2, PutResult(3)),
        op(2, Get("a"), 3, 4, GetResult(kv("1", 2, 2, 1), 3)),
    ]
    assert check(history).ok is True


def test_indeterminate_put_that_did_not_take_effect_passes():
    history = [
        op(0, Put("a", "1"), 0, INF),
        op(1, Put("b", "1"), 1, 2, PutResult(2)),
        op(2, Get("a"), 3, 4, GetResult(None, 2)),
    ]
    assert check(history).ok is True


def test_revision_gap_explained_only_by_a_later_indeterminate_write_is_caught():
    history = [
        op(0, Put("b", "1"), 0, 1, PutResult(3)),
        op(1, Put("a", "1"), 5, INF),
    ]
    result = check(history)
    assert result.ok is False
    assert "revision 2 was created by no write" in result.explanation


def test_delete_of_absent_key_keeps_the_revision():
    history = [
        op(0, Delete("a"), 0, 1, DeleteResult(0, 1)),
        op(0, Put("a", "1"), 2, 3, PutResult(2)),
        op(0, Delete("a"), 4, 5, DeleteResult(1, 3)),
        op(1, Get("a"), 6, 7, GetResult(None, 3)),
    ]
    assert check(history).ok is True


def test_compare_and_swap_that_both_succeed_is_caught():
    cas = Txn(Compare("a", "value", "=", "1"), Put("a", "2"))
    cas2 = Txn(Compare("a", "value", "=", "1"), Put("a", "3"))
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(2)),
        op(1, cas, 2, 5, TxnResult(True, 3)),
        op(2, cas2, 2, 5, TxnResult(True, 4)),
    ]
    assert check(history).ok is False


def test_compare_and_swap_loser_reads_the_winner():
    cas = Txn(Compare("a", "version", "=", 1), Put("a", "2"), Get("a"))
    cas2 = Txn(Compare("a", "version", "=", 1), Put("a", "3"), Get("a"))
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(2)),
        op(1, cas, 2, 5, TxnResult(True, 3)),
        op(2, cas2, 2, 5, TxnResult(False, 3, kv=kv("2", 2, 3, 2))),
    ]
    assert check(history).ok is True


def test_compare_on_the_revision_of_an_unobserved_write_binds_it():
    cas = Txn(Compare("a", "mod", "=", 2), Put("a", "2"))
    history = [
        op(0, Put("a", "1"), 0, INF),
        op(1, cas, 1, 2, TxnResult(True, 3)),
        op(2, Get("a"), 3, 4, GetResult(kv("2", 2, 3, 2), 3)),
    ]
    assert check(history).ok is True


def test_range_is_one_atomic_read_at_its_revision():
    history = [
        op(0, Put("p/a", "1"), 0, 1, PutResult(2)),
        op(0, Put("p/b", "1"), 2, 3, PutResult(3)),
        op(1, Range("p/"), 4, 5, RangeResult({"p/a": kv("1", 2, 2, 1), "p/b": kv("1", 3, 3, 1)}, 3)),
    ]
    assert check(history).ok is True


def test_range_missing_a_key_it_should_hold_is_caught():
    history = [
        op(0, Put("p/a", "1"), 0, 10, PutResult(2)),
        op(1, Put("p/b", "1"), 0, 10, PutResult(3)),
        op(2, Range("p/"), 0, 10, RangeResult({"p/b": kv("1", 3, 3, 1)}, 3)),
    ]
    assert check(history).ok is False


def test_range_holding_a_key_never_written_is_caught():
    history = [op(0, Range("p/"), 0, 1, RangeResult({"p/x": kv("1", 2, 2, 1)}, 2))]
    assert check(history).ok is False


def test_lease_revoke_deletes_attached_keys():
    history = [
        op(0, Put("a", "1", lease=7), 0, 1, PutResult(2)),
        op(0, Put("b", "1"), 2, 3, PutResult(3)),
        op(0, LeaseRevoke(7), 4, 5),
        op(1, Get("a"), 6, 7, GetResult(None, 4)),
        op(1, Get("b"), 8, 9, GetResult(kv("1", 3, 3, 1), 4)),
    ]
    assert check(history).ok is True


def test_key_surviving_its_lease_revoke_is_caught():
    history = [
        op(0, Put("a", "1", lease=7), 0, 1, PutResult(2)),
        op(0, LeaseRevoke(7), 2, 3),
        op(1, Get("a"), 4, 5, GetResult(kv("1", 2, 2, 1, lease=7), 2)),
    ]
    assert check(history).ok is False


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 150), lost=st.sampled_from([0.0, 0.1, 0.3]))
def test_histories_from_a_sequential_etcd_are_linearizable(seed: int, size: int, lost: float):
    print(f"seed={seed}")
    history = random_etcd_history(random.Random(seed), size, keys=20, clients=6, indeterminate=lost, leases=True)
    result = check(history.operations)
    assert result.ok is True, result.explanation


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(2, 150))
def test_changing_the_value_a_get_returned_is_caught(seed: int, size: int):
    print(f"seed={seed}")
    rng = random.Random(seed)
    history = random_etcd_history(rng, size, keys=20, clients=6).operations
    reads = [o for o in history if isinstance(o.input, Get) and o.output.kv is not None]
    if not reads:
        return
    read = rng.choice(reads)
    read.output = GetResult(KeyValue("forged", *list(_fields(read.output.kv))[1:]), read.output.revision)
    assert check(history).ok is False


def _fields(value: KeyValue):
    return (value.value, value.create_revision, value.mod_revision, value.version, value.lease)


def test_lost_put_seen_by_a_read_is_pinned_to_its_revision():
    history = [
        op(0, Put("a", "1"), 0, INF),
        op(1, Get("a"), 5, 6, GetResult(kv("1", 2, 2, 1), 2)),
    ]
    (pinned, _) = resolve_lost_writes(history)
    assert (pinned.output, pinned.return_time) == (PutResult(2), 6)


def test_lost_put_seen_before_it_was_called_is_caught():
    history = [
        op(1, Put("b", "1"), 0, 1, PutResult(3)),
        op(0, Put("a", "1"), 5, INF),
        op(1, Get("a"), 2, 3, GetResult(kv("1", 2, 2, 1), 3)),
    ]
    assert check(history).ok is False


def test_lost_reads_are_dropped():
    history = [op(0, Get("a"), 0, INF), op(1, Range("p/"), 0, INF)]
    assert resolve_lost_writes(history) == []


def test_unseen_lost_writes_are_dropped_once_every_revision_is_accounted_for():
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(2)),
        op(1, Put("a", "2"), 0, INF),
        op(2, Delete("a"), 0, INF),
        op(3, Get("a"), 2, 3, GetResult(kv("1", 2, 2, 1), 2)),
    ]
    assert [o.input for o in resolve_lost_writes(history)] == [Put("a", "1"), Get("a")]


def test_unseen_lost_writes_stay_optional_while_a_revision_is_unexplained():
    history = [
        op(0, Put("a", "1"), 0, INF),
        op(1, Put("b", "1"), 0, INF),
        op(2, Get("c"), 2, 3, GetResult(None, 2)),
    ]
    assert len(resolve_lost_writes(history)) == 3
    assert check(history).ok is True


def test_watch_log_pins_a_lost_delete_and_drops_a_lost_put_that_never_happened():
    changes = {2: [Change("a", "1")], 3: [Change("a", None)]}
    history = [
        op(0, Put("a", "1"), 0, 1, PutResult(2)),
        op(1, Delete("a"), 2, INF),
        op(2, Put("a", "never"), 2, INF),
        op(3, Get("b"), 4, 5, GetResult(None, 3)),
    ]
    resolved = {o.client_id: o for o in resolve_lost_writes(history, changes=changes)}
    assert 2 not in resolved
    assert (resolved[1].output, resolved[1].return_time) == (DeleteResult(1, 3), 5)
    assert check_operations(EtcdModel(changes=changes), history).ok is True


def test_watch_log_pins_the_only_revocation_of_a_lease():
    changes = {2: [Change("a", "1", lease=7)], 3: [Change("a", None)]}
    history = [
        op(0, Put("a", "1", lease=7), 0, 1, PutResult(2)),
        op(1, LeaseRevoke(7), 2, INF),
        op(2, Get("a"), 4, 5, GetResult(None, 3)),
    ]
    revoke = next(o for o in resolve_lost_writes(history, changes=changes) if o.client_id == 1)
    assert revoke.return_time == 5
    assert check_operations(EtcdModel(changes=changes), history).ok is True


def test_deletion_of_a_leased_key_is_not_taken_for_a_revocation_when_a_lost_delete_could_have_made_it():
    changes = {2: [Change("a", "1", lease=7)], 3: [Change("a", None)]}
    history = [
        op(0, Put("a", "1", lease=7), 0, 1, PutResult(2)),
        op(1, LeaseRevoke(7), 2, INF),
        op(2, Delete("a"), 2, INF),
        op(3, Get("a"), 4, 5, GetResult(None, 3)),
    ]
    assert all(o.indeterminate for o in resolve_lost_writes(history, changes=changes) if o.client_id in (1, 2))
    assert check_operations(EtcdModel(changes=changes), history).ok is True


def test_intervals_are_narrowed_to_the_revision_order():
    history = [
        op(0, Put("a", "1"), 0, 10, PutResult(2)),
        op(1, Put("b", "1"), 4, 6, PutResult(3)),
    ]
    first, second = narrow_to_revision_order(history)
    assert (first.call, first.return_time) == (0, 6)
    assert (second.call, second.return_time) == (4, 6)


def test_explanation_shows_real_times_of_narrowed_operations():
    history = [
        op(0, Put("a", "1"), 0, 10, PutResult(2)),
        op(1, Put("b", "1"), 4, 6, PutResult(3)),
        op(2, Get("a"), 7, 8, GetResult(kv("9", 2, 2, 1), 3)),
    ]
    explanation = check(history).explanation
    assert "narrowed from the recorded [0, 10]" in explanation


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 150), lost=st.sampled_from([0.05, 0.3]))
def test_histories_with_a_watch_log_are_linearizable(seed: int, size: int, lost: float):
    print(f"seed={seed}")
    synthetic = random_etcd_history(random.Random(seed), size, keys=20, clients=6, indeterminate=lost, leases=True)
    model = EtcdModel(changes=synthetic.store.changes())
    result = check_operations(model, synthetic.operations, timeout=30)
    assert result.ok is True, result.explanation


def test_lost_txn_comparing_the_revision_of_a_lost_put_can_take_effect():
    # mod('a') of the lost put is unknown but above 1, so "!= 0" holds.
    cas = Txn(Compare("a", "mod", "!=", 0), Put("a", "2"), Get("a"))
    history = [
        op(0, Put("a", "1"), 0, INF),
        op(1, cas, 1, INF),
        op(2, Put("a", "3"), 5, 6, PutResult(4)),
        op(3, Get("a"), 7, 8, GetResult(kv("3", 2, 4, 3), 4)),
    ]
    assert check(history).ok is True
