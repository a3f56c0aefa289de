"""What /health, /livez and /readyz ask of the member, in the core and in an API worker.

The core reads its raft node and alarm store directly. A worker asks the core
(``ipc.STATE``) and keeps the answer for at most ``STATE_CACHE_SECONDS``, so a
probe storm costs the core one call a second; its reads go through its own
backend and the core's linearizable barrier, as its clients' reads do.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any, Protocol

from etcdx.api import ipc
from etcdx.api.ipc import member_state

STATE_CACHE_SECONDS = 1.0


@dataclass(frozen=True)
class HealthState:
    leader: int  # 0: no leader known
    alarms: tuple[str, ...]  # active alarm names: "NOSPACE", "CORRUPT"


class MemberState(Protocol):
    async def health_state(self) -> HealthState: ...

    def auth_enabled(self) -> bool: ...

    async def read_check(self, serializable: bool) -> None:
        """Raise etcd's error if a (serializable or linearizable) read would fail now."""


class CoreState:
    """The member's state as the core process sees it."""

    def __init__(self, server: Any) -> None:
        self.server = server

    async def health_state(self) -> HealthState:
        d = member_state(self.server)
        return HealthState(d["leader"], tuple(d["alarms"]))

    def auth_enabled(self) -> bool:
        return self.server.stores.auth.state().enabled

    async def read_check(self, serializable: bool) -> None:
        if not serializable:
            await self.server.linearizable_barrier()
        with self.server.stores.backend.read():
            pass


class WorkerState:
    """The member's state from an API worker: the core's word, cached briefly."""

    def __init__(self, remote: Any) -> None:
        self.remote = remote
        self._cached: tuple[float, HealthState] | None = None
        self._inflight: asyncio.Future | None = None

    async def health_state(self) -> HealthState:
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._cached is not None and now - self._cached[0] < STATE_CACHE_SECONDS:
            return self._cached[1]
        if self._inflight is None:
            self._inflight = asyncio.ensure_future(self._fetch())
            self._inflight.add_done_callback(self._fetched)
        return await asyncio.shield(self._inflight)

    async def _fetch(self) -> HealthState:
        d = json.loads(await self.remote.conn.call(ipc.STATE, b""))
        return HealthState(int(d["leader"]), tuple(d["alarms"]))

    def _fetched(self, fut: asyncio.Future) -> None:
        self._inflight = None
        if not fut.cancelled() and fut.exception() is None:
            self._cached = (asyncio.get_running_loop().time(), fut.result())

    def auth_enabled(self) -> bool:
        return self.remote.auth.state().enabled

    async def read_check(self, serializable: bool) -> None:
        if not serializable:
            await self.remote.linearizable_barrier()
        with self.remote.backend.read():
            pass
