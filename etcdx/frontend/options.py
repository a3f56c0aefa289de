"""The front end's settings, shared by its HTTP/2 and HTTP/1.1 sessions."""

from __future__ import annotations

from dataclasses import dataclass, field

from etcdx.frontend.connection import ConnectionSettings
from etcdx.frontend.httpapi import HttpHandler
from etcdx.frontend.rpc import Router


@dataclass(slots=True)
class Options:
    router: Router
    http: HttpHandler
    max_receive_message_bytes: int
    max_send_message_bytes: int = 2**31 - 1
    max_http_body_bytes: int = 4 << 20
    accept_gzip: bool = True
    keepalive_interval: float = 7200.0     # etcd's --grpc-keepalive-interval
    keepalive_timeout: float = 20.0        # etcd's --grpc-keepalive-timeout
    stream_inbox_bytes: int = 64 << 10     # unread messages per stream before its window stops
    write_buffer_cap: int = 8 << 20        # stop reading a peer that does not read our replies
    h2: ConnectionSettings = field(default_factory=ConnectionSettings)
