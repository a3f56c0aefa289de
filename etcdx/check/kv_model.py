"""A toy key-value model without revisions: put, get and compare-and-swap.

It is the specification the raft simulator checks its replicated state
machine against. Keys are independent, so the history is partitioned per key
and each key is searched as one register.
"""

from __future__ import annotations

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
            # A get whose response was lost tells nothing; leaving it out
            # spares the search an optional operation.
            if not (op.indeterminate and isinstance(op.input, KvGet)):
                by_key[op.input.key].append(op)
        return list(by_key.values())

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
