"""The lessor: leases, their keys and their expiry, as a pure object over the backend.

No clock, no threads, no I/O of its own: the host passes ``now`` (a monotonic
float in seconds) and, for every change that must be replicated, the write
transaction of the apply batch the change belongs to. Mutations happen only
by applying committed raft entries, so every member's lessor holds the same
leases; only the primary (the leader's) tracks expiry, and it does not revoke
anything itself: ``expired()`` tells the host which revokes to propose.

RAM holds one small object per lease; the keys attached to a lease live in the
backend (see ``attachment``). RAM changes are made as the methods are called
and are not rolled back with the transaction: a host that aborts an apply
transaction must build a new Lessor from the backend.
"""

from __future__ import annotations

from etcdx.lease import attachment
from etcdx.lease.errors import (
    LeaseExistsError,
    LeaseNotFoundError,
    LeaseNotPrimaryError,
    LeaseTTLTooLargeError,
)
from etcdx.lease.expiry import ExpiryQueue
from etcdx.lease.lease import FOREVER, MAX_LEASE_TTL, NO_LEASE, Lease, decode, encode, id_key

BUCKET = b"lease"

EXPIRED_RETRY_INTERVAL = 3.0
"""Seconds before an expired lease is reported again if its revoke has not been applied (etcd's value)."""

REVOKES_PER_SECOND = 1000
"""etcd's revoke rate limit; promote() spreads piled-up expiries to stay under it."""


