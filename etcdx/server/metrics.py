"""The member's figures under etcd's metric names, read when scraped.

Most figures already exist in the server (raft's commit index, the applied
index, pending proposals, the backend's size), so a collector reads them at
scrape time instead of keeping counters on the hot path. Durations that only
exist as they happen (WAL syncs, backend commits) go into histograms with
etcd's buckets from hooks the WAL thread and the backend call.

``MemberCollector`` is meant for a registry of its own (one member's figures;
tests run several members in one process), beside prometheus_client's global
``REGISTRY`` with the process and peer-network metrics.
"""

from __future__ import annotations

from typing import Any, Iterator

from prometheus_client import REGISTRY, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from etcdx.server.maintenance import CLUSTER_VERSION, SERVER_VERSION

DISK_BUCKETS = tuple(0.001 * 2**i for i in range(14))  # 1 ms .. 8.192 s, etcd's


def _histogram(name: str, doc: str) -> Histogram:
    try:
        return Histogram(name, doc, buckets=DISK_BUCKETS)
    except ValueError:  # already registered: this module was loaded twice (importlib.reload)
        return REGISTRY._names_to_collectors[name]


wal_fsync_seconds = _histogram("etcd_disk_wal_fsync_duration_seconds",
                               "The latency distributions of fsync called by WAL.")
backend_commit_seconds = _histogram("etcd_disk_backend_commit_duration_seconds",
                                    "The latency distributions of commit called by backend.")


def observe_disk(server: Any) -> None:
    """Feed the disk histograms from ``server``'s WAL thread and backend commits (process-wide,
    as etcd's; several members in one process share them)."""
    server.driver.on_wal_sync = wal_fsync_seconds.observe
    server.stores.backend.on_commit = backend_commit_seconds.observe


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    if labels is None:
        return GaugeMetricFamily(name, doc, value=value)
    g = GaugeMetricFamily(name, doc, labels=list(labels))
    g.add_metric(list(labels.values()), value)
    return g


class MemberCollector(Collector):
    """etcd_server_*, etcd_mvcc_* and etcd_debugging_mvcc_* figures of one member.

    ``collect`` reads the backend (key count and sizes): call it where a
    read of the whole key index may take a while, off the event loop, inside
    ``backend.hold()``.
    """

    def __init__(self, server: Any) -> None:
        self.s = server

    def collect(self) -> Iterator[Metric]:
        s = self.s
        node = s.driver.node
        lead = node.lead
        backend = s.stores.backend
        kv = s.stores.kv
        yield _gauge("etcd_server_has_leader", "Whether or not a leader exists. 1 is existence, 0 is not.",
                     1 if lead else 0)
        yield _gauge("etcd_server_is_leader", "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                     1 if lead and lead == s.member_id else 0)
        yield _gauge("etcd_server_is_learner", "Whether or not this member is a learner. 1 if is, 0 otherwise.",
                     1 if s.stores.is_learner(s.member_id) else 0)
        yield CounterMetricFamily("etcd_server_leader_changes_seen", "The number of leader changes seen.",
                                  value=s.leader_changes_seen)
        yield _gauge("etcd_server_proposals_committed_total",
                     "The total number of consensus proposals committed.", node.commit)
        yield _gauge("etcd_server_proposals_applied_total",
                     "The total number of consensus proposals applied.", s.applied.index)
        yield _gauge("etcd_server_proposals_pending", "The current number of pending proposals to commit.",
                     s.proposals.pending)
        yield CounterMetricFamily("etcd_server_proposals_failed", "The total number of failed proposals seen.",
                                  value=s.proposals.failed)
        yield _gauge("etcd_server_quota_backend_bytes", "Current backend storage quota size in bytes.",
                     s.cfg.quota_bytes)
        yield _gauge("etcd_server_id", "Server or member ID in hexadecimal format. 1 for 'server_id' label "
                     "with current ID.", 1, {"server_id": f"{s.member_id:x}"})
        yield _gauge("etcd_server_version", "Which version is running. 1 for 'server_version' label with "
                     "current version.", 1, {"server_version": SERVER_VERSION})
        yield _gauge("etcd_cluster_version", "Which version is running. 1 for 'cluster_version' label with "
                     "current cluster version.", 1, {"cluster_version": CLUSTER_VERSION.rsplit(".", 1)[0]})
        size = backend.size()
        doc = "Total size of the underlying database physically allocated in bytes."
        yield _gauge("etcd_mvcc_db_total_size_in_bytes", doc, size)
        yield _gauge("etcd_debugging_mvcc_db_total_size_in_bytes", doc, size)
        yield _gauge("etcd_mvcc_db_total_size_in_use_in_bytes",
                     "Total size of the underlying database logically in use in bytes.", backend.size_in_use())
        yield _gauge("etcd_debugging_mvcc_current_revision", "The current revision of store.", kv.current_revision)
        yield _gauge("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction in store.",
                     max(kv.compact_revision, 0))
        yield _gauge("etcd_debugging_mvcc_keys_total", "Total number of keys.",
                     kv.range(b"\0", b"\0", count_only=True).count)
