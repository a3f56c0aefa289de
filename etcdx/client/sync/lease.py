"""`Lease`: a granted lease and its background keep-alive, for the blocking client."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import TYPE_CHECKING

from .. import lease as _lease
from ..errors import ClientError, LeaseExpired, LeaseNotFound
from ..types import LeaseGrant, LeaseInfo

if TYPE_CHECKING:
    from .client import Client


class Lease:
    """A lease with ``id`` and granted ``ttl``; kept alive by a thread until closed or revoked.

    The keep-alive renews every TTL/3 through any member and retries on
    failure; if no renewal gets through before the TTL runs out, or the
    server says the lease is gone, the lease is *lost*: ``lost`` turns True,
    ``error`` says why, and `wait_lost` returns.
    """

    def __init__(self, client: Client, grant: LeaseGrant, *, keepalive: bool = True) -> None:
        self._client = client
        self.id = grant.id
        self.ttl = grant.ttl
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._thread: threading.Thread | None = None
        if keepalive:
            self._thread = threading.Thread(target=self._keepalive, name=f"etcdx-lease-{self.id:x}", daemon=True)
            client._owned.add(self)
            self._thread.start()

    def __repr__(self) -> str:
        return f"<Lease {self.id:x} ttl={self.ttl}{' lost' if self.lost else ''}>"

    @property
    def lost(self) -> bool:
        return self._lost.is_set()

    def wait_lost(self, timeout: float | None = None) -> bool:
        """Wait until the lease is lost; False if ``timeout`` passed first."""
        return self._lost.wait(timeout)

    def time_to_live(self, *, keys: bool = False) -> LeaseInfo:
        return self._client.lease_time_to_live(self.id, keys=keys)

    def keepalive_once(self) -> int:
        """Renew once now; returns the new TTL (0: the lease is gone)."""
        return self._client.lease_keepalive_once(self.id)

    def revoke(self) -> None:
        """Stop the keep-alive and revoke the lease (its keys are deleted). A lease already gone is fine."""
        self.close()
        with contextlib.suppress(LeaseNotFound):
            self._client.lease_revoke(self.id)
        self._lost.set()

    def close(self) -> None:
        """Stop the keep-alive without revoking: the lease lives until its TTL runs out."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.revoke()

    def _keepalive(self) -> None:
        schedule = _lease.KeepAliveSchedule.start(time.monotonic(), self.ttl)
        try:
            while not self._stop.wait(max(0.0, schedule.next_at - time.monotonic())):
                sent = time.monotonic()
                try:
                    ttl = self._client._run(_lease.lease_keepalive_once(self.id, timeout=schedule.call_timeout(sent)))
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
        except BaseException as e:  # not expected: record it where the owner looks, then surface it
            self._mark_lost(e)
            raise

    def _mark_lost(self, error: BaseException) -> None:
        self.error = error
        self._lost.set()
