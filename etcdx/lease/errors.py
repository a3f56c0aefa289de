"""Errors of the lessor; the API layer maps them to etcd's gRPC errors.

``str()`` of each is the text of etcd's ``lease`` package; the client-facing
text is ``rpctypes``' ("etcdserver: requested lease not found", ...).
"""

from __future__ import annotations


class LeaseError(Exception):
    pass


class LeaseNotFoundError(LeaseError):
    """No such lease, or it has expired and only its revocation is pending (gRPC NotFound)."""

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        super().__init__("lease not found")


class LeaseExistsError(LeaseError):
    """Grant of an id already in use (gRPC FailedPrecondition)."""

    def __init__(self, lease_id: int) -> None:
        self.lease_id = lease_id
        super().__init__("lease already exists")


class LeaseTTLTooLargeError(LeaseError):
    """Grant with a TTL above MAX_LEASE_TTL (gRPC OutOfRange)."""

    def __init__(self, ttl: int) -> None:
        self.ttl = ttl
        super().__init__("too large lease TTL")


class LeaseNotPrimaryError(LeaseError):
    """Keep-alive on a member that is not the leader: only the primary tracks expiry."""

    def __init__(self) -> None:
        super().__init__("not a primary lessor")
