"""Fault-injection harness: real members, a seeded nemesis, client workloads, checked histories.

    python3 -m tests.faults --kind etcd --members 3 --seeds 5 --duration 30

`runner.run(kind, members, seed, duration)` starts a `support.cluster.Cluster`
(proxied when it has several members), runs `workload` clients and watchers
against every member while `nemesis` injects faults on a schedule drawn from
`random.Random(seed)`, then heals everything and checks what the clients saw
with `etcdx.check` (`checks`). `history` is what was recorded (saved with a
readable transcript when a run finds something), `lying` a planted stale-read
bug the checks must catch, `test_regressions` the seeds that found violations.
`tests/integration/test_faults.py` is the CI entry with fixed seeds.

Modules import each other and `support` as top-level packages (pytest puts
`tests/` on sys.path; this file does the same for `python3 -m tests.faults`).
"""

import pathlib
import sys

_TESTS = str(pathlib.Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)

# Server kinds that the CI runs as 3-member clusters (tests/integration/test_faults.py,
# tests/faults/test_cluster.py and test_regressions.py). etcdx joins once its clustering has landed:
# CLUSTER_KINDS = ["etcd", "etcdx"] is the whole change.
CLUSTER_KINDS = ["etcd", "etcdx"]
