"""`Lock` and `Election` for the blocking client (the algorithms are in `etcdx.client.concurrency`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from .. import concurrency as _c
from .. import txn as t
from ..errors import ClientClosed, ClientError, ElectionNotLeader
from ..types import DeleteResult, GetResult, KeyLike, KeyValue, PutResult, TxnResult, to_bytes

if TYPE_CHECKING:
    from .client import Client
    from .lease import Lease
    from .watch import Watch


class _Contender:
    """What a lock and an election share: a session lease and our key under the name's prefix."""

    def __init__(self, client: Client, name: KeyLike, ttl: int, lease: Lease | None) -> None:
        self._client = client
        self.name = to_bytes(name)
        self.prefix = _c.contender_prefix(name)
        self._ttl = ttl
        self._given_lease = lease
        self.lease: Lease | None = None
        self.key: bytes | None = None
        self.revision: int | None = None

    def _campaign(self, value: bytes, timeout: float | None) -> None:
        if self.key is not None:
            raise RuntimeError(f"{self!r} is already held")
        lease = self._given_lease or self._client.lease(self._ttl)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.key, self.revision = self._client._run(_c.campaign(self.prefix, lease.id, value), deadline)
        except BaseException:
            # Leave no key behind that would make later contenders wait for us.
            with contextlib.suppress(ClientError):
                if lease is self._given_lease:
                    self._client.delete(_c.contender_key(self.prefix, lease.id))
                else:
                    lease.revoke()
            raise
        self.lease = lease

    def _resign(self) -> None:
        key, revision, lease = self.key, self.revision, self.lease
        if key is None or revision is None:
            return
        self.key = self.revision = self.lease = None
        try:
            self._client._run(_c.resign(key, revision))
        finally:
            if lease is not None and lease is not self._given_lease:
                lease.revoke()

    def _held(self) -> tuple[bytes, int]:
        if self.key is None or self.revision is None:
            raise self._not_held()
        return self.key, self.revision

    def _not_held(self) -> Exception:
        return RuntimeError(f"{self!r} is not held")

    def __repr__(self) -> str:
        state = f"held at revision {self.revision}" if self.key is not None else "not held"
        return f"<{type(self).__name__} {self.name!r} {state}>"


class Lock(_Contender):
    """A distributed lock; ``revision`` (the fencing token) is set while held.

        with client.lock("jobs/cleanup", ttl=30) as lock:
            lock.put("jobs/cleanup/state", "running")   # fails with LockLost once not held

    Writes through `put`, `delete` and `txn` are *fenced*: they apply only while
    our lock key still exists with our revision, so a holder whose lease expired
    (a long pause, a partition) cannot overwrite the next holder's work.
    """

    def __init__(self, client: Client, name: KeyLike, *, ttl: int = 60, lease: Lease | None = None) -> None:
        super().__init__(client, name, ttl, lease)

    def acquire(self, timeout: float | None = None) -> Lock:
        """Wait until the lock is ours (`DeadlineExceeded` after ``timeout`` seconds)."""
        self._campaign(b"", timeout)
        return self

    def release(self) -> None:
        """Release the lock (and revoke the lease it took itself). Releasing twice is fine."""
        self._resign()

    def __enter__(self) -> Lock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def token(self) -> int:
        """The fencing token: our key's create revision, larger for every later holder."""
        return self._held()[1]

    def fence(self) -> t.Compare:
        """A txn compare that holds only while we hold the lock."""
        return _c.fence(*self._held())

    def is_held(self) -> bool:
        """Ask the cluster whether our lock key is still there."""
        key, revision = self._held()
        return self._client.txn([_c.fence(key, revision)]).succeeded

    def txn(
        self,
        compare: Iterable[t.Compare] = (),
        success: Iterable[t.Op] = (),
        failure: Iterable[t.Op] = (),
        *,
        timeout: float | None = None,
    ) -> TxnResult:
        """A txn that runs only while we hold the lock (`LockLost` otherwise)."""
        key, revision = self._held()
        return self._client._run(_c.guarded_txn(key, revision, compare, success, failure, timeout=timeout))

    def put(self, key: KeyLike, value: KeyLike, **options: Any) -> PutResult:
        result = self.txn(success=[t.put(key, value, **options)])
        return result.responses[0]  # type: ignore[return-value]

    def delete(self, key: KeyLike, **options: Any) -> DeleteResult:
        result = self.txn(success=[t.delete(key, **options)])
        return result.responses[0]  # type: ignore[return-value]


class Election(_Contender):
    """Leader election: `campaign` waits to lead, `observe` follows who leads."""

    def __init__(self, client: Client, name: KeyLike, *, ttl: int = 60, lease: Lease | None = None) -> None:
        super().__init__(client, name, ttl, lease)

    def _not_held(self) -> Exception:
        return ElectionNotLeader("election: not leader")

    @property
    def is_leader(self) -> bool:
        """We won a campaign and have not resigned (ask `leader()` to check the cluster)."""
        return self.key is not None

    def campaign(self, value: KeyLike, timeout: float | None = None) -> None:
        """Wait until we lead, announcing ``value`` (`DeadlineExceeded` after ``timeout``)."""
        self._campaign(to_bytes(value), timeout)

    def proclaim(self, value: KeyLike) -> None:
        """Announce a new value while leading (`ElectionNotLeader` if we no longer lead)."""
        key, revision = self._held()
        self._client._run(_c.proclaim(key, revision, to_bytes(value)))

    def resign(self) -> None:
        """Give up leadership (the next contender takes over)."""
        self._resign()

    def leader(self) -> KeyValue:
        """The current leader's key and value (`NoElectionLeader` when nobody campaigns)."""
        return self._client._run(_c.leader(self.prefix))

    def observe(self) -> Observer:
        """Follow the leader: yields its key-value each time leadership or the value changes."""
        return Observer(self._client, self.prefix)

    def __enter__(self) -> Election:
        return self

    def __exit__(self, *exc: object) -> None:
        self.resign()


class Observer:
    """The leaders of an election, in order; iterate, or ``get(timeout)``; `close()` when done."""

    def __init__(self, client: Client, prefix: bytes) -> None:
        initial: GetResult = client._run(_c.contenders(prefix))
        self._view = _c.ElectionView(initial.kvs)
        self._watch: Watch = client.watch(prefix, prefix=True, start_revision=initial.header.revision + 1)
        self._last: tuple[bytes, int] | None = None

    def _changed(self) -> KeyValue | None:
        leader = self._view.leader()
        if leader is None or (leader.key, leader.mod_revision) == self._last:
            return None
        self._last = (leader.key, leader.mod_revision)
        return leader

    def get(self, timeout: float | None = None) -> KeyValue:
        """The next leader (or new value of the leader); `TimeoutError` after ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            changed = self._changed()
            if changed is not None:
                return changed
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            for event in self._watch.get(remaining).events:
                self._view.apply(event)

    def __iter__(self) -> Iterator[KeyValue]:
        return self

    def __next__(self) -> KeyValue:
        try:
            return self.get()
        except ClientClosed:
            raise StopIteration from None

    def close(self) -> None:
        self._watch.close()

    def __enter__(self) -> Observer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
