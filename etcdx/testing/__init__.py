"""Real etcd-compatible members for tests: etcdx or etcd processes, clusters, faults, and a pytest plugin.

- `procs.Member`: one member process on free loopback ports (start, kill -9,
  pause, restart, a client for it);
- `cluster.Cluster`: N members forming a cluster, optionally behind
  fault-injecting proxies on their peer ports so members can be partitioned;
- `faultproxy`: the proxy itself (block, delay, drop, per directed link);
- `tls.make_tls_files`: a CA and certificates for TLS tests;
- `plugin`: pytest fixtures (registered as a ``pytest11`` entry point) for a
  fresh member and a 3-member cluster, of etcdx or, with ``--etcdx-kind=etcd``,
  the real etcd.
"""

from .cluster import Cluster, ClusterMember
from .faultproxy import FaultNetwork, FaultProxy
from .procs import Member, MemberGroup, MemberStartError
from .tls import TLSFiles, make_tls_files

__all__ = [
    "Cluster", "ClusterMember", "FaultNetwork", "FaultProxy", "Member", "MemberGroup", "MemberStartError",
    "TLSFiles", "make_tls_files",
]  # fmt: skip
