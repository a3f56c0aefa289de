"""Patroni end to end: two PostgreSQL 15 nodes kept highly available through the store's JSON gateway.

Patroni's ``etcd3`` backend talks to etcd's grpc-gateway on the client port
(/v3/kv/range, /v3/kv/txn, /v3/lease/grant, /v3/lease/keepalive, /v3/watch,
/v3/cluster/member/list, /version), so this is the acceptance test of that
gateway with a real, demanding client. The same scenario runs on a real etcd
3.4 cluster as the reference (slow: it doubles the time) and on etcdx.

Scenario on a 3-member cluster: bootstrap a primary, clone a replica, write on
the primary and read it on the replica, find the leader key with a lease of
the configured TTL in the store, kill -9 the store member the primary's
Patroni talks to and see the primary keep its role, kill -9 the primary's
Patroni and postgres and see the replica promoted within a bound, restart the
old primary and see it rejoin as a replica of the new one (crash recovery and
pg_rewind), then switch over back through Patroni's REST API. A second, short
test runs Patroni against a store with auth on, and one that serves TLS and
asks for a client certificate.

Runtime on 2 busy cores: ~45 s on etcdx, ~50 s on etcd; the short ones ~3 s each.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import pytest

from etcdx.pb import auth_pb2, rpc_pb2, rpc_pb2_grpc
from etcdx.testing.cluster import Cluster
from etcdx.testing.procs import MemberGroup, require
from etcdx.testing.tls import make_tls_files
from support import auth_setup, patroni
from support.patroni import PatroniNode, PatroniSite, wait_for

pytestmark = pytest.mark.timeout(300)

TTL = 10
LOOP_WAIT = 1
# A dead primary's leader key lives out its lease (TTL), then the replica's next
# loop (loop_wait) takes the key and promotes; pg_ctl promote adds a few seconds.
FAILOVER_BOUND = TTL + 15


def _get_json(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")


def _check_gateway(cluster: Cluster) -> None:
    """What Patroni reads before anything else, so a missing gateway fails here in a second, not in a minute.

    Patroni's etcd3 client picks its API prefix from /version's etcdcluster
    (3.4 and up: /v3) and then lists members at /v3/cluster/member/list.
    """
    for m in cluster.members:
        status, version = _get_json(f"{m.client_url}/version")
        assert status == 200 and isinstance(version, dict), f"GET {m.client_url}/version -> {status} {version!r}"
        assert tuple(int(x) for x in version["etcdcluster"].split(".")[:2]) >= (3, 4), version
        status, health = _get_json(f"{m.client_url}/health")
        assert (status, health) == (200, {"health": "true"}), f"GET {m.client_url}/health -> {status} {health!r}"


def _leader_key(cluster: Cluster, scope: str) -> tuple[str, int, int]:
    """(holder, lease id, granted TTL) of Patroni's leader key, read through gRPC."""
    m = cluster.live_member()
    key = f"/service/{scope}/leader".encode()
    resp = m.kv.Range(rpc_pb2.RangeRequest(key=key), timeout=5)
    assert len(resp.kvs) == 1, f"no leader key {key!r} in the store"
    kv = resp.kvs[0]
    assert kv.lease != 0, "leader key has no lease"
    ttl = m.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=kv.lease), timeout=5)
    return kv.value.decode(), kv.lease, ttl.grantedTTL


def _leader_holder(cluster: Cluster, scope: str) -> str | None:
    """Who holds the leader key now (None while nobody does)."""
    resp = cluster.live_member().kv.Range(rpc_pb2.RangeRequest(key=f"/service/{scope}/leader".encode()), timeout=5)
    return resp.kvs[0].value.decode() if resp.kvs else None


def _switchover(via: PatroniNode, leader: str, candidate: str) -> None:
    """POST /switchover to `via`'s REST API; retried while Patroni is not ready for one (412/503)."""

    def attempt() -> bool:
        status, body = via.rest("/switchover", "POST", {"leader": leader, "candidate": candidate}, timeout=30)
        if status == 200:
            return True
        if status in (412, 503):
            return False
        raise AssertionError(f"POST /switchover -> {status} {body!r}")

    wait_for(f"Patroni to accept a switchover {leader} -> {candidate}", attempt, 30, 1.0, detail=via.log_tail)


