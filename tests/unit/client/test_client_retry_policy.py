"""The retry rule: send again only what cannot apply twice."""

from __future__ import annotations

import random

import grpc
import pytest

from etcdx.client import errors
from etcdx.client.retry import BACKOFF_CAP, Action, backoff, decide, endpoint_failed

U = grpc.StatusCode.UNAVAILABLE


def error(code, message):
    return errors.error_from_status(code, message)


@pytest.mark.parametrize(
    ("failure", "idempotent", "expected"),
    [
        # refused before anything ran: any request may go again
        (error(U, "etcdserver: no leader"), False, Action.RETRY),
        (error(U, "etcdserver: leader changed"), False, Action.RETRY),
        (error(U, "failed to connect to all addresses; last error: refused"), False, Action.RETRY),
        # may have applied: only idempotent requests go again
        (error(U, "Stream removed (Socket closed)"), False, Action.RAISE),
        (error(U, "Stream removed (Socket closed)"), True, Action.RETRY),
        (error(U, "etcdserver: request timed out"), False, Action.RAISE),
        (error(U, "etcdserver: request timed out"), True, Action.RETRY),
        (error(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"), True, Action.RAISE),
        # not transient
        (error(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"), True, Action.RAISE),
        (error(grpc.StatusCode.RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded"), True, Action.RAISE),
    ],
)  # fmt: skip
def test_decide(failure, idempotent, expected):
    assert decide(failure, idempotent=idempotent, can_reauthenticate=True) is expected


def test_an_invalid_token_is_renewed_only_with_credentials():
    invalid = error(grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token")
    assert decide(invalid, idempotent=False, can_reauthenticate=True) is Action.REAUTHENTICATE
    assert decide(invalid, idempotent=True, can_reauthenticate=False) is Action.RAISE


def test_only_unavailability_marks_the_endpoint_down():
    assert endpoint_failed(error(U, "etcdserver: no leader"))
    assert not endpoint_failed(error(grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided"))


def test_backoff_grows_jittered_and_capped():
    rand = random.Random(7)
    delays = [backoff(a, rand) for a in range(12)]
    assert all(0 < d <= BACKOFF_CAP for d in delays)
    assert delays[0] <= 0.025 and delays[-1] >= BACKOFF_CAP / 2


def test_an_attempt_gets_half_the_time_left_when_another_member_could_answer():
    from etcdx.client.retry import MIN_ATTEMPT_BUDGET, attempt_budget

    assert attempt_budget(10.0, endpoints=3) == 5.0
    assert attempt_budget(10.0, endpoints=1) == 10.0  # nowhere else to go
    assert attempt_budget(2 * MIN_ATTEMPT_BUDGET, endpoints=3) == 2 * MIN_ATTEMPT_BUDGET  # too little to split
    assert attempt_budget(None, endpoints=3) is None
