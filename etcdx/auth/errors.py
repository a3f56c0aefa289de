"""Auth errors with etcd's gRPC code and exact client-visible text.

``code`` is a gRPC status code name and ``message`` the text etcd's clients
match on ("etcdserver: ..."), so the server maps an ``AuthError`` to its own
error type generically: ``EtcdError(err.code, err.message)``.

``go_text`` is the text of etcd's ``auth`` package ("auth: ..."). etcd 3.4
sends that text with code UNKNOWN where it forgets to translate the error:
Maintenance's Hash, HashKV, Defragment and Snapshot refused for a non-root
user answer ``UNKNOWN "auth: permission denied"`` (see ``untranslated``).
The members are shared instances, as in ``etcdx.server.errors``; raise them
as they are.
"""

from __future__ import annotations

from typing import Protocol


class AuthError(Exception):
    """An auth failure a client sees: ``code`` (gRPC status name) and ``message``."""

    def __init__(self, code: str, message: str, go_text: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.go_text = go_text

    def untranslated(self) -> tuple[str, str]:
        """(code, message) as etcd 3.4 sends it where it does not translate auth errors."""
        return "UNKNOWN", self.go_text

    def __repr__(self) -> str:
        return f"AuthError({self.code}, {self.message!r})"


def _e(code: str, text: str, go_text: str | None = None) -> AuthError:
    return AuthError(code, "etcdserver: " + text, go_text or "auth: " + text)


# InvalidArgument
USER_EMPTY = _e("INVALID_ARGUMENT", "user name is empty")
ROLE_EMPTY = _e("INVALID_ARGUMENT", "role name is empty")
AUTH_FAILED = _e("INVALID_ARGUMENT", "authentication failed, invalid user ID or password")
PERMISSION_NOT_GIVEN = _e("INVALID_ARGUMENT", "permission not given")
INVALID_AUTH_MGMT = _e("INVALID_ARGUMENT", "invalid auth management")
# etcdx's own: names are keys of an LMDB bucket, at most 511 bytes (etcd's bbolt takes
# 32 KiB). A clear refusal at apply, the same on every member, instead of a crash.
USER_NAME_TOO_LONG = _e("INVALID_ARGUMENT", "user name is too long")
ROLE_NAME_TOO_LONG = _e("INVALID_ARGUMENT", "role name is too long")
AUTH_OLD_REVISION = _e("INVALID_ARGUMENT", "revision of auth store is old", "auth: revision in header is old")

# FailedPrecondition
ROOT_USER_NOT_EXIST = _e("FAILED_PRECONDITION", "root user does not exist")
ROOT_ROLE_NOT_EXIST = _e("FAILED_PRECONDITION", "root user does not have root role")
USER_ALREADY_EXIST = _e("FAILED_PRECONDITION", "user name already exists", "auth: user already exists")
USER_NOT_FOUND = _e("FAILED_PRECONDITION", "user name not found", "auth: user not found")
ROLE_ALREADY_EXIST = _e("FAILED_PRECONDITION", "role name already exists", "auth: role already exists")
ROLE_NOT_FOUND = _e("FAILED_PRECONDITION", "role name not found", "auth: role not found")
ROLE_NOT_GRANTED = _e("FAILED_PRECONDITION", "role is not granted to the user")
PERMISSION_NOT_GRANTED = _e("FAILED_PRECONDITION", "permission is not granted to the role")
AUTH_NOT_ENABLED = _e("FAILED_PRECONDITION", "authentication is not enabled")

# PermissionDenied
PERMISSION_DENIED = _e("PERMISSION_DENIED", "permission denied")

# Unauthenticated
INVALID_AUTH_TOKEN = _e("UNAUTHENTICATED", "invalid auth token")

# etcd 3.4 has no client error for this one: Authenticate as a user added with
# --no-password answers code UNKNOWN with the auth package's text (verified).
NO_PASSWORD_USER = AuthError(
    "UNKNOWN",
    "auth: authentication failed, password was given for no password user",
    "auth: authentication failed, password was given for no password user",
)
# Authenticate on a member whose JWT provider has only the public key (UNKNOWN in etcd).
VERIFY_ONLY = AuthError(
    "UNKNOWN",
    "auth: token signing attempted with verify-only key",
    "auth: token signing attempted with verify-only key",
)


# gRPC status names as Go spells them, for the watch cancel reason
# ("rpc error: code = PermissionDenied desc = etcdserver: permission denied").
_GO_CODE_NAMES = {
    "INVALID_ARGUMENT": "InvalidArgument",
    "FAILED_PRECONDITION": "FailedPrecondition",
    "PERMISSION_DENIED": "PermissionDenied",
    "UNAUTHENTICATED": "Unauthenticated",
    "UNKNOWN": "Unknown",
}


class CodedError(Protocol):
    """An error with a gRPC status name and etcd's text (an ``AuthError``, the server's errors)."""

    code: str
    message: str


def watch_cancel_reason(err: CodedError) -> str:
    """The ``cancel_reason`` etcd 3.4 puts on a watch refused at creation (verified)."""
    return f"rpc error: code = {_GO_CODE_NAMES[err.code]} desc = {err.message}"


class TokenOptionsError(ValueError):
    """A bad ``--auth-token`` value; ``str()`` is etcd's text (the member refuses to start)."""


INVALID_AUTH_OPTS = "auth: invalid auth options"
INVALID_AUTH_METHOD = "auth: invalid auth signature method"
MISSING_KEY = "auth: missing key data"
KEY_MISMATCH = "auth: public and private keys don't match"
