"""Auth tokens: etcd's ``simple`` and ``jwt`` providers and its ``--auth-token`` option string.

A provider turns an authenticated user into a token (``assign``, called when
an Authenticate entry is applied, on every member) and a token back into who
it is (``info``). Clocks are injected so expiry is tested without waiting.

- ``simple``: ``<16 random letters>.<raft index>``. The proposing member picks
  the letters (``gen_prefix``) and puts them in the entry; every member
  assigns the same token at apply, so it works on any member. Tokens live in
  RAM, expire after ``--auth-token-ttl`` (300 s) without use, are renewed by
  every lookup, and are dropped when their user is deleted or changes its
  password, and all of them when auth is disabled. A lookup carries the
  store's current revision: a simple token never goes stale by revision.
  Before looking one up, a member waits until it has applied the token's
  index (``required_index``), as etcd does, so a token fresh from another
  member is not refused as unknown.
- ``jwt``: signed claims ``username``, ``revision`` (the auth revision at
  login) and ``exp``, verified with the public key alone, so any member (or
  API worker) with the key accepts a token any other issued. A member given
  only the public key verifies but cannot issue.
"""

from __future__ import annotations

import math
import re
import secrets
import string
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Protocol


from etcdx.auth import errors
from etcdx.auth.errors import TokenOptionsError
from etcdx.auth.state import AuthInfo

DEFAULT_SIMPLE_TTL = 300.0
"""``--auth-token-ttl`` default, seconds."""
DEFAULT_JWT_TTL = 300.0
"""A JWT's lifetime when the option string has no ``ttl``, seconds."""
SIMPLE_PREFIX_LENGTH = 16
_LETTERS = string.ascii_letters


class TokenProvider(Protocol):
    """What the auth store and the API layer need from a token scheme."""

    def enable(self) -> None: ...

    def disable(self) -> None: ...

    def invalidate_user(self, username: str) -> None: ...

    def gen_prefix(self) -> str:
        """What the proposer puts in ``InternalAuthenticateRequest.simple_token``."""

    def assign(self, username: str, revision: int, *, prefix: str, index: int) -> str: ...

    def info(self, token: str, revision: int) -> AuthInfo | None:
        """Who the token is for; None when it is unknown, expired or forged.

        ``revision`` is the store's current auth revision (simple tokens answer it).
        """

    def required_index(self, token: str) -> int:
        """The raft index a member must have applied before ``info`` can know the token (0: none)."""


class SimpleTokens:
    """etcd's ``simple`` tokens: random, unsigned, kept in this process's RAM."""

    def __init__(self, ttl: float = DEFAULT_SIMPLE_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl = ttl
        self._clock = clock
        self._enabled = False
        # token -> (username, expiry); kept in expiry order (a renewed token moves to the end),
        # so pruning pops from the front.
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        with self._lock:
            self._enabled = False
            self._tokens.clear()

    def invalidate_user(self, username: str) -> None:
        with self._lock:
            for token in [t for t, (user, _) in self._tokens.items() if user == username]:
                del self._tokens[token]

    def gen_prefix(self) -> str:
        return "".join(secrets.choice(_LETTERS) for _ in range(SIMPLE_PREFIX_LENGTH))

    def assign(self, username: str, revision: int, *, prefix: str, index: int) -> str:
        token = f"{prefix}.{index}"
        now = self._clock()
        with self._lock:
            self._prune(now)
            self._tokens.pop(token, None)
            self._tokens[token] = (username, now + self._ttl)
        return token

    def info(self, token: str, revision: int) -> AuthInfo | None:
        if not self._enabled:
            return None
        now = self._clock()
        with self._lock:
            entry = self._tokens.pop(token, None)
            if entry is None:
                return None
            username, expiry = entry
            if expiry <= now:
                return None
            self._tokens[token] = (username, now + self._ttl)
        return AuthInfo(username, revision)

    def required_index(self, token: str) -> int:
        _, dot, index = token.rpartition(".")
        if not dot or not index.isdigit() or not index.isascii():
            return 0
        return int(index)

    def prune(self) -> int:
        """Drop expired tokens now; the count dropped. ``assign`` also prunes as it goes."""
        with self._lock:
            return self._prune(self._clock())

    def __len__(self) -> int:
        return len(self._tokens)

    def _prune(self, now: float) -> int:
        dropped = 0
        for token, (_, expiry) in list(self._tokens.items()):
            if expiry > now:
                break
            del self._tokens[token]
            dropped += 1
        return dropped


class NoTokens:
    """``--auth-token ''``: no tokens at all (etcd's "nop" provider); logins fail."""

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def invalidate_user(self, username: str) -> None:
        pass

    def gen_prefix(self) -> str:
        return ""

    def assign(self, username: str, revision: int, *, prefix: str, index: int) -> str:
        raise errors.AUTH_FAILED

    def info(self, token: str, revision: int) -> AuthInfo | None:
        return None

    def required_index(self, token: str) -> int:
        return 0


_RSA_METHODS = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
_EC_METHODS = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}  # method -> curve name
_HMAC_METHODS = {"HS256", "HS384", "HS512"}
SIGN_METHODS = frozenset(_RSA_METHODS | set(_EC_METHODS) | _HMAC_METHODS)


