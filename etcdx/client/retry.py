"""What to do after a call fails: retry it, authenticate again, or give up.

The rule that matters (pure, and tested on its own): a request is sent again
only if running it twice cannot differ from running it once — it is
idempotent, or the error proves it was never applied (refused with "no
leader", "leader changed", never sent). A put, a writing txn, a lease grant
that timed out or lost its connection after sending is *not* retried: the
caller gets the error, whose ``may_have_applied`` is True.
"""

from __future__ import annotations

import enum
import random

from .errors import EtcdError, InvalidAuthToken, Unavailable

BACKOFF_BASE = 0.025  # etcd's Go client waits 25 ms between retries
BACKOFF_CAP = 1.0
MIN_ATTEMPT_BUDGET = 1.0


class Action(enum.Enum):
    RETRY = "retry"
    REAUTHENTICATE = "reauthenticate"
    RAISE = "raise"


def decide(error: EtcdError, *, idempotent: bool, can_reauthenticate: bool) -> Action:
    if isinstance(error, InvalidAuthToken):
        # The token expired or the member restarted: the request was refused before anything ran.
        return Action.REAUTHENTICATE if can_reauthenticate else Action.RAISE
    if isinstance(error, Unavailable) and (idempotent or not error.may_have_applied):
        return Action.RETRY
    return Action.RAISE


def endpoint_failed(error: EtcdError) -> bool:
    """The error says the member itself cannot serve now (try another for a while)."""
    return isinstance(error, Unavailable)


def backoff(attempt: int, rand: random.Random) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based): exponential, capped, jittered."""
    return min(BACKOFF_CAP, BACKOFF_BASE * 2**attempt) * (0.5 + rand.random() / 2)


def attempt_budget(remaining: float | None, endpoints: int) -> float | None:
    """How long one attempt may take, out of the ``remaining`` time of the call.

    A member that hangs (paused, overloaded, its host unreachable) must not
    eat the whole budget when another could answer: with more than one
    endpoint an attempt gets half of what is left (at least
    `MIN_ATTEMPT_BUDGET`), so a retry elsewhere still has time.
    """
    if remaining is None or endpoints < 2 or remaining <= 2 * MIN_ATTEMPT_BUDGET:
        return remaining
    return remaining / 2
