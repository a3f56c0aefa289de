"""Response headers: which cluster and member answered, at which raft term and store revision."""

from __future__ import annotations

from typing import Callable

from etcdx.pb import rpc_pb2


class Headers:
    def __init__(self, cluster_id: int, member_id: int, term: Callable[[], int],
                 revision: Callable[[], int]) -> None:
        self.cluster_id = cluster_id
        self.member_id = member_id
        self._term = term
        self._revision = revision

    def fill(self, h: rpc_pb2.ResponseHeader, revision: int = 0) -> None:
        """Revision 0 means "the one already in the header, else the current store revision"."""
        self.fill_without_revision(h)
        h.revision = revision or h.revision or self._revision()

    def fill_without_revision(self, h: rpc_pb2.ResponseHeader) -> None:
        """Cluster, member and term only: etcd leaves the revision 0 on non-KV responses such as MemberList."""
        h.cluster_id = self.cluster_id
        h.member_id = self.member_id
        h.raft_term = self._term()
