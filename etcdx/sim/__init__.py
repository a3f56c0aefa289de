"""Deterministic whole-cluster simulation of the raft core, with faults and safety checks.

Many ``RawNode``s run in one process on a simulated clock and network, driven by a
single ``random.Random(seed)``: a seed replays exactly. The host loop around each
node persists to a ``MemoryStorage`` that stands for its disk, so a crash loses
exactly what was not yet persisted. A safety monitor checks Raft's properties on
every Ready; at the end the cluster must recover once faults stop, and the client
history must be linearizable.

    python3 -m etcdx.sim --seeds 1000 [--start 0] [--nodes 3,5,7] [--profile all] [--steps N]

Modules: ``clock`` (time units), ``network`` (links, loss, duplication, delay,
partitions), ``node`` (disk vs process, crash points), ``kv`` (the replicated toy
state machine), ``history`` (what clients saw), ``invariants`` (the safety
monitor), ``profiles`` (named fault mixes), ``nemesis`` (injecting them),
``simulation`` (the event loop, host loop and clients), ``trace`` (the last steps
before a violation), ``runner`` (many seeds, reports).
"""
