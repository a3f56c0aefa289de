"""etcdctl 3.4 (ETCDCTL_API=3) against a 3-member cluster: what an operator types and sees.

Every test runs on the real etcd and on etcdx (`KINDS`), with etcdctl given all three
endpoints unless the test is about one endpoint. The expectations are what etcd 3.4.23
prints (its outputs were read, then the stable parts asserted: ids in hex, names, URLs,
learner flags, exit codes and error messages); etcdx has to print the same through the
same etcdctl. Run only etcd's side with `-k "not etcdx"`.
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import re
import subprocess
import threading
import time
from typing import Self

import grpc
import pytest
from support import procs
from support.cluster import Cluster, ClusterMember

from etcdx.pb import rpc_pb2

# The etcdx case needs clustering (issue 4); drop "etcdx" from this list to skip it.
KINDS = ["etcd", "etcdx"]

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]

# Short raft timings (the same for both kinds) keep elections and failovers quick.
TIMING = ("--heartbeat-interval", "50", "--election-timeout", "500")
CTL_TIMEOUT = 30
WAIT = 20.0  # seconds for anything the cluster does on its own (catch-up, a leader change, an exit)

# etcdctl prints member and cluster ids in hex: %x in listings and move-leader, %16x (padded
# with spaces to 16 characters) in `member add/promote/update/remove`; lease ids as %016x.
ID = r"[0-9a-f]{1,16}"


@pytest.fixture(params=KINDS)
def cluster(request, tmp_path: pathlib.Path):
    procs.require("etcdctl")
    procs.require(request.param)
    c = Cluster(request.param, tmp_path / "cluster", size=3, extra_args=TIMING)
    try:
        c.start()
        c.leader(timeout=WAIT)
        yield c
    finally:
        c.close()


def ctl(endpoints, *args: str) -> subprocess.CompletedProcess:
    """`etcdctl --endpoints=... ARGS` to a Cluster (all of its members), a Member or a list of Members."""
    if isinstance(endpoints, Cluster):
        endpoints = endpoints.members
    elif isinstance(endpoints, procs.Member):
        endpoints = [endpoints]
    endpoints = [m.endpoint for m in endpoints]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    cmd = [procs.ETCDCTL_BIN, f"--endpoints={','.join(endpoints)}", "--dial-timeout=5s",
           "--command-timeout=15s", *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=CTL_TIMEOUT, check=False)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, f"{r.args}: exit {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}"
    return r.stdout


def error_line(r: subprocess.CompletedProcess) -> str:
    """etcdctl's last stderr line (`Error: ...`); the retry warnings before it are zap JSON logs."""
    return (r.stderr.strip().splitlines() or [""])[-1]


def hexid(n: int) -> str:
    return f"{n:x}"


def hexid16(n: int) -> str:
    return f"{n:16x}"


def wait_for(what: str, probe, timeout: float = WAIT):
    """Call `probe` until it returns something truthy; fail with `what` and its last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout}s (last: {last!r})")
        time.sleep(0.1)


def member_list(endpoints) -> dict:
    return json.loads(ok(ctl(endpoints, "member", "list", "-w", "json")))


def agreed_member_list(members: list[ClusterMember], check) -> dict:
    """Each member's own `member list -w json`, once `check(members)` holds for every one; the first's.

    Every member applies a membership change in its own time, so a listing taken right
    after the change may come from one that has not applied it yet.
    """
    deadline = time.monotonic() + WAIT
    while True:
        listings = {m.name: member_list(m) for m in members}
        if all(check(listing.get("members", [])) for listing in listings.values()):
            return listings[members[0].name]
        if time.monotonic() > deadline:
            pytest.fail(f"the members' lists after {WAIT}s: {listings}")
        time.sleep(0.1)


UNHEALTHY = "Error: etcdserver: unhealthy cluster"


def reconfigure(endpoints, *args: str) -> subprocess.CompletedProcess:
    """A `member add`/`member remove`, retried while etcd refuses it as "unhealthy cluster".

    etcd (strict reconfig check, on by default) refuses to add a voter or a learner, or
    to remove a voter, until the member handling the request has been connected to the
    other voters for 5 s (etcdserver.HealthInterval): gRPC Unavailable, so the first
    change in a fresh cluster waits that long.
    """
    deadline = time.monotonic() + WAIT
    while True:
        r = ctl(endpoints, *args)
        if r.returncode == 0 or error_line(r) != UNHEALTHY or time.monotonic() > deadline:
            return r
        time.sleep(0.2)


def table(out: str) -> tuple[list[str], list[dict[str, str]]]:
    """The header and rows of etcdctl's `-w table` output (+---+ rules, | cells |)."""
    lines = [line for line in out.splitlines() if line.startswith("|")]
    cells = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in lines]
    return cells[0], [dict(zip(cells[0], row)) for row in cells[1:]]


