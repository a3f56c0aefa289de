"""Checking a recorded `History` with `etcdx.check`.

* watch streams: `check_watches` against the revisions acknowledged writes
  created; the streams then fill in the revisions nobody saw a response for
  (`revision_log`), which the KV model uses to pin down lost writes;
* linearizable operations (puts, linearizable gets, deletes, txns, ranges,
  puts with leases, lease revocations): `check_operations` with `EtcdModel`;
* serializable reads, which may be stale and so are not in the search, are
  held to what a member's own state can give: within one incarnation of a
  member (between kills) its header revision never goes backwards in real
  time, and the value read is the key's value at that header revision as the
  revision log has it (checked wherever the log is complete up to it).
"""

from __future__ import annotations

import bisect
import math
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from etcdx.check.etcd_model import EtcdModel
from etcdx.check.etcd_ops import FRESH_STORE_REVISION, Change
from etcdx.check.linearizability import check_operations
from etcdx.check.watch import check_watches, revision_log

from .history import History, SerializableRead


@dataclass
class Verdict:
    linearizable: bool | None
    explanation: str
    watch_violations: list[str] = field(default_factory=list)
    serializable_violations: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def violations(self) -> list[str]:
        found = []
        if self.linearizable is False:
            found.append("not linearizable:\n" + self.explanation)
        found += [f"watch: {v}" for v in _first(self.watch_violations)]
        found += [f"serializable read: {v}" for v in _first(self.serializable_violations)]
        return found


SHOWN = 10


def _first(problems: list[str]) -> list[str]:
    if len(problems) <= SHOWN:
        return problems
    return problems[:SHOWN] + [f"... and {len(problems) - SHOWN} more"]


def check_history(history: History, timeout: float | None = 120.0, final_revision: int | None = None) -> Verdict:
    started = time.monotonic()
    writes = history.written_revisions()
    watch_violations = check_watches(writes, history.watchers, tolerate_stale_progress=history.stale_progress_known)
    changes = revision_log(writes, history.watchers)
    result = check_operations(EtcdModel(changes=changes), history.operations, timeout=timeout)
    serializable = check_serializable(history.serializable, history.kills, changes, final_revision)
    return Verdict(result.ok, result.explanation, watch_violations, serializable, time.monotonic() - started)


def check_serializable(
    reads: Sequence[SerializableRead],
    kills: Mapping[str, Sequence[float]],
    changes: Mapping[int, Sequence[Change]],
    final_revision: int | None = None,
    initial_revision: int = FRESH_STORE_REVISION,
) -> list[str]:
    """Violations by serializable reads (see the module docstring), one line each."""
    problems: list[str] = []
    by_member: dict[str, list[SerializableRead]] = defaultdict(list)
    for r in reads:
        by_member[r.member].append(r)
    for member, member_reads in by_member.items():
        problems += _monotonic(member, member_reads, sorted(kills.get(member, ())))
    complete = initial_revision
    while complete + 1 in changes:
        complete += 1
    history: dict[str, tuple[list[int], list[Change]]] = defaultdict(lambda: ([], []))
    for revision in sorted(changes):
        for change in changes[revision]:
            revisions, values = history[change.key]
            revisions.append(revision)
            values.append(change)
    for r in sorted(reads, key=lambda r: r.call):
        revision = r.result.revision
        if final_revision is not None and revision > final_revision:
            problems.append(f"{_show(r)}: header revision above the final revision {final_revision}")
            continue
        if revision > complete:
            continue
        revisions, values = history.get(r.key, ([], []))
        i = bisect.bisect_right(revisions, revision)
        last = values[i - 1] if i else None
        got = r.result.kv
        if last is None or last.value is None:
            if got is not None:
                problems.append(f"{_show(r)}: key was absent at revision {revision}")
        elif got is None or got.value != last.value or got.mod_revision != revisions[i - 1]:
            problems.append(f"{_show(r)}: key held {last.value!r} (mod {revisions[i - 1]}) at revision {revision}")
    return problems


def _monotonic(member: str, reads: list[SerializableRead], kills: list[float]) -> list[str]:
    """Within one incarnation, a read called after another returned has a header revision at least as high."""
    events = sorted(
        [(r.call, 1, n) for n, r in enumerate(reads)] + [(r.return_time, 0, n) for n, r in enumerate(reads)]
    )
    highest: SerializableRead | None = None
    kill_index = 0
    problems = []
    for t, is_call, n in events:
        while kill_index < len(kills) and kills[kill_index] <= t:
            kill_index += 1
            highest = None
        r = reads[n]
        if not is_call:
            if highest is None or r.result.revision > highest.result.revision:
                highest = r
        elif highest is not None and r.result.revision < highest.result.revision:
            problems.append(
                f"{member}: revision went backwards: {_show(highest)} returned before {_show(r)} was called"
            )
    return problems


def _show(r: SerializableRead) -> str:
    end = "?" if r.return_time == math.inf else f"{r.return_time:.4f}"
    return f"[{r.call:.4f}, {end}] client {r.client_id}@{r.member} sget({r.key!r}) -> {r.result}"
