"""The generic search, pinned with the toy key-value model."""

from __future__ import annotations

import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.check.kv_model import KvCas, KvGet, KvModel, KvPut
from etcdx.check.linearizability import CheckResult, Operation, check_operations
from etcdx.check.synthetic import random_kv_history

INF = math.inf


def op(client: int, input, call: float, ret: float, output=None) -> Operation:
    return Operation(client_id=client, input=input, call=call, output=output, return_time=ret)


def check(history: list[Operation], timeout: float | None = None) -> CheckResult:
    return check_operations(KvModel(), history, timeout)


def test_sequential_history_is_linearizable():
    history = [
        op(0, KvPut("x", 1), 0, 1),
        op(0, KvGet("x"), 2, 3, 1),
        op(1, KvPut("x", 2), 4, 5),
        op(1, KvGet("x"), 6, 7, 2),
    ]
    assert check(history).ok is True


def test_read_concurrent_with_write_may_see_old_or_new_value():
    for seen in (1, 2):
        history = [
            op(0, KvPut("x", 1), 0, 1),
            op(1, KvPut("x", 2), 2, 6),
            op(2, KvGet("x"), 3, 4, seen),
        ]
        assert check(history).ok is True


def test_stale_read_after_write_returned_is_caught():
    history = [
        op(0, KvPut("x", 1), 0, 1),
        op(0, KvPut("x", 2), 2, 3),
        op(1, KvGet("x"), 4, 5, 1),
    ]
    result = check(history)
    assert result.ok is False
    assert "get('x') -> 1" in result.explanation


def test_reads_that_disagree_on_order_are_caught():
    # Two writes concurrent with each other, read in opposite orders by two
    # sequential readers: no single order explains both.
    history = [
        op(0, KvPut("x", 1), 0, 10),
        op(1, KvPut("x", 2), 0, 10),
        op(2, KvGet("x"), 1, 2, 1),
        op(2, KvGet("x"), 3, 4, 2),
        op(3, KvGet("x"), 5, 6, 2),
        op(3, KvGet("x"), 7, 8, 1),
    ]
    assert check(history).ok is False


def test_read_of_a_value_never_written_is_caught():
    history = [op(0, KvPut("x", 1), 0, 1), op(1, KvGet("x"), 2, 3, 7)]
    result = check(history)
    assert result.ok is False
    assert "cannot linearize next" in result.explanation


def test_indeterminate_write_may_take_effect_late():
    history = [
        op(0, KvPut("x", 1), 0, INF),
        op(1, KvGet("x"), 1, 2, None),
        op(1, KvGet("x"), 50, 51, 1),
    ]
    assert check(history).ok is True


def test_indeterminate_write_may_never_take_effect():
    history = [
        op(0, KvPut("x", 1), 0, 1),
        op(1, KvPut("x", 2), 2, INF),
        op(2, KvGet("x"), 50, 51, 1),
    ]
    assert check(history).ok is True


def test_indeterminate_write_cannot_take_effect_before_its_call():
    history = [
        op(0, KvGet("x"), 0, 1, 2),
        op(1, KvPut("x", 2), 5, INF),
    ]
    assert check(history).ok is False


def test_lost_write_is_caught():
    history = [
        op(0, KvPut("x", 1), 0, 1),
        op(1, KvPut("x", 2), 2, 3),
        op(2, KvGet("x"), 4, 5, 1),
        op(2, KvGet("x"), 6, 7, 2),
    ]
    assert check(history).ok is False


def test_compare_and_swap_that_both_succeed_is_caught():
    history = [
        op(0, KvPut("x", 0), 0, 1),
        op(1, KvCas("x", 0, 1), 2, 5, True),
        op(2, KvCas("x", 0, 2), 2, 5, True),
    ]
    assert check(history).ok is False


def test_keys_are_checked_independently():
    history = [
        op(0, KvPut("x", 1), 0, 1),
        op(0, KvPut("y", 1), 2, 3),
        op(1, KvGet("y"), 4, 5, 1),
        op(1, KvGet("x"), 6, 7, None),
    ]
    result = check(history)
    assert result.ok is False
    assert "get('x') -> None" in result.explanation


def test_touching_intervals_count_as_concurrent():
    history = [op(0, KvGet("x"), 0, 1, 1), op(1, KvPut("x", 1), 1, 2)]
    assert check(history).ok is True


def test_timeout_reports_undecided():
    # Many concurrent writes and reads of values that rule out every order
    # force an exhaustive search; a zero timeout must give up, not answer.
    history = [op(c, KvPut("x", c), 0, 100) for c in range(14)]
    history += [op(100, KvGet("x"), 101, 102, 99)]
    assert check(history, timeout=0.0).ok is None


def test_explanation_shows_times_and_clients():
    history = [op(3, KvPut("x", 1), 0, 1), op(4, KvGet("x"), 2.5, 3, 9)]
    explanation = check(history).explanation
    assert "[2.5, 3] client 4: get('x') -> 9" in explanation
    assert "[0, 1] client 3: put('x', 1)" in explanation


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 60), lost=st.sampled_from([0.0, 0.2]))
def test_histories_from_a_sequential_run_are_linearizable(seed: int, size: int, lost: float):
    print(f"seed={seed}")
    history = random_kv_history(random.Random(seed), size, keys=3, clients=4, indeterminate=lost)
    assert check(history).ok is True


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(2, 60))
def test_changing_a_read_to_a_value_never_written_is_caught(seed: int, size: int):
    print(f"seed={seed}")
    rng = random.Random(seed)
    history = random_kv_history(rng, size, keys=3, clients=4)
    reads = [o for o in history if isinstance(o.input, KvGet) and not o.indeterminate]
    if not reads:
        return
    rng.choice(reads).output = -7
    assert check(history).ok is False


def test_lost_put_nobody_saw_is_left_out_of_the_search():
    history = [op(0, KvPut("x", 1), 0, INF), op(1, KvGet("x"), 2, 3, None)]
    (partition,) = KvModel().partition(history)
    assert [o.input for o in partition] == [KvGet("x")]


def test_lost_put_that_was_read_must_take_effect_before_the_read_returned():
    history = [op(0, KvPut("x", 1), 0, INF), op(1, KvGet("x"), 2, 3, 1)]
    (partition,) = KvModel().partition(history)
    assert partition[0].return_time == 3


def test_lost_put_stays_optional_when_it_could_explain_a_failed_swap():
    history = [
        op(0, KvPut("x", 0), 0, 1),
        op(1, KvPut("x", 5), 2, INF),
        op(2, KvCas("x", 0, 1), 3, 4, False),
    ]
    assert len(KvModel().partition(history)[0]) == 3
    assert check(history).ok is True


def test_failing_history_with_many_lost_puts_is_decided_quickly():
    rng = random.Random(11)
    history = random_kv_history(rng, 3000, keys=1, clients=8, indeterminate=0.05, swaps=0.0)
    assert check(history, timeout=30).ok is True
    reads = [o for o in history if isinstance(o.input, KvGet) and not o.indeterminate]
    rng.choice(reads).output = -7
    assert check(history, timeout=30).ok is False
