"""etcd's Lock, Election and gRPC Health services, against etcd 3.4 and etcdx.

Every test runs against a real etcd 3.4 (which pins the expected answers), a
single-process etcdx and an etcdx with two API workers; each contender uses
its own connection, so with workers the contenders usually sit on different
workers. The members are started once per module; tests use their own lock
and election names.
"""

from __future__ import annotations

import threading
import time

import grpc
import pytest
from support import auth_setup, procs

from etcdx.pb import health_pb2, health_pb2_grpc
from etcdx.pb import rpc_pb2 as p
from etcdx.pb import rpc_pb2_grpc
from etcdx.pb import v3election_pb2 as e
from etcdx.pb import v3election_pb2_grpc
from etcdx.pb import v3lock_pb2 as lk
from etcdx.pb import v3lock_pb2_grpc

pytestmark = pytest.mark.timeout(120)

KINDS = [pytest.param("etcd", marks=pytest.mark.etcd), "etcdx", "etcdx-workers"]
CALL_TIMEOUT = 10
BLOCKED = 0.3  # seconds a waiter is seen still waiting before the holder lets go


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    group = procs.MemberGroup(tmp_path_factory.mktemp("lockelect"))
    started: dict[str, procs.Member] = {}

    def get(kind: str) -> procs.Member:
        binary = "etcd" if kind == "etcd" else "etcdx"
        procs.require(binary)
        if kind not in started:
            extra = ["--api-workers", "2"] if kind == "etcdx-workers" else []
            started[kind] = group.new(binary, name=kind.replace("-", ""), extra_args=extra)
        m = started[kind]
        assert m.is_running(), f"{m} died; log tail:\n{m.log_tail()}"
        return m

    yield get
    group.close()


class Client:
    """One connection with the stubs a test needs."""

    def __init__(self, member: procs.Member) -> None:
        self.channel = grpc.insecure_channel(member.endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self.channel)
        self.lock = v3lock_pb2_grpc.LockStub(self.channel)
        self.election = v3election_pb2_grpc.ElectionStub(self.channel)
        self.health = health_pb2_grpc.HealthStub(self.channel)

    def grant(self, ttl: int = 60) -> int:
        return self.lease.LeaseGrant(p.LeaseGrantRequest(TTL=ttl), timeout=CALL_TIMEOUT).ID

    def keys(self, prefix: bytes) -> list[bytes]:
        resp = self.kv.Range(p.RangeRequest(key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]),
                                            keys_only=True), timeout=CALL_TIMEOUT)
        return [kv.key for kv in resp.kvs]


@pytest.fixture
def clients(servers):
    made: list[Client] = []

    def make(kind: str) -> Client:
        c = Client(servers(kind))
        made.append(c)
        return c

    yield make
    for c in made:
        c.channel.close()


def error_of(fn, *args, **kwargs) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        fn(*args, timeout=CALL_TIMEOUT, **kwargs)
    return info.value.code(), info.value.details()


def still_waiting(future: grpc.Future) -> bool:
    try:
        future.result(timeout=BLOCKED)
    except grpc.FutureTimeoutError:
        return True
    return False


