"""A client scenario written with the `aetcd` PyPI client (asyncio, gRPC), run as a script.

Usage: python aetcd_scenario.py HOST:PORT  → prints one JSON object: the observations.

It runs in its own process because aetcd ships its own generated etcd protos,
which clash with etcdx.pb's in one protobuf descriptor pool. Observations hold
only what two servers with the same history must agree on (no ids, no terms,
no remaining TTLs).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

import aetcd

TIMEOUT = 10


def kv(item) -> dict | None:
    if item is None:
        return None
    return {
        "key": item.key.decode(),
        "value": item.value.decode(),
        "version": item.version,
        "create_revision": item.create_revision,
        "mod_revision": item.mod_revision,
        "has_lease": bool(item.lease),
    }


async def scenario(host: str, port: int) -> dict:
    obs: dict = {}
    async with aetcd.Client(host=host, port=port, timeout=TIMEOUT) as client:
        # put / get / prefix get / delete
        put = await client.put(b"a", b"1")
        obs["put_revision"] = put.header.revision
        obs["put_prev_kv"] = kv((await client.put(b"a", b"2", prev_kv=True)).prev_kv)
        obs["get"] = kv(await client.get(b"a"))
        obs["get_missing"] = kv(await client.get(b"missing"))
        for k in (b"p/1", b"p/2", b"p/3", b"q"):
            await client.put(k, k + b"-v")
        obs["get_prefix"] = [kv(i) for i in await client.get_prefix(b"p/")]
        obs["get_prefix_desc_keys"] = [
            i.key.decode()
            for i in await client.get_prefix(
                b"p/", sort_order="descend", keys_only=True
            )
        ]
        obs["get_all_count"] = len(list(await client.get_all()))
        deleted = await client.delete(b"p/1", prev_kv=True)
        obs["delete"] = {"deleted": deleted.deleted, "prev": kv(deleted.prev_kv)}
        obs["delete_missing"] = (await client.delete(b"p/1")) is None
        obs["delete_prefix"] = (await client.delete_prefix(b"p/")).deleted

        # transactions
        tx = client.transactions
        ok, _ = await client.transaction(
            compare=[tx.value(b"a") == b"2", tx.version(b"a") > 0],
            success=[tx.put(b"t", b"yes"), tx.get(b"a")],
            failure=[tx.put(b"t", b"no")],
        )
        obs["txn_succeeded"] = ok
        ok, _ = await client.transaction(
            compare=[tx.create(b"never") > 0],
            success=[tx.put(b"t", b"bad")],
            failure=[tx.delete(b"t")],
        )
        obs["txn_failed_branch"] = [ok, kv(await client.get(b"t"))]

        # watch: a prefix watcher sees puts and deletes in order
        watch = await client.watch_prefix(b"w/", prev_kv=True)
        await client.put(b"w/1", b"x")
        await client.put(b"w/2", b"y")
        await client.put(b"w/1", b"z")
        await client.delete(b"w/2")
        events = []

        async def collect():
            async for ev in watch:
                events.append(
                    {
                        "kind": str(ev.kind),
                        "key": ev.kv.key.decode(),
                        "value": ev.kv.value.decode(),
                        "mod_revision": ev.kv.mod_revision,
                        "prev": ev.prev_kv.value.decode() if ev.prev_kv else None,
                    }
                )
                if len(events) == 4:
                    return

        await asyncio.wait_for(collect(), TIMEOUT)
        await watch.cancel()
        obs["watch_events"] = events
        obs["watch_once"] = await _watch_once_replay(client)

        # leases
        lease = await client.lease(30)
        obs["lease_granted_ttl"] = lease.ttl
        await client.put(b"leased", b"v", lease=lease)
        info = await lease._get_lease_info()
        obs["lease_info"] = {
            "grantedTTL": info.grantedTTL,
            "keys": sorted(k.decode() for k in info.keys),
            "ttl_positive": info.TTL > 0,
        }
        refreshed = await lease.refresh()
        obs["lease_refresh_ttl"] = refreshed.TTL
        await lease.revoke()
        obs["leased_key_after_revoke"] = kv(await client.get(b"leased"))
        obs["lease_info_after_revoke_ttl"] = (await client.get_lease_info(lease.id)).TTL

        # a short lease expires by itself and takes its key along
        short = await client.lease(1)
        obs["short_lease_ttl"] = short.ttl  # etcd raises TTLs below its minimum
        await client.put(b"ephemeral", b"v", lease=short)
        deadline = time.monotonic() + 15
        while (
            await client.get(b"ephemeral") is not None and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.2)
        obs["short_lease_expired"] = await client.get(b"ephemeral") is None

        # locks (lease + create_revision compare)
        lock = client.lock(b"mylock", ttl=10)
        obs["lock_acquired"] = await lock.acquire(timeout=5)
        obs["lock_is_acquired"] = await lock.is_acquired()
        other = client.lock(b"mylock", ttl=10)
        obs["contended_acquire"] = await other.acquire(timeout=1)
        await lock.release()
        obs["lock_after_release"] = await other.acquire(timeout=5)
        await other.release()
        obs["lock_key_after_release"] = kv(await client.get(b"mylock"))

        obs["snapshot_revision"] = await _snapshot_revision(client)
        obs["final_revision"] = (await client.put(b"end", b"1")).header.revision
    return obs


async def _snapshot_revision(client) -> int | None:
    """A snapshot through the client, read back by ``etcdctl snapshot status`` (as
    aetcd's and etcd3's own snapshot tests do); None without etcdctl."""
    if not os.access("/usr/bin/etcdctl", os.X_OK):
        return None
    with tempfile.NamedTemporaryFile(suffix=".db") as f:
        await client.snapshot(f)
        f.flush()
        r = subprocess.run(["/usr/bin/etcdctl", "snapshot", "status", f.name, "-w", "json"],
                           capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"}, check=True)
    return json.loads(r.stdout)["revision"]


async def _watch_once_replay(client) -> list:
    """History replay: a watcher from revision 1 on prefix p/ sees creations and deletions."""
    watch = await client.watch_prefix(b"p/", start_revision=1)
    seen = []

    async def collect():
        async for ev in watch:
            seen.append([str(ev.kind), ev.kv.key.decode(), ev.kv.mod_revision])
            if ev.kind == "DELETE" and ev.kv.key == b"p/3":
                return

    await asyncio.wait_for(collect(), TIMEOUT)
    await watch.cancel()
    return seen


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    print(json.dumps(asyncio.run(scenario(host, int(port))), sort_keys=True))


if __name__ == "__main__":
    main()
