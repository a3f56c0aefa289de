"""Auth: users, roles, key-range permissions, bcrypt passwords, simple and JWT tokens.

The store (``store.AuthStore``) keeps etcd's auth buckets and is changed only
by applying log entries; ``checks`` says whether a request's user may do what
it asks; ``tokens`` issues and verifies tokens. Errors are ``AuthError`` with
etcd's gRPC code and text, for the server to pass on unchanged.
"""

from etcdx.auth.errors import AuthError, TokenOptionsError
from etcdx.auth.state import ROOT_ROLE, ROOT_USER, AuthInfo, AuthState
from etcdx.auth.store import AUTH_FIELDS, AuthStore
from etcdx.auth.tokens import JWTTokens, NoTokens, SimpleTokens, TokenProvider, parse_token_options

__all__ = [
    "AUTH_FIELDS",
    "ROOT_ROLE",
    "ROOT_USER",
    "AuthError",
    "AuthInfo",
    "AuthState",
    "AuthStore",
    "JWTTokens",
    "NoTokens",
    "SimpleTokens",
    "TokenOptionsError",
    "TokenProvider",
    "parse_token_options",
]