def followers(c: Cluster) -> list[ClusterMember]:
    leader = c.leader(timeout=WAIT)
    return [m for m in c.members if m is not leader]


# ----------------------------------------------------------------------------- reading the cluster


def test_member_list_json_simple_and_table(cluster: Cluster) -> None:
    listing = member_list(cluster)
    cluster_id = cluster.members[0].status().header.cluster_id
    assert listing["header"]["cluster_id"] == cluster_id
    got = {m["name"]: m for m in listing["members"]}
    assert sorted(got) == ["m1", "m2", "m3"]
    for m in cluster.members:
        entry = got[m.name]
        assert entry["ID"] == m.member_id
        assert entry["peerURLs"] == [m.peer_url]
        assert entry["clientURLs"] == [m.client_url]
        assert not entry.get("isLearner", False)  # etcd omits a false isLearner

    # The default ("simple") output: ID, status, name, peer URLs, client URLs, is learner.
    lines = sorted(ok(ctl(cluster, "member", "list")).splitlines())
    want = sorted(
        f"{hexid(m.member_id)}, started, {m.name}, {m.peer_url}, {m.client_url}, false" for m in cluster.members
    )
    assert lines == want

    head, rows = table(ok(ctl(cluster, "member", "list", "-w", "table")))
    assert head == ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]
    assert sorted(list(r.values()) for r in rows) == sorted(
        [hexid(m.member_id), "started", m.name, m.peer_url, m.client_url, "false"] for m in cluster.members
    )


def test_endpoint_status_cluster_json_one_leader_one_term(cluster: Cluster) -> None:
    statuses = json.loads(ok(ctl(cluster, "endpoint", "status", "--cluster", "-w", "json")))
    # --cluster asks MemberList for the members' client URLs, so the endpoints are full URLs.
    assert sorted(s["Endpoint"] for s in statuses) == sorted(m.client_url for m in cluster.members)
    by_url = {s["Endpoint"]: s["Status"] for s in statuses}
    ids = {m.member_id for m in cluster.members}
    leaders = {st["leader"] for st in by_url.values()}
    assert len(leaders) == 1 and leaders <= ids
    assert [m.name for m in cluster.members if by_url[m.client_url]["header"]["member_id"] == m.member_id] == [
        "m1", "m2", "m3"
    ]  # fmt: skip
    assert sum(st["header"]["member_id"] in leaders for st in by_url.values()) == 1
    assert len({st["raftTerm"] for st in by_url.values()}) == 1
    assert len({st["header"]["cluster_id"] for st in by_url.values()}) == 1
    for st in by_url.values():
        assert st["raftIndex"] > 0
        assert st["raftTerm"] >= 1
        assert not st.get("isLearner", False)
        assert st["version"]

    head, rows = table(ok(ctl(cluster, "endpoint", "status", "--cluster", "-w", "table")))
    assert head == ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER", "RAFT TERM", "RAFT INDEX",
                    "RAFT APPLIED INDEX", "ERRORS"]  # fmt: skip
    assert sorted((r["ENDPOINT"], r["ID"], r["IS LEARNER"]) for r in rows) == sorted(
        (m.client_url, hexid(m.member_id), "false") for m in cluster.members
    )
    assert sorted(r["IS LEADER"] for r in rows) == ["false", "false", "true"]


