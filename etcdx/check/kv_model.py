"""A toy key-value model without revisions: put, get and compare-and-swap.

It is the specification the raft simulator checks its replicated state
machine against. Keys are independent, so the history is partitioned per key
and each key is searched as one register.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from etcdx.check.linearizability import Operation


@dataclass(frozen=True, slots=True)
class KvPut:
    """Set ``key`` to ``value``; the output is ignored."""

    key: Hashable
    value: Hashable


@dataclass(frozen=True, slots=True)
class KvGet:
    """Read ``key``; the output is its value, or None if it was never put."""

    key: Hashable


@dataclass(frozen=True, slots=True)
class KvCas:
    """Set ``key`` to ``new`` if it holds ``expected``; the output is whether it did."""

    key: Hashable
    expected: Hashable
    new: Hashable


KvInput = KvPut | KvGet | KvCas


class KvModel:
    """Each key is a register that starts out absent (None).

    A get whose output is None reads an absent key; a get whose response was
    lost must be recorded as indeterminate (``return_time=math.inf``), so its
    None output is never mistaken for a read.
    """

    def partition(self, history: list[Operation]) -> list[list[Operation]]:
        by_key: dict[Hashable, list[Operation]] = defaultdict(list)
        for op in history:
            by_key[op.input.key].append(op)
        return [_narrow_lost(ops) for ops in by_key.values()]

    def init(self) -> Hashable:
        return None

    def step(self, state: Any, input: KvInput, output: Any) -> tuple[bool, Hashable]:
        if isinstance(input, KvPut):
            return True, input.value
        if isinstance(input, KvGet):
            return output == state, state
        swapped = state == input.expected
        if output is not None and output != swapped:
            return False, state
        return True, input.new if swapped else state

    def describe(self, op: Operation) -> str:
        input = op.input
        result = "?" if op.indeterminate and op.output is None else repr(op.output)
        if isinstance(input, KvPut):
            return f"put({input.key!r}, {input.value!r})"
        if isinstance(input, KvGet):
            return f"get({input.key!r}) -> {result}"
        return f"cas({input.key!r}, {input.expected!r} -> {input.new!r}) -> {result}"


def _narrow_lost(ops: list[Operation]) -> list[Operation]:
    """One key's operations with what the others reveal about lost ones.

    Every lost operation is optional to the search, and many of them make a
    failing search exponential, so, soundly:

    * a lost get tells nothing and is left out;
    * a lost put of a value nobody read, compared against, or could have
      made a compare-and-swap fail, changes nothing anyone saw (the next
      operation after it could only be another put) and is left out;
    * a lost put whose value, written by no other put, was read must have
      taken effect before the first such read returned: that becomes its
      return time and it is no longer optional.
    """
    observed_by: dict[Hashable, float] = {}
    writers: dict[Hashable, int] = defaultdict(int)
    cas_may_fail = False
    for op in ops:
        input = op.input
        if isinstance(input, KvGet) and not op.indeterminate:
            observed_by[op.output] = min(observed_by.get(op.output, math.inf), op.return_time)
        elif isinstance(input, KvCas):
            observed_by.setdefault(input.expected, math.inf)
            cas_may_fail = cas_may_fail or op.output is not True
            writers[input.new] += 1
        elif isinstance(input, KvPut):
            writers[input.value] += 1
    kept = []
    for op in ops:
        input = op.input
        if op.indeterminate and isinstance(input, KvGet):
            continue
        if op.indeterminate and isinstance(input, KvPut):
            seen = observed_by.get(input.value)
            if seen is None and not cas_may_fail:
                continue
            if seen is not None and seen < math.inf and writers[input.value] == 1:
                op = Operation(op.client_id, input, op.call, op.output, max(op.call, seen))
        kept.append(op)
    return kept
