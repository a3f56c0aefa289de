"""Who a client request runs as: its token, else its client certificate's common name.

etcd's ``AuthInfoFromCtx``: the API layer calls ``from_token`` with the
``token`` gRPC metadata value (``authorization`` on the JSON gateway) and, when
there is none and ``--client-cert-auth`` is on, ``from_common_name`` with the
verified client certificate's CN (never for gateway-proxied requests). None
means "no user", which the checks refuse with "user name is empty" while auth
is enabled.
"""

from __future__ import annotations

from etcdx.auth import errors
from etcdx.auth.state import AuthInfo, AuthState
from etcdx.auth.tokens import TokenProvider

TOKEN_METADATA_KEYS = ("token", "authorization")
"""gRPC metadata keys carrying a token, in the order etcd looks at them."""


def from_token(state: AuthState, tokens: TokenProvider, token: str | None) -> AuthInfo | None:
    """The user a token names, or ``INVALID_AUTH_TOKEN``.

    As etcd 3.4 (verified): a token sent while auth is disabled is refused too,
    since no token is valid then. Before calling this for a simple token, a
    member waits until it has applied ``tokens.required_index(token)``.
    """
    if token is None:
        return None
    info = tokens.info(token, state.revision) if state.enabled else None
    if info is None:
        raise errors.INVALID_AUTH_TOKEN
    return info


def from_common_name(state: AuthState, common_name: str) -> AuthInfo | None:
    """The user a client certificate names, at the store's current revision."""
    if not state.enabled or not common_name:
        return None
    return AuthInfo(common_name, state.revision)
