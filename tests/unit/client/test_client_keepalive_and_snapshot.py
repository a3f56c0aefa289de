"""The keep-alive schedule and the snapshot check: pure, with times and bytes passed in."""

from __future__ import annotations

import hashlib

import pytest

from etcdx.client.lease import KEEPALIVE_RETRY_INTERVAL, KeepAliveSchedule
from etcdx.client.snapshot import SnapshotCheck, SnapshotCorrupt


def test_keepalives_go_every_third_of_the_ttl():
    s = KeepAliveSchedule.start(100.0, 9)
    assert s.next_at == 103.0 and s.deadline == 109.0
    s.renewed(103.0, 9)
    assert s.next_at == 106.0 and s.deadline == 112.0


def test_after_a_failure_it_retries_soon_and_gives_up_at_the_deadline():
    s = KeepAliveSchedule.start(0.0, 3)
    s.failed(1.0)
    assert s.next_at == 1.0 + KEEPALIVE_RETRY_INTERVAL
    s.failed(2.9)
    assert s.next_at == 3.0  # never past the deadline
    assert not s.lost(2.99) and s.lost(3.0)
    assert s.call_timeout(2.95) == pytest.approx(0.1)


@pytest.mark.parametrize("chunk", [1, 7, 32, 33, 1000])
def test_a_snapshot_with_its_digest_passes_in_any_chunking(chunk):
    db = bytes(range(256)) * 5
    stream = db + hashlib.sha256(db).digest()
    check = SnapshotCheck()
    for i in range(0, len(stream), chunk):
        check.feed(stream[i : i + chunk])
    check.finish()
    assert check.received == len(stream)


@pytest.mark.parametrize("stream", [b"short", b"x" * 100, b""])
def test_a_snapshot_without_its_digest_fails(stream):
    check = SnapshotCheck()
    check.feed(stream)
    with pytest.raises(SnapshotCorrupt):
        check.finish()
