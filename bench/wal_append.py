"""WAL append throughput with fdatasync per save(): appends/s and MB/s for batches of 1, 10 and 100 entries.

Each save() is what one raft Ready costs the disk: one pwrite and one
fdatasync. Run it on the disk the member will use (``--dir``); the figures are
dominated by the device's flush latency, so they vary with background load.

    python3 bench/wal_append.py [--dir DIR] [--seconds 3] [--entry-bytes 300] [--no-sync]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from etcdx.raft.types import Entry, HardState  # noqa: E402
from etcdx.wal import WAL  # noqa: E402


def run(dirpath: str, batch: int, entry_bytes: int, seconds: float, sync: bool) -> tuple[float, float, float]:
    """Return (saves/s, entries/s, MB/s of entry data) for ``batch`` entries per save."""
    path = os.path.join(dirpath, f"wal-{batch}")
    wal = WAL.create(path, b"bench")
    data = os.urandom(entry_bytes)
    index = 0
    saves = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        ents = [Entry(2, index + i + 1, data=data) for i in range(batch)]
        index += batch
        wal.save(HardState(2, 1, index), ents, sync=sync)
        saves += 1
    elapsed = time.perf_counter() - start
    wal.close()
    shutil.rmtree(path)
    return saves / elapsed, saves * batch / elapsed, saves * batch * entry_bytes / elapsed / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default=None, help="directory on the disk to measure (default: a temp dir)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per batch size")
    parser.add_argument("--entry-bytes", type=int, default=300)
    parser.add_argument("--no-sync", action="store_true", help="skip fdatasync: CPU cost only")
    args = parser.parse_args()
    dirpath = tempfile.mkdtemp(prefix="wal-bench-", dir=args.dir)
    try:
        print(f"dir={dirpath} entry={args.entry_bytes} B sync={not args.no_sync}")
        print(f"{'batch':>5} {'saves/s':>9} {'entries/s':>10} {'MB/s':>7} {'us/save':>8}")
        for batch in (1, 10, 100):
            saves, ents, mbs = run(dirpath, batch, args.entry_bytes, args.seconds, not args.no_sync)
            print(f"{batch:>5} {saves:>9.0f} {ents:>10.0f} {mbs:>7.2f} {1e6 / saves:>8.0f}")
    finally:
        shutil.rmtree(dirpath, ignore_errors=True)


if __name__ == "__main__":
    main()
