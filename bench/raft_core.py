"""Entries committed per second by the raft core alone: 3 in-memory nodes, batched proposals.

No encoding, no disk, no network: messages are handed from node to node in
the same process, so the figure is the ceiling the core puts on a member.

    python3 bench/raft_core.py [--entries N] [--batch B] [--size BYTES] [--one-by-one]

A batch is proposed with one ``propose_many`` call, or with ``--one-by-one``
as B ``propose`` calls between two Readies (the leader still sends them in
one append per follower).
"""

from __future__ import annotations

import argparse
import time

from etcdx.raft import Config, MemoryStorage, Message, RawNode


def run(entries: int, batch: int, size: int, one_by_one: bool = False) -> tuple[float, float]:
    """Entries committed per second of wall time and per second of this process's CPU time."""
    ids = [1, 2, 3]
    storages = {i: MemoryStorage() for i in ids}
    for s in storages.values():
        RawNode.bootstrap(s, ids)
    nodes = {i: RawNode(Config(id=i, storage=storages[i])) for i in ids}
    inbox: list[Message] = []

    def pump() -> int:
        """Run every node's host loop and deliver messages until quiet; entries applied on node 1."""
        applied = 0
        busy = True
        while busy:
            busy = False
            for i in ids:
                node = nodes[i]
                if not node.has_ready():
                    continue
                busy = True
                rd = node.ready()
                s = storages[i]
                if rd.entries:
                    s.append(rd.entries)
                if rd.hard_state is not None:
                    s.set_hard_state(rd.hard_state)
                if i == 1:
                    applied += len(rd.committed_entries)
                node.advance(rd)
                for m in rd.messages:
                    nodes[m.to].step(m)
        return applied

    nodes[1].campaign()
    pump()
    payload = b"x" * size
    datas = [payload] * batch
    done = 0
    start = time.perf_counter()
    cpu_start = time.process_time()
    while done < entries:
        if one_by_one:
            for d in datas:
                nodes[1].propose(d)
        else:
            nodes[1].propose_many(datas)
        done += batch
        pump()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    assert nodes[1].raft.log.committed >= entries
    return entries / elapsed, entries / cpu


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--entries", type=int, default=200_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--one-by-one", action="store_true")
    a = p.parse_args()
    wall, cpu = run(a.entries, a.batch, a.size, a.one_by_one)
    how = "propose x B" if a.one_by_one else "propose_many"
    print(
        f"raft core, 3 nodes in memory, {how}, batch={a.batch} size={a.size}B: "
        f"{wall:,.0f} entries committed/s ({cpu:,.0f} per CPU-second; the machine may be shared)"
    )


if __name__ == "__main__":
    main()
