"""Locks, elections and STM transactions, as etcd's Go ``concurrency`` package makes them.

**Locks and elections.** Every contender puts the key
``<name>/<lease id in hex>`` attached to its session lease (only if it is
absent, so asking twice is harmless). The holder, or leader, is the
contender whose key has the lowest create revision; every other contender
waits for the key with the next-lower create revision to be deleted (so a
release wakes one waiter, not all of them), then checks again. A holder
that dies loses its lease, its key goes, and the next contender takes over.
Keys and algorithm are Go's, so Python and Go processes (and ``etcdctl
lock``/``elect``) contend for the same locks.

**Fencing.** The holder's key's create revision is its *fencing token*: it
only grows from one holder to the next. A write guarded by `fence` (its
key still has that create revision) fails once the lease has expired, even if
the old holder has not noticed yet.

**STM.** `StmState` records what a transaction function read and wants to
write; `commit` applies the writes in one txn only if nothing read has
changed since, otherwise the function is run again on fresh data.

Everything here is a program (see `ops`); the faces add sessions, threads or
tasks and time limits.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from . import txn as t
from .errors import Compacted, ElectionNotLeader, LockLost, NoElectionLeader
from .ops import Call, Program, WaitDeleted
from .types import Event, EventType, GetResult, KeyLike, KeyValue, SortOrder, SortTarget, TxnResult, to_bytes


def contender_prefix(name: KeyLike) -> bytes:
    """The prefix holding a lock's or election's contender keys: the name and a slash (as in Go)."""
    return to_bytes(name) + b"/"


def contender_key(prefix: bytes, lease_id: int) -> bytes:
    return prefix + b"%x" % lease_id


def campaign(prefix: bytes, lease_id: int, value: bytes = b"") -> Program[tuple[bytes, int]]:
    """Become the holder of ``prefix``: returns our key and its create revision (the fencing token)."""
    key = contender_key(prefix, lease_id)
    request = t.txn_request(
        [t.create_revision(key) == 0], [t.put(key, value, lease=lease_id)], [t.get(key)]
    )
    # Idempotent: a second attempt finds the key the first one may have made.
    response = yield Call("KV", "Txn", request, idempotent=True)
    if response.succeeded:
        revision = response.header.revision
    else:
        kv = response.responses[0].response_range.kvs[0]
        revision = kv.create_revision
        if kv.value != value:
            yield from proclaim(key, revision, value)
    yield from wait_deletes(prefix, revision - 1)
    return key, revision


def wait_deletes(prefix: bytes, max_create_revision: int) -> Program[None]:
    """Wait until no key under ``prefix`` has a create revision <= ``max_create_revision``."""
    request = t.range_request(
        prefix, prefix=True, max_create_revision=max_create_revision,
        sort_order=SortOrder.DESCEND, sort_target=SortTarget.CREATE, limit=1,
    )  # fmt: skip
    while True:
        response = yield Call("KV", "Range", request, idempotent=True)
        if not response.kvs:
            return
        try:
            yield WaitDeleted(response.kvs[0].key, response.header.revision)
        except Compacted:
            pass  # history moved on while we were away: look again


def fence(key: bytes, revision: int) -> t.Compare:
    """Holds while the lock key is still the one created at ``revision``."""
    return t.create_revision(key) == revision


def guarded_txn(
    key: bytes,
    revision: int,
    compare: Iterable[t.Compare] = (),
    success: Iterable[t.Op] = (),
    failure: Iterable[t.Op] = (),
    *,
    timeout: float | None = None,
) -> Program[TxnResult]:
    """Run the txn only while the lock is held; raise `LockLost` otherwise.

    The user's txn is nested under the fence, so its own compares still pick
    its branch and the result is its own.
    """
    inner = t.txn(compare, success, failure)
    request = t.txn_request([fence(key, revision)], [inner])
    response = yield Call("KV", "Txn", request, idempotent=t.is_read_only(request), timeout=timeout)
    if not response.succeeded:
        raise LockLost(key, revision)
    return TxnResult.from_pb(response.responses[0].response_txn)


def resign(key: bytes, revision: int, *, timeout: float | None = None) -> Program[bool]:
    """Delete our key if it is still ours; False when it was already gone."""
    request = t.txn_request([fence(key, revision)], [t.delete(key)])
    response = yield Call("KV", "Txn", request, idempotent=True, timeout=timeout)
    return bool(response.succeeded)


def proclaim(key: bytes, revision: int, value: bytes, *, timeout: float | None = None) -> Program[None]:
    """Change the leader's value without giving up leadership."""
    request = t.txn_request([fence(key, revision)], [t.put(key, value, ignore_lease=True)])
    response = yield Call("KV", "Txn", request, idempotent=False, timeout=timeout)
    if not response.succeeded:
        raise ElectionNotLeader("election: not leader")


