"""The auth store: users, roles and the enabled flag in the backend, changed only by applying the log.

Layout (etcd's, so a snapshot can carry it): bucket ``auth`` holds
``authEnabled`` (``\\x01`` or ``\\x00``) and ``authRevision`` (8 bytes, big
endian); ``authUsers`` maps a user name to an ``authpb.User``, ``authRoles`` a
role name to an ``authpb.Role``. A store that never wrote a revision is at
revision 1, as a fresh etcd is.

The ``apply_*`` methods are the replicated changes: deterministic, given the
member's backend write transaction of the apply batch, and each bumps the auth
revision exactly when etcd does (every change except AuthEnable; a grant of a
role the user already has changes nothing). They do not check who asks:
``etcdx.auth.checks`` says whether the request's user may, before applying.

The same class serves the read side in any process, from a read-only backend
too (API workers): ``state()`` returns the cached ``AuthState`` while the
stored revision and enabled flag are unchanged, and rebuilds it otherwise.

Token side effects (enable, disable, dropping a user's simple tokens) go to
the token provider as the changes are applied; like the lessor's RAM they are
not rolled back with an aborted transaction: a host that aborts an apply
transaction calls ``reload()``.
"""

from __future__ import annotations

import threading

from etcdx.auth import errors, passwords
from etcdx.auth.state import ROOT_ROLE, ROOT_USER, AuthState
from etcdx.auth.tokens import TokenProvider
from etcdx.backend import buckets
from etcdx.pb import auth_pb2, raft_internal_pb2, rpc_pb2

ENABLED_KEY = b"authEnabled"
REVISION_KEY = b"authRevision"
_ENABLED = b"\x01"
_DISABLED = b"\x00"
INITIAL_REVISION = 1
MAX_NAME_BYTES = 511
"""Longest user or role name: LMDB's key limit (etcd's bbolt takes up to 32 KiB; see errors)."""


