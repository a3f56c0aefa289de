"""What the member's backend holds, as the objects the rest of the server uses.

One backend, several views of it: the MVCC key space, the lessor (leases and
their expiry, partly in memory), the alarms, the members and auth (users,
roles, the token provider's enabled flag). They are built
together from the backend and rebuilt together when the backend is replaced by
a snapshot from the leader, so every part of the server holds this holder and
reads the current view through it rather than keeping a view that could go
stale.
"""

from __future__ import annotations

from etcdx.auth import AuthStore, TokenProvider
from etcdx.backend import Backend
from etcdx.lease import Lessor
from etcdx.mvcc import KVStore
from etcdx.server.alarms import AlarmStore
from etcdx.server.membership import Member, load_members, load_removed


class Stores:
    """The backend and its views; ``reload`` after the backend's file was replaced."""

    def __init__(self, backend: Backend, *, min_lease_ttl: int, tokens: TokenProvider | None = None) -> None:
        self.backend = backend
        self._min_lease_ttl = min_lease_ttl
        self.kv = KVStore(backend)
        self.lessor = Lessor(backend, min_ttl=min_lease_ttl)
        self.alarms = AlarmStore(backend)
        self.members: dict[int, Member] = load_members(backend)
        self.removed_ids: set[int] = load_removed(backend)
        self.auth = AuthStore(backend, tokens)

    def reload(self) -> None:
        """Rebuild every view from the backend (a new lessor starts as a non-primary).

        Tokens already assigned stay valid (the provider is only enabled or
        disabled by the stored flag); a snapshot install drops them first.
        """
        self.kv = KVStore(self.backend)
        self.lessor = Lessor(self.backend, min_ttl=self._min_lease_ttl)
        self.alarms = AlarmStore(self.backend)
        self.members = load_members(self.backend)
        self.removed_ids = load_removed(self.backend)
        self.auth.reload()

    def is_learner(self, member_id: int) -> bool:
        me = self.members.get(member_id)
        return me is not None and me.is_learner
