"""What a client program asks its face to do.

Every client operation is written once, as a *program*: a generator that
yields operations and is sent back their results. The sync face (`Client`)
and the asyncio face (`AsyncClient`) each run programs against their own
gRPC flavour, so the logic of a call (requests, retry rules, result types,
the lock and election algorithms) exists once, and each face only knows how
to carry out the few operations below.

    def get(key, ...) -> Program[GetResult]:
        response = yield Call("KV", "Range", request, idempotent=True)
        return GetResult.from_pb(response)
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from google.protobuf.message import Message

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Call:
    """One RPC: ``service``/``method`` as in etcd's rpc.proto; the result is the response message.

    ``idempotent`` says the request can run twice with no different effect; only
    such requests are retried after an error that leaves it unknown whether they
    applied. ``endpoint`` pins the call to one member (no failover), as member
    maintenance needs. ``stream`` calls a bidirectional-streaming method with
    one request and returns its first response (a lease keep-alive).
    ``authenticated`` False sends no token (Authenticate itself).
    """

    service: str
    method: str
    request: Message
    idempotent: bool
    timeout: float | None = None
    endpoint: str | None = None
    stream: bool = False
    authenticated: bool = True


@dataclass(frozen=True, slots=True)
class WaitDeleted:
    """Block until ``key`` is deleted at a revision after ``revision`` (a watch that survives failover).

    Returns the revision of the delete.
    """

    key: bytes
    revision: int


Op = Call | WaitDeleted
Program = Generator[Op, Any, R]
