"""Which requests a user may make, as etcd decides it; pure functions over an ``AuthState``.

Every check passes when auth is disabled. Otherwise, for key access (etcd's
``isOpPermitted``), in this order:
1. no user (``info`` None: no token, no certificate name) → "user name is empty";
2. ``info.revision`` older than the store's → "revision of auth store is old"
   (the request was authorised before a change to users, roles or grants: the
   applier refuses it, and a serializable read re-checks after reading);
3. an unknown user → "permission denied"; a user with the ``root`` role may
   do anything; otherwise the merged ranges decide ("permission denied").

Admin requests (auth management, member changes, Hash/HashKV/Defragment/
Snapshot) need the ``root`` role and, as in etcd, do not look at the revision;
an unknown user there is "user name not found".

Where etcd 3.4 is laxer than its own rules, etcdx is stricter (a request etcd
allows may be refused, never the reverse): a txn's ops are checked exactly as
if sent alone, so a nested txn's ops are checked (etcd 3.4 skips them: a write
anywhere through a nested txn), a put with ``prev_kv`` inside a txn needs read
too, and a put with a lease inside a txn needs write on the lease's keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from etcdx.auth import errors
from etcdx.auth.permissions import READ, WRITE
from etcdx.auth.state import ROOT_ROLE, AuthInfo, AuthState
from etcdx.pb import raft_internal_pb2, rpc_pb2

LeaseKeys = Callable[[int], Iterable[bytes]]
"""The keys attached to a lease id (none for an unknown lease or id 0)."""

ADMIN_FIELDS: frozenset[str] = frozenset({
    "auth_enable", "auth_disable", "auth_user_add", "auth_user_delete",
    "auth_user_change_password", "auth_user_grant_role", "auth_user_revoke_role",
    "auth_role_add", "auth_role_grant_permission", "auth_role_revoke_permission",
    "auth_role_delete", "auth_user_list", "auth_role_list",
})
"""InternalRaftRequest fields etcd's applier lets only root apply (``needAdminPermission``)."""


def info_from_header(header: raft_internal_pb2.RequestHeader) -> AuthInfo | None:
    """Who a proposed request runs as (the proposer copies it into the header)."""
    if not header.username and not header.auth_revision:
        return None
    return AuthInfo(header.username, header.auth_revision)


# -- key access -----------------------------------------------------------------------

def check_key_access(state: AuthState, info: AuthInfo | None, key: bytes, range_end: bytes, perm: int) -> None:
    """etcd's ``isOpPermitted``: raise unless ``info`` may ``perm`` (READ or WRITE) the range."""
    if not state.enabled:
        return
    if info is None or info.revision == 0:
        raise errors.USER_EMPTY
    if info.revision < state.revision:
        raise errors.AUTH_OLD_REVISION
    perms = state.permissions(info.username)
    if perms is None or not perms.allows(key, range_end, perm):
        raise errors.PERMISSION_DENIED


def check_range(state: AuthState, info: AuthInfo | None, req: rpc_pb2.RangeRequest) -> None:
    check_key_access(state, info, req.key, req.range_end, READ)


def check_put(state: AuthState, info: AuthInfo | None, req: rpc_pb2.PutRequest,
              lease_keys: LeaseKeys) -> None:
    """Write on the key; write on every key already on the put's lease (a user must be able
    to revoke a lease it attaches a key to); read when ``prev_kv``."""
    check_key_access(state, info, req.key, b"", WRITE)
    if req.lease and state.enabled:
        for key in lease_keys(req.lease):
            check_key_access(state, info, key, b"", WRITE)
    if req.prev_kv:
        check_key_access(state, info, req.key, b"", READ)


def check_delete_range(state: AuthState, info: AuthInfo | None, req: rpc_pb2.DeleteRangeRequest) -> None:
    check_key_access(state, info, req.key, req.range_end, WRITE)
    if req.prev_kv:
        check_key_access(state, info, req.key, req.range_end, READ)


def check_txn(state: AuthState, info: AuthInfo | None, req: rpc_pb2.TxnRequest,
              lease_keys: LeaseKeys) -> None:
    """Read on every compare; each op of both branches as if sent alone, nested txns too."""
    if not state.enabled:
        return
    for cmp in req.compare:
        check_key_access(state, info, cmp.key, cmp.range_end, READ)
    for op in (*req.success, *req.failure):
        kind = op.WhichOneof("request")
        if kind == "request_range":
            check_range(state, info, op.request_range)
        elif kind == "request_put":
            check_put(state, info, op.request_put, lease_keys)
        elif kind == "request_delete_range":
            check_delete_range(state, info, op.request_delete_range)
        elif kind == "request_txn":
            check_txn(state, info, op.request_txn, lease_keys)


