"""A checker for etcd's watch guarantees over recorded watch streams.

Watches are not linearizable, so they are not checked against the KV search;
instead each watcher's stream is compared with the one true sequence of
revisions. That sequence comes from the writes' successful responses and, for
writes whose responses were lost, from the events watchers reported: a
revision nobody saw a response for is accepted as long as every watcher that
reports it agrees, and it then fills in the history. The guarantees
(ETCD-FACTS.md, Guarantees): ordered, unique, atomic, reliable, resumable (a
watch restarted from last revision + 1 is just another watcher, held to
reliability from its start revision), bookmarkable progress notifications,
correct prev_kv, honoured filters, and events identical to the history.

Replaying the history gives each event's expected create revision, version and
prev_kv. A revision known to no one (no response, no watcher) might have
touched any key, so after one those fields are learned again, per key, from the
next event a watcher reports for it rather than predicted.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from etcdx.check.etcd_ops import FRESH_STORE_REVISION, Change, KeyValue

PUT = "PUT"
DELETE = "DELETE"
NOPUT = "NOPUT"
NODELETE = "NODELETE"


@dataclass(frozen=True, slots=True)
class Event:
    """A watch event as received. A DELETE carries only key and mod_revision, as in etcd."""

    type: str
    key: str
    mod_revision: int
    value: Hashable | None = None
    create_revision: int = 0
    version: int = 0
    lease: int = 0
    prev_kv: KeyValue | None = None


@dataclass(frozen=True, slots=True)
class WatchRequest:
    """etcd's WatchCreateRequest: ``range_end`` "" is one key, "\\0" every key from ``key``."""

    key: str
    range_end: str = ""
    start_revision: int = 0
    prev_kv: bool = False
    filters: frozenset[str] = frozenset()

    def covers(self, key: str) -> bool:
        if self.range_end == "":
            return key == self.key
        if self.range_end == "\0":
            return key >= self.key
        return self.key <= key < self.range_end


def prefix_range_end(prefix: str) -> str:
    """The range_end that makes a watch or range cover every key with ``prefix``."""
    for i in range(len(prefix) - 1, -1, -1):
        if ord(prefix[i]) < 0x10FFFF:
            return prefix[:i] + chr(ord(prefix[i]) + 1)
    return "\0"


@dataclass(frozen=True, slots=True)
class WatchResponse:
    """One response on the watch stream.

    With events, ``header_revision`` is ignored. Without events and neither
    created nor canceled it is a progress notification bookmarking
    ``header_revision``. A cancel carries ``compact_revision`` when the
    revision the watcher needed was compacted. The recorder merges the
    fragments of a fragmented response into one.
    """

    events: tuple[Event, ...] = ()
    header_revision: int = 0
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0


@dataclass(slots=True)
class Watcher:
    request: WatchRequest
    responses: list[WatchResponse] = field(default_factory=list)
    name: str = ""


@dataclass(frozen=True, slots=True)
class _Expected:
    """An event the history predicts; None fields (and prev_kv ``_UNKNOWN``) are not known."""

    type: str
    key: str
    mod_revision: int
    position: int
    value: Hashable | None
    create_revision: int | None
    version: int | None
    lease: int
    prev_kv: Any


class _Unknown:
    def __repr__(self) -> str:
        return "unknown"


_UNKNOWN = _Unknown()


def check_watches(
    writes: Mapping[int, Sequence[Change]],
    watchers: Sequence[Watcher],
    initial_revision: int = FRESH_STORE_REVISION,
    *,
    tolerate_stale_progress: bool = False,
) -> list[str]:
    """Every violation of etcd's watch guarantees, one human-readable line each.

    ``writes`` maps each revision known from a successful response to every
    change that revision made, in order. ``tolerate_stale_progress`` is for
    etcd 3.4 only, whose requested progress notifications can overtake events
    (etcd-io/etcd#15220): progress notifications then vouch for nothing.
    """
    violations: list[str] = []
    observed, reporters = _observed(watchers)
    history = _replay(writes, observed, reporters, initial_revision)
    for number, watcher in enumerate(watchers):
        name = watcher.name or f"watcher {number}"
        violations += [f"{name}: {v}" for v in _check_watcher(watcher, history, tolerate_stale_progress)]
    return violations


def revision_log(writes: Mapping[int, Sequence[Change]], watchers: Sequence[Watcher]) -> dict[int, list[Change]]:
    """``writes`` with the revisions only watchers saw filled in from their events.

    Complete for every revision it lists when some watcher watched every key
    without filters, which is what ``EtcdModel(changes=...)`` needs; check the
    streams with ``check_watches`` first.
    """
    log = {revision: list(changes) for revision, changes in writes.items()}
    observed, _ = _observed(watchers)
    for revision, events in observed.items():
        if revision not in log:
            log[revision] = [Change(e.key, e.value if e.type == PUT else None, e.lease) for e in events.values()]
    return dict(sorted(log.items()))


