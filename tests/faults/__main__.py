"""Soak runs: ``python3 -m tests.faults --kind etcd|etcdx --members 1|3 --seeds N [--start S] [--duration SEC]``.

Runs seeds S..S+N-1 one after another, prints one line per seed (seed, ops
checked, faults, result, checker time) and, on a violation, the details with
the smallest window the checker found and where the history was saved. Exits
1 if any seed found a violation, 2 if none did but some were inconclusive.
``--recheck PATH`` checks a saved ``history.pickle`` again instead.
"""

from __future__ import annotations

import argparse
import sys
import time

from . import runner


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python3 -m tests.faults", description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("etcd", "etcdx"), default="etcdx")
    p.add_argument("--members", type=int, default=1)
    p.add_argument("--seeds", type=int, default=1, help="how many seeds to run")
    p.add_argument("--start", type=int, default=None, help="first seed (default: random, printed)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of workload and faults per seed")
    p.add_argument("--clients", type=int, default=None)
    p.add_argument("--checker-timeout", type=float, default=300.0)
    p.add_argument("--no-faults", action="store_true", help="workload only (baseline)")
    p.add_argument("--keep", action="store_true", help="keep run directories of passing seeds too")
    p.add_argument("--verbose", "-v", action="store_true", help="print each fault as it is injected")
    p.add_argument("--recheck", metavar="PATH", help="check a saved history.pickle again and exit")
    p.add_argument("extra_args", nargs="*", help="extra member flags (after --)")
    args = p.parse_args(argv)
    if args.recheck:
        print(runner.recheck(args.recheck, args.checker_timeout))
        return 0
    start = args.start if args.start is not None else int(time.time()) % 1_000_000
    print(f"# {args.kind} x{args.members}, seeds {start}..{start + args.seeds - 1}, {args.duration:g}s each", flush=True)
    violations = inconclusive = 0
    for seed in range(start, start + args.seeds):
        report = runner.run(
            args.kind, args.members, seed, args.duration,
            clients=args.clients, extra_args=args.extra_args, checker_timeout=args.checker_timeout,
            faults=not args.no_faults, keep=args.keep,
            log=(lambda s: print(f"  {s}", flush=True)) if args.verbose else (lambda s: None),
        )  # fmt: skip
        if report.violations:
            violations += 1
            print(report.details(), flush=True)
        elif args.verbose:
            print(report.details(), flush=True)
        else:
            print(report.line(), flush=True)
        if report.inconclusive:
            inconclusive += 1
            print(f"  {report.explanation}; history saved to {report.history_path}", flush=True)
    print(f"# {args.seeds} seeds: {violations} with violations, {inconclusive} inconclusive", flush=True)
    return 1 if violations else 2 if inconclusive else 0


if __name__ == "__main__":
    sys.exit(main())
