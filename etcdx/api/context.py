"""What a transport knows about the caller of an RPC, handed to every handler.

The gRPC server reads it from the call's metadata and TLS session, the JSON
gateway from the HTTP request, and the worker IPC carries it from a worker to
the core with each forwarded call (``encode``/``decode``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

_LENGTHS = struct.Struct("<HH")


@dataclass(frozen=True, slots=True)
class CallContext:
    token: str = ""  # the auth token: gRPC metadata "token", the gateway's Authorization header
    cert_cn: str = ""  # the common name of the client's verified TLS certificate

    def encode(self) -> bytes:
        token, cn = self.token.encode(), self.cert_cn.encode()
        return _LENGTHS.pack(len(token), len(cn)) + token + cn


NO_CONTEXT = CallContext()
_EMPTY = NO_CONTEXT.encode()


def encode(ctx: CallContext, message: bytes) -> bytes:
    """``ctx`` in front of a serialized message."""
    return (_EMPTY if ctx is NO_CONTEXT else ctx.encode()) + message


def decode(body: bytes) -> tuple[CallContext, memoryview]:
    """The context and the message that follows it in ``body``."""
    token_len, cn_len = _LENGTHS.unpack_from(body)
    start = _LENGTHS.size
    if not token_len and not cn_len:
        return NO_CONTEXT, memoryview(body)[start:]
    token = body[start:start + token_len].decode()
    cn = body[start + token_len:start + token_len + cn_len].decode()
    return CallContext(token, cn), memoryview(body)[start + token_len + cn_len:]