def _observed(
    watchers: Sequence[Watcher],
) -> tuple[dict[int, dict[str, Event]], dict[int, list[WatchRequest]]]:
    """The first event any watcher reported for each (revision, key), in stream
    order, and per revision the unfiltered watchers that reported it (which,
    being atomic, vouch for every change in their range at that revision)."""
    observed: dict[int, dict[str, Event]] = {}
    reporters: dict[int, list[WatchRequest]] = {}
    for watcher in watchers:
        for response in watcher.responses:
            for event in response.events:
                observed.setdefault(event.mod_revision, {}).setdefault(event.key, event)
                if not watcher.request.filters:
                    requests = reporters.setdefault(event.mod_revision, [])
                    if not requests or requests[-1] is not watcher.request:
                        requests.append(watcher.request)
    return observed, reporters


def _replay(
    writes: Mapping[int, Sequence[Change]],
    observed: dict[int, dict[str, Event]],
    reporters: dict[int, list[WatchRequest]],
    initial_revision: int,
) -> dict[int, dict[str, _Expected]]:
    """The expected events of every revision, as far as they can be known."""
    history: dict[int, dict[str, _Expected]] = {}
    state: dict[str, Any] = {}  # key -> KeyValue-like tuple, None (absent) or _UNKNOWN
    all_unknown = False  # after a revision nobody knows, any key may have changed
    keys = {c.key for changes in writes.values() for c in changes} | {k for seen in observed.values() for k in seen}
    last = max([initial_revision, *writes, *observed])
    for revision in range(initial_revision + 1, last + 1):
        seen = observed.get(revision, {})
        if revision in writes:
            changes = list(writes[revision])
        elif seen:
            # Known only in part: keys no reporting watcher covers may have changed too.
            changes = [Change(e.key, e.value if e.type == PUT else None, e.lease) for e in seen.values()]
            vouched = reporters.get(revision, [])
            for key in keys:
                if not any(request.covers(key) for request in vouched):
                    state[key] = _UNKNOWN
                elif key not in state:
                    state[key] = _UNKNOWN if all_unknown else None
            all_unknown = True
        else:
            all_unknown = True
            state = {}
            continue
        expected: dict[str, _Expected] = {}
        for position, change in enumerate(changes):
            prev = state.get(change.key, _UNKNOWN if all_unknown else None)
            event = _predict(revision, position, change, prev)
            witness = seen.get(change.key)
            if witness is not None and witness.type == event.type and witness.value == event.value:
                event = _learn(event, witness)
            expected[change.key] = event
            if event.type == DELETE:
                state[change.key] = None
            else:
                state[change.key] = KeyValue(
                    event.value, event.create_revision, revision, event.version, event.lease
                )
        history[revision] = expected
    return history


def _predict(revision: int, position: int, change: Change, prev: Any) -> _Expected:
    if change.value is None:
        return _Expected(DELETE, change.key, revision, position, None, 0, 0, 0, prev)
    if prev is None:
        create, version = revision, 1
    elif prev is _UNKNOWN:
        create, version = None, None
    else:
        create = prev.create_revision
        version = None if prev.version is None else prev.version + 1
    return _Expected(PUT, change.key, revision, position, change.value, create, version, change.lease, prev)


def _learn(expected: _Expected, witness: Event) -> _Expected:
    """Take the fields the replay could not predict from a reported event."""
    if expected.type == DELETE:
        return expected
    create = witness.create_revision if expected.create_revision is None else expected.create_revision
    version = witness.version if expected.version is None else expected.version
    return _Expected(
        expected.type, expected.key, expected.mod_revision, expected.position, expected.value,
        create, version, expected.lease, expected.prev_kv,
    )