class AuthStore:
    """Auth state over ``backend``; ``tokens`` assigns and forgets tokens (None: a pure reader)."""

    def __init__(self, backend, tokens: TokenProvider | None = None) -> None:
        self._backend = backend
        self._tokens = tokens
        self._cached: tuple[tuple[bytes | None, bytes | None], AuthState] | None = None
        self._lock = threading.Lock()
        self.reload()

    @property
    def tokens(self) -> TokenProvider | None:
        return self._tokens

    # -- reading -----------------------------------------------------------------------

    def state(self, txn=None) -> AuthState:
        """The auth state as of ``txn`` (a read or the apply write transaction), else now.

        Cheap while nothing changed: two gets and a comparison.
        """
        if txn is None:
            with self._backend.read() as txn:
                return self._state(txn)
        return self._state(txn)

    def _state(self, txn) -> AuthState:
        key = (txn.get(buckets.AUTH, ENABLED_KEY), txn.get(buckets.AUTH, REVISION_KEY))
        cached = self._cached
        if cached is not None and cached[0] == key:
            return cached[1]
        users = {}
        for name, value in txn.scan(buckets.AUTH_USERS, b""):
            user = auth_pb2.User()
            user.ParseFromString(value)
            users[name.decode()] = user
        roles = {}
        for name, value in txn.scan(buckets.AUTH_ROLES, b""):
            role = auth_pb2.Role()
            role.ParseFromString(value)
            roles[name.decode()] = role
        revision = int.from_bytes(key[1], "big") if key[1] else INITIAL_REVISION
        state = AuthState(key[0] == _ENABLED, revision, users, roles)
        with self._lock:
            self._cached = (key, state)
        return state

    def reload(self) -> AuthState:
        """Forget the cache and bring the token provider in line with the stored flag.

        Call after an aborted apply transaction and after the backend was
        replaced (snapshot install, defragment).
        """
        with self._lock:
            self._cached = None
        state = self.state()
        if self._tokens is not None:
            if state.enabled:
                self._tokens.enable()
            else:
                self._tokens.disable()
        return state

    def check_password(self, name: str, password: str) -> int:
        """Authenticate's check before proposing: the auth revision it was made at.

        Slow (bcrypt): run it off the event loop. The proposer compares the
        returned revision with the revision after its Authenticate entry was
        applied and starts over when they differ (the password may have
        changed meanwhile), as etcd does.
        """
        state = self.state()
        if not state.enabled:
            raise errors.AUTH_NOT_ENABLED
        user = state.user(name)
        if user is None:
            raise errors.AUTH_FAILED
        if user.options.no_password:
            raise errors.NO_PASSWORD_USER
        if not passwords.check_password(user.password, password):
            raise errors.AUTH_FAILED
        return state.revision

    # -- applying ----------------------------------------------------------------------

    def apply(self, txn, request: raft_internal_pb2.InternalRaftRequest, index: int):
        """Apply the auth field set in ``request``; returns its response (no header).

        ``index`` is the entry's raft index (simple tokens end with it). Raises
        ``AuthError`` for etcd's refusals; ``ValueError`` when no auth field is set.
        """
        for field, method in _APPLY:
            if request.HasField(field):
                if field == "authenticate":
                    return self.apply_authenticate(txn, request.authenticate, index)
                return getattr(self, method)(txn, getattr(request, field))
        raise ValueError("not an auth request")

    def apply_auth_enable(self, txn, req=None) -> rpc_pb2.AuthEnableResponse:
        state = self._state(txn)
        if state.enabled:
            return rpc_pb2.AuthEnableResponse()
        root = state.user(ROOT_USER)
        if root is None:
            raise errors.ROOT_USER_NOT_EXIST
        if ROOT_ROLE not in root.roles:
            raise errors.ROOT_ROLE_NOT_EXIST
        _Change(self, txn, state).commit(enabled=True, bump=False)
        if self._tokens is not None:
            self._tokens.enable()
        return rpc_pb2.AuthEnableResponse()

    def apply_auth_disable(self, txn, req=None) -> rpc_pb2.AuthDisableResponse:
        state = self._state(txn)
        if state.enabled:
            _Change(self, txn, state).commit(enabled=False)
            if self._tokens is not None:
                self._tokens.disable()
        return rpc_pb2.AuthDisableResponse()

    def apply_auth_status(self, txn, req=None) -> rpc_pb2.AuthStatusResponse:
        return self._state(txn).status()

    def apply_authenticate(self, txn, req: raft_internal_pb2.InternalAuthenticateRequest,
                           index: int) -> rpc_pb2.AuthenticateResponse:
        """Assign a token on this member; the password was checked before proposing."""
        state = self._state(txn)
        if not state.enabled:
            raise errors.AUTH_NOT_ENABLED
        user = state.user(req.name)
        if user is None or user.options.no_password:
            raise errors.AUTH_FAILED
        if self._tokens is None:
            raise RuntimeError("Authenticate applied on an AuthStore without a token provider")
        token = self._tokens.assign(req.name, state.revision, prefix=req.simple_token, index=index)
        return rpc_pb2.AuthenticateResponse(token=token)

    def apply_user_add(self, txn, req: rpc_pb2.AuthUserAddRequest) -> rpc_pb2.AuthUserAddResponse:
        if not req.name:
            raise errors.USER_EMPTY
        if len(req.name.encode()) > MAX_NAME_BYTES:
            raise errors.USER_NAME_TOO_LONG
        state = self._state(txn)
        if state.user(req.name) is not None:
            raise errors.USER_ALREADY_EXIST
        user = auth_pb2.User(name=req.name.encode())
        user.options.CopyFrom(req.options)
        user.options.SetInParent()  # stored even when the request has none, as etcd does
        if not req.options.no_password:
            user.password = _stored_password(req.password, req.hashedPassword)
        change = _Change(self, txn, state)
        change.put_user(user)
        change.commit()
        return rpc_pb2.AuthUserAddResponse()

    def apply_user_delete(self, txn, req: rpc_pb2.AuthUserDeleteRequest) -> rpc_pb2.AuthUserDeleteResponse:
        state = self._state(txn)
        if state.enabled and req.name == ROOT_USER:
            raise errors.INVALID_AUTH_MGMT
        if state.user(req.name) is None:
            raise errors.USER_NOT_FOUND
        change = _Change(self, txn, state)
        change.delete_user(req.name)
        change.commit()
        if self._tokens is not None:
            self._tokens.invalidate_user(req.name)
        return rpc_pb2.AuthUserDeleteResponse()

    def apply_user_change_password(self, txn, req: rpc_pb2.AuthUserChangePasswordRequest
                                   ) -> rpc_pb2.AuthUserChangePasswordResponse:
        state = self._state(txn)
        old = state.user(req.name)
        if old is None:
            raise errors.USER_NOT_FOUND
        user = auth_pb2.User()
        user.CopyFrom(old)
        user.password = b"" if old.options.no_password else _stored_password(req.password, req.hashedPassword)
        change = _Change(self, txn, state)
        change.put_user(user)
        change.commit()
        if self._tokens is not None:
            self._tokens.invalidate_user(req.name)
        return rpc_pb2.AuthUserChangePasswordResponse()

    def apply_user_grant_role(self, txn, req: rpc_pb2.AuthUserGrantRoleRequest) -> rpc_pb2.AuthUserGrantRoleResponse:
        state = self._state(txn)
        old = state.user(req.user)
        if old is None:
            raise errors.USER_NOT_FOUND
        if req.role != ROOT_ROLE and state.role(req.role) is None:
            raise errors.ROLE_NOT_FOUND
        if req.role in old.roles:
            return rpc_pb2.AuthUserGrantRoleResponse()  # etcd ignores it: no revision bump
        user = auth_pb2.User()
        user.CopyFrom(old)
        roles = sorted([*old.roles, req.role], key=str.encode)
        del user.roles[:]
        user.roles.extend(roles)
        change = _Change(self, txn, state)
        change.put_user(user)
        change.commit()
        return rpc_pb2.AuthUserGrantRoleResponse()

    def apply_user_revoke_role(self, txn, req: rpc_pb2.AuthUserRevokeRoleRequest) -> rpc_pb2.AuthUserRevokeRoleResponse:
        state = self._state(txn)
        if state.enabled and req.name == ROOT_USER and req.role == ROOT_ROLE:
            raise errors.INVALID_AUTH_MGMT
        old = state.user(req.name)
        if old is None:
            raise errors.USER_NOT_FOUND
        if req.role not in old.roles:
            raise errors.ROLE_NOT_GRANTED
        user = auth_pb2.User()
        user.CopyFrom(old)
        del user.roles[:]
        user.roles.extend(role for role in old.roles if role != req.role)
        change = _Change(self, txn, state)
        change.put_user(user)
        change.commit()
        return rpc_pb2.AuthUserRevokeRoleResponse()

    def apply_user_get(self, txn, req: rpc_pb2.AuthUserGetRequest) -> rpc_pb2.AuthUserGetResponse:
        return self._state(txn).user_get(req.name)

    def apply_user_list(self, txn, req=None) -> rpc_pb2.AuthUserListResponse:
        return self._state(txn).user_list()

    def apply_role_add(self, txn, req: rpc_pb2.AuthRoleAddRequest) -> rpc_pb2.AuthRoleAddResponse:
        if not req.name:
            raise errors.ROLE_EMPTY
        if len(req.name.encode()) > MAX_NAME_BYTES:
            raise errors.ROLE_NAME_TOO_LONG
        state = self._state(txn)
        if state.role(req.name) is not None:
            raise errors.ROLE_ALREADY_EXIST
        change = _Change(self, txn, state)
        change.put_role(auth_pb2.Role(name=req.name.encode()))
        change.commit()
        return rpc_pb2.AuthRoleAddResponse()

    def apply_role_delete(self, txn, req: rpc_pb2.AuthRoleDeleteRequest) -> rpc_pb2.AuthRoleDeleteResponse:
        """Delete a role and take it from every user that has it."""
        state = self._state(txn)
        if state.enabled and req.role == ROOT_ROLE:
            raise errors.INVALID_AUTH_MGMT
        if state.role(req.role) is None:
            raise errors.ROLE_NOT_FOUND
        change = _Change(self, txn, state)
        change.delete_role(req.role)
        for old in state.users.values():
            if req.role not in old.roles:
                continue
            user = auth_pb2.User()
            user.CopyFrom(old)
            del user.roles[:]
            user.roles.extend(role for role in old.roles if role != req.role)
            change.put_user(user)
        change.commit()
        return rpc_pb2.AuthRoleDeleteResponse()

    def apply_role_get(self, txn, req: rpc_pb2.AuthRoleGetRequest) -> rpc_pb2.AuthRoleGetResponse:
        return self._state(txn).role_get(req.role)

    def apply_role_list(self, txn, req=None) -> rpc_pb2.AuthRoleListResponse:
        return self._state(txn).role_list()

    def apply_role_grant_permission(self, txn, req: rpc_pb2.AuthRoleGrantPermissionRequest
                                    ) -> rpc_pb2.AuthRoleGrantPermissionResponse:
        """Add a grant, or change the type of the grant with the same key and range end.

        As etcd: grants stay sorted by key (a new one goes after those with the
        same key), and only the first grant at or after the key is looked at for
        an update. Every grant bumps the revision, a repeated one too. etcd 3.4
        crashes on a request without ``perm``; etcdx answers etcd's error for it.
        """
        if not req.HasField("perm"):
            raise errors.PERMISSION_NOT_GIVEN
        state = self._state(txn)
        old = state.role(req.name)
        if old is None:
            raise errors.ROLE_NOT_FOUND
        role = auth_pb2.Role()
        role.CopyFrom(old)
        perms = list(role.keyPermission)
        i = next((i for i, p in enumerate(perms) if p.key >= req.perm.key), len(perms))
        if i < len(perms) and perms[i].key == req.perm.key and perms[i].range_end == req.perm.range_end:
            role.keyPermission[i].permType = req.perm.permType
        else:
            new = auth_pb2.Permission(permType=req.perm.permType, key=req.perm.key,
                                      range_end=req.perm.range_end)
            perms = [auth_pb2.Permission(permType=p.permType, key=p.key, range_end=p.range_end)
                     for p in perms]
            perms.insert(_insert_after_equal_keys(perms, new.key), new)
            del role.keyPermission[:]
            role.keyPermission.extend(perms)
        change = _Change(self, txn, state)
        change.put_role(role)
        change.commit()
        return rpc_pb2.AuthRoleGrantPermissionResponse()

    def apply_role_revoke_permission(self, txn, req: rpc_pb2.AuthRoleRevokePermissionRequest
                                     ) -> rpc_pb2.AuthRoleRevokePermissionResponse:
        """Remove every grant with exactly this key and range end."""
        state = self._state(txn)
        old = state.role(req.role)
        if old is None:
            raise errors.ROLE_NOT_FOUND
        kept = [p for p in old.keyPermission if (p.key, p.range_end) != (req.key, req.range_end)]
        if len(kept) == len(old.keyPermission):
            raise errors.PERMISSION_NOT_GRANTED
        role = auth_pb2.Role(name=old.name)
        role.keyPermission.extend(kept)
        change = _Change(self, txn, state)
        change.put_role(role)
        change.commit()
        return rpc_pb2.AuthRoleRevokePermissionResponse()

    # -- internals -----------------------------------------------------------------

    def _remember(self, txn, state: AuthState) -> None:
        """Cache the state a change in ``txn`` produced, under the key ``txn`` now holds."""
        key = (txn.get(buckets.AUTH, ENABLED_KEY), txn.get(buckets.AUTH, REVISION_KEY))
        with self._lock:
            self._cached = (key, state)


