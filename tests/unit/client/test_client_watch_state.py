"""The watch's resume point and de-duplication, driven with hand-made responses."""

from __future__ import annotations

import pytest

from etcdx.client import Compacted, WatchCanceled
from etcdx.client.watch import Reconnect, WatchSpec, WatchState
from etcdx.pb import kv_pb2, rpc_pb2


def created(revision: int, watch_id: int = 7) -> rpc_pb2.WatchResponse:
    return rpc_pb2.WatchResponse(header=rpc_pb2.ResponseHeader(revision=revision), watch_id=watch_id, created=True)


def events(*revisions: int, watch_id: int = 7) -> rpc_pb2.WatchResponse:
    return rpc_pb2.WatchResponse(
        header=rpc_pb2.ResponseHeader(revision=max(revisions)),
        watch_id=watch_id,
        events=[kv_pb2.Event(kv=kv_pb2.KeyValue(key=b"k", mod_revision=r, version=1)) for r in revisions],
    )


def progress(revision: int, watch_id: int = -1) -> rpc_pb2.WatchResponse:
    return rpc_pb2.WatchResponse(header=rpc_pb2.ResponseHeader(revision=revision), watch_id=watch_id)


def state(start_revision: int = 0) -> WatchState:
    return WatchState(WatchSpec.create(b"k", b"", start_revision=start_revision, filters=["noput"]))


def test_a_watch_from_now_resumes_after_the_revision_it_was_created_at():
    s = state()
    assert s.create_request().create_request.start_revision == 0
    assert s.on_response(created(41)) is None
    assert s.create_request().create_request.start_revision == 42


def test_it_resumes_after_the_last_delivered_event():
    s = state()
    s.on_response(created(41))
    delivered = s.on_response(events(42, 45))
    assert [e.revision for e in delivered.events] == [42, 45]
    request = s.create_request().create_request
    assert request.start_revision == 46 and list(request.filters) == [rpc_pb2.WatchCreateRequest.NOPUT]


def test_events_already_delivered_are_dropped_after_a_reconnect():
    s = state(start_revision=10)
    s.on_response(created(12))
    s.on_response(events(10, 11))
    s.create_request()
    s.on_response(created(13, watch_id=8))
    again = s.on_response(events(11, 12, watch_id=8))
    assert [e.revision for e in again.events] == [12]
    assert s.on_response(events(12, watch_id=8)) is None


def test_a_progress_notification_moves_the_resume_point():
    s = state()
    s.on_response(created(5))
    note = s.on_response(progress(9))
    assert note.progress_notify and note.revision == 9
    assert s.next_revision == 10


def test_a_late_event_below_a_progress_point_is_still_delivered():
    """etcd 3.4 may announce progress before a catching-up watcher got its events: keep them."""
    s = state()
    s.on_response(created(5))
    s.on_response(progress(9))
    late = s.on_response(events(7))
    assert [e.revision for e in late.events] == [7]
    assert s.next_revision == 10


def test_responses_for_another_watch_are_ignored():
    s = state()
    s.on_response(created(5))
    assert s.on_response(events(6, watch_id=99)) is None


def test_a_compacted_resume_point_raises_with_the_compact_revision():
    s = state(start_revision=3)
    s.on_response(created(20))
    canceled = rpc_pb2.WatchResponse(
        watch_id=7, canceled=True, compact_revision=15,
        cancel_reason="etcdserver: mvcc: required revision has been compacted",
    )  # fmt: skip
    with pytest.raises(Compacted) as e:
        s.on_response(canceled)
    assert e.value.compact_revision == 15


def test_a_no_leader_cancel_asks_for_a_reconnect_and_others_raise():
    s = state()
    s.on_response(created(5))
    with pytest.raises(Reconnect):
        s.on_response(rpc_pb2.WatchResponse(watch_id=7, canceled=True, cancel_reason="etcdserver: no leader"))
    with pytest.raises(WatchCanceled) as e:
        s.on_response(rpc_pb2.WatchResponse(watch_id=7, canceled=True, cancel_reason="etcdserver: permission denied"))
    assert e.value.reason == "etcdserver: permission denied"


def test_unknown_filters_are_refused():
    with pytest.raises(ValueError, match="unknown watch filter"):
        WatchSpec.create(b"k", b"", filters=["nothing"])
