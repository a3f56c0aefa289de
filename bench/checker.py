"""How long the history checkers take on realistic concurrent histories.

Generates linearizable histories (``etcdx.check.synthetic``) and times the
linearizability check with the etcd model (without and with the watch log that
pins lost writes, and once more after forging one read so the check must find
a violation), with the toy KV model, and the watch check over a few watchers
of the same run. Not a test: it prints figures.

    python3 bench/checker.py --ops 10000 --keys 100 --clients 8 --lost 0.01
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from etcdx.check.etcd_model import EtcdModel  # noqa: E402
from etcdx.check.etcd_ops import Get, GetResult  # noqa: E402
from etcdx.check.kv_model import KvModel  # noqa: E402
from etcdx.check.linearizability import CheckResult, Operation, check_operations  # noqa: E402
from etcdx.check.synthetic import random_etcd_history, random_kv_history  # noqa: E402
from etcdx.check.watch import WatchRequest, Watcher, check_watches, prefix_range_end  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--lost", type=float, default=0.01, help="fraction of requests whose response is lost")
    parser.add_argument("--watchers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per check")
    args = parser.parse_args()
    seed = random.randrange(2**32) if args.seed is None else args.seed
    print(f"seed={seed} ops={args.ops} keys={args.keys} clients={args.clients} lost={args.lost}")
    rng = random.Random(seed)

    synthetic = random_etcd_history(rng, args.ops, args.keys, args.clients, args.lost, leases=True)
    history = synthetic.operations
    log = synthetic.store.changes()
    report("etcd model", lambda: check_operations(EtcdModel(), history, args.timeout), args.ops)
    report("etcd model + watch log", lambda: check_operations(EtcdModel(changes=log), history, args.timeout), args.ops)
    forge_a_read(rng, history)
    report("etcd model + watch log, one forged read", lambda: check_operations(EtcdModel(changes=log), history, args.timeout), args.ops)

    kv = random_kv_history(rng, args.ops, args.keys, args.clients, args.lost)
    report("toy kv model", lambda: check_operations(KvModel(), kv, args.timeout), args.ops)

    store = synthetic.store
    watchers = []
    for number in range(args.watchers):
        prefix = "k/" if number == 0 else f"k/{number % max(1, args.keys // 10)}/"
        request = WatchRequest(prefix, prefix_range_end(prefix), start_revision=2, prev_kv=number % 2 == 0)
        watchers.append(Watcher(request, store.watch(request, rng)))
    events = sum(len(r.events) for w in watchers for r in w.responses)
    started = time.perf_counter()
    problems = check_watches(store.changes(), watchers)
    elapsed = time.perf_counter() - started
    print(f"watch check: {len(watchers)} watchers, {events} events, {store.revision} revisions: "
          f"{elapsed:.3f}s, {len(problems)} violations")


def forge_a_read(rng: random.Random, history: list[Operation]) -> None:
    """Change the value one get returned, so the history is no longer linearizable."""
    reads = [op for op in history if isinstance(op.input, Get) and op.output is not None and op.output.kv is not None]
    read = rng.choice(reads)
    read.output = GetResult(replace(read.output.kv, value="forged"), read.output.revision)


def report(name: str, check: Callable[[], CheckResult], ops: int) -> None:
    started = time.perf_counter()
    result = check()
    elapsed = time.perf_counter() - started
    print(f"{name}: ok={result.ok} in {elapsed:.3f}s ({elapsed * 10_000 / ops:.3f}s per 10,000 operations)")


if __name__ == "__main__":
    main()
