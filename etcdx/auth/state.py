"""One consistent view of the auth store, and the reads answered from it.

An ``AuthState`` is built from one backend transaction (etcd's bucket layout,
see ``etcdx.auth.store``) and never changes; the store caches it until the
stored auth revision or enabled flag changes. Users' merged permissions are
computed on first use and kept with the state they belong to, so a changed
role can never leave a stale merge behind.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass

from etcdx.auth import errors
from etcdx.auth.permissions import UserPermissions
from etcdx.pb import auth_pb2, rpc_pb2

ROOT_USER = "root"
ROOT_ROLE = "root"


@dataclass(frozen=True, slots=True)
class AuthInfo:
    """Who a request runs as: a user and the auth revision it was authorised under.

    A simple token yields the store's revision at lookup; a JWT the revision it
    was issued at; a client certificate's common name the store's revision.
    """

    username: str
    revision: int


class AuthState:
    """Enabled flag, auth revision, users and roles as of one transaction."""

    def __init__(self, enabled: bool, revision: int, users: dict[str, auth_pb2.User],
                 roles: dict[str, auth_pb2.Role]) -> None:
        self.enabled = enabled
        self.revision = revision
        self._users = users
        self._roles = roles
        self._perms: dict[str, UserPermissions] = {}
        self._lock = threading.Lock()

    def evolve(self, *, enabled: bool | None = None, revision: int | None = None,
               users: dict[str, auth_pb2.User] | None = None,
               roles: dict[str, auth_pb2.Role] | None = None) -> AuthState:
        """The state after a change; unchanged parts are shared (never mutated)."""
        return AuthState(self.enabled if enabled is None else enabled,
                         self.revision if revision is None else revision,
                         self._users if users is None else users,
                         self._roles if roles is None else roles)

    # -- lookups -------------------------------------------------------------------

    @property
    def users(self) -> Mapping[str, auth_pb2.User]:
        return self._users

    @property
    def roles(self) -> Mapping[str, auth_pb2.Role]:
        return self._roles

    def user(self, name: str) -> auth_pb2.User | None:
        return self._users.get(name)

    def role(self, name: str) -> auth_pb2.Role | None:
        return self._roles.get(name)

    def has_role(self, username: str, role: str) -> bool:
        user = self._users.get(username)
        return user is not None and role in user.roles

    def permissions(self, username: str) -> UserPermissions | None:
        """The user's merged permissions; None when there is no such user."""
        perms = self._perms.get(username)
        if perms is not None:
            return perms
        user = self._users.get(username)
        if user is None:
            return None
        grants = [perm for name in user.roles if (role := self._roles.get(name)) is not None
                  for perm in role.keyPermission]
        perms = UserPermissions.merge(user.roles, grants)
        with self._lock:
            self._perms.setdefault(username, perms)
        return perms

    # -- the read RPCs (responses without header; the server fills it) -----------

    def status(self) -> rpc_pb2.AuthStatusResponse:
        return rpc_pb2.AuthStatusResponse(enabled=self.enabled, authRevision=self.revision)

    def user_get(self, name: str) -> rpc_pb2.AuthUserGetResponse:
        user = self._users.get(name)
        if user is None:
            raise errors.USER_NOT_FOUND
        return rpc_pb2.AuthUserGetResponse(roles=list(user.roles))

    def user_list(self) -> rpc_pb2.AuthUserListResponse:
        """Names in byte order, as etcd lists its bucket."""
        return rpc_pb2.AuthUserListResponse(users=sorted(self._users, key=str.encode))

    def role_get(self, name: str) -> rpc_pb2.AuthRoleGetResponse:
        """The role's grants as stored (sorted by key). etcd 3.4 shows none for ``root``."""
        role = self._roles.get(name)
        if role is None:
            raise errors.ROLE_NOT_FOUND
        return rpc_pb2.AuthRoleGetResponse(perm=list(role.keyPermission))

    def role_list(self) -> rpc_pb2.AuthRoleListResponse:
        return rpc_pb2.AuthRoleListResponse(roles=sorted(self._roles, key=str.encode))
