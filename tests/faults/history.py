"""What the clients saw: operations, serializable reads, watch streams, faults.

The `History` is filled concurrently by client and watcher threads (appends to
lists, which the GIL keeps whole) and read only after they stopped. Times are
`time.monotonic()` seconds since the run started. Operations use
`etcdx.check.etcd_ops` inputs and results; one whose outcome the client never
learned (error, deadline) has no output and return time `math.inf`.

A serializable read is not linearizable (a follower, or a member cut off from
the leader, answers from its own state), so it is kept out of the
linearizability check and recorded as a `SerializableRead`, checked on its own
(`checks.check_serializable`).
"""

from __future__ import annotations

import math
import pickle
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from etcdx.check.etcd_ops import (
    Change,
    Delete,
    DeleteResult,
    GetResult,
    KeyValue,
    LeaseRevoke,
    Put,
    PutResult,
    Txn,
    TxnResult,
    describe_etcd,
)
from etcdx.check.linearizability import Operation
from etcdx.check.watch import DELETE, PUT, Event, Watcher, WatchResponse
from etcdx.pb import kv_pb2


@dataclass(frozen=True, slots=True)
class SerializableRead:
    client_id: int
    member: str
    key: str
    call: float
    return_time: float
    result: GetResult


@dataclass(slots=True)
class FaultRecord:
    kind: str
    target: str
    start: float
    end: float = math.inf
    note: str = ""

    def __str__(self) -> str:
        end = "?" if self.end == math.inf else f"{self.end:.2f}"
        note = f" ({self.note})" if self.note else ""
        return f"[{self.start:.2f}, {end}] {self.kind} {self.target}{note}"


@dataclass
class History:
    """Everything one run recorded."""

    start: float = field(default_factory=time.monotonic)
    operations: list[Operation] = field(default_factory=list)
    serializable: list[SerializableRead] = field(default_factory=list)
    watchers: list[Watcher] = field(default_factory=list)
    faults: list[FaultRecord] = field(default_factory=list)
    # member name -> times it was killed (a restart may lose unsynced state a
    # serializable read saw, so reads are compared only within one incarnation)
    kills: dict[str, list[float]] = field(default_factory=dict)
    # op type -> Counter of "ok", "indeterminate", "failed" (definitely no effect, unrecorded)
    counts: dict[str, Counter] = field(default_factory=dict)
    # The server is etcd 3.4, whose requested progress notifications may overtake
    # events (etcd-io/etcd#15220, fixed in 3.5.8): the checker tolerates exactly that.
    stale_progress_known: bool = False

    def now(self) -> float:
        return time.monotonic() - self.start

    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, op_type: str, outcome: str) -> None:
        with self._lock:  # += on a Counter is not atomic across threads
            self.counts.setdefault(op_type, Counter())[outcome] += 1

    def record(self, op_type: str, client_id: int, input: Any, call: float, output: Any) -> None:
        """An operation that completed now with ``output``, or None when its outcome is unknown."""
        if output is None:
            self.operations.append(Operation(client_id, input, call, None, math.inf))
            self.count(op_type, "indeterminate")
        else:
            self.operations.append(Operation(client_id, input, call, output, self.now()))
            self.count(op_type, "ok")

    # -- totals -----------------------------------------------------------------------
    def ok_operations(self) -> int:
        return sum(c["ok"] for c in self.counts.values())

    def total_operations(self) -> int:
        return sum(c["ok"] + c["indeterminate"] for c in self.counts.values())

    def written_revisions(self) -> dict[int, list[Change]]:
        """Revision -> its changes, for every write whose successful response said so."""
        writes: dict[int, list[Change]] = {}
        for op in self.operations:
            change = _change_of(op.input, op.output)
            if change is not None:
                writes[op.output.revision] = [change]
        return writes

    # -- files ------------------------------------------------------------------------
    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    def save(self, path) -> None:
        """Pickle (for re-checking) beside a readable transcript (``path`` + .txt)."""
        with open(path, "wb") as f:
            pickle.dump(self, f)
        with open(f"{path}.txt", "w") as f:
            f.write(self.transcript())

    @staticmethod
    def load(path) -> History:
        with open(path, "rb") as f:
            return pickle.load(f)

    def transcript(self) -> str:
        lines = ["# faults"] + [str(fault) for fault in self.faults]
        lines.append("# operations (call, return, client, operation)")
        for op in sorted(self.operations, key=lambda op: op.call):
            end = "?" if op.return_time == math.inf else f"{op.return_time:.4f}"
            lines.append(f"[{op.call:.4f}, {end}] c{op.client_id} {describe_etcd(op.input, op.output)}")
        lines.append("# serializable reads")
        for r in sorted(self.serializable, key=lambda r: r.call):
            lines.append(f"[{r.call:.4f}, {r.return_time:.4f}] c{r.client_id}@{r.member} sget({r.key!r}) -> {r.result}")
        for w in self.watchers:
            lines.append(f"# watcher {w.name} {w.request}")
            for resp in w.responses:
                lines.append(f"  {resp}")
        return "\n".join(lines) + "\n"


def _change_of(input: Any, output: Any) -> Change | None:
    if output is None or isinstance(input, LeaseRevoke):
        return None
    if isinstance(input, Put):
        return Change(input.key, input.value, input.lease)
    if isinstance(input, Delete) and isinstance(output, DeleteResult) and output.deleted:
        return Change(input.key, None)
    if isinstance(input, Txn) and isinstance(output, TxnResult):
        branch = input.success if output.succeeded else input.failure
        if isinstance(branch, Put):
            return Change(branch.key, branch.value, branch.lease)
        if isinstance(branch, Delete) and output.deleted:
            return Change(branch.key, None)
    return None


# -- protobuf -> checker values ------------------------------------------------------------


def key_value(kv: kv_pb2.KeyValue) -> KeyValue:
    return KeyValue(kv.value.decode(), kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def put_result(resp) -> PutResult:
    return PutResult(resp.header.revision)


def get_result(resp) -> GetResult:
    return GetResult(key_value(resp.kvs[0]) if resp.kvs else None, resp.header.revision)


def watch_response(resp) -> WatchResponse:
    events = tuple(
        Event(
            PUT if e.type == kv_pb2.Event.PUT else DELETE,
            e.kv.key.decode(),
            e.kv.mod_revision,
            e.kv.value.decode() if e.type == kv_pb2.Event.PUT else None,
            e.kv.create_revision,
            e.kv.version,
            e.kv.lease,
            key_value(e.prev_kv) if e.HasField("prev_kv") else None,
        )
        for e in resp.events
    )
    return WatchResponse(events, resp.header.revision, resp.created, resp.canceled, resp.compact_revision)
