"""Client settings shared by both faces: endpoints, time budget, credentials, TLS, channel options."""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from .endpoints import Endpoint, parse_endpoint

DEFAULT_TIMEOUT = 10.0
# gRPC keep-alive pings find a dead connection (a member paused or cut off)
# while a watch is quiet. etcd refuses pings more often than every 5 s.
KEEPALIVE_TIME = 10.0
KEEPALIVE_TIMEOUT = 5.0
MAX_SEND_BYTES = 2 * 1024 * 1024  # etcd's Go client limit (the server takes 1.5 MiB + 512 KiB)
MAX_RECEIVE_BYTES = 2**31 - 1


def _read(data: bytes | str | pathlib.Path | None) -> bytes | None:
    if data is None or isinstance(data, bytes):
        return data
    return pathlib.Path(data).read_bytes()


@dataclass(frozen=True)
class TLS:
    """TLS for client connections: the CA to trust and, for client-certificate auth, our cert and key.

    Each is PEM bytes or a path to a PEM file. With no ``ca`` the system's trusted
    roots are used. ``server_name`` overrides the name checked in the server's
    certificate (when endpoints are IP addresses the certificate does not list).
    """

    ca: bytes | str | pathlib.Path | None = None
    cert: bytes | str | pathlib.Path | None = None
    key: bytes | str | pathlib.Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert is None) != (self.key is None):
            raise ValueError("TLS: give both cert and key, or neither")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca), private_key=_read(self.key), certificate_chain=_read(self.cert)
        )


@dataclass(frozen=True)
class ClientConfig:
    endpoints: tuple[str, ...]
    timeout: float | None = DEFAULT_TIMEOUT
    user: str | None = None
    password: str | None = None
    tls: TLS | None = None
    require_leader: bool = True
    keepalive_time: float = KEEPALIVE_TIME
    keepalive_timeout: float = KEEPALIVE_TIMEOUT
    parsed: dict[str, Endpoint] = field(default_factory=dict, compare=False)

    @classmethod
    def create(
        cls,
        endpoints: str | Sequence[str],
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        user: str | None = None,
        password: str | None = None,
        tls: TLS | None = None,
        require_leader: bool = True,
        keepalive_time: float = KEEPALIVE_TIME,
        keepalive_timeout: float = KEEPALIVE_TIMEOUT,
    ) -> ClientConfig:
        if isinstance(endpoints, str):
            endpoints = [e for e in endpoints.split(",") if e.strip()]
        endpoints = tuple(e.strip() for e in endpoints)
        if not endpoints:
            raise ValueError("no endpoints given")
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        if keepalive_time < 5.0:
            raise ValueError("keepalive_time below 5 s: etcd closes connections that ping more often")
        parsed = {e: parse_endpoint(e) for e in endpoints}
        return cls(endpoints, timeout, user, password, tls, require_leader, keepalive_time, keepalive_timeout, parsed)

    def endpoint(self, endpoint: str) -> Endpoint:
        """Parse ``endpoint`` (one of ours, or any other address a maintenance call names)."""
        found = self.parsed.get(endpoint)
        return found if found is not None else parse_endpoint(endpoint)

    def credentials(self, endpoint: Endpoint) -> grpc.ChannelCredentials | None:
        """TLS credentials for the endpoint, or None for plaintext."""
        if self.tls is not None:
            return self.tls.credentials()
        if endpoint.secure:
            return grpc.ssl_channel_credentials()
        return None

    def channel_options(self) -> list[tuple[str, object]]:
        options: list[tuple[str, object]] = [
            ("grpc.max_send_message_length", MAX_SEND_BYTES),
            ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
            ("grpc.keepalive_time_ms", int(self.keepalive_time * 1000)),
            ("grpc.keepalive_timeout_ms", int(self.keepalive_timeout * 1000)),
            ("grpc.keepalive_permit_without_calls", 0),
            ("grpc.http2.max_pings_without_data", 0),
            # Failover is ours: gRPC must not hold a call waiting for a dead member.
            ("grpc.enable_retries", 0),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if self.tls is not None and self.tls.server_name:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        return options
