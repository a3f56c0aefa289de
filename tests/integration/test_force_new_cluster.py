"""--force-new-cluster: the survivor of a cluster that lost its quorum restarts alone, on etcd and etcdx alike.

A 3-member cluster with keys and a lease loses two members for good. The
survivor (the old leader) takes one more write it can never commit, is killed,
and restarts with --force-new-cluster: it serves reads and writes with the
same keys, revisions and lease, the uncommitted write is gone, `member list`
shows it alone with its member and cluster ids, a restart without the flag
stays that way, and a member added with `etcdctl member add` joins and
catches up. The same script runs against the real etcd 3.4 (``-k "not etcdx"``).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import grpc
import pytest
from support import procs
from support.cluster import Cluster, ClusterMember

from etcdx.pb import rpc_pb2
from etcdx.wal import WAL

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(240)]

TIMING = ["--heartbeat-interval", "50", "--election-timeout", "500"]
ONE_PROCESS = {"etcd": [], "etcdx": ["--api-workers", "0"]}  # etcdx's API workers only slow the starts down
WAIT = 30.0
ALL = rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0")


def wait_for(what: str, probe, timeout: float = WAIT):
    """Call ``probe`` until it returns something truthy (an RPC error counts as not yet)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            last = probe()
            if last:
                return last
        except grpc.RpcError as err:
            last = err
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not after {timeout}s (last: {last!r})")
        time.sleep(0.1)


def ctl(m: procs.Member, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    r = subprocess.run([procs.ETCDCTL_BIN, f"--endpoints={m.endpoint}", "--dial-timeout=5s",
                        "--command-timeout=15s", *args], capture_output=True, text=True, env=env, timeout=60,
                       check=False)
    assert r.returncode == 0, f"etcdctl {args}: {r.stderr}"
    return r.stdout


def member_ids(m: procs.Member) -> list[int]:
    return sorted(x["ID"] for x in json.loads(ctl(m, "member", "list", "-w", "json"))["members"])


def wal_holds(member: ClusterMember, needle: bytes) -> bool:
    wal, state = WAL.open(str(member.data_dir / "member" / "wal"))
    wal.close()
    return any(needle in e.data for e in state.entries)


@pytest.mark.parametrize("kind", ["etcd", "etcdx"])
def test_survivor_restarts_as_a_one_member_cluster_with_its_data(kind: str, tmp_path) -> None:
    procs.require(kind)
    procs.require("etcdctl")
    flags = TIMING + ONE_PROCESS[kind]
    with Cluster(kind, tmp_path / "cluster", size=3, extra_args=flags) as c:
        c.start()
        survivor = c.leader(timeout=WAIT)
        for i in range(10):
            survivor.kv.Put(rpc_pb2.PutRequest(key=b"k%d" % i, value=b"v%d" % i), timeout=5)
        lease = survivor.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=600), timeout=5).ID
        survivor.kv.Put(rpc_pb2.PutRequest(key=b"leased", value=b"x", lease=lease), timeout=5)
        before = survivor.kv.Range(ALL, timeout=5)
        cluster_id, member_id = before.header.cluster_id, survivor.member_id

        for m in c.members:
            if m is not survivor:
                m.kill()
        with pytest.raises(grpc.RpcError):  # appended by the leader, never committed: no quorum left
            survivor.kv.Put(rpc_pb2.PutRequest(key=b"uncommitted", value=b"lost"), timeout=1.0)
        survivor.kill()
        if kind == "etcdx":
            assert wal_holds(survivor, b"uncommitted")  # so the restart below has something to discard

        survivor.extra_args.append("--force-new-cluster")
        survivor.start(timeout=WAIT)
        after = wait_for("a linearizable read on the forced member", lambda: survivor.kv.Range(ALL, timeout=2))
        assert list(after.kvs) == list(before.kvs)  # every key, value, revision, version and lease
        assert after.header.revision == before.header.revision  # the uncommitted put was discarded
        assert (after.header.cluster_id, after.header.member_id) == (cluster_id, member_id)
        ttl = survivor.lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lease, keys=True), timeout=5)
        assert ttl.TTL > 0 and ttl.grantedTTL == 600 and list(ttl.keys) == [b"leased"]
        put = survivor.kv.Put(rpc_pb2.PutRequest(key=b"after", value=b"force"), timeout=5)
        assert put.header.revision == before.header.revision + 1
        assert member_ids(survivor) == [member_id]
        if kind == "etcdx":
            log = survivor.log_path.read_text()
            assert "forcing a new one-member cluster" in log
            assert "etcd flags etcdx does not support yet" in log

        survivor.extra_args.remove("--force-new-cluster")
        survivor.restart(timeout=WAIT)
        wait_for("a write after a restart without the flag",
                 lambda: survivor.kv.Put(rpc_pb2.PutRequest(key=b"again", value=b"1"), timeout=2))
        assert member_ids(survivor) == [member_id]

        m4 = ClusterMember(kind, c.base_dir, "m4", c.token, flags)
        c.members.append(m4)  # closed with the cluster
        out = ctl(survivor, "member", "add", "m4", f"--peer-urls={m4.peer_url}")
        m4.initial_cluster = re.search(r'^ETCD_INITIAL_CLUSTER="(.*)"$', out, re.MULTILINE).group(1)
        m4.initial_cluster_state = "existing"
        m4.start(timeout=WAIT)
        want = list(survivor.kv.Range(ALL, timeout=5).kvs)
        wait_for("the new member caught up",
                 lambda: list(m4.kv.Range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0", serializable=True),
                                          timeout=2).kvs) == want)
        m4_id = m4.status().header.member_id
        assert member_ids(survivor) == sorted([member_id, m4_id])
        put = wait_for("a write committed by both members",
                       lambda: survivor.kv.Put(rpc_pb2.PutRequest(key=b"two", value=b"2"), timeout=2))
        assert m4.kv.Range(rpc_pb2.RangeRequest(key=b"two"), timeout=5).kvs[0].mod_revision == put.header.revision