def test_endpoint_health_cluster(cluster: Cluster) -> None:
    r = ctl(cluster, "endpoint", "health", "--cluster")
    ok(r)
    # etcdctl 3.4 prints the health lines on stderr.
    lines = sorted(line for line in (r.stdout + r.stderr).splitlines() if "healthy" in line)
    assert [re.sub(r"took = \S+", "took = <t>", line) for line in lines] == sorted(
        f"{m.client_url} is healthy: successfully committed proposal: took = <t>" for m in cluster.members
    )
    health = json.loads(ok(ctl(cluster, "endpoint", "health", "--cluster", "-w", "json")))
    assert sorted((h["endpoint"], h["health"]) for h in health) == sorted((m.client_url, True) for m in cluster.members)


# ----------------------------------------------------------------------------- membership changes


def test_learner_add_start_promote(cluster: Cluster) -> None:
    cluster_id = cluster.members[0].status().header.cluster_id
    voters = list(cluster.members)
    m4 = ClusterMember(cluster.kind, cluster.base_dir, "m4", cluster.token, cluster.extra_args)
    cluster.members.append(m4)  # the cluster closes it at teardown
    out = ok(reconfigure(voters, "member", "add", "m4", "--learner", f"--peer-urls={m4.peer_url}"))
    m = re.match(rf"Member +({ID}) added to cluster +({ID})\n\n", out)
    assert m, out
    m4_id, cid = int(m.group(1), 16), int(m.group(2), 16)
    assert cid == cluster_id
    assert out.startswith(f"Member {hexid16(m4_id)} added to cluster {hexid16(cluster_id)}\n\n")
    env = dict(re.findall(r'^(ETCD_\w+)="(.*)"$', out, re.MULTILINE))
    assert env["ETCD_NAME"] == "m4"
    assert env["ETCD_INITIAL_ADVERTISE_PEER_URLS"] == m4.peer_url
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == "existing"
    assert sorted(env["ETCD_INITIAL_CLUSTER"].split(",")) == sorted(
        [f"{x.name}={x.peer_url}" for x in voters] + [f"m4={m4.peer_url}"]
    )

    # Added, not started: no name, no client URLs, a learner.
    listing = agreed_member_list(voters, lambda ms: any(x["ID"] == m4_id for x in ms))
    [new] = [x for x in listing["members"] if x["ID"] == m4_id]
    assert new.get("name", "") == "" and new["peerURLs"] == [m4.peer_url]
    assert new.get("clientURLs", []) == [] and new["isLearner"] is True
    assert f"{hexid(m4_id)}, unstarted, , {m4.peer_url}, , true" in ok(ctl(voters, "member", "list")).splitlines()

    r = ctl(voters, "member", "promote", hexid(m4_id))
    assert r.returncode == 1
    assert error_line(r) == "Error: etcdserver: can only promote a learner member which is in sync with leader"

    # Start it the way `member add` says: the printed initial cluster, state existing.
    m4.initial_cluster = env["ETCD_INITIAL_CLUSTER"]
    m4.initial_cluster_state = "existing"
    m4.start()
    m4.member_id = m4_id
    status = json.loads(ok(ctl(m4, "endpoint", "status", "-w", "json")))[0]["Status"]
    assert status["header"]["member_id"] == m4_id and status["isLearner"] is True
    r = ctl(m4, "put", "k", "v")  # a learner serves no writes (nor linearizable reads)
    assert r.returncode == 1
    assert error_line(r) == "Error: etcdserver: rpc not supported for learner"

    def promote():
        r = ctl(voters, "member", "promote", hexid(m4_id))
        return r if r.returncode == 0 else None

    r = wait_for("promote once the learner caught up", promote)
    assert r.stdout == f"Member {hexid16(m4_id)} promoted in cluster {hexid16(cluster_id)}\n"
    listing = agreed_member_list(
        cluster.members, lambda ms: any(x["ID"] == m4_id and not x.get("isLearner") and x.get("name") for x in ms)
    )
    [new] = [x for x in listing["members"] if x["ID"] == m4_id]
    assert new["name"] == "m4" and new["clientURLs"] == [m4.client_url] and not new.get("isLearner", False)
    status = json.loads(ok(ctl(m4, "endpoint", "status", "-w", "json")))[0]["Status"]
    assert not status.get("isLearner", False)
    ok(ctl(m4, "put", "k", "v"))

    # Promoting a voter, or a member that does not exist.
    r = ctl(cluster, "member", "promote", hexid(cluster.members[0].member_id))
    assert (r.returncode, error_line(r)) == (1, "Error: etcdserver: can only promote a learner member")
    r = ctl(cluster, "member", "promote", "1234")
    assert (r.returncode, error_line(r)) == (1, "Error: etcdserver: member not found")


