"""CPU that etcdx.client adds per request, over bare gRPC stubs, both faces.

    python3 bench/client_overhead.py [--requests 3000] [--kind etcd|etcdx]

Starts one member, then times N sequential requests from this process four
ways (bare ``grpc`` stub, `Client`, bare ``grpc.aio`` stub, `AsyncClient`),
and prints this process's CPU time (user+system) per request, which other
load on the machine barely moves, and wall time for reference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import sys
import tempfile
import time
from collections.abc import Callable

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import grpc  # noqa: E402

from etcdx.client import AsyncClient, Client  # noqa: E402
from etcdx.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402
from etcdx.testing.procs import Member  # noqa: E402


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def measure(name: str, n: int, run: Callable[[int], object]) -> None:
    run(min(200, n))  # warm up: connections, caches
    c0, w0 = cpu(), time.monotonic()
    run(n)
    c1, w1 = cpu(), time.monotonic()
    print(f"{name:24s} {1e6 * (c1 - c0) / n:7.0f} µs CPU/request {1e6 * (w1 - w0) / n:7.0f} µs wall")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--kind", choices=["etcd", "etcdx"], default="etcd")
    args = parser.parse_args()
    n = args.requests
    with tempfile.TemporaryDirectory() as tmp:
        member = Member(args.kind, tmp)
        member.start()
        try:
            request = rpc_pb2.RangeRequest(key=b"k", serializable=True)
            channel = grpc.insecure_channel(member.endpoint)
            stub = rpc_pb2_grpc.KVStub(channel)
            put = rpc_pb2.PutRequest(key=b"k", value=b"v")
            measure("grpc stub Range", n, lambda k: [stub.Range(request, timeout=10) for _ in range(k)])
            measure("grpc stub Put", n, lambda k: [stub.Put(put, timeout=10) for _ in range(k)])
            channel.close()
            with Client([member.endpoint]) as client:
                measure("Client.get", n, lambda k: [client.get("k", serializable=True) for _ in range(k)])
                measure("Client.put", n, lambda k: [client.put("k", "v") for _ in range(k)])

            async def aio_stub(k: int, write: bool) -> None:
                async with grpc.aio.insecure_channel(member.endpoint) as ch:
                    s = rpc_pb2_grpc.KVStub(ch)
                    for _ in range(k):
                        await (s.Put(put, timeout=10) if write else s.Range(request, timeout=10))

            async def aio_client(k: int, write: bool) -> None:
                async with AsyncClient([member.endpoint]) as c:
                    for _ in range(k):
                        await (c.put("k", "v") if write else c.get("k", serializable=True))

            measure("grpc.aio stub Range", n, lambda k: asyncio.run(aio_stub(k, False)))
            measure("grpc.aio stub Put", n, lambda k: asyncio.run(aio_stub(k, True)))
            measure("AsyncClient.get", n, lambda k: asyncio.run(aio_client(k, False)))
            measure("AsyncClient.put", n, lambda k: asyncio.run(aio_client(k, True)))
        finally:
            member.close()


if __name__ == "__main__":
    main()