def leader(prefix: bytes, *, timeout: float | None = None) -> Program[KeyValue]:
    """The current leader's key and value."""
    request = t.range_request(prefix, prefix=True, sort_order=SortOrder.ASCEND, sort_target=SortTarget.CREATE, limit=1)
    response = yield Call("KV", "Range", request, idempotent=True, timeout=timeout)
    if not response.kvs:
        raise NoElectionLeader("election: no leader")
    return KeyValue.from_pb(response.kvs[0])


def contenders(prefix: bytes, *, timeout: float | None = None) -> Program[GetResult]:
    """Every contender's key, for `ElectionView`."""
    request = t.range_request(prefix, prefix=True)
    response = yield Call("KV", "Range", request, idempotent=True, timeout=timeout)
    return GetResult.from_pb(response)


class ElectionView:
    """The contenders of an election, kept current from watch events; the leader is the oldest."""

    def __init__(self, kvs: Iterable[KeyValue]) -> None:
        self._contenders = {kv.key: kv for kv in kvs}

    def apply(self, event: Event) -> None:
        if event.type is EventType.PUT:
            self._contenders[event.kv.key] = event.kv
        else:
            self._contenders.pop(event.kv.key, None)

    def leader(self) -> KeyValue | None:
        if not self._contenders:
            return None
        return min(self._contenders.values(), key=lambda kv: kv.create_revision)


class Isolation(enum.Enum):
    """How an STM transaction reads.

    SERIALIZABLE: every read sees the store at the revision of the first read,
    and the commit fails if any key read or written changed after it (Go's
    "serializable snapshot", the default). REPEATABLE_READ: each read sees the
    latest value, and the commit fails if a key read has changed since.
    """

    SERIALIZABLE = "serializable"
    REPEATABLE_READ = "repeatable_read"


_DELETED = None


class StmState:
    """One attempt of an STM transaction: its read set and write set."""

    def __init__(self, isolation: Isolation = Isolation.SERIALIZABLE) -> None:
        self.isolation = isolation
        self.read_revision = 0  # SERIALIZABLE: the revision all reads are made at (0 until the first)
        self._reads: dict[bytes, KeyValue | None] = {}
        self._writes: dict[bytes, bytes | None] = {}

    def get(self, key: KeyLike, *, timeout: float | None = None) -> Program[bytes | None]:
        """The key's value as this transaction sees it (its own writes first); None if absent."""
        k = to_bytes(key)
        if k in self._writes:
            return self._writes[k]
        if k in self._reads:
            kv = self._reads[k]
            return kv.value if kv is not None else None
        revision = self.read_revision if self.isolation is Isolation.SERIALIZABLE else 0
        response = yield Call("KV", "Range", t.range_request(k, revision=revision), idempotent=True, timeout=timeout)
        if self.isolation is Isolation.SERIALIZABLE and not self.read_revision:
            self.read_revision = response.header.revision
        kv = KeyValue.from_pb(response.kvs[0]) if response.kvs else None
        self._reads[k] = kv
        return kv.value if kv is not None else None

    def put(self, key: KeyLike, value: KeyLike) -> None:
        self._writes[to_bytes(key)] = to_bytes(value)

    def delete(self, key: KeyLike) -> None:
        self._writes[to_bytes(key)] = _DELETED

    def commit(self, *, timeout: float | None = None) -> Program[bool]:
        """Apply the writes if nothing read changed meanwhile; False means run the function again."""
        compares: list[t.Compare] = []
        if self.isolation is Isolation.SERIALIZABLE:
            if self.read_revision:
                for k in {**self._reads, **self._writes}:
                    compares.append(t.mod_revision(k) < self.read_revision + 1)
        else:
            for k, kv in self._reads.items():
                compares.append(t.mod_revision(k) == (kv.mod_revision if kv is not None else 0))
        ops = [t.delete(k) if v is _DELETED else t.put(k, v) for k, v in self._writes.items()]
        if not ops:
            return True  # read-only: what was read was one consistent view
        response = yield Call("KV", "Txn", t.txn_request(compares, ops), idempotent=False, timeout=timeout)
        return bool(response.succeeded)
