"""The watch's resumable state, shared by both faces' watch streams.

A `WatchState` turns etcd's WatchResponses into what the user sees and knows
where to start again: after a disconnect, a member failure or a "no leader"
cancel, the face opens a new stream (on any member) with `create_request()`,
which starts right after the last revision delivered. So no event is lost or
repeated across reconnects, and a resume point that has been compacted away is
reported as `Compacted` (with the compact revision) instead of skipped.

Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from etcdx.pb import rpc_pb2

from .errors import Compacted, WatchCanceled
from .types import Event, Header, KeyLike, WatchResponse, to_bytes

_Filter = rpc_pb2.WatchCreateRequest.FilterType
FILTERS = {"noput": _Filter.NOPUT, "nodelete": _Filter.NODELETE}

# Cancel reasons that mean "this member cannot serve the watch now", not "this watch is wrong".
_TRANSIENT_CANCEL_REASONS = ("etcdserver: no leader", "etcdserver: leader changed", "etcdserver: server stopped")


class Reconnect(Exception):
    """The server ended this stream's watch for a reason another member may not have."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WatchSpec:
    key: bytes
    range_end: bytes
    start_revision: int
    prev_kv: bool
    progress_notify: bool
    filters: tuple[int, ...]

    @classmethod
    def create(
        cls,
        key: KeyLike,
        range_end: bytes,
        *,
        start_revision: int = 0,
        prev_kv: bool = False,
        progress_notify: bool = False,
        filters: Iterable[str] = (),
    ) -> WatchSpec:
        try:
            codes = tuple(FILTERS[f.lower()] for f in filters)
        except KeyError as e:
            raise ValueError(f"unknown watch filter {e.args[0]!r} (known: {', '.join(FILTERS)})") from None
        return cls(to_bytes(key), range_end, start_revision, prev_kv, progress_notify, codes)


class WatchState:
    """Where the watch stands; see the module docstring."""

    def __init__(self, spec: WatchSpec) -> None:
        self.spec = spec
        # The first revision not yet known to be delivered: the resume point.
        # 0 until the first stream is created with "start now".
        self.next_revision = spec.start_revision
        # The last revision whose events were handed out; events at or before
        # it on a later stream are duplicates and are dropped.
        self.delivered_revision = spec.start_revision - 1 if spec.start_revision > 0 else 0
        self.watch_id: int | None = None

    def create_request(self) -> rpc_pb2.WatchRequest:
        """The request that (re)creates the watch on a new stream."""
        self.watch_id = None
        s = self.spec
        return rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(
                key=s.key,
                range_end=s.range_end,
                start_revision=self.next_revision,
                progress_notify=s.progress_notify,
                filters=list(s.filters),
                prev_kv=s.prev_kv,
            )
        )

    @staticmethod
    def progress_request() -> rpc_pb2.WatchRequest:
        return rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())

    def on_response(self, resp: rpc_pb2.WatchResponse) -> WatchResponse | None:
        """What to hand to the user for one response (None: nothing), or raise.

        Raises `Compacted` (with ``compact_revision``) when the revision to
        start from is gone, `WatchCanceled` when the server refused the watch,
        and `Reconnect` when this member cannot serve it now.
        """
        if resp.canceled:
            if resp.compact_revision:
                raise Compacted(
                    grpc.StatusCode.OUT_OF_RANGE,
                    resp.cancel_reason or "etcdserver: mvcc: required revision has been compacted",
                    compact_revision=resp.compact_revision,
                )
            if resp.cancel_reason in _TRANSIENT_CANCEL_REASONS:
                raise Reconnect(resp.cancel_reason)
            raise WatchCanceled(resp.cancel_reason or "watch canceled by the server")
        if resp.created:
            self.watch_id = resp.watch_id
            if self.next_revision == 0:
                # "Start now" means after the revision the watch was created at:
                # a reconnect must not skip what happened in between.
                self.next_revision = resp.header.revision + 1
                self.delivered_revision = resp.header.revision
            return None
        if resp.watch_id not in (self.watch_id, -1):
            return None  # not ours (a stream carries only our watch; ignore strays)
        header = Header.from_pb(resp.header)
        if not resp.events:
            # Progress: every event up to header.revision has been sent.
            self.next_revision = max(self.next_revision, header.revision + 1)
            return WatchResponse(header.revision, (), header)
        events = tuple(Event.from_pb(e) for e in resp.events if e.kv.mod_revision > self.delivered_revision)
        if not events:
            return None
        last = events[-1].kv.mod_revision
        self.delivered_revision = last
        self.next_revision = max(self.next_revision, last + 1)
        return WatchResponse(header.revision, events, header)