class _Change:
    """One applied auth change: its writes to the transaction and the state it leads to.

    The next state is derived from the previous one (dicts copied shallowly,
    records shared), not re-read from the backend, so applying many auth
    changes in a row costs each one a dict copy rather than a full reload.
    """

    def __init__(self, store: AuthStore, txn, state: AuthState) -> None:
        self._store = store
        self._txn = txn
        self._state = state
        self._users: dict[str, auth_pb2.User] | None = None
        self._roles: dict[str, auth_pb2.Role] | None = None

    def put_user(self, user: auth_pb2.User) -> None:
        if self._users is None:
            self._users = dict(self._state.users)
        self._users[user.name.decode()] = user
        self._txn.put(buckets.AUTH_USERS, user.name, user.SerializeToString(deterministic=True))

    def delete_user(self, name: str) -> None:
        if self._users is None:
            self._users = dict(self._state.users)
        del self._users[name]
        self._txn.delete(buckets.AUTH_USERS, name.encode())

    def put_role(self, role: auth_pb2.Role) -> None:
        if self._roles is None:
            self._roles = dict(self._state.roles)
        self._roles[role.name.decode()] = role
        self._txn.put(buckets.AUTH_ROLES, role.name, role.SerializeToString(deterministic=True))

    def delete_role(self, name: str) -> None:
        if self._roles is None:
            self._roles = dict(self._state.roles)
        del self._roles[name]
        self._txn.delete(buckets.AUTH_ROLES, name.encode())

    def commit(self, *, enabled: bool | None = None, bump: bool = True) -> None:
        """Write the flag and the next auth revision; cache the resulting state."""
        if enabled is not None:
            self._txn.put(buckets.AUTH, ENABLED_KEY, _ENABLED if enabled else _DISABLED)
        revision = self._state.revision + 1 if bump else self._state.revision
        if bump:
            self._txn.put(buckets.AUTH, REVISION_KEY, revision.to_bytes(8, "big"))
        self._store._remember(self._txn, self._state.evolve(
            enabled=enabled, revision=revision, users=self._users, roles=self._roles))


