"""A linearizability checker for recorded client histories.

The search is Wing & Gong's, with Lowe's memoization as Porcupine does it: the
history becomes one list of call and return entries in time order; the search
repeatedly linearizes the first call whose step is legal, backtracks when it
meets the return of an operation it has not linearized yet, and never revisits
a (set of linearized operations, model state) pair. A model may split a history
into independent partitions (P-compositionality), each searched on its own,
which is what keeps a 10,000 operation history tractable.

An operation whose ``return_time`` is ``math.inf`` is indeterminate: the client
never learned whether it took effect. It may be linearized anywhere after its
call, or not at all; the search succeeds as soon as every determinate
operation is linearized, so indeterminate ones cost nothing when they did not
take effect.
"""

from __future__ import annotations

import math
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

_DEADLINE_CHECK_EVERY = 4096
_PREFIX_SHOWN = 12


@dataclass(slots=True)
class Operation:
    """One client request as the client saw it.

    ``output`` is None when unknown; ``return_time`` is ``math.inf`` when the
    operation is indeterminate (timed out, or its client crashed).
    """

    client_id: int
    input: Any
    call: float
    output: Any
    return_time: float

    @property
    def indeterminate(self) -> bool:
        return self.return_time == math.inf


class Model(Protocol):
    """The sequential specification a history is checked against.

    ``step`` gets ``output=None`` for an operation whose output is unknown and
    must then accept any outcome the input could have had. States must be
    hashable and should be small: the search memoizes them.
    """

    def partition(self, history: list[Operation]) -> list[list[Operation]]: ...

    def init(self) -> Hashable: ...

    def step(self, state: Any, input: Any, output: Any) -> tuple[bool, Hashable]: ...

    def describe(self, op: Operation) -> str: ...


class HistoryWideModel(Model, Protocol):
    """A model with properties no single partition can see (etcd's global revision).

    ``check_operations`` calls ``history_violations`` before the search; any
    violation it returns fails the check with that text.
    """

    def history_violations(self, history: list[Operation]) -> list[str]: ...


@dataclass(slots=True)
class CheckResult:
    """``ok`` is None when the check ran out of time before deciding.

    On a violation ``explanation`` shows the smallest window that proves it: the
    end of the longest linearizable prefix the search found, the state it
    reached, and the operation that could not be linearized next together with
    the operations concurrent with it.
    """

    ok: bool | None
    explanation: str


class _Timeout(Exception):
    pass


def check_operations(
    model: Model, history: list[Operation], timeout: float | None = None
) -> CheckResult:
    """Decide whether ``history`` is linearizable with respect to ``model``.

    ``timeout`` bounds the wall-clock time of the whole check in seconds.
    """
    for op in history:
        if not op.call <= op.return_time:
            raise ValueError(f"operation returns before it is called: {op!r}")
    deadline = math.inf if timeout is None else time.monotonic() + timeout
    history_violations = getattr(model, "history_violations", None)
    if history_violations is not None:
        problems = history_violations(history)
        if problems:
            return CheckResult(False, "\n".join(problems))
    # Smallest first: a violation in a small partition is found before a
    # large one can use up the time.
    partitions = sorted((p for p in model.partition(history) if p), key=len)
    for number, ops in enumerate(partitions):
        try:
            failure = _search(model, ops, deadline)
        except _Timeout:
            return CheckResult(
                None,
                f"timed out after {timeout}s in partition {number + 1} of {len(partitions)} "
                f"({len(ops)} operations); the smaller ones are linearizable",
            )
        if failure is not None:
            header = f"partition {number + 1} of {len(partitions)} ({len(ops)} operations) is not linearizable\n"
            return CheckResult(False, header + failure)
    return CheckResult(True, f"linearizable ({len(history)} operations, {len(partitions)} partitions)")