def wait_until(condition, what: str, timeout: float = CALL_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- Lock -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_lock_goes_to_waiters_in_create_revision_order(clients, kind):
    a, b, c = clients(kind), clients(kind), clients(kind)
    la, lb, lc = a.grant(), b.grant(), c.grant()
    held = a.lock.Lock(lk.LockRequest(name=b"order", lease=la), timeout=CALL_TIMEOUT)
    assert held.key == b"order/%x" % la
    assert held.header.revision > 0
    # Asking again with the same lease is the same key (the put is "if absent").
    assert a.lock.Lock(lk.LockRequest(name=b"order", lease=la), timeout=CALL_TIMEOUT).key == held.key

    wait_b = b.lock.Lock.future(lk.LockRequest(name=b"order", lease=lb), timeout=CALL_TIMEOUT)
    wait_until(lambda: b"order/%x" % lb in a.keys(b"order/"), "B's contender key")
    wait_c = c.lock.Lock.future(lk.LockRequest(name=b"order", lease=lc), timeout=CALL_TIMEOUT)
    wait_until(lambda: b"order/%x" % lc in a.keys(b"order/"), "C's contender key")
    assert still_waiting(wait_b) and still_waiting(wait_c)

    unlocked = a.lock.Unlock(lk.UnlockRequest(key=held.key), timeout=CALL_TIMEOUT)
    got_b = wait_b.result()
    assert got_b.key == b"order/%x" % lb
    assert got_b.header.revision >= unlocked.header.revision  # the read that saw A's key gone
    assert still_waiting(wait_c)

    b.lock.Unlock(lk.UnlockRequest(key=got_b.key), timeout=CALL_TIMEOUT)
    assert wait_c.result().key == b"order/%x" % lc
    c.lock.Unlock(lk.UnlockRequest(key=b"order/%x" % lc), timeout=CALL_TIMEOUT)
    assert a.keys(b"order/") == []


@pytest.mark.parametrize("kind", KINDS)
def test_lock_is_released_when_the_holders_lease_expires(clients, kind):
    a, b = clients(kind), clients(kind)
    short, long = a.grant(ttl=2), b.grant()
    a.lock.Lock(lk.LockRequest(name=b"expiry", lease=short), timeout=CALL_TIMEOUT)
    started = time.monotonic()
    got = b.lock.Lock(lk.LockRequest(name=b"expiry", lease=long), timeout=CALL_TIMEOUT)
    assert got.key == b"expiry/%x" % long
    assert time.monotonic() - started > 1.0  # it waited for the expiry
    assert a.keys(b"expiry/") == [got.key]


@pytest.mark.parametrize("kind", KINDS)
def test_lock_with_lease_zero_gets_a_new_lease(clients, kind):
    a = clients(kind)
    got = a.lock.Lock(lk.LockRequest(name=b"nolease"), timeout=CALL_TIMEOUT)
    lease_id = int(got.key.rsplit(b"/", 1)[1], 16)
    ttl = a.lease.LeaseTimeToLive(p.LeaseTimeToLiveRequest(ID=lease_id), timeout=CALL_TIMEOUT)
    assert ttl.grantedTTL == 60
    a.lease.LeaseRevoke(p.LeaseRevokeRequest(ID=lease_id), timeout=CALL_TIMEOUT)


@pytest.mark.parametrize("kind", KINDS)
def test_lock_errors(clients, kind):
    a = clients(kind)
    assert error_of(a.lock.Lock, lk.LockRequest(name=b"errs", lease=0x7E57)) == (
        grpc.StatusCode.UNKNOWN, "etcdserver: requested lease not found")
    assert error_of(a.lock.Unlock, lk.UnlockRequest(key=b"")) == (
        grpc.StatusCode.UNKNOWN, "etcdserver: key is not provided")
    # Unlocking a key that is not there is no error (a delete of nothing).
    assert a.lock.Unlock(lk.UnlockRequest(key=b"errs/none"), timeout=CALL_TIMEOUT).header.revision > 0


@pytest.mark.parametrize("kind", KINDS)
def test_a_waiter_that_gives_up_withdraws_its_key(clients, kind):
    a, b = clients(kind), clients(kind)
    la, lb = a.grant(), b.grant()
    a.lock.Lock(lk.LockRequest(name=b"giveup", lease=la), timeout=CALL_TIMEOUT)
    with pytest.raises(grpc.RpcError) as info:
        b.lock.Lock(lk.LockRequest(name=b"giveup", lease=lb), timeout=1.0)
    # etcd's recipe sometimes sees its own context expire first and answers Unknown.
    assert (info.value.code(), info.value.details()) in {
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"),  # the client's own deadline
        (grpc.StatusCode.DEADLINE_EXCEEDED, "context deadline exceeded"),
        (grpc.StatusCode.UNKNOWN, "context deadline exceeded")}
    wait_until(lambda: a.keys(b"giveup/") == [b"giveup/%x" % la], "the waiter's key to go")


# -- Election -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_campaign_proclaim_leader_resign(clients, kind):
    a, b = clients(kind), clients(kind)
    la, lb = a.grant(), b.grant()
    assert error_of(a.election.Leader, e.LeaderRequest(name=b"elect")) == (
        grpc.StatusCode.UNKNOWN, "election: no leader")

    won = a.election.Campaign(e.CampaignRequest(name=b"elect", lease=la, value=b"a1"), timeout=CALL_TIMEOUT)
    leader = won.leader
    assert (leader.name, leader.key, leader.lease) == (b"elect", b"elect/%x" % la, la)
    assert leader.rev == won.header.revision
    kv = a.election.Leader(e.LeaderRequest(name=b"elect"), timeout=CALL_TIMEOUT).kv
    assert (kv.key, kv.value, kv.create_revision, kv.lease) == (leader.key, b"a1", leader.rev, la)

    proclaimed = a.election.Proclaim(e.ProclaimRequest(leader=leader, value=b"a2"), timeout=CALL_TIMEOUT)
    assert proclaimed.header.revision == leader.rev + 1
    kv = a.election.Leader(e.LeaderRequest(name=b"elect"), timeout=CALL_TIMEOUT).kv
    assert (kv.value, kv.version, kv.lease) == (b"a2", 2, la)

    stale = e.LeaderKey(name=b"elect", key=leader.key, rev=leader.rev - 1, lease=la)
    assert error_of(a.election.Proclaim, e.ProclaimRequest(leader=stale, value=b"x")) == (
        grpc.StatusCode.UNKNOWN, "election: not leader")
    assert error_of(a.election.Proclaim, e.ProclaimRequest(value=b"x")) == (
        grpc.StatusCode.UNKNOWN, '"leader" field must be provided')
    assert error_of(a.election.Resign, e.ResignRequest()) == (
        grpc.StatusCode.UNKNOWN, '"leader" field must be provided')
    assert error_of(a.election.Campaign, e.CampaignRequest(name=b"elect", lease=0x7E57, value=b"x")) == (
        grpc.StatusCode.UNKNOWN, "etcdserver: requested lease not found")
    # Resigning with a key that is not the leader's changes nothing.
    a.election.Resign(e.ResignRequest(leader=stale), timeout=CALL_TIMEOUT)

    # Campaigning again with the leader's lease is the same leadership, value proclaimed.
    again = a.election.Campaign(e.CampaignRequest(name=b"elect", lease=la, value=b"a3"), timeout=CALL_TIMEOUT)
    assert (again.leader.key, again.leader.rev) == (leader.key, leader.rev)
    assert a.election.Leader(e.LeaderRequest(name=b"elect"), timeout=CALL_TIMEOUT).kv.value == b"a3"

    waiting = b.election.Campaign.future(e.CampaignRequest(name=b"elect", lease=lb, value=b"b1"),
                                         timeout=CALL_TIMEOUT)
    wait_until(lambda: b"elect/%x" % lb in a.keys(b"elect/"), "B's candidacy")
    assert still_waiting(waiting)
    a.election.Resign(e.ResignRequest(leader=leader), timeout=CALL_TIMEOUT)
    b_won = waiting.result()
    assert b_won.leader.key == b"elect/%x" % lb
    kv = a.election.Leader(e.LeaderRequest(name=b"elect"), timeout=CALL_TIMEOUT).kv
    assert (kv.key, kv.value) == (b_won.leader.key, b"b1")
    b.election.Resign(e.ResignRequest(leader=b_won.leader), timeout=CALL_TIMEOUT)


@pytest.mark.parametrize("kind", KINDS)
def test_observe_streams_each_leader_and_value(clients, kind):
    a, b, watcher = clients(kind), clients(kind), clients(kind)
    la, lb = a.grant(), b.grant()
    seen: list[tuple[bytes, bytes]] = []
    stream = watcher.election.Observe(e.LeaderRequest(name=b"observed"), timeout=3 * CALL_TIMEOUT)

    def read() -> None:
        try:
            for resp in stream:
                seen.append((resp.kv.key, resp.kv.value))
                assert resp.header.revision >= resp.kv.mod_revision
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.CANCELLED

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(BLOCKED)  # the observer starts before there is any leader
    assert seen == []
    won = a.election.Campaign(e.CampaignRequest(name=b"observed", lease=la, value=b"a1"), timeout=CALL_TIMEOUT)
    wait_until(lambda: len(seen) == 1, "the first leader")
    a.election.Proclaim(e.ProclaimRequest(leader=won.leader, value=b"a2"), timeout=CALL_TIMEOUT)
    wait_until(lambda: len(seen) == 2, "the proclaimed value")
    waiting = b.election.Campaign.future(e.CampaignRequest(name=b"observed", lease=lb, value=b"b1"),
                                         timeout=CALL_TIMEOUT)
    wait_until(lambda: b"observed/%x" % lb in a.keys(b"observed/"), "B's candidacy")
    a.election.Resign(e.ResignRequest(leader=won.leader), timeout=CALL_TIMEOUT)
    waiting.result()
    wait_until(lambda: len(seen) == 3, "the next leader")
    stream.cancel()
    reader.join(CALL_TIMEOUT)
    assert seen == [(won.leader.key, b"a1"), (won.leader.key, b"a2"), (b"observed/%x" % lb, b"b1")]


# -- Health ---------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_grpc_health_check(clients, kind):
    a = clients(kind)
    serving = health_pb2.HealthCheckResponse.SERVING
    assert a.health.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT).status == serving
    assert error_of(a.health.Check, health_pb2.HealthCheckRequest(service="etcdserverpb.KV")) == (
        grpc.StatusCode.NOT_FOUND, "unknown service")
    watch = a.health.Watch(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT)
    assert next(watch).status == serving
    watch.cancel()


