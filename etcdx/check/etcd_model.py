"""The model of etcd's KV semantics for the linearizability checker.

Revisions are global, so a per-key search alone cannot see a history where two
keys disagree about the order of writes. The model therefore checks in two
layers, and the pair is sound:

* ``history_violations`` makes one O(n log n) pass over the whole history:
  write revisions are unique, every revision between the first and the last is
  taken by some write (a revision no acknowledged write took must be explained
  by a write whose response was lost, called before anyone saw that revision),
  and revisions never go backwards along real time: if A returned before B was
  called, rev(A) <= rev(B), strictly when B writes. Reads count at their header
  revision, writes at the revision they created.
* each key is then searched on its own, its state carrying the highest revision
  seen so far on that key (``floor``): a write must create a revision above it,
  a read's header revision must not be below it, and a read must return the
  last write before it in the key's order.

Why that suffices when every write's revision is known: place each write at its
revision and each read just after the write its header revision names (reads at
one revision in call order). The first pass makes that total order respect real
time; the second makes every read on a key return the last write to that key
at or below its header revision, which is exactly what the sequential etcd
store returns at that point. A multi-key read (a range) is the same as one read
per key at the same header revision, so it is split into per-key reads of every
key the history mentions under the prefix.

Before the search, two more whole-history passes keep it fast. Lost responses
are narrowed down (``resolve_lost_writes``): a lost write that a read or the
watch log (``changes``) saw gets its revision and a finite return time; lost
reads and, once every revision is accounted for, unseen lost writes are
dropped. Then every interval is shrunk to what the revision order allows
(``narrow_to_revision_order``), so the search rarely tries an order the
revisions already rule out. Both only remove linearizations that could not be
valid, so neither can turn a linearizable history into a violation. Writes whose
revision stays unknown (the remaining lost ones, lease revocations, whose
deletions carry no revision in the response) only get a lower bound on their
revision, bound later by a read that returns their mod_revision. For those the
check is looser than exact: the per-key position is checked, the global revision
they took is only bounded.

A fresh etcd store is at revision 1, so the first write creates revision 2.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from etcdx.check.etcd_ops import (
    FRESH_STORE_REVISION,
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
    Revision,
    Txn,
    TxnResult,
    Unknown,
    describe_etcd,
    describe_result,
)
from etcdx.check.etcd_revisions import narrow_to_revision_order, resolve_lost_writes, revision_violations
from etcdx.check.linearizability import Operation


@dataclass(frozen=True, slots=True)
class _RangeSlice:
    """A range read restricted to one key (the output is a GetResult)."""

    key: str
    whole: Range


@dataclass(frozen=True, slots=True)
class _RevokeSlice:
    """A lease revocation restricted to one key it may delete."""

    key: str
    whole: LeaseRevoke


class _KeyState(NamedTuple):
    kv: KeyValue | None
    floor: int  # highest revision known to be reached, a lower bound


class EtcdModel:
    """etcd's KV API on one store that starts at ``initial_revision``.

    ``changes``, every change of every revision a watch over all keys
    reported (``watch.revision_log``), pins down exactly which lost writes took
    effect and where; without it, only reads do.
    """

    def __init__(
        self,
        initial_revision: int = FRESH_STORE_REVISION,
        changes: Mapping[int, Sequence[Change]] | None = None,
    ) -> None:
        self.initial_revision = initial_revision
        self.changes = changes
        self._real_times: dict[int, tuple[float, float]] = {}

    def partition(self, history: list[Operation]) -> list[list[Operation]]:
        # Explanations show the recorded interval of an operation the passes
        # below narrowed; inputs identify the requests (when not shared).
        uses = Counter(id(op.input) for op in history)
        self._real_times = {id(op.input): (op.call, op.return_time) for op in history if uses[id(op.input)] == 1}
        history = narrow_to_revision_order(resolve_lost_writes(history, self.initial_revision, self.changes))
        keys = {_key_of(op.input) for op in history if not isinstance(op.input, (Range, LeaseRevoke))}
        leased: dict[int, set[str]] = defaultdict(set)
        for op in history:
            if isinstance(op.input, Put) and op.input.lease:
                leased[op.input.lease].add(op.input.key)
        by_key: dict[str, list[Operation]] = defaultdict(list)
        for op in history:
            input, output = op.input, op.output
            if isinstance(input, Range):
                if output is None:
                    continue
                seen = set(output.kvs) | {k for k in keys if k.startswith(input.prefix)}
                for key in seen:
                    slice_output = GetResult(output.kvs.get(key), output.revision)
                    by_key[key].append(replace(op, input=_RangeSlice(key, input), output=slice_output))
            elif isinstance(input, LeaseRevoke):
                for key in leased[input.lease]:
                    by_key[key].append(replace(op, input=_RevokeSlice(key, input)))
            else:
                by_key[_key_of(input)].append(op)
        return list(by_key.values())

    def history_violations(self, history: list[Operation]) -> list[str]:
        resolved = resolve_lost_writes(history, self.initial_revision, self.changes)
        return revision_violations(resolved, self.initial_revision)

    def init(self) -> Hashable:
        return _KeyState(None, self.initial_revision)

    def step(self, state: _KeyState, input: Any, output: Any) -> tuple[bool, Hashable]:
        step = _STEPS.get(type(input))
        if step is None:
            raise TypeError(f"not an etcd operation: {input!r}")
        return step(state, input, output)

    def describe(self, op: Operation) -> str:
        input = op.input
        if isinstance(input, _RangeSlice):
            text = f"range({input.whole.prefix!r}) at key {input.key!r} -> {describe_result(op.output)}"
        elif isinstance(input, _RevokeSlice):
            text = f"lease revoke {input.whole.lease:x} at key {input.key!r}"
        else:
            text = describe_etcd(input, op.output)
        request = input.whole if isinstance(input, (_RangeSlice, _RevokeSlice)) else input
        real = self._real_times.get(id(request))
        if real is not None and real != (op.call, op.return_time):
            end = "?" if real[1] == math.inf else f"{real[1]:g}"
            text += f"  (interval narrowed from the recorded [{real[0]:g}, {end}])"
        return text


def _key_of(input: Any) -> str:
    if isinstance(input, Txn):
        key = input.compare.key
        for branch in (input.success, input.failure):
            if branch is not None and branch.key != key:
                raise ValueError(f"txn branches must use the compared key: {input!r}")
        return key
    return input.key


def _read(state: _KeyState, output: GetResult | None) -> tuple[bool, _KeyState]:
    if output is None:
        return True, state
    if output.revision < state.floor:
        return False, state
    kv, seen = state.kv, output.kv
    if kv is None or seen is None:
        return kv is seen, _KeyState(kv, output.revision)
    if kv.value != seen.value or kv.version != seen.version or kv.lease != seen.lease:
        return False, state
    mod = _bind(kv.mod_revision, seen.mod_revision, output.revision)
    create = _bind(kv.create_revision, seen.create_revision, output.revision)
    if mod is None or create is None:
        return False, state
    if mod is not kv.mod_revision or create is not kv.create_revision:
        kv = replace(kv, mod_revision=mod, create_revision=create)
    return True, _KeyState(kv, output.revision)


def _bind(known: Revision, seen: int, header: int) -> int | None:
    """The revision ``seen`` if it can be ``known``, else None."""
    if isinstance(known, Unknown):
        return seen if known.after < seen <= header else None
    return seen if known == seen else None


def _written(state: _KeyState, revision: int | None) -> tuple[bool, Revision, int]:
    """Whether a write at ``revision`` may follow ``state``; its revision and new floor."""
    if revision is None:
        return True, Unknown(state.floor), state.floor + 1
    return revision > state.floor, revision, revision


def _put(state: _KeyState, input: Put, output: PutResult | None) -> tuple[bool, _KeyState]:
    legal, revision, floor = _written(state, None if output is None else output.revision)
    if not legal:
        return False, state
    kv = state.kv
    if kv is None:
        new = KeyValue(input.value, revision, revision, 1, input.lease)
    else:
        new = KeyValue(input.value, kv.create_revision, revision, kv.version + 1, input.lease)
    return True, _KeyState(new, floor)


def _delete(state: _KeyState, output: DeleteResult | None) -> tuple[bool, _KeyState]:
    if state.kv is None:
        if output is None:
            return True, state
        legal = output.deleted == 0 and output.revision >= state.floor
        return legal, _KeyState(None, output.revision) if legal else state
    if output is not None and output.deleted != 1:
        return False, state
    legal, _, floor = _written(state, None if output is None else output.revision)
    return legal, _KeyState(None, floor) if legal else state


def _txn(state: _KeyState, input: Txn, output: TxnResult | None) -> tuple[bool, _KeyState]:
    holds = _compare(state.kv, input.compare)
    if output is None:
        if holds is None:
            # Either branch could run. The request is optional (its response
            # was lost), and a branch that only reads is the same as skipping
            # it, so take the branch that writes, preferring success.
            holds = isinstance(input.success, (Put, Delete)) or not isinstance(input.failure, (Put, Delete))
        branch = input.success if holds else input.failure
        if isinstance(branch, Put):
            return _put(state, branch, None)
        if isinstance(branch, Delete):
            return _delete(state, None)
        return True, state
    if holds is not None and holds != output.succeeded:
        return False, state
    if holds is None and output.succeeded:
        bound = _bind_compare(state, input.compare)
        if bound is None:
            return False, state
        state = bound
    branch = input.success if output.succeeded else input.failure
    if isinstance(branch, Put):
        return _put(state, branch, PutResult(output.revision))
    if isinstance(branch, Delete):
        return _delete(state, DeleteResult(output.deleted, output.revision))
    if isinstance(branch, Get):
        return _read(state, GetResult(output.kv, output.revision))
    legal = output.revision >= state.floor
    return legal, _KeyState(state.kv, output.revision) if legal else state


_COMPARISONS = {
    "=": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
}


def _compare(kv: KeyValue | None, compare: Compare) -> bool | None:
    """etcd's comparison, or None if it depends on a revision not known yet.

    An absent key has version, create and mod revision 0 and compares unequal
    to any value (etcd skips value compares on absent keys: they fail).
    """
    if compare.target == "value":
        if kv is None:
            return False
        actual: Any = kv.value
    elif compare.target == "version":
        actual = 0 if kv is None else kv.version
    elif compare.target in ("create", "mod"):
        if kv is None:
            actual = 0
        else:
            actual = kv.create_revision if compare.target == "create" else kv.mod_revision
        if isinstance(actual, Unknown):
            # All that is known is actual > after.
            if not (isinstance(compare.operand, int) and compare.operand <= actual.after):
                return None
            return compare.result in ("!=", ">")
    else:
        raise ValueError(f"unknown compare target {compare.target!r}")
    return _COMPARISONS[compare.result](actual, compare.operand)


def _bind_compare(state: _KeyState, compare: Compare) -> _KeyState | None:
    """A state in which a compare on an unknown revision succeeded, or None if it cannot.

    Only an equality pins the revision; other results keep it unknown.
    """
    kv = state.kv
    assert kv is not None
    field = "create_revision" if compare.target == "create" else "mod_revision"
    unknown: Unknown = getattr(kv, field)
    if compare.result == "=":
        if not (isinstance(compare.operand, int) and unknown.after < compare.operand):
            return None
        return _KeyState(replace(kv, **{field: compare.operand}), max(state.floor, compare.operand))
    if compare.result == "<":
        return state if compare.operand > unknown.after + 1 else None
    return state


def _revoke(state: _KeyState, input: _RevokeSlice, output: Any) -> tuple[bool, _KeyState]:
    if state.kv is not None and state.kv.lease == input.whole.lease:
        return True, _KeyState(None, state.floor + 1)
    return True, state


_STEPS: dict[type, Callable[[_KeyState, Any, Any], tuple[bool, _KeyState]]] = {
    Get: lambda state, input, output: _read(state, output),
    _RangeSlice: lambda state, input, output: _read(state, output),
    Put: _put,
    Delete: lambda state, input, output: _delete(state, output),
    Txn: _txn,
    _RevokeSlice: _revoke,
}
