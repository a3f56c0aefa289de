"""Lease programs, and the keep-alive schedule both faces' background keep-alives follow."""

from __future__ import annotations

from dataclasses import dataclass

from etcdx.pb import rpc_pb2

from .ops import Call, Program
from .txn import lease_id as _lease_id
from .types import Header, LeaseGrant, LeaseInfo

# The lease's keep-alive is sent every TTL/3 (as etcd's Go client does) and,
# after a failure, retried this often until the lease would have expired.
KEEPALIVE_RETRY_INTERVAL = 0.5


def lease_grant(ttl: int, *, lease_id: int = 0, timeout: float | None = None) -> Program[LeaseGrant]:
    """A new lease of ``ttl`` seconds (``lease_id`` 0: the server picks the id)."""
    request = rpc_pb2.LeaseGrantRequest(TTL=ttl, ID=lease_id)
    response = yield Call("Lease", "LeaseGrant", request, idempotent=False, timeout=timeout)
    return LeaseGrant(response.ID, response.TTL, Header.from_pb(response.header))


def lease_revoke(lease: object, *, timeout: float | None = None) -> Program[Header]:
    """Revoke the lease and delete every key attached to it."""
    request = rpc_pb2.LeaseRevokeRequest(ID=_lease_id(lease))
    response = yield Call("Lease", "LeaseRevoke", request, idempotent=False, timeout=timeout)
    return Header.from_pb(response.header)


def lease_time_to_live(lease: object, *, keys: bool = False, timeout: float | None = None) -> Program[LeaseInfo]:
    """The lease's remaining TTL (-1 once it is gone) and, with ``keys``, its keys."""
    request = rpc_pb2.LeaseTimeToLiveRequest(ID=_lease_id(lease), keys=keys)
    response = yield Call("Lease", "LeaseTimeToLive", request, idempotent=True, timeout=timeout)
    return LeaseInfo.from_pb(response)


def lease_leases(*, timeout: float | None = None) -> Program[tuple[int, ...]]:
    """The ids of every live lease."""
    response = yield Call("Lease", "LeaseLeases", rpc_pb2.LeaseLeasesRequest(), idempotent=True, timeout=timeout)
    return tuple(status.ID for status in response.leases)


def lease_keepalive_once(lease: object, *, timeout: float | None = None) -> Program[int]:
    """Renew the lease once; returns its new TTL, 0 when it no longer exists."""
    request = rpc_pb2.LeaseKeepAliveRequest(ID=_lease_id(lease))
    response = yield Call("Lease", "LeaseKeepAlive", request, idempotent=True, timeout=timeout, stream=True)
    return max(response.TTL, 0)


@dataclass
class KeepAliveSchedule:
    """When a background keep-alive sends next, and when it must give the lease up.

    Pure (times are passed in). ``deadline`` is when the lease expires if no
    further keep-alive reaches the leader: the last renewal's time plus its TTL.
    """

    ttl: float
    next_at: float
    deadline: float

    @classmethod
    def start(cls, now: float, ttl: float) -> KeepAliveSchedule:
        return cls(ttl, now + ttl / 3, now + ttl)

    def renewed(self, now: float, ttl: float) -> None:
        self.ttl = ttl
        self.next_at = now + ttl / 3
        self.deadline = now + ttl

    def failed(self, now: float) -> None:
        self.next_at = min(now + KEEPALIVE_RETRY_INTERVAL, self.deadline)

    def lost(self, now: float) -> bool:
        """The lease has certainly expired at the server unless renewed by someone else."""
        return now >= self.deadline

    def call_timeout(self, now: float) -> float:
        """A keep-alive attempt must give up in time to retry before the deadline."""
        return max(0.1, min(self.ttl / 3, self.deadline - now))
