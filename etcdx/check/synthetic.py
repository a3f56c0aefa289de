"""Valid concurrent etcd (and toy KV) histories, made to test and measure the checkers.

Clients issue requests one after another; each request takes effect at one
instant inside its interval, and a sequential etcd store executed in the order
of those instants gives every response. The result is linearizable by
construction, so a checker must accept it, and any mutation of a response is a
candidate violation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    RangeResult,
    Txn,
    TxnResult,
)
from etcdx.check.kv_model import KvCas, KvGet, KvInput, KvPut
from etcdx.check.linearizability import Operation
from etcdx.check.watch import DELETE, NODELETE, NOPUT, PUT, Event, WatchRequest, WatchResponse


@dataclass(slots=True)
class SequentialEtcd:
    """etcd's KV semantics for the operations the model knows, one at a time.

    ``events`` records, per created revision, the (key, kv or None for a
    delete, previous kv) changes, which is what a watcher should see.
    """

    revision: int = FRESH_STORE_REVISION
    kvs: dict[str, KeyValue] = field(default_factory=dict)
    events: dict[int, list[tuple[str, KeyValue | None, KeyValue | None]]] = field(default_factory=dict)

    def apply(self, input: Any) -> Any:
        if isinstance(input, Put):
            return PutResult(self._put(input))
        if isinstance(input, Get):
            return GetResult(self.kvs.get(input.key), self.revision)
        if isinstance(input, Delete):
            deleted = self._delete([input.key])
            return DeleteResult(deleted, self.revision)
        if isinstance(input, Range):
            kvs = {k: v for k, v in self.kvs.items() if k.startswith(input.prefix)}
            return RangeResult(kvs, self.revision)
        if isinstance(input, Txn):
            return self._txn(input)
        if isinstance(input, LeaseRevoke):
            self._delete([k for k, v in self.kvs.items() if v.lease == input.lease])
            return None
        raise TypeError(f"not an etcd operation: {input!r}")

    def changes(self) -> dict[int, list[Change]]:
        """The write history as the watch checker takes it."""
        return {
            revision: [Change(key, None if new is None else new.value, 0 if new is None else new.lease)
                       for key, new, _ in changes]
            for revision, changes in self.events.items()
        }

    def watch(self, request: WatchRequest, rng: random.Random, progress: float = 0.1) -> list[WatchResponse]:
        """A correct watch stream for ``request``: one response per revision with
        matching events, and with probability ``progress`` a progress
        notification after each revision."""
        start = request.start_revision or self.revision + 1
        responses = [WatchResponse(created=True, header_revision=start - 1)]
        for revision in range(start, self.revision + 1):
            events = tuple(
                _event(revision, key, new, old, request.prev_kv)
                for key, new, old in self.events.get(revision, [])
                if request.covers(key)
                and not (new is not None and NOPUT in request.filters)
                and not (new is None and NODELETE in request.filters)
            )
            if events:
                responses.append(WatchResponse(events))
            if rng.random() < progress:
                responses.append(WatchResponse(header_revision=revision))
        return responses

    def _put(self, input: Put) -> int:
        self.revision += 1
        old = self.kvs.get(input.key)
        if old is None:
            new = KeyValue(input.value, self.revision, self.revision, 1, input.lease)
        else:
            new = KeyValue(input.value, old.create_revision, self.revision, old.version + 1, input.lease)
        self.kvs[input.key] = new
        self.events[self.revision] = [(input.key, new, old)]
        return self.revision

    def _delete(self, keys: list[str]) -> int:
        present = [k for k in sorted(keys) if k in self.kvs]
        if present:
            self.revision += 1
            self.events[self.revision] = [(k, None, self.kvs.pop(k)) for k in present]
        return len(present)

    def _txn(self, input: Txn) -> TxnResult:
        compare = input.compare
        kv = self.kvs.get(compare.key)
        if compare.target == "value":
            holds = kv is not None and _holds(kv.value, compare.result, compare.operand)
        else:
            actual = 0 if kv is None else {
                "version": kv.version,
                "create": kv.create_revision,
                "mod": kv.mod_revision,
            }[compare.target]
            holds = _holds(actual, compare.result, compare.operand)
        branch = input.success if holds else input.failure
        if isinstance(branch, Put):
            return TxnResult(holds, self._put(branch))
        if isinstance(branch, Delete):
            deleted = self._delete([branch.key])
            return TxnResult(holds, self.revision, deleted=deleted)
        if isinstance(branch, Get):
            return TxnResult(holds, self.revision, kv=self.kvs.get(branch.key))
        return TxnResult(holds, self.revision)


def _event(revision: int, key: str, new: KeyValue | None, old: KeyValue | None, prev_kv: bool) -> Event:
    prev = old if prev_kv else None
    if new is None:
        return Event(DELETE, key, revision, prev_kv=prev)
    return Event(PUT, key, revision, new.value, new.create_revision, new.version, new.lease, prev)


def _holds(actual: Any, result: str, operand: Any) -> bool:
    if result == "=":
        return actual == operand
    if result == "!=":
        return actual != operand
    if result == "<":
        return actual < operand
    return actual > operand


@dataclass(slots=True)
class SyntheticHistory:
    operations: list[Operation]
    store: SequentialEtcd  # the store after every operation that took effect


def random_etcd_history(
    rng: random.Random,
    operations: int,
    keys: int = 100,
    clients: int = 8,
    indeterminate: float = 0.0,
    leases: bool = False,
) -> SyntheticHistory:
    """A linearizable history of ``operations`` requests from ``clients`` clients.

    Keys are ``k/<group>/<n>`` in groups of ten so ranges read one group.
    Values are unique, as a test harness makes them.
    """
    store = SequentialEtcd()
    lease_ids = [0, 0, 0, 7, 8] if leases else [0]
    history = _run(
        rng, operations, clients, indeterminate,
        lambda number: _random_input(rng, number, keys, lease_ids), store.apply,
    )
    return SyntheticHistory(history, store)


def random_kv_history(
    rng: random.Random,
    operations: int,
    keys: int = 100,
    clients: int = 8,
    indeterminate: float = 0.0,
    swaps: float = 0.2,
) -> list[Operation]:
    """The same kind of history for the toy ``KvModel``: puts, gets and a
    fraction ``swaps`` of compare-and-swaps."""
    store: dict[str, Any] = {}

    def make(number: int) -> KvInput:
        key = f"k{rng.randrange(keys)}"
        kind = rng.random()
        if kind < (1 - swaps) / 2:
            return KvPut(key, number)
        if kind < 1 - swaps:
            return KvGet(key)
        expected = store.get(key) if rng.random() < 0.5 else number - 1
        return KvCas(key, expected, number)

    def apply(input: KvInput) -> Any:
        if isinstance(input, KvPut):
            store[input.key] = input.value
            return None
        if isinstance(input, KvGet):
            return store.get(input.key)
        swapped = store.get(input.key) == input.expected
        if swapped:
            store[input.key] = input.new
        return swapped

    return _run(rng, operations, clients, indeterminate, make, apply)


def _run(
    rng: random.Random,
    operations: int,
    clients: int,
    indeterminate: float,
    make: Callable[[int], Any],
    apply: Callable[[Any], Any],
) -> list[Operation]:
    """Schedule requests per client, then execute them in the order of the
    instants at which they take effect.

    Each client waits for a response (exponential latency, mean 1) and thinks
    (mean 1/4) before its next request, so about ``clients`` requests overlap.
    With probability ``indeterminate`` a request loses its response; half of
    those still take effect.
    """
    planned: list[tuple[float, int, float, float, bool]] = []
    clock = [rng.uniform(0, 1) for _ in range(clients)]
    for n in range(operations):
        client = n % clients
        call = clock[client]
        latency = rng.expovariate(1.0)
        planned.append((call + rng.uniform(0, latency), client, call, call + latency, rng.random() < indeterminate))
        clock[client] = call + latency + rng.expovariate(4.0)
    history = []
    for number, (_, client, call, ret, lost) in enumerate(sorted(planned)):
        input = make(number)
        output = apply(input) if not lost or rng.random() < 0.5 else None
        if lost:
            output, ret = None, math.inf
        history.append(Operation(client, input, call, output, ret))
    history.sort(key=lambda op: op.call)
    return history


def _random_input(rng: random.Random, number: int, keys: int, lease_ids: list[int]) -> Any:
    key = f"k/{rng.randrange(max(1, keys // 10))}/{rng.randrange(min(10, keys))}"
    value = f"v{number}"
    kind = rng.random()
    if kind < 0.30:
        return Put(key, value, rng.choice(lease_ids))
    if kind < 0.62:
        return Get(key)
    if kind < 0.70:
        return Delete(key)
    if kind < 0.90:
        target = rng.choice(["value", "version", "mod"])
        operand: Any = rng.choice(["v1", f"v{number - 1}"]) if target == "value" else rng.randrange(0, 4)
        failure = rng.choice([None, Get(key)])
        return Txn(Compare(key, target, rng.choice(["=", "!=", "<", ">"]) if target != "value" else "=", operand),
                   Put(key, value), failure)
    if kind < 0.98 or len(lease_ids) == 1:
        return Range(f"k/{rng.randrange(max(1, keys // 10))}/")
    # A revoked lease is gone: later puts attach to a newly granted one.
    slot = rng.randrange(3, len(lease_ids))
    revoked = lease_ids[slot]
    lease_ids[slot] = max(lease_ids) + 1
    return LeaseRevoke(revoked)