def _member_names(cluster: Cluster, scope: str) -> list[str]:
    """Names under Patroni's members/ prefix, each checked to hold a member's JSON with a lease."""
    prefix = f"/service/{scope}/members/".encode()
    resp = cluster.live_member().kv.Range(rpc_pb2.RangeRequest(key=prefix, range_end=prefix[:-1] + b"0"), timeout=5)
    for kv in resp.kvs:
        assert kv.lease != 0, f"member key {kv.key!r} has no lease"
        # The role changes under our feet (uninitialized, promoted ...); the URLs do not.
        assert {"conn_url", "api_url"} <= json.loads(kv.value).keys(), kv.value
    return sorted(kv.key.decode().rsplit("/", 1)[1] for kv in resp.kvs)


SERVERS = pytest.mark.parametrize(
    ("kind", "extra_args"),
    [
        pytest.param("etcd", [], marks=pytest.mark.slow, id="etcd"),
        pytest.param("etcdx", [], id="etcdx"),
        pytest.param("etcdx", ["--api-workers", "2"], marks=pytest.mark.slow, id="etcdx-api-workers-2"),
    ],
)


@SERVERS
def test_patroni_failover_rejoin_switchover(kind: str, extra_args: list[str], tmp_path) -> None:
    require(kind)
    reason = patroni.unavailable_reason()
    if reason:
        pytest.skip(reason)
    scope = f"etcdx-{kind}"
    timings: dict[str, float] = {}
    with Cluster(kind, tmp_path / "store", size=3, extra_args=extra_args) as cluster:
        cluster.start()
        _check_gateway(cluster)
        hosts = [m.endpoint for m in cluster.members]
        with PatroniSite(scope, hosts, ttl=TTL, loop_wait=LOOP_WAIT, keep_logs_in=tmp_path / "patroni") as site:
            pg1, pg2 = site.node("pg1"), site.node("pg2")

            # Bootstrap: pg1 first so it wins the initialize race deterministically.
            t0 = time.monotonic()
            pg1.start()
            pg1.wait_role("primary", timeout=60)
            wait_for("pg1 to take the leader key", lambda: _leader_holder(cluster, scope) == "pg1", 10)
            pg2.start()
            pg2.wait_role("replica", timeout=60)
            timings["bootstrap"] = time.monotonic() - t0

            # Replication: a write on the primary shows up on the replica.
            pg1.sql("CREATE TABLE items (id int PRIMARY KEY, note text)")
            pg1.sql("INSERT INTO items VALUES (1, 'written on pg1')")
            wait_for("the row on pg2", lambda: pg2.sql("SELECT note FROM items WHERE id = 1") == "written on pg1", 30)

            # The leader key: held by pg1, with a lease granted for the configured TTL.
            holder, _, granted = _leader_key(cluster, scope)
            assert holder == "pg1"
            assert granted == TTL
            assert _member_names(cluster, scope) == ["pg1", "pg2"]

            # Store member loss: kill -9 of the store member pg1's Patroni talks to (else the raft
            # leader). Patroni retries on the other members within retry_timeout, so pg1 keeps the
            # leader key and stays primary.
            used = pg1.peer_ports()
            victim = next((m for m in cluster.members if m.client_port in used), None) or cluster.leader()
            victim.kill()
            t0 = time.monotonic()
            while time.monotonic() - t0 < TTL + 2:  # a whole lease and then some
                assert pg1.role() == "primary", f"pg1 lost its role after store member {victim.name} died"
                time.sleep(0.5)
            assert _leader_holder(cluster, scope) == "pg1"
            victim.start()

            # Failover: kill -9 of the primary's Patroni and postgres; pg2 takes over.
            pg1.kill()
            timings["failover"] = pg2.wait_role("primary", timeout=FAILOVER_BOUND)
            wait_for("the leader key to name pg2", lambda: _leader_holder(cluster, scope) == "pg2", 10)
            # pg1's member key went with its lease (nobody deleted it).
            assert _member_names(cluster, scope) == ["pg2"]
            assert pg2.sql("SELECT note FROM items WHERE id = 1") == "written on pg1"
            pg2.sql("INSERT INTO items VALUES (2, 'written on pg2')")

            # Rejoin: the old primary comes back as a replica of the new one.
            t0 = time.monotonic()
            pg1.start()
            pg1.wait_role("replica", timeout=60)
            wait_for("row 2 on pg1", lambda: pg1.sql("SELECT note FROM items WHERE id = 2") == "written on pg2", 30)
            timings["rejoin"] = time.monotonic() - t0
            # patronictl, another client of the store, sees the same cluster.
            def listed() -> dict[str, dict] | None:
                rows = {r["Member"]: r for r in pg1.patronictl("list")}
                pg2_leads = rows.get("pg2", {}).get("Role") == "Leader"
                return rows if pg2_leads and rows.get("pg1", {}).get("State") in ("streaming", "running") else None

            rows = wait_for("patronictl list: pg2 leading, pg1 replicating", listed, 30, 1.0, detail=site.log_tails)
            assert sorted(rows) == ["pg1", "pg2"]

            # Switchover through Patroni's REST API, back to pg1.
            t0 = time.monotonic()
            _switchover(pg2, leader="pg2", candidate="pg1")
            pg1.wait_role("primary", timeout=30)
            pg2.wait_role("replica", timeout=60)
            wait_for("the leader key to name pg1", lambda: _leader_holder(cluster, scope) == "pg1", 10)
            pg1.sql("INSERT INTO items VALUES (3, 'after switchover')")
            wait_for("row 3 on pg2", lambda: pg2.sql("SELECT count(*) FROM items") == "3", 30)
            timings["switchover"] = time.monotonic() - t0
            # The history key (a JSON value Patroni rewrites on each promotion) has both changes of leader.
            history = pg1.patronictl("history")
            assert [h["New Leader"] for h in history][-2:] == ["pg2", "pg1"], history
    print(f"patroni on {kind}: " + ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))


