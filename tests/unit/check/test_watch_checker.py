"""etcd's watch guarantees, each pinned by a stream that breaks it."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.check.etcd_ops import LeaseRevoke, Put
from etcdx.check.synthetic import SequentialEtcd, random_etcd_history
from etcdx.check.watch import (
    DELETE,
    NODELETE,
    NOPUT,
    PUT,
    Event,
    WatchRequest,
    WatchResponse,
    Watcher,
    check_watches,
    prefix_range_end,
    revision_log,
)

EVERYTHING = WatchRequest("", "\0", start_revision=2, prev_kv=True)


def store() -> SequentialEtcd:
    """Revisions 2..6: a=1, b=1 (lease 7), a=2 (lease 7), revoke 7 deletes a and b, c=1."""
    etcd = SequentialEtcd()
    for input in (Put("a", "1"), Put("b", "1", lease=7), Put("a", "2", lease=7), LeaseRevoke(7), Put("c", "1")):
        etcd.apply(input)
    return etcd


def stream(request: WatchRequest = EVERYTHING, etcd: SequentialEtcd | None = None) -> list[WatchResponse]:
    return (etcd or store()).watch(request, random.Random(0), progress=0.0)


def events_of(responses: list[WatchResponse]) -> list[Event]:
    return [e for r in responses for e in r.events]


def check(responses: list[WatchResponse], request: WatchRequest = EVERYTHING) -> list[str]:
    return check_watches(store().changes(), [Watcher(request, responses)])


def test_correct_stream_passes():
    assert check(stream()) == []


def test_correct_filtered_and_ranged_streams_pass():
    for request in (
        WatchRequest("a", start_revision=3, filters=frozenset({NODELETE})),
        WatchRequest("", "\0", start_revision=2, filters=frozenset({NOPUT}), prev_kv=True),
        WatchRequest("a", prefix_range_end("a"), start_revision=4),
    ):
        assert check(stream(request), request) == []


def test_reordered_events_are_caught():
    responses = stream()
    responses[1], responses[2] = responses[2], responses[1]
    assert any("out of order" in v for v in check(responses))


def test_missing_event_is_caught():
    responses = stream()
    del responses[2]
    problems = check(responses)
    assert any("missing event PUT 'b' at revision 3" in v for v in problems)


def test_duplicated_event_is_caught():
    responses = stream()
    responses.insert(3, responses[2])
    assert any("duplicate event" in v for v in check(responses))


def test_revision_split_across_responses_is_caught():
    responses = stream()
    split = next(i for i, r in enumerate(responses) if len(r.events) == 2)
    first, second = responses[split].events
    responses[split : split + 1] = [WatchResponse((first,)), WatchResponse((second,))]
    assert any("split across responses" in v for v in check(responses))


def test_progress_notification_going_backwards_is_caught():
    responses = stream() + [WatchResponse(header_revision=8), WatchResponse(header_revision=7)]
    assert any("progress notification went backwards from 8 to 7" in v for v in check(responses))


def test_progress_notification_below_delivered_events_is_caught():
    responses = stream() + [WatchResponse(header_revision=4)]
    assert any("below event revision 6" in v for v in check(responses))


def test_event_after_a_progress_notification_covering_it_is_caught():
    responses = stream()
    responses.insert(2, WatchResponse(header_revision=4))
    problems = check(responses)
    assert any("after a progress notification at 4" in v for v in problems)


def test_stale_progress_is_tolerated_only_when_asked_for_etcd_34():
    """etcd 3.4's requested progress notifications can overtake events (etcd-io/etcd#15220):
    its reference runs tolerate exactly that; etcdx's runs never do."""
    responses = stream()
    responses.insert(2, WatchResponse(header_revision=4))
    assert check(responses)
    assert check_watches(store().changes(), [Watcher(EVERYTHING, responses)], tolerate_stale_progress=True) == []


def test_progress_notification_vouches_for_skipped_events():
    responses = stream()[:2] + [WatchResponse(header_revision=6)]
    problems = check(responses)
    assert any("missing event PUT 'b' at revision 3" in v for v in problems)


def test_wrong_prev_kv_is_caught():
    responses = stream()
    event = responses[3].events[0]  # a=2 at revision 4; its prev_kv is a=1
    responses[3] = WatchResponse((replace(event, prev_kv=None),))
    assert any("prev_kv None" in v for v in check(responses))


def test_prev_kv_sent_unasked_is_caught():
    request = replace(EVERYTHING, prev_kv=False)
    responses = stream(EVERYTHING)
    assert any("did not ask for it" in v for v in check(responses, request))


def test_filtered_event_delivered_is_caught():
    request = replace(EVERYTHING, filters=frozenset({NOPUT}))
    assert any("should have been filtered out" in v for v in check(stream(), request))


def test_event_outside_the_watched_range_is_caught():
    request = WatchRequest("a", start_revision=2, prev_kv=True)
    assert any("outside the watched range" in v for v in check(stream(), request))


def test_event_that_differs_from_the_history_is_caught():
    responses = stream()
    event = responses[1].events[0]
    responses[1] = WatchResponse((replace(event, value="9", version=3),))
    problems = check(responses)
    assert any("value '9' (history: '1')" in v and "version 3 (history: 1)" in v for v in problems)


def test_event_at_a_revision_without_that_change_is_caught():
    responses = stream()
    responses.insert(2, WatchResponse((Event(PUT, "z", 2, "1", 2, 1),)))
    assert any("matches no change in the history at revision 2" in v for v in check(responses))