def _stored_password(password: str, hashed_password: str) -> bytes:
    """The hash to store: the proposer's (base64) or, for an entry without one, made here.

    Entries always carry the hash when an etcdx server proposed them; hashing
    at apply is etcd's path for entries of pre-3.5 proposers (each member then
    stores its own salt, so it is kept only for those).
    """
    if password and not hashed_password:
        return passwords.hash_password(password)
    hashed = passwords.decode_from_request(hashed_password)
    if hashed is None:
        raise errors.NO_PASSWORD_USER
    return hashed


def _insert_after_equal_keys(perms: list[auth_pb2.Permission], key: bytes) -> int:
    i = 0
    while i < len(perms) and perms[i].key <= key:
        i += 1
    return i


_APPLY: tuple[tuple[str, str], ...] = (
    ("auth_enable", "apply_auth_enable"),
    ("auth_disable", "apply_auth_disable"),
    ("auth_status", "apply_auth_status"),
    ("authenticate", "apply_authenticate"),
    ("auth_user_add", "apply_user_add"),
    ("auth_user_delete", "apply_user_delete"),
    ("auth_user_get", "apply_user_get"),
    ("auth_user_change_password", "apply_user_change_password"),
    ("auth_user_grant_role", "apply_user_grant_role"),
    ("auth_user_revoke_role", "apply_user_revoke_role"),
    ("auth_user_list", "apply_user_list"),
    ("auth_role_list", "apply_role_list"),
    ("auth_role_add", "apply_role_add"),
    ("auth_role_delete", "apply_role_delete"),
    ("auth_role_get", "apply_role_get"),
    ("auth_role_grant_permission", "apply_role_grant_permission"),
    ("auth_role_revoke_permission", "apply_role_revoke_permission"),
)
AUTH_FIELDS: frozenset[str] = frozenset(field for field, _ in _APPLY)
"""The InternalRaftRequest fields ``AuthStore.apply`` handles."""
