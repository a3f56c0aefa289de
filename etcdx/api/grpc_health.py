"""gRPC's standard health service (``grpc.health.v1.Health``), as etcd serves it.

etcd registers the overall status under the service name "" as SERVING for
as long as its gRPC server runs; any other name is unknown (Check: NOT_FOUND
"unknown service", Watch: one SERVICE_UNKNOWN). Every process serving the
client port (the core or each API worker) answers it itself. It is kept out
of ``etcdx.api.rpcs``' table: its ``Watch`` would clash with etcd's.
"""

from __future__ import annotations

import asyncio

from etcdx.api.rpcs import parse
from etcdx.frontend import Call, Router, Stream
from etcdx.pb import health_pb2
from etcdx.server.errors import EtcdError

SERVICE = "grpc.health.v1.Health"
SERVING = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING).SerializeToString()
SERVICE_UNKNOWN = health_pb2.HealthCheckResponse(
    status=health_pb2.HealthCheckResponse.SERVICE_UNKNOWN).SerializeToString()
UNKNOWN_SERVICE = EtcdError("NOT_FOUND", "unknown service")


def _service(body: bytes) -> str:
    return parse(health_pb2.HealthCheckRequest, body).service


def check(body: bytes, call: Call) -> bytes:
    if _service(body) != "":
        raise UNKNOWN_SERVICE
    return SERVING


async def watch(stream: Stream, call: Call) -> None:
    """The status now; it never changes while the port serves, so then wait for the client to leave."""
    body = await stream.recv()
    if body is None:
        return
    await stream.send(SERVING if _service(body) == "" else SERVICE_UNKNOWN)
    await asyncio.Event().wait()  # ends when the call is cancelled


def register(router: Router) -> None:
    router.unary(f"/{SERVICE}/Check", check)
    router.stream(f"/{SERVICE}/Watch", watch)
