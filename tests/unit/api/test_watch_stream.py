"""WatchStream's ordering promises, driven directly over a real store and watch hub."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from etcdx.api.watch import WatchStream
from etcdx.backend import Backend
from etcdx.mvcc import KVStore
from etcdx.mvcc.watch_hub import WatchHub
from etcdx.pb import rpc_pb2
from etcdx.server.headers import Headers


class FakeServer:
    """What a WatchStream needs of the server: the hub, headers, the config."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.kv = KVStore(backend)
        self.hub = WatchHub(backend)
        self.cfg = SimpleNamespace(max_request_bytes=1 << 20)
        self.headers = Headers(1, 2, lambda: 3, lambda: self.kv.current_revision)

    def kick_watch_sync(self) -> None:
        pass

    def put(self, key: bytes, value: bytes) -> None:
        with self.backend.write() as btx:
            w = self.kv.write(btx)
            w.put(key, value)
            rev = w.revision
            events = w.end()
        self.hub.notify(events, rev)


@pytest.fixture
def server(tmp_path):
    backend = Backend(str(tmp_path / "db"), map_size=1 << 26)
    yield FakeServer(backend)
    backend.close()


@pytest.fixture
def stream(server):
    async def make() -> WatchStream:
        return WatchStream(server)  # needs a running loop for its Event
    return asyncio.run(make())


def _kinds(responses: list[rpc_pb2.WatchResponse]) -> list[str]:
    out = []
    for r in responses:
        if r.created:
            out.append("created")
        elif r.events:
            out.append(f"events@{r.events[-1].kv.mod_revision}")
        else:
            out.append(f"progress@{r.header.revision}")
    return out


def test_a_requested_progress_notification_follows_the_events_already_buffered(server, stream):
    stream.create(rpc_pb2.WatchCreateRequest(key=b"k"))
    assert _kinds(stream.drain()) == ["created"]
    server.put(b"k", b"1")  # buffered for the watcher, not yet drained
    stream.progress_all()
    assert _kinds(stream.drain()) == ["events@2", "progress@2"]


def test_no_progress_notification_while_a_watcher_catches_up(server, stream):
    for i in range(5):
        server.put(b"k", b"%d" % i)
    stream.create(rpc_pb2.WatchCreateRequest(key=b"k", start_revision=2))  # in the past: unsynced
    stream.progress_all()
    assert _kinds(stream.drain()) == ["created"]
    assert stream.progress_pending
    while server.hub.sync_unsynced():
        pass
    assert _kinds(stream.drain()) == ["events@6", "progress@6"]
    assert not stream.progress_pending


def test_progress_of_a_stream_without_watchers_is_the_current_revision(server, stream):
    server.put(b"a", b"1")
    stream.progress_all()
    assert _kinds(stream.drain()) == ["progress@2"]
