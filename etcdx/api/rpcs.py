"""The v3 RPCs, as one table read from the services in ``etcdx/pb/rpc.proto``,
then etcd's Lock and Election services (``v3lock.proto``, ``v3election.proto``).

Everything that serves RPCs is driven by this table rather than kept in step
by hand: the gRPC server registers a handler per entry, the worker IPC names an
RPC by its ``index``, and a handler object (the core's or a worker's) is
looked up by the RPC's method name. An RPC is served when the handler object
has a method of that name; the rest answer UNIMPLEMENTED. gRPC's Health
service is not in the table (its ``Watch`` would clash with etcd's, and every
process answers it itself): ``etcdx.api.grpc_health`` serves it.

Handler methods follow one async interface, each with the caller's
``etcdx.api.context.CallContext``:

- unary: ``async def Put(self, request, ctx) -> response``
- server streaming: ``def Snapshot(self, request, ctx) -> AsyncIterator[response]``
- bidirectional: ``def Watch(self, requests: AsyncIterator, ctx) -> AsyncIterator[response]``

and raise ``etcdx.server.errors.EtcdError`` for etcd's errors.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from google.protobuf import message_factory
from google.protobuf.message import DecodeError

from etcdx.pb import rpc_pb2, v3election_pb2, v3lock_pb2
from etcdx.server.errors import EtcdError


class Kind(enum.Enum):
    UNARY = "unary"
    SERVER_STREAM = "server-stream"
    BIDI_STREAM = "bidi-stream"


@dataclass(frozen=True)
class Rpc:
    index: int  # position in RPCS: the worker IPC's name for it
    service: str  # full service name, e.g. "etcdserverpb.KV"
    method: str  # e.g. "Put"; unique across etcd's services
    request: Any  # the request message class
    response: Any
    kind: Kind

    @property
    def path(self) -> str:
        """The gRPC path: /etcdserverpb.KV/Put."""
        return f"/{self.service}/{self.method}"


def _kind(m: Any) -> Kind:
    if m.client_streaming:
        if not m.server_streaming:
            raise ValueError(f"{m.full_name}: client-streaming RPCs are not part of etcd's API")
        return Kind.BIDI_STREAM
    return Kind.SERVER_STREAM if m.server_streaming else Kind.UNARY


def _table() -> tuple[Rpc, ...]:
    """etcd's services in rpc.proto's order, then Lock and Election: indexes never move."""
    rpcs = []
    services = [s for f in (rpc_pb2, v3lock_pb2, v3election_pb2) for s in f.DESCRIPTOR.services_by_name.values()]
    for service in services:
        for m in service.methods:
            rpcs.append(Rpc(len(rpcs), service.full_name, m.name,
                            message_factory.GetMessageClass(m.input_type),
                            message_factory.GetMessageClass(m.output_type), _kind(m)))
    return tuple(rpcs)


RPCS: tuple[Rpc, ...] = _table()
BY_METHOD: dict[str, Rpc] = {r.method: r for r in RPCS}
assert len(BY_METHOD) == len(RPCS), "RPC method names must be unique across services"
SERVICES: tuple[str, ...] = tuple(dict.fromkeys(r.service for r in RPCS))


def parse(message_class: Any, body: bytes) -> Any:
    """A request off the wire; one that does not decode is grpc-go's INTERNAL
    "grpc: error unmarshalling request: ...", not a failure of the server."""
    try:
        return message_class.FromString(body)
    except DecodeError as err:
        raise EtcdError("INTERNAL", f"grpc: error unmarshalling request: {err}") from None


def served(handlers: object) -> list[Rpc]:
    """The RPCs ``handlers`` has a method for."""
    return [r for r in RPCS if callable(getattr(handlers, r.method, None))]
