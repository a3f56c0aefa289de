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


NO_LEADER_TIMEOUTS = 3  # election timeouts without a leader before leader-requiring streams end


class LeaderMonitor:
    """Ends the streams that require a leader once this member has had none for a while.

    A client that asks for it (gRPC metadata ``hasleader: true``) wants its watch
    to fail over rather than hang on a member cut off from its cluster. As in
    etcd, such a stream is refused while there is no leader, and ended with "no
    leader" once the member has been leaderless for ``NO_LEADER_TIMEOUTS``
    election timeouts in a row (reconnecting is costlier than refusing, so this
    is slower than refusing a new stream).
    """

    def __init__(self, lead: Callable[[], int], election_timeout: float) -> None:
        self._lead = lead
        self._election_timeout = election_timeout
        self._streams: set[Callable[[errors.EtcdError], None]] = set()

    def register(self, end: Callable[[errors.EtcdError], None]) -> Callable[[], None]:
        """Watch over one stream; ``end(err)`` ends it. Returns the function that stops watching."""
        if not self._lead():
            raise errors.NO_LEADER
        self._streams.add(end)
        return lambda: self._streams.discard(end)

    async def run(self) -> None:
        leaderless = 0
        while True:
            await asyncio.sleep(self._election_timeout)
            leaderless = 0 if self._lead() else leaderless + 1
            if leaderless >= NO_LEADER_TIMEOUTS and self._streams:
                streams, self._streams = self._streams, set()
                for end in streams:
                    end(errors.NO_LEADER)