def _search(model: Model, ops: list[Operation], deadline: float) -> str | None:
    """Search one partition; return None if linearizable, else an explanation."""
    count = len(ops)
    order = sorted(
        [(op.call, 0, i) for i, op in enumerate(ops)]
        + [(op.return_time, 1, i) for i, op in enumerate(ops)]
    )
    # Doubly linked list over entries 1..2n; entry 0 is the head, -1 the end.
    # At equal times calls sort first, so touching intervals count as concurrent.
    size = 2 * count + 1
    nxt = [-1] * size
    prv = [-1] * size
    op_of = [0] * size
    is_call = [False] * size
    return_entry = [0] * count
    for position, (_, kind, i) in enumerate(order, start=1):
        op_of[position] = i
        is_call[position] = kind == 0
        if kind == 1:
            return_entry[i] = position
        prv[position] = position - 1
        nxt[position - 1] = position
    optional = [op.indeterminate for op in ops]
    inputs = [op.input for op in ops]
    outputs = [op.output for op in ops]
    step = model.step

    required_left = count - sum(optional)
    state: Hashable = model.init()
    bits = 0
    seen: set[tuple[int, Hashable]] = {(bits, state)}
    # The stack of linearized calls is a persistent linked list of
    # (call entry, state before it, rest), so remembering the deepest one
    # reached, for the explanation, costs nothing.
    stack: tuple | None = None
    depth = 0
    best: tuple[tuple | None, int, Hashable, int | None] | None = None
    iterations = 0
    entry = nxt[0]
    while required_left:
        iterations += 1
        if iterations % _DEADLINE_CHECK_EVERY == 0 and time.monotonic() > deadline:
            raise _Timeout
        if entry == -1 or not (is_call[entry] or optional[op_of[entry]]):
            # Stuck: an operation returned without being linearized.
            if best is None or depth > best[1]:
                best = (stack, depth, state, None if entry == -1 else op_of[entry])
            if stack is None:
                deepest, _, best_state, stuck = best
                prefix = []
                while deepest is not None:
                    prefix.append(op_of[deepest[0]])
                    deepest = deepest[2]
                return _explain(model, ops, prefix[::-1], best_state, stuck)
            entry, state, stack = stack
            depth -= 1
            i = op_of[entry]
            bits ^= 1 << i
            ret = return_entry[i]
            nxt[prv[ret]] = ret
            if nxt[ret] != -1:
                prv[nxt[ret]] = ret
            nxt[prv[entry]] = entry
            prv[nxt[entry]] = entry
            required_left += not optional[i]
            entry = nxt[entry]
        elif is_call[entry]:
            i = op_of[entry]
            legal, new_state = step(state, inputs[i], outputs[i])
            if legal:
                new_bits = bits | (1 << i)
                key = (new_bits, new_state)
                if key not in seen:
                    seen.add(key)
                    stack = (entry, state, stack)
                    depth += 1
                    state = new_state
                    bits = new_bits
                    # Unlink the call, then its return (the call is never last).
                    nxt[prv[entry]] = nxt[entry]
                    prv[nxt[entry]] = prv[entry]
                    ret = return_entry[i]
                    nxt[prv[ret]] = nxt[ret]
                    if nxt[ret] != -1:
                        prv[nxt[ret]] = prv[ret]
                    required_left -= not optional[i]
                    entry = nxt[0]
                    continue
            entry = nxt[entry]
        else:
            # The return of an indeterminate operation: it may never take effect.
            entry = nxt[entry]
    return None


def _explain(
    model: Model,
    ops: list[Operation],
    prefix: list[int],
    state: Hashable,
    stuck: int | None,
) -> str:
    linearized = set(prefix)
    lines = [f"longest linearizable prefix found: {len(prefix)} of {len(ops)} operations"]
    if len(prefix) > _PREFIX_SHOWN:
        lines.append(f"  ... {len(prefix) - _PREFIX_SHOWN} earlier operations")
    lines += ["  " + _render(model, ops[i]) for i in prefix[-_PREFIX_SHOWN:]]
    lines.append(f"state after that prefix: {state!r}")
    if stuck is None:
        return "\n".join(lines)
    blocker = ops[stuck]
    lines.append("cannot linearize next:")
    lines.append("  " + _render(model, blocker))
    rivals = [
        i
        for i, op in enumerate(ops)
        if i not in linearized and i != stuck and op.call <= blocker.return_time
    ]
    if rivals:
        lines.append("nor any operation concurrent with it that is still pending:")
        for i in sorted(rivals, key=lambda i: ops[i].call):
            legal, _ = model.step(state, ops[i].input, ops[i].output)
            verdict = "leads to a dead end" if legal else "illegal here"
            lines.append(f"  {_render(model, ops[i])}  [{verdict}]")
    return "\n".join(lines)


def _render(model: Model, op: Operation) -> str:
    end = "?" if op.indeterminate else f"{op.return_time:g}"
    return f"[{op.call:g}, {end}] client {op.client_id}: {model.describe(op)}"