def test_events_of_a_write_whose_response_was_lost_fill_the_history():
    changes = store().changes()
    del changes[3]  # the put of b lost its response
    watchers = [Watcher(EVERYTHING, stream()), Watcher(WatchRequest("b", start_revision=3), stream(WatchRequest("b", start_revision=3)))]
    assert check_watches(changes, watchers) == []


def test_watchers_that_disagree_about_a_lost_write_are_caught():
    changes = store().changes()
    del changes[3]
    other = stream(WatchRequest("b", start_revision=3))
    event = other[1].events[0]
    other[1] = WatchResponse((replace(event, value="forged"),))
    watchers = [Watcher(EVERYTHING, stream()), Watcher(WatchRequest("b", start_revision=3), other)]
    assert any("value 'forged'" in v for v in check_watches(changes, watchers))


def test_revision_nobody_knows_leaves_later_versions_to_be_learned():
    etcd = store()
    etcd.apply(Put("a", "3"))  # revision 7
    changes = etcd.changes()
    del changes[5]  # the revoke: no response, and no watcher below saw it
    request = WatchRequest("a", start_revision=7)
    assert check_watches(changes, [Watcher(request, stream(request, etcd))]) == []


def test_resumed_watch_from_last_revision_plus_one_passes():
    before = stream()[:3]  # created, revisions 2 and 3
    resumed = WatchRequest("", "\0", start_revision=4, prev_kv=True)
    watchers = [Watcher(EVERYTHING, before), Watcher(resumed, stream(resumed))]
    assert check_watches(store().changes(), watchers) == []


def test_resumed_watch_that_skips_a_revision_is_caught():
    resumed = WatchRequest("", "\0", start_revision=4, prev_kv=True)
    responses = [r for r in stream(resumed) if not any(e.mod_revision == 4 for e in r.events)]
    problems = check(responses, resumed)
    assert any("missing event PUT 'a' at revision 4" in v for v in problems)


def test_watch_from_now_starts_after_the_created_header_revision():
    etcd = store()
    request = WatchRequest("", "\0")
    responses = [WatchResponse(created=True, header_revision=4)] + [
        r for r in stream(replace(request, start_revision=5), etcd) if not r.created
    ]
    assert check_watches(etcd.changes(), [Watcher(request, responses)]) == []
    assert any("missing event DELETE 'a'" in v for v in check_watches(etcd.changes(), [Watcher(request, responses[:1] + responses[2:])]))


def test_cancel_for_compaction_of_a_needed_revision_passes():
    responses = [WatchResponse(created=True, header_revision=1), WatchResponse(canceled=True, compact_revision=4)]
    assert check(responses) == []


def test_cancel_for_compaction_of_a_kept_revision_is_caught():
    responses = stream()[:3] + [WatchResponse(canceled=True, compact_revision=4)]
    assert any("which is kept" in v for v in check(responses))


def test_events_after_cancel_are_caught():
    responses = stream()
    responses.insert(2, WatchResponse(canceled=True))
    assert any("after the watch was canceled" in v for v in check(responses))


def test_deletes_carry_only_key_and_revision():
    deletes = [e for e in events_of(stream()) if e.type == DELETE]
    assert [(e.key, e.mod_revision, e.value, e.version) for e in deletes] == [("a", 5, None, 0), ("b", 5, None, 0)]


def random_watchers(rng: random.Random, etcd: SequentialEtcd, count: int) -> list[Watcher]:
    watchers = []
    for _ in range(count):
        group = f"k/{rng.randrange(2)}/"
        request = WatchRequest(
            group,
            prefix_range_end(group),
            start_revision=rng.randint(2, max(2, etcd.revision)),
            prev_kv=rng.random() < 0.5,
            filters=rng.choice([frozenset(), frozenset({NOPUT}), frozenset({NODELETE})]),
        )
        watchers.append(Watcher(request, etcd.watch(request, rng)))
    return watchers


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 120))
def test_streams_of_a_sequential_etcd_pass_even_with_lost_responses(seed: int, size: int):
    print(f"seed={seed}")
    rng = random.Random(seed)
    etcd = random_etcd_history(rng, size, keys=20, clients=4, leases=True).store
    changes = etcd.changes()
    for revision in rng.sample(sorted(changes), len(changes) // 4):
        del changes[revision]
    assert check_watches(changes, random_watchers(rng, etcd, 4)) == []


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(1, 120))
def test_dropping_any_event_is_caught(seed: int, size: int):
    print(f"seed={seed}")
    rng = random.Random(seed)
    etcd = random_etcd_history(rng, size, keys=20, clients=4).store
    watchers = random_watchers(rng, etcd, 3)
    with_events = [w for w in watchers if any(r.events for r in w.responses)]
    if not with_events:
        return
    victim = rng.choice(with_events)
    index = rng.choice([i for i, r in enumerate(victim.responses) if r.events])
    # Dropping the last response would only shorten what the stream vouches for.
    victim.responses.insert(index + 1, WatchResponse(header_revision=etcd.revision))
    del victim.responses[index]
    assert check_watches(etcd.changes(), watchers) != []


def test_revision_log_fills_in_revisions_only_watchers_saw():
    etcd = store()
    changes = etcd.changes()
    del changes[3]
    log = revision_log(changes, [Watcher(EVERYTHING, stream())])
    assert log == etcd.changes()
