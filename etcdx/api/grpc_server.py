"""The client-facing gRPC server: every v3 service on the member's client URLs."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import grpc

from etcdx.api.cluster import ClusterService
from etcdx.api.kv import KVService
from etcdx.api.lease import LeaseService
from etcdx.api.maintenance import MaintenanceService
from etcdx.api.watch import GRPC_OVERHEAD_BYTES, WatchService
from etcdx.pb import rpc_pb2_grpc

MAX_SEND_BYTES = 2**31 - 1


def listen_address(url: str) -> str:
    """host:port for grpc from a client URL (http://host:port)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 2379)
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def build(server, listen_urls: list[str], *, reuseport: bool = False,
          services: list[tuple[Any, Any]] | None = None) -> grpc.aio.Server:
    """The gRPC server for ``server`` on ``listen_urls``.

    ``reuseport`` lets API worker processes share the client port (the kernel
    spreads connections over them); ``services`` replaces the default
    (add_*_to_server, servicer) pairs, as a worker does.
    """
    options = [
        ("grpc.max_receive_message_length", server.cfg.max_request_bytes + GRPC_OVERHEAD_BYTES),
        ("grpc.max_send_message_length", MAX_SEND_BYTES),
        ("grpc.so_reuseport", 1 if reuseport else 0),
        # etcd's server keepalive enforcement: clients may ping every 5 s.
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_ping_strikes", 0),
    ]
    g = grpc.aio.server(options=options)
    if services is None:
        services = [
            (rpc_pb2_grpc.add_KVServicer_to_server, KVService(server)),
            (rpc_pb2_grpc.add_WatchServicer_to_server, WatchService(server)),
            (rpc_pb2_grpc.add_LeaseServicer_to_server, LeaseService(server)),
            (rpc_pb2_grpc.add_ClusterServicer_to_server, ClusterService(server)),
            (rpc_pb2_grpc.add_MaintenanceServicer_to_server, MaintenanceService(server)),
        ]
    for add, servicer in services:
        add(servicer, g)
    for url in listen_urls:
        addr = listen_address(url)
        if g.add_insecure_port(addr) == 0:
            raise OSError(f"cannot listen for client traffic on {url}")
    return g
