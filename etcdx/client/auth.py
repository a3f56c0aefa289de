"""Auth programs: turning auth on and off, users, roles and permissions, and Authenticate."""

from __future__ import annotations

from etcdx.pb import auth_pb2, rpc_pb2

from .ops import Call, Program
from .txn import range_end_of
from .types import AuthStatus, Header, KeyLike, Permission, RolePermission, to_bytes


def authenticate(name: str, password: str, *, timeout: float | None = None) -> Program[str]:
    """A token for ``name`` (sent as the ``token`` metadata of later calls)."""
    request = rpc_pb2.AuthenticateRequest(name=name, password=password)
    response = yield Call("Auth", "Authenticate", request, idempotent=True, timeout=timeout, authenticated=False)
    return response.token


def _admin(method: str, request: object, idempotent: bool, timeout: float | None) -> Program[Header]:
    response = yield Call("Auth", method, request, idempotent=idempotent, timeout=timeout)  # type: ignore[arg-type]
    return Header.from_pb(response.header)


def auth_enable(*, timeout: float | None = None) -> Program[Header]:
    """Turn auth on (needs the ``root`` user with the ``root`` role)."""
    return (yield from _admin("AuthEnable", rpc_pb2.AuthEnableRequest(), True, timeout))


def auth_disable(*, timeout: float | None = None) -> Program[Header]:
    return (yield from _admin("AuthDisable", rpc_pb2.AuthDisableRequest(), True, timeout))


def auth_status(*, timeout: float | None = None) -> Program[AuthStatus]:
    response = yield Call("Auth", "AuthStatus", rpc_pb2.AuthStatusRequest(), idempotent=True, timeout=timeout)
    return AuthStatus(response.enabled, response.authRevision)


def user_add(name: str, password: str = "", *, no_password: bool = False, timeout: float | None = None) -> Program[Header]:
    request = rpc_pb2.AuthUserAddRequest(
        name=name, password=password, options=auth_pb2.UserAddOptions(no_password=no_password)
    )
    return (yield from _admin("UserAdd", request, False, timeout))


def user_get(name: str, *, timeout: float | None = None) -> Program[tuple[str, ...]]:
    """The user's roles."""
    response = yield Call("Auth", "UserGet", rpc_pb2.AuthUserGetRequest(name=name), idempotent=True, timeout=timeout)
    return tuple(response.roles)


def user_list(*, timeout: float | None = None) -> Program[tuple[str, ...]]:
    response = yield Call("Auth", "UserList", rpc_pb2.AuthUserListRequest(), idempotent=True, timeout=timeout)
    return tuple(response.users)


def user_delete(name: str, *, timeout: float | None = None) -> Program[Header]:
    return (yield from _admin("UserDelete", rpc_pb2.AuthUserDeleteRequest(name=name), False, timeout))


def user_change_password(name: str, password: str, *, timeout: float | None = None) -> Program[Header]:
    request = rpc_pb2.AuthUserChangePasswordRequest(name=name, password=password)
    return (yield from _admin("UserChangePassword", request, True, timeout))


def user_grant_role(user: str, role: str, *, timeout: float | None = None) -> Program[Header]:
    return (yield from _admin("UserGrantRole", rpc_pb2.AuthUserGrantRoleRequest(user=user, role=role), False, timeout))


def user_revoke_role(user: str, role: str, *, timeout: float | None = None) -> Program[Header]:
    return (yield from _admin("UserRevokeRole", rpc_pb2.AuthUserRevokeRoleRequest(name=user, role=role), False, timeout))


def role_add(name: str, *, timeout: float | None = None) -> Program[Header]:
    return (yield from _admin("RoleAdd", rpc_pb2.AuthRoleAddRequest(name=name), False, timeout))


def role_get(name: str, *, timeout: float | None = None) -> Program[tuple[RolePermission, ...]]:
    """The role's permissions."""
    response = yield Call("Auth", "RoleGet", rpc_pb2.AuthRoleGetRequest(role=name), idempotent=True, timeout=timeout)
    return tuple(RolePermission.from_pb(p) for p in response.perm)


def role_list(*, timeout: float | None = None) -> Program[tuple[str, ...]]:
    response = yield Call("Auth", "RoleList", rpc_pb2.AuthRoleListRequest(), idempotent=True, timeout=timeout)
    return tuple(response.roles)


def role_delete(name: str, *, timeout: float | None = None) -> Program[Header]:
    return (yield from _admin("RoleDelete", rpc_pb2.AuthRoleDeleteRequest(role=name), False, timeout))


def role_grant_permission(
    name: str,
    permission: Permission,
    key: KeyLike,
    range_end: KeyLike | None = None,
    *,
    prefix: bool = False,
    timeout: float | None = None,
) -> Program[Header]:
    """Allow the role ``permission`` (READ, WRITE, READWRITE) on a key, a range or a prefix."""
    perm = auth_pb2.Permission(
        permType=Permission(permission), key=to_bytes(key), range_end=range_end_of(key, range_end, prefix)
    )
    request = rpc_pb2.AuthRoleGrantPermissionRequest(name=name, perm=perm)
    return (yield from _admin("RoleGrantPermission", request, True, timeout))


def role_revoke_permission(
    name: str, key: KeyLike, range_end: KeyLike | None = None, *, prefix: bool = False, timeout: float | None = None
) -> Program[Header]:
    request = rpc_pb2.AuthRoleRevokePermissionRequest(
        role=name, key=to_bytes(key), range_end=range_end_of(key, range_end, prefix)
    )
    return (yield from _admin("RoleRevokePermission", request, False, timeout))
