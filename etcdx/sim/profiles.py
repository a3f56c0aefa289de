"""Named fault mixes for the simulator.

A profile fixes how links behave by default and how often the nemesis, which
wakes every few ticks, partitions the network (a new partition replaces the
last one), slows a link, pauses a process or stalls its clock, crashes or
restarts a node, changes the membership or moves leadership. The weights are
relative; ``idle`` is the weight of doing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from etcdx.sim.network import LinkFaults
from etcdx.sim.node import CrashPoint

ANYWHERE: tuple[CrashPoint | None, ...] = (None, *CrashPoint)  # None: between steps
DISK_LATENCY = 4  # time units (a tick is 10): a write takes up to this long in the fault profiles


@dataclass(slots=True, frozen=True)
class Profile:
    name: str
    faults: LinkFaults
    nemesis_every: int = 5  # ticks between nemesis decisions
    idle: float = 1.0
    partition: float = 0.0
    heal: float = 0.0
    slow_link: float = 0.0
    pause: float = 0.0
    clock_stall: float = 0.0
    crash: float = 0.0
    reboot: float = 0.5  # chance that a crashed node is restarted within a tick
    crash_points: tuple[CrashPoint | None, ...] = ANYWHERE
    restart: float = 0.0
    membership: float = 0.0
    transfer: float = 0.0
    compact_every: int = 0  # applied entries between snapshots (0: never compact)
    # Time units a Ready's write takes at most (0: at once). Meanwhile the node keeps
    # stepping messages and ticks, as the server does while its WAL thread fsyncs.
    disk_latency: int = 0


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("calm", LinkFaults(delay=1, jitter=2), transfer=0.2, compact_every=40),
        Profile(
            "lossy",
            LinkFaults(drop=0.15, duplicate=0.1, delay=1, jitter=15),
            disk_latency=DISK_LATENCY,
            slow_link=0.5,
            heal=0.2,
        ),
        Profile(
            "partitions",
            LinkFaults(delay=1, jitter=4),
            disk_latency=DISK_LATENCY,
            nemesis_every=20,
            idle=0.6,
            partition=1.0,
            heal=0.6,
        ),
        Profile(
            "pauses",
            LinkFaults(delay=1, jitter=4),
            disk_latency=DISK_LATENCY,
            nemesis_every=10,
            pause=1.0,
            clock_stall=0.6,
            partition=0.4,
            slow_link=0.3,
            heal=0.5,
        ),
        Profile(
            "elections",
            LinkFaults(delay=1, jitter=20),
            disk_latency=DISK_LATENCY,
            nemesis_every=3,
            crash=0.7,
            restart=0.5,
            reboot=1.0,
            crash_points=(CrashPoint.AFTER_VOTE,),
            transfer=0.5,
            pause=0.5,
            partition=0.3,
            heal=0.5,
            slow_link=0.5,
        ),
        Profile(
            "crashes",
            LinkFaults(drop=0.02, delay=1, jitter=4),
            disk_latency=DISK_LATENCY,
            crash=1.0,
            restart=1.0,
            compact_every=25,
        ),
        Profile(
            "membership",
            LinkFaults(drop=0.02, delay=1, jitter=4),
            disk_latency=DISK_LATENCY,
            membership=1.5,
            transfer=0.3,
            partition=0.2,
            heal=0.4,
            compact_every=30,
        ),
        Profile(
            "chaos",
            LinkFaults(drop=0.08, duplicate=0.05, delay=1, jitter=10),
            disk_latency=DISK_LATENCY,
            nemesis_every=6,
            partition=0.6,
            heal=0.6,
            slow_link=0.3,
            pause=0.4,
            clock_stall=0.3,
            crash=0.6,
            restart=0.8,
            membership=0.6,
            transfer=0.3,
            compact_every=20,
        ),
    )
}
