"""Runs many seeds across cluster sizes and profiles and reports the failing ones.

Seed ``s`` runs with ``sizes[s % len(sizes)]`` nodes and profile
``profiles[(s // len(sizes)) % len(profiles)]``, so consecutive seeds cover the
whole matrix and any one seed is reproduced from its number and the same lists.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from etcdx.sim.profiles import PROFILES
from etcdx.sim.simulation import Options, RunResult, Simulation


def combo(seed: int, sizes: Sequence[int], profiles: Sequence[str]) -> tuple[int, str]:
    """The cluster size and profile seed ``seed`` runs with."""
    return sizes[seed % len(sizes)], profiles[(seed // len(sizes)) % len(profiles)]


def run_seed(
    seed: int, nodes: int, profile: str, options: Options | None = None
) -> RunResult:
    return Simulation(seed, nodes, PROFILES[profile], options).run()


@dataclass(slots=True)
class Summary:
    runs: int = 0
    steps: int = 0
    ticks: int = 0
    operations: int = 0
    undecided: int = 0
    max_recovery_ticks: int = 0
    failures: list[RunResult] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def run_seeds(
    seeds: Sequence[int],
    sizes: Sequence[int],
    profiles: Sequence[str],
    options: Options | None = None,
    on_result: Callable[[RunResult, Summary], None] | None = None,
) -> Summary:
    summary = Summary()
    started, cpu_started = time.monotonic(), time.process_time()
    for seed in seeds:
        nodes, profile = combo(seed, sizes, profiles)
        result = run_seed(seed, nodes, profile, options)
        summary.runs += 1
        summary.steps += result.steps
        summary.ticks += result.ticks
        summary.operations += result.operations
        summary.undecided += result.linearizability_undecided
        summary.max_recovery_ticks = max(
            summary.max_recovery_ticks, result.recovery_ticks
        )
        if not result.ok:
            summary.failures.append(result)
        summary.seconds = time.monotonic() - started
        summary.cpu_seconds = time.process_time() - cpu_started
        if on_result is not None:
            on_result(result, summary)
    return summary


def reproduce_command(result: RunResult, steps: int) -> str:
    return (
        f"python3 -m etcdx.sim --start {result.seed} --seeds 1 --nodes {result.nodes} "
        f"--profile {result.profile} --steps {steps}"
    )


def report_failure(result: RunResult, steps: int, out: TextIO | None = None) -> None:
    """Print the violation, the command that replays the seed, and the trace leading to it."""
    assert result.violation is not None
    out = out or sys.stdout
    pre_vote = "on" if result.pre_vote else "off"
    print(
        f"\nFAIL seed {result.seed} ({result.nodes} nodes, {result.profile}, pre-vote {pre_vote}): "
        f"{result.violation}",
        file=out,
    )
    print(f"  reproduce: {reproduce_command(result, steps)}", file=out)
    print("  trace of the last steps:", file=out)
    for line in result.trace.splitlines():
        print(f"    {line}", file=out)
