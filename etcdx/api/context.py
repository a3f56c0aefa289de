"""What a transport knows about the caller of an RPC, handed to every handler.

The gRPC server reads it from the call's metadata and TLS session, the JSON
gateway from the HTTP request, and the worker IPC carries it from a worker to
the core with each forwarded call (``encode``/``decode``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_LENGTHS = struct.Struct("<HHB")  # token length, CN length, flags
_REQUIRE_LEADER = 1


@dataclass(frozen=True, slots=True)
class CallContext:
    token: str = ""  # the auth token: gRPC metadata "token", the gateway's Authorization header
    cert_cn: str = ""  # the common name of the client's verified TLS certificate
    require_leader: bool = False  # gRPC metadata "hasleader: true": fail rather than serve without a leader

    def encode(self) -> bytes:
        token, cn = self.token.encode(), self.cert_cn.encode()
        return _LENGTHS.pack(len(token), len(cn), _REQUIRE_LEADER if self.require_leader else 0) + token + cn


NO_CONTEXT = CallContext()
_EMPTY = NO_CONTEXT.encode()


def common_name(cert: dict | None) -> str:
    """The subject's common name of a verified peer certificate (``ssl.getpeercert()`` form), or ""."""
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return ""


def encode(ctx: CallContext, message: bytes) -> bytes:
    """``ctx`` in front of a serialized message."""
    return (_EMPTY if ctx is NO_CONTEXT else ctx.encode()) + message


def decode(body: bytes) -> tuple[CallContext, memoryview]:
    """The context and the message that follows it in ``body``."""
    token_len, cn_len, flags = _LENGTHS.unpack_from(body)
    start = _LENGTHS.size
    if not token_len and not cn_len and not flags:
        return NO_CONTEXT, memoryview(body)[start:]
    token = body[start:start + token_len].decode()
    cn = body[start + token_len:start + token_len + cn_len].decode()
    return CallContext(token, cn, bool(flags & _REQUIRE_LEADER)), memoryview(body)[start + token_len + cn_len:]
