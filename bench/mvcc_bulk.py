"""Bulk puts through the mvcc layer alone, batched as the applier batches them.

Each put is its own etcd transaction (one revision, like a Put request); many
of them share one backend write transaction, as one apply batch does.

    python bench/mvcc_bulk.py --keys 1000000 --batch 1000 --value-size 256
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

from etcdx.backend import Backend
from etcdx.mvcc import KVStore


def rss_mib(field: str = "VmRSS") -> float:
    """Resident memory; RssAnon excludes LMDB's file-backed (page cache) pages."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--value-size", type=int, default=256)
    parser.add_argument("--dir", default=None, help="data directory (default: a temp dir)")
    args = parser.parse_args()

    path = args.dir or tempfile.mkdtemp(prefix="mvcc-bulk-")
    backend = Backend(os.path.join(path, "db"))
    store = KVStore(backend)
    value = os.urandom(args.value_size)
    rss_before = rss_mib("RssAnon")
    started, cpu_started = time.perf_counter(), time.process_time()
    for first in range(0, args.keys, args.batch):
        with backend.write() as txn:
            for i in range(first, min(first + args.batch, args.keys)):
                w = store.write(txn)
                # A scattered key order, as many writers produce it.
                w.put(b"/registry/bench/%012d" % (i * 2654435761 % args.keys), value)
                w.end()
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu_started
    backend.sync()

    cpu_started = time.process_time()
    count = store.range(b"/registry/bench/", b"/registry/bench0", count_only=True).count
    count_s = time.process_time() - cpu_started
    cpu_started = time.process_time()
    sample = store.range(b"/registry/bench/", b"/registry/bench0", limit=10_000)
    range_s = time.process_time() - cpu_started
    cpu_started = time.process_time()
    gets = min(args.keys, 100_000)
    for i in range(gets):
        store.range(b"/registry/bench/%012d" % i)
    get_s = time.process_time() - cpu_started

    # Overwrite some keys, then compact away their old revisions.
    rewrites = min(args.keys, 100_000)
    for first in range(0, rewrites, args.batch):
        with backend.write() as txn:
            for i in range(first, min(first + args.batch, rewrites)):
                w = store.write(txn)
                w.put(b"/registry/bench/%012d" % i, value)
                w.end()
    cpu_started = time.process_time()
    with backend.write() as txn:
        store.compact(store.current_revision, txn)
    done = False
    while not done:
        with backend.write() as txn:
            done = store.compact_step(txn, 1000)
    compact_s = time.process_time() - cpu_started

    print(f"puts            {args.keys} x {args.value_size} B, {args.batch} per backend txn")
    print(f"put rate        {args.keys / elapsed:,.0f} puts/s wall ({elapsed:.1f} s), "
          f"{args.keys / cpu:,.0f} puts per CPU-second")
    print(f"count range     {count} keys in {count_s:.2f} CPU-s")
    print(f"range limit     {len(sample.kvs)} kvs (and the count) in {range_s:.2f} CPU-s")
    print(f"single gets     {gets / get_s:,.0f} per CPU-second")
    print(f"compaction      of {rewrites} superseded revisions in {compact_s:.2f} CPU-s")
    print(f"db size         {backend.size() / 2**20:,.0f} MiB "
          f"({backend.size_in_use() / 2**20:,.0f} MiB in use)")
    print(f"rss             {rss_mib():,.0f} MiB now ({rss_mib('RssAnon'):,.0f} MiB anonymous, "
          f"{rss_mib('RssFile'):,.0f} MiB mapped file), {rss_before:,.0f} MiB anonymous before, "
          f"peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB")
    backend.close()


if __name__ == "__main__":
    main()