def test_member_update_peer_urls(cluster: Cluster) -> None:
    cluster_id = cluster.members[0].status().header.cluster_id
    target = followers(cluster)[0]
    other = next(m for m in cluster.members if m is not target)
    # The same port under another name: the member still gets its peers' traffic.
    new_url = f"http://localhost:{target.peer_port}"
    r = ctl(cluster, "member", "update", hexid(target.member_id), f"--peer-urls={new_url}")
    assert ok(r) == f"Member {hexid16(target.member_id)} updated in cluster {hexid16(cluster_id)}\n"
    listing = agreed_member_list(
        cluster.members, lambda ms: any(x["ID"] == target.member_id and x["peerURLs"] == [new_url] for x in ms)
    )
    got = {x["name"]: x for x in listing["members"]}
    assert got[target.name]["peerURLs"] == [new_url]
    assert got[target.name]["clientURLs"] == [target.client_url]
    assert got[other.name]["peerURLs"] == [other.peer_url]
    ok(ctl(cluster, "endpoint", "health", "--cluster"))
    ok(ctl(cluster, "put", "after-update", "v"))

    r = ctl(cluster, "member", "update", hexid(target.member_id), f"--peer-urls={other.peer_url}")
    assert (r.returncode, error_line(r)) == (1, "Error: etcdserver: Peer URLs already exists")
    r = ctl(cluster, "member", "update", "1234", "--peer-urls=http://127.0.0.1:1")
    assert (r.returncode, error_line(r)) == (1, "Error: etcdserver: member not found")


def test_member_remove_and_the_removed_member_stops(cluster: Cluster) -> None:
    cluster_id = cluster.members[0].status().header.cluster_id
    gone = followers(cluster)[0]
    rest = [m for m in cluster.members if m is not gone]
    r = reconfigure(rest, "member", "remove", hexid(gone.member_id))
    assert ok(r) == f"Member {hexid16(gone.member_id)} removed from cluster {hexid16(cluster_id)}\n"
    listing = agreed_member_list(rest, lambda ms: all(x["ID"] != gone.member_id for x in ms))
    assert sorted(x["name"] for x in listing["members"]) == sorted(m.name for m in rest)

    # etcd's removed member learns it was removed, stops serving and exits with code 0
    # (its log: "the member has been permanently removed from the cluster").
    wait_for(f"{gone.name} exits after its removal", lambda: not gone.is_running())
    assert gone.proc.returncode == 0

    r = ctl(rest, "member", "remove", hexid(gone.member_id))
    assert (r.returncode, error_line(r)) == (1, "Error: etcdserver: member not found")
    ok(ctl(rest, "put", "after-remove", "v"))
    assert ok(ctl(rest, "get", "after-remove", "--print-value-only")).strip() == "v"


