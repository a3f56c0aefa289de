"""Clusters of real members: moved to `etcdx.testing.cluster`; this keeps the old import path."""

from etcdx.testing.cluster import Cluster, ClusterMember  # noqa: F401
