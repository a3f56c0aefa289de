"""`Lease`: a granted lease and its keep-alive task, for the asyncio client."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING

from .. import lease as _lease
from ..errors import ClientError, LeaseExpired, LeaseNotFound
from ..types import LeaseGrant, LeaseInfo
from ._tasks import stop_task

if TYPE_CHECKING:
    from .client import AsyncClient


class Lease:
    """A lease with ``id`` and granted ``ttl``; kept alive by a task until closed or revoked.

    As the blocking `etcdx.client.Lease`: when no renewal gets through before
    the TTL runs out, or the server says the lease is gone, ``lost`` turns
    True, ``error`` says why and `wait_lost` returns.
    """

    def __init__(self, client: AsyncClient, grant: LeaseGrant, *, keepalive: bool = True) -> None:
        self._client = client
        self.id = grant.id
        self.ttl = grant.ttl
        self.error: BaseException | None = None
        self._lost = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        if keepalive:
            client._owned.add(self)
            self._task = asyncio.create_task(self._keepalive(), name=f"etcdx-lease-{self.id:x}")

    def __repr__(self) -> str:
        return f"<Lease {self.id:x} ttl={self.ttl}{' lost' if self.lost else ''}>"

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    async def wait_lost(self, timeout: float | None = None) -> bool:
        """Wait until the lease is lost; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._lost.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def time_to_live(self, *, keys: bool = False) -> LeaseInfo:
        return await self._client.lease_time_to_live(self.id, keys=keys)

    async def keepalive_once(self) -> int:
        """Renew once now; returns the new TTL (0: the lease is gone)."""
        return await self._client.lease_keepalive_once(self.id)

    async def revoke(self) -> None:
        """Stop the keep-alive and revoke the lease (its keys are deleted). A lease already gone is fine."""
        await self.close()
        with contextlib.suppress(LeaseNotFound):
            await self._client.lease_revoke(self.id)
        self._lost.set()

    async def close(self) -> None:
        """Stop the keep-alive without revoking: the lease lives until its TTL runs out."""
        self._client._owned.discard(self)
        task, self._task = self._task, None
        await stop_task(task)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.revoke()

    async def _keepalive(self) -> None:
        schedule = _lease.KeepAliveSchedule.start(time.monotonic(), self.ttl)
        try:
            while True:
                await asyncio.sleep(max(0.0, schedule.next_at - time.monotonic()))
                sent = time.monotonic()
                try:
                    ttl = await self._client._run(
                        _lease.lease_keepalive_once(self.id, timeout=schedule.call_timeout(sent))
                    )
                except ClientError as e:
                    now = time.monotonic()
                    if schedule.lost(now):
                        self._mark_lost(e)
                        return
                    schedule.failed(now)
                    continue
                if ttl <= 0:
                    self._mark_lost(LeaseExpired(self.id))
                    return
                schedule.renewed(sent, ttl)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # not expected: record it where the owner looks, then surface it
            self._mark_lost(e)
            raise

    def _mark_lost(self, error: BaseException) -> None:
        self.error = error
        self._lost.set()
