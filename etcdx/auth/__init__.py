"""Auth: users, roles, key-range permissions, bcrypt passwords, simple and JWT tokens.

The store (``store.AuthStore``) keeps etcd's auth buckets and is changed only
by applying log entries; ``checks`` says whether a request's user may do what
it asks; ``identity`` finds the user of a request (token, certificate name);
``tokens`` issues and verifies tokens. Errors are ``AuthError`` with etcd's
gRPC code and text, for the server to pass on unchanged.

How a server uses it (etcd's order of events):
- boot: ``tokens = parse_token_options(--auth-token, simple_ttl=--auth-token-ttl)``
  (``TokenOptionsError``: refuse to start), ``store = AuthStore(backend, tokens)``;
  API workers build ``AuthStore(readonly_backend)`` plus a JWT provider; call
  ``store.reload()`` after a backend swap or an aborted apply transaction.
- each client request: ``identity.from_token(store.state(), tokens, token)``
  (after waiting for ``tokens.required_index(token)`` to be applied), else
  ``identity.from_common_name``; put ``username``/``auth_revision`` into the
  proposal's ``RequestHeader``.
- UserAdd/UserChangePassword: hash with ``passwords.hash_password`` off the
  loop, send ``hashedPassword`` and clear ``password``. Authenticate: run
  ``store.check_password`` off the loop, propose ``authenticate`` with
  ``tokens.gen_prefix()``, and retry if the revision moved meanwhile.
- apply: ``checks.check_apply(store.state(txn), entry, lease_keys)`` before the
  quota check and the entry's own validation, then ``store.apply(txn, entry,
  index)`` for the fields in ``AUTH_FIELDS``.
- reads outside the log (Range, read-only Txn): check, read, then
  ``checks.recheck_revision``; Watch: ``checks.check_watch_create`` at creation.
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
