"""Member-level behaviours a user relies on, checked on etcdx and on the real etcd alike."""

from __future__ import annotations

import queue
import threading
import time

import grpc
import pytest

from etcdx.pb import rpc_pb2
from support import procs

pytestmark = pytest.mark.timeout(120)

KINDS = ["etcd", "etcdx"]


def _member(group: procs.MemberGroup, kind: str, *args: str) -> procs.Member:
    procs.require(kind)
    return group.new(kind, extra_args=list(args))


@pytest.mark.parametrize("kind", KINDS)
def test_quota_raises_nospace_and_refuses_writes_until_disarmed(member_group, kind: str) -> None:
    m = _member(member_group, kind, "--quota-backend-bytes", str(4 * 1024 * 1024))
    kv = m.kv
    value = b"x" * 64 * 1024
    with pytest.raises(grpc.RpcError) as err:
        for i in range(1000):  # 4 MiB in 64; etcd's size lags its batched commits, so allow far more
            kv.Put(rpc_pb2.PutRequest(key=f"big{i}".encode(), value=value), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details() == "etcdserver: mvcc: database space exceeded"
    alarms = m.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=5).alarms
    assert [a.alarm for a in alarms] == [rpc_pb2.NOSPACE]
    # Writes that add data are refused while the alarm is raised; deletes are not.
    with pytest.raises(grpc.RpcError) as err:
        kv.Put(rpc_pb2.PutRequest(key=b"small", value=b"v"), timeout=10)
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    deleted = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"big", range_end=b"bih"), timeout=10)
    assert deleted.deleted > 0
    rev = deleted.header.revision
    kv.Compact(rpc_pb2.CompactionRequest(revision=rev, physical=True), timeout=30)
    m.maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=30)
    m.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.DEACTIVATE,
                                             memberID=alarms[0].memberID, alarm=rpc_pb2.NOSPACE), timeout=5)
    kv.Put(rpc_pb2.PutRequest(key=b"small", value=b"v"), timeout=10)
    assert m.maintenance.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=5).alarms == []


class _WatchClient:
    """A watch stream whose responses are collected on a thread."""

    def __init__(self, member: procs.Member) -> None:
        self.requests: queue.Queue = queue.Queue()
        self.responses: queue.Queue = queue.Queue()
        self.call = member.watch.Watch(iter(self.requests.get, None), timeout=60)
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            for resp in self.call:
                self.responses.put(resp)
        except grpc.RpcError:
            pass

    def send(self, req: rpc_pb2.WatchRequest) -> None:
        self.requests.put(req)

    def next(self, timeout: float = 10.0) -> rpc_pb2.WatchResponse:
        return self.responses.get(timeout=timeout)

    def close(self) -> None:
        self.requests.put(None)
        self.call.cancel()


@pytest.mark.parametrize("kind", KINDS)
def test_progress_notify_reports_the_current_revision(member_group, kind: str) -> None:
    m = _member(member_group, kind, "--experimental-watch-progress-notify-interval", "500ms")
    rev = m.kv.Put(rpc_pb2.PutRequest(key=b"other", value=b"v"), timeout=5).header.revision
    w = _WatchClient(m)
    try:
        w.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"quiet", progress_notify=True)))
        created = w.next()
        assert created.created
        notify = w.next(timeout=10)
        assert notify.watch_id == created.watch_id and not notify.events and not notify.created
        assert notify.header.revision == rev
    finally:
        w.close()


@pytest.mark.parametrize("kind", KINDS)
def test_client_chosen_watch_ids_and_duplicates(member_group, kind: str) -> None:
    m = _member(member_group, kind)
    w = _WatchClient(m)
    try:
        w.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"a", watch_id=7)))
        first = w.next()
        assert first.created and first.watch_id == 7
        w.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"b", watch_id=7)))
        dup = w.next()
        assert dup.created and dup.canceled and dup.watch_id == -1
        assert dup.cancel_reason == "mvcc: duplicate watch ID provided on the WatchStream"
        m.kv.Put(rpc_pb2.PutRequest(key=b"a", value=b"1"), timeout=5)
        ev = w.next()
        assert ev.watch_id == 7 and [e.kv.value for e in ev.events] == [b"1"]
        w.send(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=7)))
        cancel = w.next()
        assert cancel.canceled and cancel.watch_id == 7
    finally:
        w.close()


@pytest.mark.parametrize("kind", KINDS)
def test_fragmented_watch_splits_a_large_revision(member_group, kind: str) -> None:
    m = _member(member_group, kind, "--max-request-bytes", str(64 * 1024))
    kv = m.kv
    big = b"v" * 60 * 1024
    for i in range(12):
        kv.Put(rpc_pb2.PutRequest(key=f"f/{i:02d}".encode(), value=big), timeout=5)
    # One revision deleting all twelve keys: with prev_kv its events are ~720 KiB,
    # more than max-request-bytes + 512 KiB, so a fragment watcher gets pieces.
    rev = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"f/", range_end=b"f0"), timeout=5).header.revision
    w = _WatchClient(m)
    try:
        w.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
            key=b"f/", range_end=b"f0", start_revision=rev, prev_kv=True, fragment=True)))
        assert w.next().created
        parts = []
        while True:
            resp = w.next()
            parts.append(resp)
            if not resp.fragment:
                break
        assert len(parts) > 1, "a response over the limit must be fragmented"
        events = [e for p in parts for e in p.events]
        assert len(events) == 12 and all(e.kv.mod_revision == rev for e in events)
    finally:
        w.close()


@pytest.mark.parametrize("kind", KINDS)
def test_periodic_auto_compaction(member_group, kind: str) -> None:
    m = _member(member_group, kind, "--auto-compaction-mode", "periodic", "--auto-compaction-retention", "2s")
    kv = m.kv
    first = kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"1"), timeout=5).header.revision
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"2"), timeout=5)
        try:
            kv.Range(rpc_pb2.RangeRequest(key=b"k", revision=first), timeout=5)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.OUT_OF_RANGE
            return
        time.sleep(0.5)
    pytest.fail("history older than the retention was never compacted")