def check_lease_revoke(state: AuthState, info: AuthInfo | None, keys: Iterable[bytes]) -> None:
    """Write on every key attached to the lease (``keys``); nothing for a lease without keys."""
    if not state.enabled:
        return
    for key in keys:
        check_key_access(state, info, key, b"", WRITE)


def check_watch_create(state: AuthState, info: AuthInfo | None, req: rpc_pb2.WatchCreateRequest) -> None:
    """Read on the watched range, once, when the watch is created.

    A refusal is not a stream error: etcd answers with a WatchResponse
    ``watch_id=-1, created=True, canceled=True`` and
    ``cancel_reason=errors.watch_cancel_reason(err)``, and the stream stays open.
    """
    check_key_access(state, info, req.key, req.range_end, READ)


def recheck_revision(state: AuthState, info: AuthInfo | None) -> None:
    """After a read served outside the log (serializable, or linearizable after ReadIndex):
    refuse it if the auth store changed while it was read (etcd's ``doSerialize``)."""
    if info is not None and info.revision != 0 and info.revision != state.revision:
        raise errors.AUTH_OLD_REVISION


def root_info(state: AuthState) -> AuthInfo:
    """Who the member's own lease revokes run as (etcd's ``WithRoot``)."""
    return AuthInfo("root", state.revision)


# -- admin ----------------------------------------------------------------------------

def check_admin(state: AuthState, info: AuthInfo | None) -> None:
    """etcd's ``IsAdminPermitted``: the user must hold the root role."""
    if not state.enabled:
        return
    if info is None or not info.username:
        raise errors.USER_EMPTY
    user = state.user(info.username)
    if user is None:
        raise errors.USER_NOT_FOUND
    if ROOT_ROLE not in user.roles:
        raise errors.PERMISSION_DENIED


def check_user_get(state: AuthState, info: AuthInfo | None, name: str) -> None:
    """Root, or the user asking about itself."""
    try:
        check_admin(state, info)
    except errors.AuthError:
        if info is None or name != info.username:
            raise


def check_role_get(state: AuthState, info: AuthInfo | None, role: str) -> None:
    """Root, or a user asking about a role it holds."""
    try:
        check_admin(state, info)
    except errors.AuthError:
        if info is None or not state.has_role(info.username, role):
            raise


# -- the applier's check, one call per entry -------------------------------------------

def check_apply(state: AuthState, request: raft_internal_pb2.InternalRaftRequest,
                lease_keys: LeaseKeys) -> None:
    """Everything etcd's auth applier checks before applying ``request``; raise to refuse it.

    ``state`` must be as of the apply transaction (``store.state(txn)``), so an
    entry sees the auth changes of earlier entries in its batch. Compaction,
    lease grant and checkpoint, alarms and member attributes are not checked
    (etcd 3.4 lets any user compact). A lease revoke the member proposes for an
    expired lease runs as root, as in etcd: propose it with ``root_info(state)``
    in the header (should the revision move before it applies, it is refused
    and proposed again on the lessor's next expiry report).

    Every request field set is checked (an entry sets one; should one set more,
    each is checked). One ``ListFields`` instead of a ``HasField`` per field:
    this runs for every entry and every write proposed while auth is on.
    """
    if not state.enabled:
        return
    header = None
    parts = []
    for field, value in request.ListFields():
        if field.name == "header":
            header = value
        else:
            parts.append((field.name, value))
    info = info_from_header(header) if header is not None else None
    for name, value in parts:
        check = _APPLY_CHECKS.get(name)
        if check is not None:
            check(state, info, value, lease_keys)


def _admin(state: AuthState, info: AuthInfo | None, req, lease_keys: LeaseKeys) -> None:
    check_admin(state, info)


_APPLY_CHECKS: dict[str, Callable[[AuthState, AuthInfo | None, object, LeaseKeys], None]] = {
    **{field: _admin for field in ADMIN_FIELDS},
    "range": lambda state, info, req, lease_keys: check_range(state, info, req),
    "put": check_put,
    "delete_range": lambda state, info, req, lease_keys: check_delete_range(state, info, req),
    "txn": check_txn,
    "lease_revoke": lambda state, info, req, lease_keys: check_lease_revoke(state, info, lease_keys(req.ID)),
    "auth_user_get": lambda state, info, req, lease_keys: check_user_get(state, info, req.name),
    "auth_role_get": lambda state, info, req, lease_keys: check_role_get(state, info, req.role),
}