PATRONI_PW = "patroni-pw"


def _enable_auth_for_patroni(channel) -> None:
    """root, and a user ``patroni`` whose one role may read and write /service/ only; then auth on."""
    auth = rpc_pb2_grpc.AuthStub(channel)
    auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password=auth_setup.ROOT_PW), timeout=10)
    auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=10)
    auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="patroni", password=PATRONI_PW), timeout=10)
    auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="patroni"), timeout=10)
    perm = auth_setup.prefix(b"/service/")
    assert perm.permType == auth_pb2.Permission.READWRITE
    auth.RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(name="patroni", perm=perm), timeout=10)
    auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="patroni", role="patroni"), timeout=10)
    auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=10)


@SERVERS
@pytest.mark.parametrize("lock", ["auth", "tls"])
def test_patroni_bootstraps_on_a_locked_store(kind: str, extra_args: list[str], lock: str, tmp_path) -> None:
    """A store Patroni must prove itself to. ``auth``: Patroni logs in through
    /v3/auth/authenticate and sends the token on every call (its ``Authorization``
    header) as a user that may touch /service/ only. ``tls``: the client port
    serves https and asks for a client certificate, which Patroni presents. Either
    way it bootstraps and holds a leased leader key."""
    require(kind)
    reason = patroni.unavailable_reason()
    if reason:
        pytest.skip(reason)
    scope = f"{lock}-{kind}"
    tls = make_tls_files(tmp_path / "tls") if lock == "tls" else None
    with MemberGroup(tmp_path / "store") as group:
        store = group.new(kind, tls=tls, extra_args=extra_args)
        md: list[tuple[str, str]] = []
        if lock == "auth":
            _enable_auth_for_patroni(store.channel)
            md = auth_setup.md(auth_setup.token(store.channel, "root", auth_setup.ROOT_PW))
        with PatroniSite(scope, [store.endpoint], ttl=TTL, loop_wait=LOOP_WAIT,
                         keep_logs_in=tmp_path / "patroni") as site:  # fmt: skip
            if lock == "auth":
                site.etcd3_options.update(username="patroni", password=PATRONI_PW)
            else:
                assert tls is not None
                site.etcd3_options.update(
                    protocol="https",
                    cacert=str(site.take_file(tls.ca)),
                    cert=str(site.take_file(tls.client_cert)),
                    key=str(site.take_file(tls.client_key)),
                )
            pg1 = site.node("pg1").start()
            pg1.wait_role("primary", timeout=60)
            # Patroni's REST API says primary as soon as postgres runs, a moment before post_bootstrap
            # ends and the leader key is written.
            leader_key = rpc_pb2.RangeRequest(key=f"/service/{scope}/leader".encode())
            kvs = wait_for("the leader key", lambda: store.kv.Range(leader_key, metadata=md, timeout=5).kvs, 10)
            assert [(kv.value, kv.lease != 0) for kv in kvs] == [(b"pg1", True)]
            if lock == "auth":
                # Without a token the same read is refused: Patroni got in because it logged in.
                refused = auth_setup.outcome(lambda: store.kv.Range(leader_key, timeout=5))
                assert refused == "INVALID_ARGUMENT: etcdserver: user name is empty"