# -- Auth -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_lock_and_election_run_as_the_caller(member_group, kind):
    """With auth on, the recipes' reads and writes are checked against the caller's grants
    (alice may read and write a/ only); a refusal reaches the client as etcd 3.4's does."""
    binary = "etcd" if kind == "etcd" else "etcdx"
    procs.require(binary)
    m = member_group.new(binary, extra_args=["--api-workers", "2"] if kind == "etcdx-workers" else [])
    c = Client(m)
    try:
        auth_setup.enable(c.channel)
        alice = auth_setup.md(auth_setup.token(c.channel, "alice", auth_setup.ALICE_PW))
        lease = c.lease.LeaseGrant(p.LeaseGrantRequest(TTL=60), timeout=CALL_TIMEOUT, metadata=alice).ID

        def outcome(fn, request, **kw) -> str:
            return auth_setup.outcome(lambda: fn(request, timeout=CALL_TIMEOUT, **kw))

        assert outcome(c.lock.Lock, lk.LockRequest(name=b"a/l", lease=lease), metadata=alice) == "ok"
        assert outcome(c.lock.Unlock, lk.UnlockRequest(key=b"a/l/%x" % lease), metadata=alice) == "ok"
        denied = "UNKNOWN: etcdserver: permission denied"
        assert outcome(c.lock.Lock, lk.LockRequest(name=b"b/l", lease=lease), metadata=alice) == denied
        assert outcome(c.lock.Unlock, lk.UnlockRequest(key=b"b/l/%x" % lease), metadata=alice) == denied
        assert outcome(c.lock.Lock, lk.LockRequest(name=b"a/l", lease=lease)) == (
            "UNKNOWN: etcdserver: user name is empty")
        assert outcome(c.election.Campaign, e.CampaignRequest(name=b"a/e", lease=lease, value=b"v"),
                       metadata=alice) == "ok"
        assert outcome(c.election.Leader, e.LeaderRequest(name=b"a/e"), metadata=alice) == "ok"
        assert outcome(c.election.Campaign, e.CampaignRequest(name=b"b/e", lease=lease, value=b"v"),
                       metadata=alice) == denied
        assert outcome(c.election.Leader, e.LeaderRequest(name=b"b/e"), metadata=alice) == denied
        assert outcome(c.lock.Lock, lk.LockRequest(name=b"a/l", lease=lease),
                       metadata=auth_setup.md("bogus.1")) == "UNKNOWN: etcdserver: invalid auth token"
    finally:
        c.channel.close()
