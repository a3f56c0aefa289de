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

Writes whose revision is unknown (indeterminate ones, lease revocations, whose
deletions carry no revision in the response) only get a lower bound on their
revision, bound later by a read that returns their mod_revision. For those the
check is looser than exact: the per-key position is checked, the global revision
they took is only bounded.

A fresh etcd store is at revision 1, so the first write creates revision 2.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from etcdx.check.linearizability import Operation

FRESH_STORE_REVISION = 1


@dataclass(frozen=True, slots=True)
class Unknown:
    """A revision not known yet, other than that it is above ``after``."""

    after: int

    def __repr__(self) -> str:
        return f">{self.after}"


Revision = int | Unknown


@dataclass(frozen=True, slots=True)
class KeyValue:
    value: Hashable
    create_revision: Revision
    mod_revision: Revision
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: Hashable
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Get:
    key: str


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class Range:
    """Read every key that starts with ``prefix``."""

    prefix: str


@dataclass(frozen=True, slots=True)
class Compare:
    """etcd's Compare on one key; ``target`` is value, version, create or mod."""

    key: str
    target: str
    result: str  # "=", "!=", "<" or ">"
    operand: Hashable


@dataclass(frozen=True, slots=True)
class Txn:
    """A single-key transaction: every branch op must be on ``compare.key``."""

    compare: Compare
    success: Put | Delete | Get | None
    failure: Put | Delete | Get | None = None


@dataclass(frozen=True, slots=True)
class LeaseRevoke:
    """Revoking a lease deletes the keys attached to it."""

    lease: int


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int