class Lessor:
    def __init__(self, backend, *, min_ttl: int = 2) -> None:
        """Load the leases persisted in ``backend``; they do not expire until promote()."""
        self._backend = backend
        self._min_ttl = min_ttl
        self._leases: dict[int, Lease] = {}
        self._queue = ExpiryQueue()
        self._primary = False
        with backend.read() as txn:
            for _, value in txn.scan(BUCKET, b""):
                lease = decode(value)
                self._leases[lease.id] = lease

    # -- replicated changes: called by the applier inside its write transaction ----

    def grant(self, txn, lease_id: int, ttl: int, now: float) -> Lease:
        """Create a lease; a TTL below the minimum is raised to it (as etcd does)."""
        if lease_id == NO_LEASE:
            raise LeaseNotFoundError(lease_id)
        if ttl > MAX_LEASE_TTL:
            raise LeaseTTLTooLargeError(ttl)
        if lease_id in self._leases:
            raise LeaseExistsError(lease_id)
        lease = Lease(lease_id, max(ttl, self._min_ttl))
        if self._primary:
            self._start(lease, now)
        txn.put(BUCKET, id_key(lease_id), encode(lease))
        self._leases[lease_id] = lease
        return lease

    def revoke(self, txn, lease_id: int) -> list[bytes]:
        """Delete a lease; return its keys, sorted, for the applier to delete in the same txn."""
        if lease_id not in self._leases:
            raise LeaseNotFoundError(lease_id)
        rows = list(attachment.scan(txn, lease_id))
        for row, _ in rows:
            txn.delete(attachment.BUCKET, row)
        txn.delete(BUCKET, id_key(lease_id))
        del self._leases[lease_id]
        self._queue.cancel(lease_id)
        return sorted(key for _, key in rows)

    def attach(self, txn, lease_id: int, key: bytes) -> None:
        """Bind ``key`` to a lease (a Put with a lease); the applier detaches its old lease first."""
        if lease_id not in self._leases:
            raise LeaseNotFoundError(lease_id)
        row, value = attachment.row_key(lease_id, key)
        txn.put(attachment.BUCKET, row, value)

    def detach(self, txn, lease_id: int, key: bytes) -> bool:
        """Unbind ``key`` (a Put moving it elsewhere, or a delete); False if it was not bound.

        Tolerates a lease that is gone, so the applier need not order it against revokes.
        """
        row, _ = attachment.row_key(lease_id, key)
        return txn.delete(attachment.BUCKET, row)

    def checkpoint(self, txn, lease_id: int, remaining_ttl: int, now: float) -> None:
        """Persist a lease's remaining TTL so the next leader resumes from it; unknown ids are ignored."""
        lease = self._leases.get(lease_id)
        if lease is None:
            return
        lease.remaining_ttl = remaining_ttl
        txn.put(BUCKET, id_key(lease_id), encode(lease))
        if self._primary:
            self._start(lease, now)

    # -- leader-local: keep-alives, expiry, leadership ---------------------------------

    @property
    def is_primary(self) -> bool:
        return self._primary

    def renew(self, lease_id: int, now: float) -> int:
        """A keep-alive: restart the lease's full TTL and return it.

        An expired lease whose revoke is still on its way is not found, as in
        etcd. A checkpointed remaining TTL is dropped in RAM only; persisting
        that is the host's (a checkpoint of 0 through the log).
        """
        if not self._primary:
            raise LeaseNotPrimaryError()
        lease = self._leases.get(lease_id)
        if lease is None or lease.remaining(now) <= 0:
            raise LeaseNotFoundError(lease_id)
        lease.remaining_ttl = 0
        self._start(lease, now)
        return lease.ttl

    def expired(self, now: float, limit: int = 1000) -> list[int]:
        """Up to ``limit`` ids past expiry, earliest first, for the host to propose revokes.

        Each is reported once, then again every EXPIRED_RETRY_INTERVAL seconds
        until its revoke is applied (a proposal can be lost in a leader change).
        """
        if not self._primary:
            return []
        due = self._queue.pop_due(now, limit)
        for lease_id in due:
            self._queue.schedule(lease_id, now + EXPIRED_RETRY_INTERVAL)
        return due

    def promote(self, now: float, extend: float = 0.0) -> None:
        """Become primary: every lease gets its (checkpointed or full) TTL again from ``now + extend``.

        As in etcd, a new leader cannot know how long the old one had left, so
        it errs on the side of keeping leases; when many would expire at once,
        their expiries are spread so revokes stay under REVOKES_PER_SECOND.
        """
        self._primary = True
        self._queue.clear()
        for lease in self._leases.values():
            lease.refresh(now, extend)
        if len(self._leases) >= REVOKES_PER_SECOND:
            _spread(sorted(self._leases.values(), key=lambda lease: lease.expiry))
        for lease in self._leases.values():
            self._queue.schedule(lease.id, lease.expiry)

    def demote(self) -> None:
        """Stop tracking expiry: leases live on until a new primary counts them down."""
        self._primary = False
        self._queue.clear()
        for lease in self._leases.values():
            lease.expiry = FOREVER

    # -- reads ---------------------------------------------------------------------

    def lookup(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def leases(self) -> list[Lease]:
        """All leases, soonest expiry first."""
        return sorted(self._leases.values(), key=lambda lease: (lease.expiry, lease.id))

    def keys(self, lease_id: int) -> list[bytes]:
        """The keys attached to a lease, sorted (committed state)."""
        with self._backend.read() as txn:
            return sorted(key for _, key in attachment.scan(txn, lease_id))

    def time_to_live(self, lease_id: int, now: float, keys: bool = False) -> tuple[int, int, list[bytes]]:
        """(remaining TTL, granted TTL, keys) as LeaseTimeToLive answers; (-1, 0, []) when gone.

        The remaining TTL is whole seconds, truncated as etcd does; off the
        primary, where nothing counts down, it is the TTL a new leader would give.
        """
        lease = self._leases.get(lease_id)
        if lease is None:
            return -1, 0, []
        if lease.expiry == FOREVER:
            remaining = lease.remaining_ttl if lease.remaining_ttl > 0 else lease.ttl
        else:
            remaining = int(lease.remaining(now))
        return remaining, lease.ttl, self.keys(lease_id) if keys else []

    # -- internals -----------------------------------------------------------------

    def _start(self, lease: Lease, now: float) -> None:
        lease.refresh(now)
        self._queue.schedule(lease.id, lease.expiry)


def _spread(leases: list[Lease]) -> None:
    """Delay expiries so that no one-second window holds more than 3/4 of the revoke rate.

    ``leases`` are sorted by expiry. A window opens at the first expiry past the
    current one; within it the n-th lease may expire no sooner than
    ``n / target`` seconds after the window opened, and the window stretches to
    cover the delayed ones. Leases already far enough out are left alone.
    """
    target = REVOKES_PER_SECOND * 3 // 4
    window_start = window_end = -FOREVER
    count = 0
    for lease in leases:
        if lease.expiry > window_end:
            window_start, window_end, count = lease.expiry, lease.expiry + 1.0, 1
            continue
        count += 1
        if count <= target:
            continue
        earliest = window_start + count / target
        if lease.expiry < earliest:
            lease.expiry = earliest
        window_end = max(window_end, lease.expiry)
