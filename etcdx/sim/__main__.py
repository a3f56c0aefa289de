"""``python3 -m etcdx.sim``: run seeded whole-cluster simulations; exit 1 if any seed fails."""

from __future__ import annotations

import argparse
import sys

from etcdx.sim.profiles import PROFILES
from etcdx.sim.runner import Summary, report_failure, run_seeds
from etcdx.sim.simulation import Options, RunResult


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m etcdx.sim", description=__doc__)
    parser.add_argument("--seeds", type=int, default=100, help="how many seeds to run")
    parser.add_argument("--start", type=int, default=0, help="the first seed")
    parser.add_argument(
        "--nodes", default="3,5,7", help="cluster sizes, comma separated"
    )
    parser.add_argument(
        "--profile", default="all", help=f"'all' or some of: {','.join(PROFILES)}"
    )
    parser.add_argument(
        "--steps", type=int, default=3000, help="steps of the fault phase per seed"
    )
    parser.add_argument(
        "--liveness-ticks",
        type=int,
        default=300,
        help="ticks allowed to recover after healing",
    )
    parser.add_argument(
        "--trace", type=int, default=60, help="trace lines shown for a failing seed"
    )
    parser.add_argument(
        "--copy-messages",
        action="store_true",
        help="deliver plain copies instead of encoding each message with the protobuf codec (faster)",
    )
    args = parser.parse_args(argv)

    sizes = [int(n) for n in args.nodes.split(",")]
    profiles = list(PROFILES) if args.profile == "all" else args.profile.split(",")
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown:
        parser.error(f"unknown profile(s): {', '.join(unknown)}")
    options = Options(
        steps=args.steps,
        liveness_ticks=args.liveness_ticks,
        trace_keep=args.trace,
        wire_codec=not args.copy_messages,
    )
    tty = sys.stdout.isatty()

    def progress(result: RunResult, summary: Summary) -> None:
        if not result.ok:
            report_failure(result, args.steps)
        if (
            tty
            or summary.runs == args.seeds
            or summary.runs % max(1, args.seeds // 10) == 0
        ):
            rate = summary.runs / summary.seconds if summary.seconds else 0.0
            line = (
                f"{summary.runs}/{args.seeds} seeds, {len(summary.failures)} failed, "
                f"{summary.steps} steps, {summary.operations} client ops, {rate:.1f} seeds/s"
            )
            print(f"\r{line}" if tty else line, end="" if tty else "\n", flush=True)

    summary = run_seeds(
        range(args.start, args.start + args.seeds), sizes, profiles, options, progress
    )
    if tty:
        print()
    if summary.undecided:
        print(
            f"{summary.undecided} histories too large to decide within the checker's timeout"
        )
    if summary.failures:
        print(f"FAILED seeds: {' '.join(str(r.seed) for r in summary.failures)}")
        return 1
    print(
        f"all {summary.runs} seeds passed in {summary.seconds:.1f}s ({summary.cpu_seconds:.1f}s of CPU); "
        f"slowest recovery after healing: {summary.max_recovery_ticks} ticks"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