def test_move_leader(cluster: Cluster) -> None:
    leader = cluster.leader(timeout=WAIT)
    target, bystander = followers(cluster)

    # etcdctl sends MoveLeader only to a leader among its endpoints.
    r = ctl(target, "move-leader", hexid(bystander.member_id))
    assert r.returncode == 128
    assert error_line(r) == f"Error: no leader endpoint given at [{target.endpoint}]"

    r = ctl(leader, "move-leader", hexid(target.member_id))
    assert ok(r).strip() == f"Leadership transferred from {hexid(leader.member_id)} to {hexid(target.member_id)}"
    assert wait_for("the target leads", lambda: cluster.leader(timeout=WAIT) is target)
    statuses = json.loads(ok(ctl(cluster, "endpoint", "status", "-w", "json")))
    assert {s["Status"]["leader"] for s in statuses} == {target.member_id}

    # With all endpoints, etcdctl finds the leader itself.
    r = ctl(cluster, "move-leader", hexid(leader.member_id))
    assert ok(r).strip() == f"Leadership transferred from {hexid(target.member_id)} to {hexid(leader.member_id)}"
    wait_for("the old leader leads again", lambda: cluster.leader(timeout=WAIT) is leader)

    r = ctl(leader, "move-leader", "1234")
    assert (r.returncode, error_line(r)) == (1, "Error: etcdserver: bad leader transferee")

    # The server side of "must be sent to the leader": a follower refuses MoveLeader.
    with pytest.raises(grpc.RpcError) as err:
        target.maintenance.MoveLeader(rpc_pb2.MoveLeaderRequest(targetID=bystander.member_id), timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.value.details() == "etcdserver: not leader"


# ----------------------------------------------------------------------------- client traffic through a follower


def test_put_get_watch_lease_through_a_follower(cluster: Cluster) -> None:
    follower, other = followers(cluster)
    leader = cluster.leader(timeout=WAIT)

    put = json.loads(ok(ctl(follower, "put", "k", "v1", "-w", "json")))
    assert put["header"]["member_id"] == follower.member_id
    rev = put["header"]["revision"]
    assert ok(ctl(follower, "get", "k")) == "k\nv1\n"
    assert ok(ctl(follower, "get", "k", "--consistency=s")) == "k\nv1\n"
    assert ok(ctl(leader, "get", "k", "--print-value-only")) == "v1\n"

    # A watch on the follower from the put's revision sees it, then a put made through the other follower.
    with Watch(follower, "k", f"--rev={rev}") as w:
        ok(ctl(other, "put", "k", "v2"))
        assert w.lines(6) == ["PUT", "k", "v1", "PUT", "k", "v2"]

    granted = ok(ctl(follower, "lease", "grant", "60"))
    m = re.fullmatch(rf"lease ({ID}) granted with TTL\(60s\)\n", granted)
    assert m, granted
    lease = m.group(1)
    ok(ctl(follower, "put", "leased", "x", f"--lease={lease}"))
    assert ok(ctl(follower, "lease", "keep-alive", "--once", lease)) == f"lease {lease} keepalived with TTL(60)\n"
    ttl = ok(ctl(follower, "lease", "timetolive", lease, "--keys"))
    m = re.fullmatch(rf"lease {lease} granted with TTL\(60s\), remaining\((\d+)s\), attached keys\(\[leased\]\)\n", ttl)
    assert m, ttl
    assert 50 <= int(m.group(1)) <= 60
    assert ok(ctl(other, "get", "leased", "-w", "json")).count(f'"lease":{int(lease, 16)}') == 1


class Watch:
    """`etcdctl watch ARGS` on one member in the background; its stdout lines arrive on a queue."""

    def __init__(self, member: procs.Member, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
        env["ETCDCTL_API"] = "3"
        self.proc = subprocess.Popen(
            [procs.ETCDCTL_BIN, f"--endpoints={member.endpoint}", "watch", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))

    def lines(self, n: int, timeout: float = WAIT) -> list[str]:
        deadline = time.monotonic() + timeout
        got: list[str] = []
        while len(got) < n:
            try:
                got.append(self._lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                pytest.fail(f"watch printed {got} after {timeout}s, wanted {n} lines")
        return got

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
