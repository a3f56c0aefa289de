"""The server side of one HTTP/2 connection (RFC 9113), without I/O.

Bytes in (`receive`), events out; calls in (`send_headers`, `send_data`,
`send_trailers`, `reset_stream`, `ping`, `close`), bytes out (`data_to_send`).
No sockets, no event loop; the only clock is the injected one used for ping
enforcement. The shell (`server.py`) writes `data_to_send()` once per batch.

What the connection promises:
- Flow control both ways. Outgoing DATA never exceeds the peer's connection or
  stream window nor its maximum frame size; what does not fit waits in the
  stream's queue (trailers wait behind it) and goes out as WINDOW_UPDATEs
  arrive. Incoming DATA is checked against the windows we granted; the
  application returns credit with `consumed()` once it has taken the bytes, so
  an application that stops reading stops the peer.
- Every protocol error by the peer is answered as RFC 9113 says: a stream error
  resets only that stream (`StreamReset` tells the application), a connection
  error sends GOAWAY and sets `closed`; after that the connection ignores input
  and the shell closes the transport once the GOAWAY is written.
- Memory per connection is bounded: frames over our maximum frame size are
  refused before they are buffered, header blocks (HEADERS + CONTINUATION) are
  bounded by the header list size we advertise, streams by
  MAX_CONCURRENT_STREAMS, received data by the windows we grant.
- A stream the server ends while the client is still sending is reset with
  NO_ERROR after the END_STREAM (RFC 9113 8.1), and frames that arrive later
  for streams we reset are ignored.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

from etcdx.frontend import frames as fr
from etcdx.frontend.frames import Frame
from etcdx.frontend.headers import CompressionError, MalformedHeaders, RequestDecoder, RequestHead, TooLarge

_RECENTLY_RESET = 1024  # stream ids we remember having reset (frames for them are ignored)
_IDLE_PING_INTERVAL = 7200.0


# -- events ------------------------------------------------------------------------

@dataclass(slots=True)
class RequestReceived:
    """A new stream: the request's header block, checked (``timeout``: its grpc-timeout)."""
    stream_id: int
    head: RequestHead
    end_stream: bool
    timeout: str | None = None


@dataclass(slots=True)
class DataReceived:
    """Request body bytes (``data`` may be empty when only END_STREAM or trailers came).

    ``flow_length`` bytes count against the windows until `consumed()` returns them.
    """
    stream_id: int
    data: bytes
    end_stream: bool
    flow_length: int


@dataclass(slots=True)
class StreamReset:
    """The stream is gone: reset by the peer, or by us for a stream error. Forget it."""
    stream_id: int
    error_code: int
    remote: bool


@dataclass(slots=True)
class SendReady:
    """Queued output of the stream went out; fewer than the low-water mark bytes remain."""
    stream_id: int


@dataclass(slots=True)
class GoAwayReceived:
    error_code: int
    last_stream_id: int
    debug: bytes


@dataclass(slots=True)
class PingAcked:
    payload: bytes


Event = RequestReceived | DataReceived | StreamReset | SendReady | GoAwayReceived | PingAcked


class _ConnectionError(Exception):
    def __init__(self, code: int, debug: str) -> None:
        super().__init__(debug)
        self.code = code


