"""Watches through the client, against etcd and etcdx, through both faces.

The resume tests put the client behind `ClientProxy`, so the watch can be
disconnected while the member keeps serving: writes (and compactions) made
meanwhile are what a resumed watch must deliver exactly once (or report).
"""

from __future__ import annotations

import time

import pytest

from etcdx.client import ClientClosed, Compacted, EventType
from etcdx.testing.clientproxy import ClientProxy

DEADLINE = 20.0


def collect(watch, count: int, deadline: float = DEADLINE) -> list:
    """Events until ``count`` have arrived (fails the test after ``deadline`` seconds)."""
    events: list = []
    end = time.monotonic() + deadline
    while len(events) < count:
        remaining = end - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"only {len(events)} of {count} events after {deadline}s: {events}")
        try:
            events.extend(watch.get(timeout=remaining).events)
        except TimeoutError:
            continue
    return events


@pytest.fixture
def proxy(member):
    with ClientProxy(member.client_port) as p:
        yield p


def test_watch_from_an_old_revision_replays_history(member, connect, prefix):
    c = connect(member.endpoint)
    first = c.put(prefix + "k", "1")
    c.put(prefix + "k", "2")
    with c.watch(prefix + "k", start_revision=first.header.revision) as w:
        events = collect(w, 2)
    assert [e.kv.value for e in events] == [b"1", b"2"]
    assert events[0].revision == first.header.revision


def test_a_disconnected_watch_resumes_without_losing_or_repeating_events(member, connect, prefix, proxy):
    writer = connect(member.endpoint)
    watcher = connect(proxy.endpoint)
    with watcher.watch_prefix(prefix) as w:
        for i in range(3):
            writer.put(f"{prefix}{i}", str(i))
        before = collect(w, 3)
        connections = proxy.connections
        proxy.block()  # the watch's stream breaks; the client keeps trying to reconnect
        for i in range(3, 8):
            writer.put(f"{prefix}{i}", str(i))
        proxy.unblock()
        after = collect(w, 5)
        writer.put(prefix + "last", "x")
        last = collect(w, 1)
        assert proxy.connections > connections  # it did reconnect
    keys = [e.kv.key.decode() for e in before + after + last]
    assert keys == [f"{prefix}{i}" for i in range(8)] + [prefix + "last"]
    revisions = [e.revision for e in before + after + last]
    assert revisions == sorted(set(revisions))


def test_a_watch_created_at_now_resumes_from_its_creation_revision(member, connect, prefix, proxy):
    """No event yet when the stream breaks: the resume must not start at "now" again."""
    writer = connect(member.endpoint)
    watcher = connect(proxy.endpoint)
    with watcher.watch(prefix + "k") as w:
        proxy.block()
        writer.put(prefix + "k", "written while disconnected")
        proxy.unblock()
        (event,) = collect(w, 1)
    assert event.kv.value == b"written while disconnected"


def test_a_resume_point_compacted_away_is_reported_with_the_compact_revision(member, connect, prefix, proxy):
    writer = connect(member.endpoint)
    watcher = connect(proxy.endpoint)
    with watcher.watch(prefix + "k") as w:
        writer.put(prefix + "k", "1")
        collect(w, 1)
        proxy.block()
        writer.put(prefix + "k", "2")
        latest = writer.put(prefix + "k", "3")
        writer.compact(latest.header.revision, physical=True)
        proxy.unblock()
        with pytest.raises(Compacted) as e:
            collect(w, 1)
    assert e.value.compact_revision == latest.header.revision


def test_watching_from_a_compacted_revision_raises_compacted(member, connect, prefix):
    c = connect(member.endpoint)
    first = c.put(prefix + "k", "1")
    latest = c.put(prefix + "k", "2")
    c.compact(latest.header.revision, physical=True)
    with c.watch(prefix + "k", start_revision=first.header.revision) as w:
        with pytest.raises(Compacted) as e:
            w.get(timeout=DEADLINE)
        with pytest.raises(ClientClosed):
            w.get(timeout=DEADLINE)
    assert e.value.compact_revision == latest.header.revision


def test_progress_request_reports_the_current_revision(member, connect, prefix):
    c = connect(member.endpoint)
    with c.watch(prefix + "quiet") as w:
        latest = c.put(prefix + "elsewhere", "x")
        w.request_progress()
        progress = w.get(timeout=DEADLINE)
        assert progress.progress_notify and not progress.events
        assert progress.revision >= latest.header.revision
        assert w.revision == progress.revision + 1


def test_filters_drop_the_events_asked_for(member, connect, prefix):
    c = connect(member.endpoint)
    with c.watch_prefix(prefix, filters=["noput"]) as w:
        c.put(prefix + "k", "1")
        c.delete(prefix + "k")
        (event,) = collect(w, 1)
    assert event.type is EventType.DELETE


def test_closing_a_watch_ends_its_iteration(member, connect, prefix):
    c = connect(member.endpoint)
    w = c.watch(prefix + "k")
    w.close()
    assert list(w) == []


def test_closing_the_client_closes_its_watches(member, connect, prefix):
    c = connect(member.endpoint)
    w = c.watch(prefix + "k")
    c.close()
    with pytest.raises(ClientClosed):
        w.get(timeout=DEADLINE)
