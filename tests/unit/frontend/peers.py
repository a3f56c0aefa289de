"""Test peers for the sans-IO connection: the `h2` package as an independent client, and raw frames."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import hpack

from etcdx.frontend import frames as fr
from etcdx.frontend.connection import ConnectionSettings, ServerConnection

GRPC_REQUEST = [
    (":method", "POST"), (":scheme", "http"), (":path", "/etcdserverpb.KV/Put"), (":authority", "localhost"),
    ("content-type", "application/grpc"), ("te", "trailers"),
]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class H2Pair:
    """A ServerConnection and an h2 client connected by an in-memory pipe."""

    def __init__(self, client_settings: dict | None = None, **server_settings) -> None:
        self.clock = Clock()
        self.server = ServerConnection(ConnectionSettings(**server_settings), clock=self.clock)
        self.client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        self.server.initiate()
        self.server_events: list = []
        self.client_events: list = []
        self.pump()

    def pump(self) -> tuple[list, list]:
        """Move bytes both ways until both sides are quiet; return the new events of each side."""
        sev: list = []
        cev: list = []
        for _ in range(1000):
            c2s = self.client.data_to_send()
            if c2s:
                sev += self.server.receive(c2s)
            s2c = self.server.data_to_send()
            if s2c:
                cev += self.client.receive_data(s2c)
            if not c2s and not s2c:
                break
        self.server_events += sev
        self.client_events += cev
        return sev, cev

    def request(self, body: bytes = b"", end_stream: bool = True, headers=GRPC_REQUEST) -> int:
        sid = self.client.get_next_available_stream_id()
        self.client.send_headers(sid, headers, end_stream=not body and end_stream)
        if body:
            self.client.send_data(sid, body, end_stream=end_stream)
        return sid


def received(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


class RawClient:
    """Hand-made frames, for what a well-behaved client library will not send."""

    def __init__(self, **server_settings) -> None:
        self.clock = Clock()
        self.server = ServerConnection(ConnectionSettings(**server_settings), clock=self.clock)
        self.server.initiate()
        self.encoder = hpack.Encoder()
        self.events: list = []
        self.frames: list[fr.Frame] = []
        self._out = bytearray()

    def preface(self, settings: dict[int, int] | None = None) -> RawClient:
        self.send(fr.PREFACE + fr.settings(settings or {}))
        return self

    def send(self, data: bytes) -> list:
        ev = self.server.receive(data)
        self.events += ev
        self._out += self.server.data_to_send()
        got, used, _ = fr.parse_frames(bytes(self._out), fr.MAX_MAX_FRAME_SIZE)
        del self._out[:used]
        self.frames += got
        return ev

    def block(self, headers=GRPC_REQUEST) -> bytes:
        return self.encoder.encode(headers)

    def headers(self, sid: int, headers=GRPC_REQUEST, end_stream: bool = True, flags: int = 0) -> list:
        f = flags | fr.FLAG_END_HEADERS | (fr.FLAG_END_STREAM if end_stream else 0)
        return self.send(fr.frame(fr.HEADERS, f, sid, self.block(headers)))

    def goaway(self) -> tuple[int, int] | None:
        """(last stream id, error code) of the GOAWAY the server sent, if any."""
        for f in self.frames:
            if f.type == fr.GOAWAY:
                last, code, _ = fr.parse_goaway(f.payload)
                return last, code
        return None

    def resets(self) -> dict[int, int]:
        return {f.stream_id: fr.u32(f.payload) for f in self.frames if f.type == fr.RST_STREAM}