class _StreamError(Exception):
    def __init__(self, stream_id: int, code: int) -> None:
        super().__init__(stream_id, code)
        self.stream_id = stream_id
        self.code = code


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """What we advertise, and limits of our own.

    ``connection_window`` is the connection-level receive window we grant
    (raised from RFC 9113's 65,535 by a WINDOW_UPDATE at the start).
    ``min_ping_interval``, ``max_ping_strikes`` and ``ping_without_calls`` are
    grpc-go's keepalive enforcement (etcd: pings at most every 5 s): a ping
    that comes too soon is a strike, and more than ``max_ping_strikes``
    strikes end the connection with GOAWAY ENHANCE_YOUR_CALM "too_many_pings".
    Sending headers or data clears the strikes, as in grpc-go. A client that
    resets live streams faster than ``reset_rate`` per second beyond a burst of
    ``reset_burst`` makes us start work it throws away: GOAWAY ENHANCE_YOUR_CALM.
    """

    max_concurrent_streams: int = 4096
    initial_window_size: int = 1 << 20
    connection_window: int = 16 << 20
    max_frame_size: int = fr.DEFAULT_MAX_FRAME_SIZE
    max_header_list_size: int = 1 << 20
    header_table_size: int = 4096
    send_low_water: int = 64 << 10
    min_ping_interval: float = 5.0
    max_ping_strikes: int = 2
    ping_without_calls: bool = True
    reset_burst: int = 1000           # client resets of live streams allowed at once...
    reset_rate: float = 200.0         # ...and per second after that ("rapid reset", CVE-2023-44487)


class _Stream:
    __slots__ = (
        "id", "remote_open", "local_open", "send_window", "recv_window", "unacked",
        "queue", "queued", "end_after_queue", "trailers", "content_length", "received",
        "wants_ready",
    )

    def __init__(self, sid: int, send_window: int, recv_window: int) -> None:
        self.id = sid
        self.remote_open = True
        self.local_open = True          # until our END_STREAM is queued
        self.send_window = send_window
        self.recv_window = recv_window
        self.unacked = 0                # consumed bytes not yet returned by WINDOW_UPDATE
        self.queue: deque[memoryview] = deque()
        self.queued = 0
        self.end_after_queue = False    # END_STREAM on the last DATA frame of the queue
        self.trailers: bytes | None = None  # header block to send (END_STREAM) after the queue
        self.content_length: int | None = None
        self.received = 0
        self.wants_ready = False


