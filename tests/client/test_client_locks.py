"""Locks, elections and STM, against etcd and etcdx, through both faces.

The recipes are client-side (keys under the lock's name with the session
lease, as etcd's Go concurrency package makes them), so they work on etcdx
without a Lock or Election service; etcdctl's lock contends with ours.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import threading

import pytest

from etcdx.client import DeadlineExceeded, ElectionNotLeader, LockLost, NoElectionLeader, txn
from etcdx.testing import procs

DEADLINE = 20.0


def test_a_lock_is_held_by_one_client_at_a_time(member, connect, prefix):
    a, b = connect(member.endpoint), connect(member.endpoint)
    name = prefix + "lock"
    with a.lock(name, ttl=10) as held:
        first_token = held.token
        assert held.is_held()
        with pytest.raises(DeadlineExceeded):
            b.lock(name, ttl=10).acquire(timeout=0.5)
        # The attempt that gave up left no key for later contenders to wait on.
        assert [kv.key for kv in a.get_prefix(name + "/")] == [held.key]
    second = b.lock(name, ttl=10).acquire(timeout=DEADLINE)
    assert second.token > first_token
    second.release()
    assert a.get_prefix(name + "/").count == 0


def test_a_holder_whose_lease_expired_is_fenced(member, connect, prefix):
    """The old holder stalled (no keep-alive) past its TTL: its guarded write fails, the new holder's works."""
    a, b = connect(member.endpoint), connect(member.endpoint)
    name, data = prefix + "lock", prefix + "data"
    stalled_lease = a.lease(2, keepalive=False)
    old = a.lock(name, lease=stalled_lease).acquire(timeout=DEADLINE)
    old.put(data, "from the first holder")
    new = b.lock(name, ttl=10).acquire(timeout=DEADLINE)  # returns once the first lease has expired
    assert new.token > old.token
    with pytest.raises(LockLost):
        old.put(data, "late write from the first holder")
    with pytest.raises(LockLost):
        old.txn([txn.version(data) > 0], [txn.delete(data)])
    assert not old.is_held()
    new.put(data, "from the second holder")
    assert a.get(data).value == b"from the second holder"
    new.release()


def test_a_guarded_txn_keeps_its_own_compares(member, connect, prefix):
    c = connect(member.endpoint)
    with c.lock(prefix + "lock", ttl=10) as lock:
        result = lock.txn([txn.version(prefix + "k") > 0], [txn.put(prefix + "k", "updated")], [txn.put(prefix + "k", "new")])
        assert not result.succeeded
        assert c.get(prefix + "k").value == b"new"
        assert c.txn([lock.fence()]).succeeded


def test_etcdctl_lock_and_ours_exclude_each_other(member, connect, prefix):
    procs.require("etcdctl")
    c = connect(member.endpoint)
    name = prefix + "shared"
    holder = subprocess.Popen(
        [procs.ETCDCTL_BIN, "--endpoints", member.endpoint, "lock", name],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={"ETCDCTL_API": "3"},
    )  # fmt: skip
    try:
        held_key = holder.stdout.readline().strip()  # etcdctl prints the lock key once it holds it
        assert held_key.startswith(name + "/")
        with pytest.raises(DeadlineExceeded):
            c.lock(name).acquire(timeout=0.5)
        holder.send_signal(signal.SIGINT)  # etcdctl releases the lock and exits
        holder.wait(DEADLINE)
        with c.lock(name, ttl=10) as ours:
            assert ours.key != held_key.encode()
    finally:
        holder.kill()
        holder.wait()


def test_an_election_has_one_leader_and_hands_over_on_resign(member, connect, prefix):
    a, b = connect(member.endpoint), connect(member.endpoint)
    name = prefix + "election"
    with pytest.raises(NoElectionLeader):
        a.election(name).leader()
    first = a.election(name, ttl=10)
    first.campaign("alpha", timeout=DEADLINE)
    observer = b.election(name).observe()
    try:
        assert observer.get(timeout=DEADLINE).value == b"alpha"
        first.proclaim("alpha-2")
        assert observer.get(timeout=DEADLINE).value == b"alpha-2"
        second = b.election(name, ttl=10)
        with pytest.raises(DeadlineExceeded):
            second.campaign("beta", timeout=0.5)
        assert second.leader().value == b"alpha-2"
        first.resign()
        with pytest.raises(ElectionNotLeader):
            first.proclaim("too late")
        second.campaign("beta", timeout=DEADLINE)
        assert observer.get(timeout=DEADLINE).value == b"beta"
        assert a.election(name).leader().value == b"beta"
        second.resign()
    finally:
        observer.close()


@pytest.mark.parametrize("face", ["sync"])
def test_stm_increments_from_many_threads_lose_no_update(member, connect, prefix):
    clients = [connect(member.endpoint) for _ in range(4)]
    key = prefix + "counter"

    def increment(stm):
        stm.put(key, str(int(stm.get(key) or 0) + 1))

    def worker(c):
        for _ in range(5):
            c.stm(increment)

    threads = [threading.Thread(target=worker, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(DEADLINE)
    assert clients[0].get(key).value == b"20"


def test_stm_increments_from_many_tasks_lose_no_update(member, prefix):
    from etcdx.client import AsyncClient

    key = prefix + "counter"

    async def increment(stm):
        stm.put(key, str(int(await stm.get(key) or 0) + 1))

    async def main() -> bytes:
        clients = [AsyncClient([member.endpoint]) for _ in range(4)]
        try:

            async def worker(c):
                for _ in range(5):
                    await c.stm(increment)

            await asyncio.gather(*(worker(c) for c in clients))
            return (await clients[0].get(key)).value
        finally:
            for c in clients:
                await c.close()

    assert asyncio.run(main()) == b"20"
