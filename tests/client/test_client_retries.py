"""Retries and failover, against etcd and etcdx, through both faces.

`ClientProxy` loses the response to a request the member has applied: the
client must then retry reads (harmless) and must *not* retry writes (a put
would apply twice); the caller gets an error whose ``may_have_applied`` says so.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from etcdx.client import AsyncClient, Client, ConnectionFailed, ConnectionLost, txn
from etcdx.testing.clientproxy import ClientProxy
from etcdx.testing.procs import free_port


@pytest.fixture
def proxy(member):
    with ClientProxy(member.client_port) as p:
        yield p


def test_a_put_whose_response_was_lost_is_not_retried(member, connect, prefix, proxy):
    c = connect(proxy.endpoint)
    before = c.put(prefix + "k", "1")
    proxy.lose_responses(1)
    with pytest.raises(ConnectionLost) as e:
        c.put(prefix + "k", "2")
    assert e.value.may_have_applied
    assert proxy.responses_lost == 1
    kv = c.get(prefix + "k").kv
    assert kv.value == b"2" and kv.version == 2  # applied exactly once
    assert kv.mod_revision == before.header.revision + 1


def test_a_writing_txn_whose_response_was_lost_is_not_retried(member, connect, prefix, proxy):
    c = connect(proxy.endpoint)
    proxy.lose_responses(1)
    with pytest.raises(ConnectionLost):
        c.txn([], [txn.put(prefix + "a", "1"), txn.put(prefix + "b", "1")])
    assert c.get(prefix + "a").kv.version == 1


def test_a_lease_grant_whose_response_was_lost_is_not_retried(member, connect, prefix, proxy):
    c = connect(proxy.endpoint)
    before = set(c.lease_leases())
    proxy.lose_responses(1)
    with pytest.raises(ConnectionLost):
        c.lease_grant(60)
    granted = set(c.lease_leases()) - before
    assert len(granted) == 1
    for lease_id in granted:
        c.lease_revoke(lease_id)


def test_reads_whose_response_was_lost_are_retried(member, connect, prefix, proxy):
    c = connect(proxy.endpoint)
    c.put(prefix + "k", "v")
    proxy.lose_responses(1)
    assert c.get(prefix + "k").value == b"v"
    proxy.lose_responses(1)
    assert c.txn([txn.version(prefix + "k") > 0], [txn.get(prefix + "k")]).responses[0].value == b"v"
    assert proxy.responses_lost == 2


def test_a_put_fails_over_from_an_unreachable_member_and_applies_once(member, connect, prefix):
    dead = f"127.0.0.1:{free_port()}"
    c = connect(dead, member.endpoint)
    for i in range(4):  # round-robin: some of these go to the dead endpoint first
        c.put(prefix + "k", str(i))
    assert c.get(prefix + "k").kv.version == 4


def test_no_reachable_member_fails_within_the_timeout_as_not_applied(connect):
    c = connect(f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(ConnectionFailed) as e:
        c.put("k", "v")
    assert not e.value.may_have_applied


def test_a_backoff_that_oversleeps_the_deadline_still_reports_the_failure(connect, monkeypatch):
    """A loaded machine wakes the retry's backoff after the deadline: the caller must still learn
    that the put never reached a member, not get an ambiguous deadline error (a CI flake once)."""

    def wake_late(deadline: float) -> float:
        return max(0.0, deadline - time.monotonic()) + 0.05

    sync_after_error, async_after_error = Client._after_error, AsyncClient._after_error

    def sync_late(self, *args):
        retry = sync_after_error(self, *args)
        time.sleep(wake_late(args[-1]))
        return retry

    async def async_late(self, *args):
        retry = await async_after_error(self, *args)
        await asyncio.sleep(wake_late(args[-1]))
        return retry

    monkeypatch.setattr(Client, "_after_error", sync_late)
    monkeypatch.setattr(AsyncClient, "_after_error", async_late)
    c = connect(f"127.0.0.1:{free_port()}", timeout=1.0)
    with pytest.raises(ConnectionFailed) as e:
        c.put("k", "v")
    assert not e.value.may_have_applied


@pytest.fixture
def hung_endpoint():
    """An address that accepts TCP connections and never answers (a hung or black-holed member)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield "127.0.0.1:%d" % s.getsockname()[1]


def test_calls_move_on_from_a_member_that_never_answers(member, connect, prefix, hung_endpoint):
    c = connect(hung_endpoint, member.endpoint, timeout=4.0)
    for i in range(3):  # round-robin: some of these go to the hung endpoint first
        c.put(prefix + "k", str(i))  # a write waits for a live connection before it is sent
        assert c.get(prefix + "k").value == str(i).encode()  # a read gives up on it after half the budget
    assert c.get(prefix + "k").kv.version == 3
