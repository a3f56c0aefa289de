"""Whole-history passes over etcd histories: revision order, and lost writes.

The per-key search cannot see across keys, and revisions are global; these
passes look at the whole history at once, in O(n log n).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from etcdx.check.etcd_ops import (
    FRESH_STORE_REVISION,
    Change,
    Delete,
    DeleteResult,
    Get,
    LeaseRevoke,
    Put,
    PutResult,
    Range,
    Txn,
    TxnResult,
    describe_etcd,
)
from etcdx.check.linearizability import Operation


def footprint(input: Any, output: Any) -> tuple[str, int] | None:
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


def may_write(input: Any) -> bool:
    """Whether the request could create a revision."""
    if isinstance(input, Txn):
        return any(isinstance(b, (Put, Delete)) for b in (input.success, input.failure))
    return isinstance(input, (Put, Delete, LeaseRevoke))


def revision_violations(history: list[Operation], initial_revision: int = FRESH_STORE_REVISION) -> list[str]:
    """The whole-history revision checks, one line per violation.

    Runs in O(n log n): unique write revisions, no unexplained gaps, and
    revisions non-decreasing along real time (strictly increasing into a write).
    """
    problems: list[str] = []
    known = [(op, *fp) for op in history if (fp := footprint(op.input, op.output))]
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
        (op.call for op in history if may_write(op.input) and footprint(op.input, op.output) is None)
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


def resolve_lost_writes(
    history: list[Operation],
    initial_revision: int = FRESH_STORE_REVISION,
    changes: Mapping[int, Sequence[Change]] | None = None,
) -> list[Operation]:
    """The history with what reads (and a watch log) revealed about lost responses.

    An indeterminate request is optional to the search, and many optional
    requests pending at once make a failing search exponential. What was
    observed narrows them down, soundly:

    * a lost read carries no information and is dropped;
    * a lost write seen to take effect at revision m (a read returned its
      unique value with mod_revision m, or ``changes`` lists its change at m)
      gets that output, and it must have taken effect before the first
      response showing a revision >= m returned, so that becomes its return
      time and it is no longer optional;
    * if then every revision up to the highest one seen is accounted for, the
      remaining lost puts and deletes took effect after every response seen,
      if at all, so no response can depend on them and they are dropped.

    A lease revocation's deletions carry no revision. With a watch log, a lost
    revocation of a lease the log never shows revoked is dropped, and the only
    revocation of a lease the log shows revoked once must have happened then;
    other lost revocations stay optional. A deletion of a key that had a lease
    (per the log, or ever, without one) cannot be told apart from one by a
    revocation, so lost deletes of such keys stay optional too.

    ``changes``, when given, is every change of every revision it lists, as a
    watch over all keys reports them (``watch.revision_log``).
    """
    known = sorted(
        ((fp[1], op.return_time) for op in history if (fp := footprint(op.input, op.output))),
        key=lambda pair: pair[0],
    )
    revisions = [revision for revision, _ in known]
    earliest_return = [math.inf] * (len(known) + 1)
    for i in range(len(known) - 1, -1, -1):
        earliest_return[i] = min(earliest_return[i + 1], known[i][1])

    def deadline(revision: int) -> float:
        return earliest_return[bisect.bisect_left(revisions, revision)]

    claimed = {fp[1] for op in history if (fp := footprint(op.input, op.output)) and fp[0] == "write"}
    writers: dict[tuple[str, Hashable], int] = defaultdict(int)
    for op in history:
        for put in _puts(op.input):
            writers[put.key, put.value] += 1
    put_seen_at = _observed_mod_revisions(history)
    deletes_at: dict[str, list[int]] = defaultdict(list)
    # lease -> revisions that surely are (may be) its revocation
    revoked_at: dict[int, list[int]] = defaultdict(list)
    maybe_revoked_at: dict[int, list[int]] = defaultdict(list)
    lost_deletes = {d.key for op in history if op.indeterminate for d in _deletes(op.input)}
    if changes is None:
        leased = {put.key for op in history for put in _puts(op.input) if put.lease}
    else:
        leased = set()
        lease_of: dict[str, int] = {}
        attached: dict[int, set[str]] = defaultdict(set)
        for revision, revision_changes in sorted(changes.items()):
            deleted = {c.key for c in revision_changes if c.value is None}
            leases = {lease_of.get(key, 0) for key in deleted}
            if len(leases) == 1 and len(deleted) == len(revision_changes) and 0 not in leases:
                lease = leases.pop()
                maybe_revoked_at[lease].append(revision)
                # A revocation deletes every attached key; a lone deletion
                # could also be a delete request whose response was lost.
                if deleted == attached[lease] and revision not in claimed and not (
                    len(deleted) == 1 and deleted <= lost_deletes
                ):
                    revoked_at[lease].append(revision)
            for change in revision_changes:
                old = lease_of.pop(change.key, 0)
                attached[old].discard(change.key)
                if change.value is not None:
                    put_seen_at.setdefault((change.key, change.value), revision)
                    lease_of[change.key] = change.lease
                    attached[change.lease].add(change.key)
                elif old:
                    leased.add(change.key)  # maybe a revocation's deletion
                else:
                    deletes_at[change.key].append(revision)
    revokes = defaultdict(int)
    for op in history:
        if isinstance(op.input, LeaseRevoke):
            revokes[op.input.lease] += 1

    kept: list[Operation] = []
    unresolved: list[Operation] = []
    for op in sorted(history, key=lambda op: op.call):
        if not op.indeterminate or op.output is not None:
            kept.append(op)
        elif isinstance(op.input, LeaseRevoke) and changes is not None:
            # A revocation either deleted its keys in one revision of the log,
            # or changed nothing anyone can see. The only revocation of a
            # lease that the log shows revoked did it there.
            seen = revoked_at.get(op.input.lease, [])
            maybe = maybe_revoked_at.get(op.input.lease, [])
            if len(seen) == 1 and len(maybe) == 1 and revokes[op.input.lease] == 1:
                kept.append(Operation(op.client_id, op.input, op.call, None, max(op.call, deadline(seen[0]))))
            elif maybe:
                unresolved.append(op)
        elif may_write(op.input):
            output = _resolve(op.input, put_seen_at, writers, deletes_at, leased, claimed, op.call, deadline)
            if output is None:
                unresolved.append(op)
            else:
                claimed.add(output.revision)
                kept.append(Operation(op.client_id, op.input, op.call, output, max(op.call, deadline(output.revision))))
    claimed |= set(changes or ())
    highest = revisions[-1] if revisions else initial_revision
    accounted = all(r in claimed for r in range(initial_revision + 1, highest + 1))
    kept += [op for op in unresolved if not (accounted and _unseen_means_no_effect(op.input, leased))]
    return kept


def _unseen_means_no_effect(input: Any, leased: set[str]) -> bool:
    if isinstance(input, LeaseRevoke):
        return False
    return all(delete.key not in leased for delete in _deletes(input))


def _resolve(
    input: Any,
    put_seen_at: dict[tuple[str, Hashable], int],
    writers: dict[tuple[str, Hashable], int],
    deletes_at: dict[str, list[int]],
    leased: set[str],
    claimed: set[int],
    call: float,
    deadline: Callable[[int], float],
) -> Any:
    """The output a lost write must have had, if observations pin it down."""
    for put in _puts(input):
        revision = put_seen_at.get((put.key, put.value))
        if revision is not None and writers[put.key, put.value] == 1 and revision not in claimed:
            if isinstance(input, Txn):
                return TxnResult(input.success == put, revision)
            return PutResult(revision)
    if isinstance(input, Delete) and input.key not in leased:
        # Deletes carry no value: take the first unclaimed deletion of the key
        # this request could have made (called before anyone saw that revision).
        # Plain deletes of one key are interchangeable, so matching the
        # earliest-called to the earliest deletion loses nothing; a txn's
        # delete is never matched, as its compare would then have to hold.
        for revision in deletes_at.get(input.key, ()):
            if revision not in claimed and call <= deadline(revision):
                return DeleteResult(1, revision)
    return None


def _puts(input: Any) -> list[Put]:
    if isinstance(input, Put):
        return [input]
    if isinstance(input, Txn):
        return [b for b in (input.success, input.failure) if isinstance(b, Put)]
    return []


def _deletes(input: Any) -> list[Delete]:
    if isinstance(input, Delete):
        return [input]
    if isinstance(input, Txn):
        return [b for b in (input.success, input.failure) if isinstance(b, Delete)]
    return []


def _observed_mod_revisions(history: list[Operation]) -> dict[tuple[str, Hashable], int]:
    """(key, value) -> the mod_revision a response reported for it."""
    seen: dict[tuple[str, Hashable], int] = {}
    for op in history:
        input, output = op.input, op.output
        if output is None:
            continue
        if isinstance(input, Range):
            pairs = list(output.kvs.items())
        elif isinstance(input, Get) or isinstance(input, Txn):
            key = input.key if isinstance(input, Get) else input.compare.key
            pairs = [] if output.kv is None else [(key, output.kv)]
        else:
            continue
        for key, kv in pairs:
            if isinstance(kv.mod_revision, int):
                seen.setdefault((key, kv.value), kv.mod_revision)
    return seen


def narrow_to_revision_order(history: list[Operation]) -> list[Operation]:
    """The history with each interval shrunk to what the revision order allows.

    Every valid linearization orders operations by revision (a write at its
    revision, a read after the write its header revision names), so an
    operation takes effect after every operation of a lower slot was called
    and before every operation of a higher slot returned. Handing the search
    those narrower intervals keeps it from trying orders the revisions rule
    out, which is most of its backtracking under heavy concurrency. Operations
    without a known revision keep their intervals. Index i of the result is
    history[i], narrowed.
    """
    slotted = sorted(
        (((fp[1], 0 if fp[0] == "write" else 1), i) for i, op in enumerate(history) if (fp := footprint(op.input, op.output))),
    )
    calls = [0.0] * len(history)
    returns = [0.0] * len(history)
    latest_call = -math.inf
    start = 0
    while start < len(slotted):
        end = start
        while end < len(slotted) and slotted[end][0] == slotted[start][0]:
            end += 1
        group = [i for _, i in slotted[start:end]]
        for i in group:
            calls[i] = max(history[i].call, latest_call)
        latest_call = max(latest_call, *(history[i].call for i in group))
        start = end
    earliest_return = math.inf
    end = len(slotted)
    while end > 0:
        start = end
        while start > 0 and slotted[start - 1][0] == slotted[end - 1][0]:
            start -= 1
        group = [i for _, i in slotted[start:end]]
        for i in group:
            returns[i] = min(history[i].return_time, earliest_return)
        earliest_return = min(earliest_return, *(history[i].return_time for i in group))
        end = start
    narrowed = list(history)
    for _, i in slotted:
        op = history[i]
        if calls[i] <= returns[i] and (calls[i], returns[i]) != (op.call, op.return_time):
            narrowed[i] = Operation(op.client_id, op.input, calls[i], op.output, returns[i])
    return narrowed