def _check_watcher(watcher: Watcher, history: dict[int, dict[str, _Expected]],
                   tolerate_stale_progress: bool = False) -> list[str]:
    request = watcher.request
    problems: list[str] = []
    start = request.start_revision or None
    delivered = None if start is None else start - 1  # every matching event up to here arrived
    last: tuple[int, int] = (0, -1)  # (revision, position) of the last event
    bookmark = 0
    revisions_done: set[int] = set()
    received: set[tuple[int, str]] = set()
    canceled = False
    for number, response in enumerate(watcher.responses):
        where = f"response {number}"
        if canceled:
            problems.append(f"{where} arrived after the watch was canceled")
        if response.canceled:
            canceled = True
            needed = None if delivered is None else delivered + 1
            if response.compact_revision and needed is not None and needed >= response.compact_revision:
                problems.append(
                    f"{where} canceled as compacted at {response.compact_revision}, "
                    f"but the watch needed revision {needed}, which is kept"
                )
            continue
        if response.created:
            if start is None and response.header_revision:
                start = response.header_revision + 1
                delivered = response.header_revision
            continue
        if not response.events:
            if tolerate_stale_progress:
                continue
            progress = response.header_revision
            if progress < bookmark:
                problems.append(f"{where}: progress notification went backwards from {bookmark} to {progress}")
            if progress < last[0]:
                problems.append(
                    f"{where}: progress notification at {progress} is below event revision {last[0]} already sent"
                )
            bookmark = max(bookmark, progress)
            delivered = progress if delivered is None else max(delivered, progress)
            continue
        if start is None:
            start = response.events[0].mod_revision
        here: set[int] = set()
        for event in response.events:
            revision = event.mod_revision
            expected = history.get(revision, {}).get(event.key)
            position = expected.position if expected is not None else 0
            if (revision, event.key) in received:
                problems.append(f"{where}: duplicate event {_show(event)}")
            elif (revision, position) <= last:
                problems.append(f"{where}: out of order event {_show(event)} after revision {last[0]}")
            elif revision <= bookmark:
                problems.append(f"{where}: event {_show(event)} arrived after a progress notification at {bookmark}")
            elif revision in revisions_done:
                problems.append(f"{where}: revision {revision} split across responses (not atomic)")
            if revision < start:
                problems.append(f"{where}: event {_show(event)} precedes the start revision {start}")
            last = max(last, (revision, position))
            here.add(revision)
            received.add((revision, event.key))
            problems += [f"{where}: {p}" for p in _compare_event(request, event, expected)]
        revisions_done |= here
        newest = max(here)
        delivered = newest if delivered is None else max(delivered, newest)
    if start is not None and delivered is not None:
        problems += _missing(request, received, history, start, delivered)
    return problems


def _compare_event(request: WatchRequest, event: Event, expected: _Expected | None) -> list[str]:
    if not request.covers(event.key):
        return [f"event {_show(event)} is outside the watched range"]
    if (event.type == PUT and NOPUT in request.filters) or (event.type == DELETE and NODELETE in request.filters):
        return [f"event {_show(event)} should have been filtered out"]
    if expected is None:
        return [f"event {_show(event)} matches no change in the history at revision {event.mod_revision}"]
    wrong = [
        f"{name} {got!r} (history: {want!r})"
        for name, got, want in (
            ("type", event.type, expected.type),
            ("value", event.value, expected.value),
            ("create_revision", event.create_revision, expected.create_revision),
            ("version", event.version, expected.version),
            ("lease", event.lease, expected.lease),
        )
        if want is not None and got != want
    ]
    if request.prev_kv:
        if expected.prev_kv is not _UNKNOWN and not _same_kv(event.prev_kv, expected.prev_kv):
            wrong.append(f"prev_kv {event.prev_kv!r} (history: {expected.prev_kv!r})")
    elif event.prev_kv is not None:
        wrong.append("prev_kv sent though the watch did not ask for it")
    return [f"event {_show(event)} differs from the history: " + "; ".join(wrong)] if wrong else []


def _same_kv(got: KeyValue | None, want: KeyValue | None) -> bool:
    if got is None or want is None:
        return got is want
    return all(
        w is None or g == w
        for g, w in (
            (got.value, want.value),
            (got.create_revision, want.create_revision),
            (got.mod_revision, want.mod_revision),
            (got.version, want.version),
            (got.lease, want.lease),
        )
    )


def _missing(
    request: WatchRequest,
    received: set[tuple[int, str]],
    history: dict[int, dict[str, _Expected]],
    start: int,
    delivered: int,
) -> list[str]:
    """Matching events between the start and the last revision the stream vouched for that never came."""
    problems = []
    for revision in range(start, delivered + 1):
        for key, expected in history.get(revision, {}).items():
            if not request.covers(key) or (revision, key) in received:
                continue
            if (expected.type == PUT and NOPUT in request.filters) or (
                expected.type == DELETE and NODELETE in request.filters
            ):
                continue
            problems.append(
                f"missing event {expected.type} {key!r} at revision {revision} "
                f"(the stream vouched for every revision up to {delivered})"
            )
    return problems


def _show(event: Event) -> str:
    body = f"{event.value!r}" if event.type == PUT else ""
    return f"{event.type} {event.key!r}{' ' + body if body else ''} @ {event.mod_revision}"
