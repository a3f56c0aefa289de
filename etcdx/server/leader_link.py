"""Reaching the leader from any member: wait until one is known, call it over the peer transport.

Some requests only the leader can answer (lease keep-alive and time-to-live:
only the leader counts TTLs down; learner promotion: only it knows how far the
learner got). Any member accepts them and forwards them here.
"""

from __future__ import annotations

import asyncio
from typing import Callable

from etcdx.server import errors
from etcdx.transport import RemoteError, Transport, TransportError


class LeaderLink:
    def __init__(self, lead: Callable[[], int], transport: Callable[[], Transport | None], *,
                 election_timeout: float, heartbeat_interval: float, request_timeout: float) -> None:
        self._lead = lead
        self._transport = transport
        self._election_timeout = election_timeout
        self._heartbeat_interval = heartbeat_interval
        self._request_timeout = request_timeout

    async def wait_leader(self) -> int:
        """The current leader's id, waiting up to an election or two for one."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 2 * self._election_timeout + 1.0
        while not self._lead():
            if loop.time() >= deadline:
                raise errors.NO_LEADER
            await asyncio.sleep(self._heartbeat_interval)
        return self._lead()

    async def call(self, peer: int, method: str, payload: bytes) -> bytes:
        """A request to ``peer``; its EtcdError comes back as one, a broken link as a timeout."""
        transport = self._transport()
        if transport is None:
            raise errors.STOPPED
        try:
            return await transport.call(peer, method, payload, timeout=self._request_timeout)
        except RemoteError as err:
            code, _, message = str(err).partition(" ")
            raise errors.EtcdError(code, message) from None
        except TransportError:
            raise errors.TIMEOUT_DUE_TO_LEADER_FAIL from None
