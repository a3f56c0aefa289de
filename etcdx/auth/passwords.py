"""bcrypt password hashing, as etcd does it (Go's ``x/crypto/bcrypt``).

Both functions are slow on purpose (cost 10 is tens of milliseconds): the
server runs them in a worker thread, never on its event loop. ``bcrypt``
releases the GIL while it works.

etcd hashes before proposing (3.5+): ``AuthUserAddRequest.hashedPassword`` is
the base64 of the hash, so every member stores the same bytes. Go's bcrypt in
etcd 3.4 uses only the first 72 bytes of a password (longer ones are accepted,
verified against etcd 3.4.23); the ``bcrypt`` package refuses them, so both
functions cut the password to 72 bytes first.
"""

from __future__ import annotations

import base64
import binascii

import bcrypt

DEFAULT_COST = 10
MIN_COST = 4
MAX_COST = 31
_MAX_PASSWORD_BYTES = 72


def effective_cost(cost: int) -> int:
    """``--bcrypt-cost``: etcd falls back to the default for a cost outside bcrypt's range."""
    return cost if MIN_COST <= cost <= MAX_COST else DEFAULT_COST


def hash_password(password: str, cost: int = DEFAULT_COST) -> bytes:
    """The bcrypt hash (``$2b$``... bytes) stored in ``authpb.User.password``."""
    secret = password.encode()[:_MAX_PASSWORD_BYTES]
    return bcrypt.hashpw(secret, bcrypt.gensalt(rounds=effective_cost(cost), prefix=b"2a"))


def check_password(hashed: bytes, password: str) -> bool:
    """Whether ``password`` matches a stored hash; False for an empty or malformed hash."""
    if not hashed:
        return False
    try:
        return bcrypt.checkpw(password.encode()[:_MAX_PASSWORD_BYTES], hashed)
    except ValueError:
        return False


def encode_for_request(hashed: bytes) -> str:
    """The ``hashedPassword`` field of a proposed UserAdd/UserChangePassword."""
    return base64.b64encode(hashed).decode()


def decode_from_request(hashed_password: str) -> bytes | None:
    """The hash carried in a request; None when it is not valid base64."""
    try:
        return base64.b64decode(hashed_password, validate=True)
    except (binascii.Error, ValueError):
        return None
