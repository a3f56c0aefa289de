"""`Lock` and `Election` for the asyncio client (the algorithms are in `etcdx.client.concurrency`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

from .. import concurrency as _c
from .. import txn as t
from ..errors import ClientClosed, ClientError, ElectionNotLeader
from ..types import DeleteResult, GetResult, KeyLike, KeyValue, PutResult, TxnResult, to_bytes

if TYPE_CHECKING:
    from .client import AsyncClient
    from .lease import Lease
    from .watch import Watch


class _Contender:
    """What a lock and an election share: a session lease and our key under the name's prefix."""

    def __init__(self, client: AsyncClient, name: KeyLike, ttl: int, lease: Lease | None) -> None:
        self._client = client
        self.name = to_bytes(name)
        self.prefix = _c.contender_prefix(name)
        self._ttl = ttl
        self._given_lease = lease
        self.lease: Lease | None = None
        self.key: bytes | None = None
        self.revision: int | None = None

    async def _campaign(self, value: bytes, timeout: float | None) -> None:
        if self.key is not None:
            raise RuntimeError(f"{self!r} is already held")
        lease = self._given_lease or await self._client.lease(self._ttl)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.key, self.revision = await self._client._run(_c.campaign(self.prefix, lease.id, value), deadline)
        except BaseException:
            # Leave no key behind that would make later contenders wait for us.
            with contextlib.suppress(ClientError):
                if lease is self._given_lease:
                    await self._client.delete(_c.contender_key(self.prefix, lease.id))
                else:
                    await lease.revoke()
            raise
        self.lease = lease

    async def _resign(self) -> None:
        key, revision, lease = self.key, self.revision, self.lease
        if key is None or revision is None:
            return
        self.key = self.revision = self.lease = None
        try:
            await self._client._run(_c.resign(key, revision))
        finally:
            if lease is not None and lease is not self._given_lease:
                await lease.revoke()

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
    """The asyncio twin of `etcdx.client.Lock`: ``async with client.lock("name") as lock:``."""

    def __init__(self, client: AsyncClient, name: KeyLike, *, ttl: int = 60, lease: Lease | None = None) -> None:
        super().__init__(client, name, ttl, lease)

    async def acquire(self, timeout: float | None = None) -> Lock:
        """Wait until the lock is ours (`DeadlineExceeded` after ``timeout`` seconds)."""
        await self._campaign(b"", timeout)
        return self

    async def release(self) -> None:
        await self._resign()

    async def __aenter__(self) -> Lock:
        return await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        await self.release()

    @property
    def token(self) -> int:
        """The fencing token: our key's create revision, larger for every later holder."""
        return self._held()[1]

    def fence(self) -> t.Compare:
        return _c.fence(*self._held())

    async def is_held(self) -> bool:
        key, revision = self._held()
        return (await self._client.txn([_c.fence(key, revision)])).succeeded

    async def txn(
        self,
        compare: Iterable[t.Compare] = (),
        success: Iterable[t.Op] = (),
        failure: Iterable[t.Op] = (),
        *,
        timeout: float | None = None,
    ) -> TxnResult:
        """A txn that runs only while we hold the lock (`LockLost` otherwise)."""
        key, revision = self._held()
        return await self._client._run(_c.guarded_txn(key, revision, compare, success, failure, timeout=timeout))

    async def put(self, key: KeyLike, value: KeyLike, **options: Any) -> PutResult:
        result = await self.txn(success=[t.put(key, value, **options)])
        return result.responses[0]  # type: ignore[return-value]

    async def delete(self, key: KeyLike, **options: Any) -> DeleteResult:
        result = await self.txn(success=[t.delete(key, **options)])
        return result.responses[0]  # type: ignore[return-value]


class Election(_Contender):
    """The asyncio twin of `etcdx.client.Election`."""

    def __init__(self, client: AsyncClient, name: KeyLike, *, ttl: int = 60, lease: Lease | None = None) -> None:
        super().__init__(client, name, ttl, lease)

    def _not_held(self) -> Exception:
        return ElectionNotLeader("election: not leader")

    @property
    def is_leader(self) -> bool:
        return self.key is not None

    async def campaign(self, value: KeyLike, timeout: float | None = None) -> None:
        await self._campaign(to_bytes(value), timeout)

    async def proclaim(self, value: KeyLike) -> None:
        key, revision = self._held()
        await self._client._run(_c.proclaim(key, revision, to_bytes(value)))

    async def resign(self) -> None:
        await self._resign()

    async def leader(self) -> KeyValue:
        return await self._client._run(_c.leader(self.prefix))

    async def observe(self) -> Observer:
        """Follow the leader: ``async for kv in await election.observe()``; close it when done."""
        return await Observer.start(self._client, self.prefix)

    async def __aenter__(self) -> Election:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.resign()


class Observer:
    """The leaders of an election, in order; ``async for``, or ``await get(timeout)``."""

    def __init__(self, view: _c.ElectionView, watch: Watch) -> None:
        self._view = view
        self._watch = watch
        self._last: tuple[bytes, int] | None = None

    @classmethod
    async def start(cls, client: AsyncClient, prefix: bytes) -> Observer:
        initial: GetResult = await client._run(_c.contenders(prefix))
        watch = await client.watch(prefix, prefix=True, start_revision=initial.header.revision + 1)
        return cls(_c.ElectionView(initial.kvs), watch)

    def _changed(self) -> KeyValue | None:
        leader = self._view.leader()
        if leader is None or (leader.key, leader.mod_revision) == self._last:
            return None
        self._last = (leader.key, leader.mod_revision)
        return leader

    async def get(self, timeout: float | None = None) -> KeyValue:
        """The next leader (or new value of the leader); `TimeoutError` after ``timeout``."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed()
                if changed is not None:
                    return changed
                for event in (await self._watch.get()).events:
                    self._view.apply(event)

    def __aiter__(self) -> AsyncIterator[KeyValue]:
        return self

    async def __anext__(self) -> KeyValue:
        try:
            return await self.get()
        except ClientClosed:
            raise StopAsyncIteration from None

    async def close(self) -> None:
        await self._watch.close()

    async def __aenter__(self) -> Observer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