JWT_CACHE_SIZE = 4096
"""Verified JWTs remembered per provider: a signature check costs 60-100 µs of CPU, a hit ~1 µs."""


class JWTTokens:
    """etcd's ``jwt`` tokens (PyJWT), signed with ``private_key`` and checked with its public half.

    Keys are loaded objects (see ``parse_token_options``) or, for HS*, the secret bytes.
    A token's claims never change, so verified tokens are remembered (bounded,
    least recently used first out); expiry is still checked on every lookup.
    """

    def __init__(self, sign_method: str, *, private_key=None, public_key=None,
                 ttl: float = DEFAULT_JWT_TTL, clock: Callable[[], float] = time.time) -> None:
        if sign_method not in SIGN_METHODS:
            raise TokenOptionsError(errors.INVALID_AUTH_METHOD)
        if private_key is None and public_key is None:
            raise TokenOptionsError(errors.MISSING_KEY)
        self.sign_method = sign_method
        self._private = private_key
        if sign_method in _HMAC_METHODS:
            self._verify_key = private_key
        else:
            self._verify_key = public_key if private_key is None else private_key.public_key()
        self._ttl = ttl
        self._clock = clock
        self._verified: OrderedDict[str, tuple[AuthInfo, float]] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def verify_only(self) -> bool:
        return self._private is None

    def enable(self) -> None:
        pass

    def disable(self) -> None:
        pass

    def invalidate_user(self, username: str) -> None:
        """A JWT outlives its user's changes; the auth revision in it makes it stale instead."""

    def gen_prefix(self) -> str:
        return ""

    def assign(self, username: str, revision: int, *, prefix: str = "", index: int = 0) -> str:
        if self._private is None:
            raise errors.VERIFY_ONLY
        import jwt  # not at module level: see _load_keys

        claims = {"exp": int(self._clock() + self._ttl), "revision": revision, "username": username}
        return jwt.encode(claims, self._private, algorithm=self.sign_method)

    def info(self, token: str, revision: int) -> AuthInfo | None:
        with self._lock:
            hit = self._verified.get(token)
            if hit is not None:
                self._verified.move_to_end(token)
        if hit is not None:
            return hit[0] if hit[1] > self._clock() else None
        import jwt  # not at module level: see _load_keys

        try:
            claims = jwt.decode(
                token, self._verify_key, algorithms=[self.sign_method],
                options={"require": ["exp"], "verify_exp": False},
            )
        except jwt.InvalidTokenError:
            return None
        username, token_revision, exp = claims.get("username"), claims.get("revision"), claims.get("exp")
        if not isinstance(username, str) or not _is_number(token_revision) or not _is_number(exp):
            return None
        if exp <= self._clock():
            return None
        info = AuthInfo(username, int(token_revision))
        with self._lock:
            self._verified[token] = (info, exp)
            if len(self._verified) > JWT_CACHE_SIZE:
                self._verified.popitem(last=False)
        return info

    def required_index(self, token: str) -> int:
        return 0


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def parse_token_options(option: str, *, simple_ttl: float = DEFAULT_SIMPLE_TTL,
                        clock: Callable[[], float] | None = None) -> TokenProvider:
    """The provider ``--auth-token OPTION`` asks for, or ``TokenOptionsError`` with etcd's text.

    ``simple`` (TTL ``simple_ttl``, etcd's ``--auth-token-ttl``), ``''`` (no
    tokens), or ``jwt,sign-method=M,pub-key=PATH,priv-key=PATH,ttl=DURATION``
    (Go duration, default 5m). Key files are read here: call it at start-up.
    """
    kind, options = _decompose(option)
    if kind == "simple":
        return SimpleTokens(simple_ttl, clock or time.monotonic)
    if kind == "":
        return NoTokens()
    if kind != "jwt":
        raise TokenOptionsError(errors.INVALID_AUTH_OPTS)
    try:
        ttl = parse_go_duration(options["ttl"]) if options.get("ttl") else DEFAULT_JWT_TTL
        public_pem = _read(options.get("pub-key"))
        private_pem = _read(options.get("priv-key"))
    except (ValueError, OSError):
        raise TokenOptionsError(errors.INVALID_AUTH_OPTS) from None
    method = options.get("sign-method", "")
    if method not in SIGN_METHODS:
        raise TokenOptionsError(errors.INVALID_AUTH_OPTS)
    private_key, public_key = _load_keys(method, private_pem, public_pem)
    return JWTTokens(method, private_key=private_key, public_key=public_key, ttl=ttl,
                     clock=clock or time.time)


