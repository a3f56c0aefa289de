"""Leases through the client, against etcd and etcdx, through both faces."""

from __future__ import annotations

import threading

import pytest

from etcdx.client import Client, EventType, LeaseExpired, errors

TTL = 2  # etcd's smallest TTL with default timings; a shorter one is raised to it
DEADLINE = 20.0


def wait_deleted(watch, key: bytes) -> None:
    """Wait (up to DEADLINE) for the watch to report ``key`` deleted."""
    while True:
        for event in watch.get(timeout=DEADLINE).events:
            if event.type is EventType.DELETE and event.kv.key == key:
                return


def test_keepalive_keeps_the_lease_and_its_keys_past_the_ttl(member, connect, prefix):
    c = connect(member.endpoint)
    lease = c.lease(TTL)
    c.put(prefix + "k", "v", lease=lease)
    assert not lease.wait_lost(timeout=TTL * 1.5)
    info = lease.time_to_live(keys=True)
    assert info.ttl > 0 and info.granted_ttl == TTL and info.keys == ((prefix + "k").encode(),)
    assert c.get(prefix + "k").kv.lease == lease.id
    lease.revoke()
    assert c.get(prefix + "k").kv is None


def test_a_lease_revoked_elsewhere_is_reported_lost(member, connect, prefix):
    c = connect(member.endpoint)
    other = connect(member.endpoint)
    lease = c.lease(TTL)
    other.lease_revoke(lease.id)
    assert lease.wait_lost(timeout=DEADLINE)
    assert lease.lost and isinstance(lease.error, LeaseExpired)


def test_closing_stops_the_keepalive_and_the_lease_then_expires(member, connect, prefix):
    c = connect(member.endpoint)
    lease = c.lease(TTL)
    c.put(prefix + "k", "v", lease=lease)
    with c.watch(prefix + "k", filters=["noput"]) as w:
        lease.close()
        wait_deleted(w, (prefix + "k").encode())
    assert lease.time_to_live().ttl == -1


def test_leaving_a_lease_context_revokes_it(member, connect, prefix):
    c = connect(member.endpoint)
    with c.lease(60) as lease:
        c.put(prefix + "k", "v", lease=lease)
        assert lease.id in c.lease_leases()
    assert c.get(prefix + "k").kv is None
    assert lease.id not in c.lease_leases()
    lease.revoke()  # again: already gone is fine


def test_lease_calls_by_id(member, connect, prefix):
    c = connect(member.endpoint)
    grant = c.lease_grant(60, lease_id=0x5EED0000 + len(prefix))
    assert grant.id == 0x5EED0000 + len(prefix) and grant.ttl == 60
    assert c.lease_keepalive_once(grant.id) == 60
    with pytest.raises(errors.LeaseExists):
        c.lease_grant(60, lease_id=grant.id)
    c.lease_revoke(grant.id)
    assert c.lease_keepalive_once(grant.id) == 0
    assert c.lease_time_to_live(grant.id).ttl == -1
    with pytest.raises(errors.LeaseNotFound):
        c.lease_revoke(grant.id)


def test_closing_a_client_stops_its_keepalive_and_watch_threads(member, prefix):
    c = Client([member.endpoint])
    leases = [c.lease(60) for _ in range(2)]
    c.watch(prefix + "k")
    assert [t for t in threading.enumerate() if t.name.startswith("etcdx-")]
    c.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("etcdx-")]
    with Client([member.endpoint]) as admin:
        for lease in leases:  # not revoked: closing only stops the keep-alive
            assert admin.lease_time_to_live(lease.id).ttl > 0
            admin.lease_revoke(lease.id)