@dataclass(frozen=True, slots=True)
class GetResult:
    kv: KeyValue | None
    revision: int


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: int
    revision: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: Mapping[str, KeyValue]
    revision: int


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``kv`` answers a Get branch, ``deleted`` a Delete branch."""

    succeeded: bool
    revision: int
    kv: KeyValue | None = None
    deleted: int = 0


@dataclass(frozen=True, slots=True)
class _RangeSlice:
    """A range read restricted to one key (the output is a GetResult)."""

    key: str
    whole: Range


@dataclass(frozen=True, slots=True)
class _RevokeSlice:
    key: str
    lease: int


class _KeyState(NamedTuple):
    kv: KeyValue | None
    floor: int  # highest revision known to be reached, a lower bound


class EtcdModel:
    def __init__(self, initial_revision: int = FRESH_STORE_REVISION) -> None:
        self.initial_revision = initial_revision

    def partition(self, history: list[Operation]) -> list[list[Operation]]:
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
                    by_key[key].append(replace(op, input=_RevokeSlice(key, input.lease)))
            else:
                by_key[_key_of(input)].append(op)
        return list(by_key.values())

    def history_violations(self, history: list[Operation]) -> list[str]:
        return revision_violations(history, self.initial_revision)

    def init(self) -> Hashable:
        return _KeyState(None, self.initial_revision)

    def step(self, state: _KeyState, input: Any, output: Any) -> tuple[bool, Hashable]:
        if isinstance(input, Get):
            return _read(state, output)
        if isinstance(input, Put):
            return _put(state, input, output)
        if isinstance(input, Delete):
            return _delete(state, output)
        if isinstance(input, Txn):
            return _txn(state, input, output)
        if isinstance(input, _RangeSlice):
            return _read(state, output)
        if isinstance(input, _RevokeSlice):
            if state.kv is not None and state.kv.lease == input.lease:
                return True, _KeyState(None, state.floor + 1)
            return True, state
        raise TypeError(f"not an etcd operation: {input!r}")

    def describe(self, op: Operation) -> str:
        return describe_etcd(op.input, op.output)


def describe_etcd(input: Any, output: Any) -> str:
    """A one-line rendering of an operation in etcd terms."""
    if isinstance(input, Put):
        lease = f", lease={input.lease:x}" if input.lease else ""
        return f"put({input.key!r}, {input.value!r}{lease}) -> {_result(output)}"
    if isinstance(input, Get):
        return f"get({input.key!r}) -> {_result(output)}"
    if isinstance(input, Delete):
        return f"delete({input.key!r}) -> {_result(output)}"
    if isinstance(input, _RangeSlice):
        return f"range({input.whole.prefix!r}) at key {input.key!r} -> {_result(output)}"
    if isinstance(input, Range):
        return f"range({input.prefix!r}) -> {_result(output)}"
    if isinstance(input, Txn):
        c = input.compare
        return (
            f"txn(if {c.target}({c.key!r}) {c.result} {c.operand!r} then {input.success} "
            f"else {input.failure}) -> {_result(output)}"
        )
    if isinstance(input, (LeaseRevoke, _RevokeSlice)):
        return f"lease revoke {input.lease:x}"
    return f"{input!r} -> {output!r}"


def _result(output: Any) -> str:
    if output is None:
        return "?"
    if isinstance(output, PutResult):
        return f"rev {output.revision}"
    if isinstance(output, GetResult):
        return f"{_kv(output.kv)} @ rev {output.revision}"
    if isinstance(output, DeleteResult):
        return f"deleted {output.deleted} @ rev {output.revision}"
    if isinstance(output, RangeResult):
        kvs = ", ".join(f"{k!r}: {_kv(v)}" for k, v in sorted(output.kvs.items()))
        return f"{{{kvs}}} @ rev {output.revision}"
    if isinstance(output, TxnResult):
        outcome = "succeeded" if output.succeeded else "failed"
        read = f" {_kv(output.kv)}" if output.kv is not None else ""
        deleted = f" deleted {output.deleted}" if output.deleted else ""
        return f"{outcome}{read}{deleted} @ rev {output.revision}"
    return repr(output)


def _kv(kv: KeyValue | None) -> str:
    if kv is None:
        return "absent"
    lease = f" lease {kv.lease:x}" if kv.lease else ""
    return (
        f"{kv.value!r} (create {kv.create_revision!r}, mod {kv.mod_revision!r}, "
        f"version {kv.version}{lease})"
    )


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
            return None
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


def _footprint(input: Any, output: Any) -> tuple[str, int] | None:
    """("write", revision) or ("read", header revision) for a response, or None if unknown."""
    if output is None or isinstance(input, LeaseRevoke):
        return None
    if isinstance(input, Put):
        return "write", output.revision
    if isinstance(input, Delete):
        return ("write" if output.deleted else "read"), output.revision
    if isinstance(input, Txn):
        branch = input.success if output.succeeded else input.failure
        writes = isinstance(branch, Put) or (isinstance(branch, Delete) and output.deleted)
        return ("write" if writes else "read"), output.revision
    return "read", output.revision


def _may_write(input: Any) -> bool:
    if isinstance(input, Txn):
        return any(isinstance(b, (Put, Delete)) for b in (input.success, input.failure))
    return isinstance(input, (Put, Delete, LeaseRevoke))


def revision_violations(history: list[Operation], initial_revision: int = FRESH_STORE_REVISION) -> list[str]:
    """The whole-history revision checks, one line per violation.

    Runs in O(n log n): unique write revisions, no unexplained gaps, and
    revisions non-decreasing along real time (strictly increasing into a write).
    """
    problems: list[str] = []
    known = [(op, *fp) for op in history if (fp := _footprint(op.input, op.output))]
    writer: dict[int, Operation] = {}
    for op, kind, revision in known:
        if revision < initial_revision or (kind == "write" and revision == initial_revision):
            problems.append(f"revision {revision} is at or before the initial revision: {_brief(op)}")
        if kind != "write":
            continue
        if revision in writer:
            problems.append(f"revision {revision} created twice: by {_brief(writer[revision])} and by {_brief(op)}")
        writer[revision] = op
    problems += _unexplained_gaps(history, known, writer, initial_revision)
    problems += _real_time_inversions(known)
    return problems


def _unexplained_gaps(
    history: list[Operation],
    known: list[tuple[Operation, str, int]],
    writer: dict[int, Operation],
    initial_revision: int,
) -> list[str]:
    """Every revision up to the highest seen was created by some write.

    A revision without an acknowledged write must be taken by a write of
    unknown outcome that was called before the first response showing that
    revision returned. Deadlines only grow with the revision, so handing the
    earliest-called candidates to the lowest gaps is an optimal matching.
    """
    if not known:
        return []
    by_revision = sorted(known, key=lambda k: k[2])
    earliest_return_from = [math.inf] * (len(by_revision) + 1)
    for i in range(len(by_revision) - 1, -1, -1):
        earliest_return_from[i] = min(earliest_return_from[i + 1], by_revision[i][0].return_time)
    candidates = sorted(
        (op.call for op in history if _may_write(op.input) and _footprint(op.input, op.output) is None)
    )
    used = 0
    cursor = 0
    for gap in range(initial_revision + 1, by_revision[-1][2] + 1):
        if gap in writer:
            continue
        while by_revision[cursor][2] < gap:
            cursor += 1
        deadline = earliest_return_from[cursor]
        if used < len(candidates) and candidates[used] <= deadline:
            used += 1
            continue
        witness = by_revision[cursor][0]
        return [f"revision {gap} was created by no write that could have taken it, yet {_brief(witness)} saw it"]
    return []


def _real_time_inversions(known: list[tuple[Operation, str, int]]) -> list[str]:
    """If A returned before B was called then rev(A) <= rev(B), strictly if B writes."""
    events = sorted(
        [(op.call, 0, n) for n, (op, _, _) in enumerate(known)]
        + [(op.return_time, 1, n) for n, (op, _, _) in enumerate(known) if op.return_time < math.inf]
    )
    highest: int | None = None
    highest_op: Operation | None = None
    for _, is_return, n in events:
        op, kind, revision = known[n]
        if is_return:
            if highest is None or revision > highest:
                highest, highest_op = revision, op
            continue
        if highest is None or highest_op is None:
            continue
        if revision < highest or (kind == "write" and revision == highest):
            return [
                f"revision went backwards in real time: {_brief(highest_op)} returned "
                f"at {highest_op.return_time:g} before {_brief(op)} was called at {op.call:g}"
            ]
    return []


def _brief(op: Operation) -> str:
    return f"client {op.client_id} {describe_etcd(op.input, op.output)}"