def _decompose(option: str) -> tuple[str, dict[str, str]]:
    kind, *pairs = option.split(",")
    options: dict[str, str] = {}
    for pair in pairs:
        parts = pair.split("=")
        if len(parts) != 2 or parts[0] in options:
            raise TokenOptionsError(errors.INVALID_AUTH_OPTS)
        options[parts[0]] = parts[1]
    return kind, options


def _read(path: str | None) -> bytes | None:
    if not path:
        return None
    with open(path, "rb") as f:
        return f.read()


def _load_keys(method: str, private_pem: bytes | None, public_pem: bytes | None):
    """(private, public) key objects for ``method``; the errors etcd gives for bad key data."""
    if method in _HMAC_METHODS:
        if not private_pem:
            raise TokenOptionsError(errors.MISSING_KEY)
        return private_pem, None
    if private_pem is None and public_pem is None:
        raise TokenOptionsError(errors.MISSING_KEY)
    # Imported here: PyJWT and cryptography cost ~10 MiB of RSS, and only JWT tokens need them.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    want = rsa if method in _RSA_METHODS else ec
    private_key = public_key = None
    try:
        if private_pem is not None:
            private_key = serialization.load_pem_private_key(private_pem, password=None)
        if public_pem is not None:
            public_key = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError) as exc:
        raise TokenOptionsError(f"auth: cannot load {method} key: {exc}") from None
    for key in (private_key, public_key):
        if key is None:
            continue
        if want is rsa and not isinstance(key, (rsa.RSAPrivateKey, rsa.RSAPublicKey)):
            raise TokenOptionsError("Key is not a valid RSA key")
        if want is ec:
            if not isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
                raise TokenOptionsError("Key is not a valid ECDSA key")
            if key.curve.name != _EC_METHODS[method]:
                raise TokenOptionsError(f"auth: {method} needs a {_EC_METHODS[method]} key")
    if private_key is not None and public_key is not None:
        if private_key.public_key().public_numbers() != public_key.public_numbers():
            raise TokenOptionsError(errors.KEY_MISMATCH)
    return private_key, public_key


_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go ``time.ParseDuration`` string ("10m", "1h30m", "1.5s", "0"); ValueError if bad."""
    sign = 1.0
    rest = text
    if rest[:1] in "+-" and rest:
        sign = -1.0 if rest[0] == "-" else 1.0
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {text!r}")
    total = 0.0
    pos = 0
    while pos < len(rest):
        m = _DURATION_PART.match(rest, pos)
        if m is None:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    return sign * total