class ServerConnection:
    """One HTTP/2 server connection; see the module docstring."""

    def __init__(self, settings: ConnectionSettings = ConnectionSettings(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._clock = clock
        self._decoder = RequestDecoder(settings.max_header_list_size, settings.header_table_size)
        self._buf = bytearray()          # an incomplete frame (at most max_frame_size + 9 bytes)
        self._need = 0                   # bytes _buf must hold before parsing is worth it
        self._out: list[bytes] = []
        self._preface_seen = False
        self._settings_seen = False
        self._streams: dict[int, _Stream] = {}
        self._last_stream_id = 0
        self._reset_ids: set[int] = set()
        self._reset_order: deque[int] = deque()
        self._continuation: tuple[int, int, bool, list[bytes], int] | None = None
        # Peer's settings.
        self._peer_initial_window = fr.DEFAULT_WINDOW
        self._peer_max_frame = fr.DEFAULT_MAX_FRAME_SIZE
        self._send_window = fr.DEFAULT_WINDOW
        self._recv_window = settings.connection_window
        self._conn_unacked = 0
        self._blocked: OrderedDict[int, None] = OrderedDict()  # streams waiting for connection window
        # Ping enforcement.
        self._last_ping = float("-inf")
        self._ping_strikes = 0
        self._sent_since_ping = False
        self._reset_tokens = float(settings.reset_burst)
        self._reset_refilled = clock()
        self.goaway_sent = False
        self.goaway_received = False
        self.closed = False             # a connection error was sent; close once written
        self.error_code: int | None = None

    # -- setup and output ------------------------------------------------------------

    def initiate(self) -> None:
        """Queue our SETTINGS (and the connection window increase): the server preface."""
        s = self.settings
        self._out.append(fr.settings({
            fr.SETTINGS_MAX_CONCURRENT_STREAMS: s.max_concurrent_streams,
            fr.SETTINGS_INITIAL_WINDOW_SIZE: s.initial_window_size,
            fr.SETTINGS_MAX_HEADER_LIST_SIZE: s.max_header_list_size,
            fr.SETTINGS_ENABLE_PUSH: 0,
        }))
        if s.connection_window > fr.DEFAULT_WINDOW:
            self._out.append(fr.window_update(0, s.connection_window - fr.DEFAULT_WINDOW))

    def data_to_send(self) -> bytes:
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        self._out = []
        return data

    @property
    def open_streams(self) -> int:
        return len(self._streams)

    @property
    def last_stream_id(self) -> int:
        return self._last_stream_id

    @property
    def hpack_generation(self) -> int:
        """How often the peer's HPACK table changed (tests use it to see cache behaviour)."""
        return self._decoder.generation

    # -- input -----------------------------------------------------------------------

    def receive(self, data: bytes) -> list[Event]:
        """Process bytes from the peer; return what happened, in order."""
        if self.closed:
            return []
        if self._buf:
            self._buf += data
            if len(self._buf) < self._need:    # still inside one frame: no quadratic re-parsing
                return []
            data = bytes(self._buf)
            self._buf = bytearray()
        events: list[Event] = []
        try:
            if not self._preface_seen:
                n = min(len(data), len(fr.PREFACE))
                if data[:n] != fr.PREFACE[:n]:
                    raise _ConnectionError(fr.PROTOCOL_ERROR, "bad connection preface")
                if n < len(fr.PREFACE):
                    self._buf = bytearray(data)
                    self._need = len(fr.PREFACE)
                    return events
                data = data[n:]
                self._preface_seen = True
            frames, used, oversize = fr.parse_frames(data, self.settings.max_frame_size)
            if used < len(data) and not oversize:
                self._buf = bytearray(data[used:])
                self._need = fr.FRAME_HEADER_SIZE
                if len(self._buf) >= fr.FRAME_HEADER_SIZE:
                    self._need += int.from_bytes(self._buf[:3], "big")
            for f in frames:
                try:
                    self._on_frame(f, events)
                except _StreamError as e:
                    self._stream_error(e.stream_id, e.code, events)
            if oversize:
                raise _ConnectionError(fr.FRAME_SIZE_ERROR, "frame too large")
        except _ConnectionError as e:
            self._connection_error(e.code, str(e))
        return events

    def _on_frame(self, f: Frame, events: list[Event]) -> None:
        t = f.type
        if self._continuation is not None and t != fr.CONTINUATION:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "expected CONTINUATION")
        if not self._settings_seen:
            if t != fr.SETTINGS or f.flags & fr.FLAG_ACK:
                raise _ConnectionError(fr.PROTOCOL_ERROR, "first frame must be SETTINGS")
            self._settings_seen = True
        if t == fr.HEADERS:
            self._on_headers(f, events)
        elif t == fr.DATA:
            self._on_data(f, events)
        elif t == fr.WINDOW_UPDATE:
            self._on_window_update(f, events)
        elif t == fr.SETTINGS:
            self._on_settings(f, events)
        elif t == fr.PING:
            self._on_ping(f, events)
        elif t == fr.RST_STREAM:
            self._on_rst_stream(f, events)
        elif t == fr.CONTINUATION:
            self._on_continuation(f, events)
        elif t == fr.PRIORITY:
            self._on_priority(f)
        elif t == fr.GOAWAY:
            if f.stream_id:
                raise _ConnectionError(fr.PROTOCOL_ERROR, "GOAWAY on a stream")
            if len(f.payload) < 8:
                raise _ConnectionError(fr.FRAME_SIZE_ERROR, "short GOAWAY")
            last, code, debug = fr.parse_goaway(f.payload)
            self.goaway_received = True
            events.append(GoAwayReceived(code, last, debug))
        elif t == fr.PUSH_PROMISE:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "PUSH_PROMISE from a client")
        # Unknown frame types are ignored (RFC 9113 4.1).

    @staticmethod
    def _unpad(f: Frame) -> bytes:
        payload = f.payload
        if f.flags & fr.FLAG_PADDED:
            if not payload:
                raise _ConnectionError(fr.FRAME_SIZE_ERROR, "padded frame without pad length")
            pad = payload[0]
            if pad >= len(payload):
                raise _ConnectionError(fr.PROTOCOL_ERROR, "padding exceeds payload")
            payload = payload[1:len(payload) - pad]
        return payload

    def _is_idle(self, sid: int) -> bool:
        return sid > self._last_stream_id

    def _on_headers(self, f: Frame, events: list[Event]) -> None:
        sid = f.stream_id
        if sid == 0:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "HEADERS on stream 0")
        block = self._unpad(f)
        self_dependent = False
        if f.flags & fr.FLAG_PRIORITY:
            if len(block) < 5:
                raise _ConnectionError(fr.FRAME_SIZE_ERROR, "HEADERS priority too short")
            self_dependent = (fr.u32(block) & 0x7FFFFFFF) == sid
            block = block[5:]
        end_stream = bool(f.flags & fr.FLAG_END_STREAM)
        if not f.flags & fr.FLAG_END_HEADERS:
            if len(block) > self.settings.max_header_list_size:
                raise _ConnectionError(fr.ENHANCE_YOUR_CALM, "header block too large")
            self._continuation = (sid, int(self_dependent), end_stream, [block], len(block))
            return
        self._on_header_block(sid, block, end_stream, self_dependent, events)

    def _on_continuation(self, f: Frame, events: list[Event]) -> None:
        if self._continuation is None:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "unexpected CONTINUATION")
        sid, self_dependent, end_stream, parts, size = self._continuation
        if f.stream_id != sid:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "CONTINUATION on another stream")
        size += len(f.payload)
        if size > self.settings.max_header_list_size:
            raise _ConnectionError(fr.ENHANCE_YOUR_CALM, "header block too large")
        parts.append(f.payload)
        if not f.flags & fr.FLAG_END_HEADERS:
            self._continuation = (sid, self_dependent, end_stream, parts, size)
            return
        self._continuation = None
        self._on_header_block(sid, b"".join(parts), end_stream, bool(self_dependent), events)

    def _decode_only(self, block: bytes) -> None:
        """Decode a block we will not use, to keep the HPACK state in step with the peer's."""
        try:
            self._decoder.trailers(block)
        except MalformedHeaders:
            pass
        except CompressionError as e:
            raise _ConnectionError(fr.COMPRESSION_ERROR, str(e)) from e
        except TooLarge as e:
            raise _ConnectionError(fr.ENHANCE_YOUR_CALM, str(e)) from e

    def _on_header_block(self, sid: int, block: bytes, end_stream: bool, self_dependent: bool,
                         events: list[Event]) -> None:
        stream = self._streams.get(sid)
        if stream is not None:
            self._on_trailers(stream, block, end_stream, self_dependent, events)
            return
        if sid % 2 == 0:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "even stream id from a client")
        if not self._is_idle(sid):
            self._decode_only(block)
            if sid in self._reset_ids:
                return
            raise _ConnectionError(fr.STREAM_CLOSED, "HEADERS on a closed stream")
        self._last_stream_id = sid
        if self.goaway_sent:
            self._decode_only(block)        # RFC 9113 6.8: streams after GOAWAY are ignored
            return
        try:
            head, timeout = self._decoder.request(block)
        except CompressionError as e:
            raise _ConnectionError(fr.COMPRESSION_ERROR, str(e)) from e
        except TooLarge as e:
            raise _ConnectionError(fr.ENHANCE_YOUR_CALM, str(e)) from e
        except MalformedHeaders:
            self._reset(sid, fr.PROTOCOL_ERROR)
            return
        if self_dependent:
            self._reset(sid, fr.PROTOCOL_ERROR)
            return
        if len(self._streams) >= self.settings.max_concurrent_streams:
            self._reset(sid, fr.REFUSED_STREAM)
            return
        if end_stream and head.content_length:
            self._reset(sid, fr.PROTOCOL_ERROR)
            return
        stream = _Stream(sid, self._peer_initial_window, self.settings.initial_window_size)
        stream.content_length = head.content_length
        stream.remote_open = not end_stream
        self._streams[sid] = stream
        events.append(RequestReceived(sid, head, end_stream, timeout))

    def _on_trailers(self, stream: _Stream, block: bytes, end_stream: bool, self_dependent: bool,
                     events: list[Event]) -> None:
        sid = stream.id
        if not stream.remote_open:
            self._decode_only(block)
            raise _StreamError(sid, fr.STREAM_CLOSED)
        try:
            self._decoder.trailers(block)
        except CompressionError as e:
            raise _ConnectionError(fr.COMPRESSION_ERROR, str(e)) from e
        except TooLarge as e:
            raise _ConnectionError(fr.ENHANCE_YOUR_CALM, str(e)) from e
        except MalformedHeaders:
            raise _StreamError(sid, fr.PROTOCOL_ERROR) from None
        if self_dependent or not end_stream:
            raise _StreamError(sid, fr.PROTOCOL_ERROR)
        if stream.content_length is not None and stream.content_length != stream.received:
            raise _StreamError(sid, fr.PROTOCOL_ERROR)
        stream.remote_open = False
        events.append(DataReceived(sid, b"", True, 0))
        self._maybe_forget(stream)

    def _on_data(self, f: Frame, events: list[Event]) -> None:
        sid = f.stream_id
        if sid == 0:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "DATA on stream 0")
        flow = len(f.payload)
        self._recv_window -= flow
        if self._recv_window < 0:
            raise _ConnectionError(fr.FLOW_CONTROL_ERROR, "connection window exceeded")
        data = self._unpad(f)
        stream = self._streams.get(sid)
        if stream is None:
            self._credit_connection(flow)
            if self._is_idle(sid):
                raise _ConnectionError(fr.PROTOCOL_ERROR, "DATA on an idle stream")
            if sid in self._reset_ids:
                return
            raise _ConnectionError(fr.STREAM_CLOSED, "DATA on a closed stream")
        if not stream.remote_open:
            self._credit_connection(flow)
            raise _StreamError(sid, fr.STREAM_CLOSED)
        stream.recv_window -= flow
        if stream.recv_window < 0:
            self._credit_connection(flow)
            raise _StreamError(sid, fr.FLOW_CONTROL_ERROR)
        stream.received += len(data)
        end_stream = bool(f.flags & fr.FLAG_END_STREAM)
        if stream.content_length is not None and (
                stream.received > stream.content_length
                or end_stream and stream.received != stream.content_length):
            self._credit_connection(flow)
            raise _StreamError(sid, fr.PROTOCOL_ERROR)
        if flow != len(data):          # padding is nobody's data: return its credit now
            self.consumed(sid, flow - len(data))
        if end_stream:
            stream.remote_open = False
        events.append(DataReceived(sid, data, end_stream, len(data)))
        if end_stream:
            self._maybe_forget(stream)

    def _on_window_update(self, f: Frame, events: list[Event]) -> None:
        if len(f.payload) != 4:
            raise _ConnectionError(fr.FRAME_SIZE_ERROR, "WINDOW_UPDATE length")
        inc = fr.u32(f.payload) & 0x7FFFFFFF
        sid = f.stream_id
        if sid == 0:
            if inc == 0:
                raise _ConnectionError(fr.PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
            self._send_window += inc
            if self._send_window > fr.MAX_WINDOW:
                raise _ConnectionError(fr.FLOW_CONTROL_ERROR, "connection window overflow")
            self._flush_blocked(events)
            return
        stream = self._streams.get(sid)
        if stream is None:
            if self._is_idle(sid):
                raise _ConnectionError(fr.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream")
            return
        if inc == 0:
            raise _StreamError(sid, fr.PROTOCOL_ERROR)
        stream.send_window += inc
        if stream.send_window > fr.MAX_WINDOW:
            raise _StreamError(sid, fr.FLOW_CONTROL_ERROR)
        if stream.queue or stream.trailers is not None:
            self._flush(stream, events)

    def _on_settings(self, f: Frame, events: list[Event]) -> None:
        if f.stream_id:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "SETTINGS on a stream")
        if f.flags & fr.FLAG_ACK:
            if f.payload:
                raise _ConnectionError(fr.FRAME_SIZE_ERROR, "SETTINGS ACK with payload")
            return
        if len(f.payload) % 6:
            raise _ConnectionError(fr.FRAME_SIZE_ERROR, "SETTINGS length")
        grown = False
        for ident, value in fr.parse_settings(f.payload):
            if ident == fr.SETTINGS_INITIAL_WINDOW_SIZE:
                if value > fr.MAX_WINDOW:
                    raise _ConnectionError(fr.FLOW_CONTROL_ERROR, "initial window too large")
                delta = value - self._peer_initial_window
                self._peer_initial_window = value
                for stream in self._streams.values():
                    stream.send_window += delta
                    if stream.send_window > fr.MAX_WINDOW:
                        raise _ConnectionError(fr.FLOW_CONTROL_ERROR, "stream window overflow")
                grown = grown or delta > 0
            elif ident == fr.SETTINGS_MAX_FRAME_SIZE:
                if not fr.DEFAULT_MAX_FRAME_SIZE <= value <= fr.MAX_MAX_FRAME_SIZE:
                    raise _ConnectionError(fr.PROTOCOL_ERROR, "invalid max frame size")
                self._peer_max_frame = value
            elif ident == fr.SETTINGS_ENABLE_PUSH:
                if value > 1:
                    raise _ConnectionError(fr.PROTOCOL_ERROR, "invalid enable push")
            # HEADER_TABLE_SIZE: our encoder never uses the dynamic table.
            # MAX_CONCURRENT_STREAMS: we never open streams. Others: ignored.
        self._out.append(fr.SETTINGS_ACK)
        if grown:
            for stream in list(self._streams.values()):
                if stream.queue or stream.trailers is not None:
                    self._flush(stream, events)

    def _on_ping(self, f: Frame, events: list[Event]) -> None:
        if f.stream_id:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "PING on a stream")
        if len(f.payload) != 8:
            raise _ConnectionError(fr.FRAME_SIZE_ERROR, "PING length")
        if f.flags & fr.FLAG_ACK:
            events.append(PingAcked(f.payload))
            return
        self._police_ping()
        self._out.append(fr.ping(f.payload, ack=True))

    def _police_ping(self) -> None:
        s = self.settings
        now = self._clock()
        if self._sent_since_ping:
            self._sent_since_ping = False
            self._ping_strikes = 0
            self._last_ping = now
            return
        since = now - self._last_ping
        self._last_ping = now
        if not self._streams and not s.ping_without_calls:
            strike = since < _IDLE_PING_INTERVAL      # grpc-go: with no calls, one ping per 2 hours
        else:
            strike = since < s.min_ping_interval
        if strike:
            self._ping_strikes += 1
            if self._ping_strikes > s.max_ping_strikes:
                raise _ConnectionError(fr.ENHANCE_YOUR_CALM, "too_many_pings")

    def _on_rst_stream(self, f: Frame, events: list[Event]) -> None:
        if len(f.payload) != 4:
            raise _ConnectionError(fr.FRAME_SIZE_ERROR, "RST_STREAM length")
        sid = f.stream_id
        if sid == 0:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "RST_STREAM on stream 0")
        stream = self._streams.pop(sid, None)
        if stream is None:
            if self._is_idle(sid):
                raise _ConnectionError(fr.PROTOCOL_ERROR, "RST_STREAM on an idle stream")
            return
        self._blocked.pop(sid, None)
        # Not remembered as reset by us: further frames from the peer on it are its error.
        events.append(StreamReset(sid, fr.u32(f.payload), True))
        self._police_reset()

    def _police_reset(self) -> None:
        s = self.settings
        now = self._clock()
        self._reset_tokens = min(float(s.reset_burst), self._reset_tokens + (now - self._reset_refilled) * s.reset_rate)
        self._reset_refilled = now
        self._reset_tokens -= 1
        if self._reset_tokens < 0:
            raise _ConnectionError(fr.ENHANCE_YOUR_CALM, "too_many_resets")

    def _on_priority(self, f: Frame) -> None:
        if f.stream_id == 0:
            raise _ConnectionError(fr.PROTOCOL_ERROR, "PRIORITY on stream 0")
        if len(f.payload) != 5:
            raise _StreamError(f.stream_id, fr.FRAME_SIZE_ERROR)
        if (fr.u32(f.payload) & 0x7FFFFFFF) == f.stream_id:
            raise _StreamError(f.stream_id, fr.PROTOCOL_ERROR)

    # -- flow control credit ---------------------------------------------------------

    def consumed(self, stream_id: int, n: int) -> None:
        """The application took ``n`` received bytes: return them to the peer's windows.

        Credit goes back in batches (at half a window) to keep WINDOW_UPDATEs
        rare; a stream whose request is complete gets none (it needs none).
        """
        if n <= 0:
            return
        self._credit_connection(n)
        stream = self._streams.get(stream_id)
        if stream is not None and stream.remote_open:
            stream.unacked += n
            if stream.unacked >= self.settings.initial_window_size >> 1:
                self._out.append(fr.window_update(stream_id, stream.unacked))
                stream.recv_window += stream.unacked
                stream.unacked = 0

    def _credit_connection(self, n: int) -> None:
        self._conn_unacked += n
        if self._conn_unacked >= self.settings.connection_window >> 1:
            self._out.append(fr.window_update(0, self._conn_unacked))
            self._recv_window += self._conn_unacked
            self._conn_unacked = 0

    # -- output ----------------------------------------------------------------------

    def send_headers(self, stream_id: int, block: bytes, end_stream: bool = False) -> bool:
        """Response headers (an encoded HPACK block); False if the stream is gone."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open:
            return False
        self._sent_since_ping = True
        self._out.append(fr.headers(stream_id, block, end_stream, self._peer_max_frame))
        if end_stream:
            stream.local_open = False
            self._ended(stream)
        return True

    def send_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> bool:
        """Body bytes, sent now as far as the windows allow, the rest queued in order."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open:
            return False
        self._sent_since_ping = True
        n = len(data)
        if (not stream.queue and n <= stream.send_window and n <= self._send_window
                and n <= self._peer_max_frame):
            stream.send_window -= n
            self._send_window -= n
            self._out.append(fr.frame_header(fr.DATA, fr.FLAG_END_STREAM if end_stream else 0, stream_id, n))
            self._out.append(data)
            if end_stream:
                stream.local_open = False
                self._ended(stream)
            return True
        if n:
            stream.queue.append(memoryview(data))
            stream.queued += n
        if end_stream:
            stream.local_open = False
            stream.end_after_queue = True
        self._flush(stream, None)
        return True

    def send_trailers(self, stream_id: int, block: bytes) -> bool:
        """End the stream with a trailer block, after any queued data."""
        stream = self._streams.get(stream_id)
        if stream is None or not stream.local_open:
            return False
        stream.local_open = False
        if stream.queue:
            stream.trailers = block
            return True
        self._out.append(fr.headers(stream_id, block, True, self._peer_max_frame))
        self._ended(stream)
        return True

    def pending_bytes(self, stream_id: int) -> int:
        """Bytes of the stream still queued for lack of window (0 for a stream that is gone)."""
        stream = self._streams.get(stream_id)
        return stream.queued if stream is not None else 0

    def want_ready(self, stream_id: int) -> None:
        """Ask for a `SendReady` event once the stream's queue is below the low-water mark."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.wants_ready = True

    def reset_stream(self, stream_id: int, error_code: int = fr.CANCEL) -> None:
        """Abandon a stream (e.g. an expired deadline); nothing more is sent on it."""
        if stream_id in self._streams:
            self._reset(stream_id, error_code)

    def ping(self, payload: bytes) -> None:
        self._out.append(fr.ping(payload))

    def close(self, error_code: int = fr.NO_ERROR, debug: bytes = b"") -> None:
        """GOAWAY: no new streams; the ones already started may finish."""
        if self.goaway_sent:
            return
        self.goaway_sent = True
        self._out.append(fr.goaway(self._last_stream_id, error_code, debug))

    def _flush(self, stream: _Stream, events: list[Event] | None) -> None:
        """Send what the windows allow of the stream's queue (and its end, when reached)."""
        out = self._out
        max_frame = self._peer_max_frame
        queue = stream.queue
        while queue:
            room = min(stream.send_window, self._send_window, max_frame)
            if room <= 0:
                if self._send_window <= 0 and stream.send_window > 0:
                    self._blocked[stream.id] = None
                break
            chunk = queue[0]
            if len(chunk) <= room:
                queue.popleft()
                piece = chunk
            else:
                piece = chunk[:room]
                queue[0] = chunk[room:]
            n = len(piece)
            stream.queued -= n
            stream.send_window -= n
            self._send_window -= n
            last = not queue and stream.end_after_queue
            out.append(fr.frame_header(fr.DATA, fr.FLAG_END_STREAM if last else 0, stream.id, n))
            out.append(bytes(piece))
        if not queue:
            self._blocked.pop(stream.id, None)
            if stream.trailers is not None:
                out.append(fr.headers(stream.id, stream.trailers, True, max_frame))
                stream.trailers = None
                self._ended(stream)
            elif stream.end_after_queue:
                stream.end_after_queue = False
                self._ended(stream)
        if (events is not None and stream.wants_ready
                and stream.queued < self.settings.send_low_water):
            stream.wants_ready = False
            events.append(SendReady(stream.id))

    def _flush_blocked(self, events: list[Event]) -> None:
        for sid in list(self._blocked):
            if self._send_window <= 0:
                break
            self._blocked.pop(sid, None)
            stream = self._streams.get(sid)
            if stream is not None:
                self._flush(stream, events)

    def _ended(self, stream: _Stream) -> None:
        """Our END_STREAM went out. A client still sending is told to stop (NO_ERROR)."""
        if stream.remote_open:
            self._reset(stream.id, fr.NO_ERROR)
        else:
            self._streams.pop(stream.id, None)

    def _maybe_forget(self, stream: _Stream) -> None:
        if not stream.local_open and not stream.queue and stream.trailers is None and not stream.end_after_queue:
            self._streams.pop(stream.id, None)

    def _reset(self, sid: int, code: int) -> None:
        self._streams.pop(sid, None)
        self._blocked.pop(sid, None)
        self._remember_reset(sid)
        self._out.append(fr.rst_stream(sid, code))

    def _remember_reset(self, sid: int) -> None:
        self._reset_ids.add(sid)
        self._reset_order.append(sid)
        if len(self._reset_order) > _RECENTLY_RESET:
            self._reset_ids.discard(self._reset_order.popleft())

    def _stream_error(self, sid: int, code: int, events: list[Event]) -> None:
        known = sid in self._streams
        self._reset(sid, code)
        if known:
            events.append(StreamReset(sid, code, False))

    def _connection_error(self, code: int, debug: str) -> None:
        self._out.append(fr.goaway(self._last_stream_id, code, debug.encode()))
        self.goaway_sent = True
        self.closed = True
        self.error_code = code
        self._streams.clear()
        self._blocked.clear()
        self._buf = bytearray()
