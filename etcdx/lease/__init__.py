"""Leases: TTL-bound sets of keys, kept alive by clients, expired by the leader, revoked through the log."""

from etcdx.lease.errors import (
    LeaseError,
    LeaseExistsError,
    LeaseNotFoundError,
    LeaseNotPrimaryError,
    LeaseTTLTooLargeError,
)
from etcdx.lease.lease import MAX_LEASE_TTL, NO_LEASE, Lease
from etcdx.lease.lessor import Lessor

__all__ = [
    "Lessor",
    "Lease",
    "NO_LEASE",
    "MAX_LEASE_TTL",
    "LeaseError",
    "LeaseExistsError",
    "LeaseNotFoundError",
    "LeaseNotPrimaryError",
    "LeaseTTLTooLargeError",
]
