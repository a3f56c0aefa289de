"""The randomized differential sequences, against a 3-member etcdx cluster.

The reference is a fresh single real etcd, as in test_differential; the
candidate is a fresh 3-member etcdx cluster per example, and each request goes
to the next member in turn, so writes are forwarded by followers, linearizable
reads take a ReadIndex round from a follower, and keep-alives are forwarded to
the leader. Responses must be identical field by field (ids and terms aside,
as for one member), and so must watch replays from every member.

A serializable read may lawfully miss a write a follower has not applied yet;
such reads go to the member that answered the last write, which has applied it.
"""

from __future__ import annotations

import itertools
import pathlib
import shutil
import tempfile

import pytest
from hypothesis import given, settings

from etcdx.pb import rpc_pb2
from tests.conformance.test_differential import COMMON, ShrinkBudget, check_same_sequence, sequences
from tests.support import procs
from tests.support.cluster import Cluster

EXAMPLES = 8
CLUSTER_ARGS = ["--heartbeat-interval", "50", "--election-timeout", "500", "--api-workers", "0"]


def _serializable(op_kind: str, req) -> bool:
    if op_kind == "range":
        return req.serializable
    if op_kind == "txn":
        reqs = list(req.success) + list(req.failure)
        return bool(reqs) and all(r.WhichOneof("request") == "request_range" and r.request_range.serializable
                                  for r in reqs)
    return False


class RoundRobin:
    """Looks like one procs.Member to check_same_sequence; each request goes to the next member."""

    kind = "etcdx-cluster"

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self._next = itertools.cycle(cluster.members)
        self._last_writer = cluster.members[0]
        self._current = cluster.members[0]

    def route(self, op) -> None:
        if _serializable(op.kind, op.req):
            self._current = self._last_writer
        else:
            self._current = next(self._next)
            if op.kind in ("put", "delete", "txn", "compact", "lease_grant", "lease_revoke"):
                self._last_writer = self._current

    @property
    def kv(self):
        return self._current.kv

    @property
    def lease(self):
        return self._current.lease

    @property
    def watch(self):
        return next(self._next).watch

    def is_running(self) -> bool:
        return all(m.is_running() for m in self.cluster.members)

    def log_tail(self) -> str:
        return "\n".join(f"--- {m.name}\n{m.log_tail(30)}" for m in self.cluster.members)

    def __repr__(self) -> str:
        return f"<etcdx cluster {self.cluster.endpoints}>"


@pytest.fixture(scope="module")
def workdir():
    procs.require("etcd")
    procs.require("etcdx")
    root = procs.fast_tmp_root() or pathlib.Path(tempfile.gettempdir())
    d = pathlib.Path(tempfile.mkdtemp(prefix="etcdx-diff-cluster-", dir=root))
    yield d
    shutil.rmtree(d, ignore_errors=True)


_counter = itertools.count()
_budget = ShrinkBudget(10)


@settings(max_examples=EXAMPLES, **COMMON)
@given(sequence=sequences)
def test_etcdx_cluster_matches_etcd_on_random_sequences(workdir, sequence):
    _budget.check()
    base = workdir / f"ex{next(_counter)}"
    ref = procs.Member("etcd", base, name="ref")
    cluster = Cluster("etcdx", base / "cluster", size=3, extra_args=CLUSTER_ARGS)
    try:
        ref.start(wait=False)
        cluster.start()
        ref.wait_ready()
        cluster.leader()
        check_same_sequence(ref, RoundRobin(cluster), sequence)
    except BaseException:
        _budget.failed = True
        raise
    finally:
        ref.close()
        cluster.close()
        shutil.rmtree(base, ignore_errors=True)


def test_watch_from_every_member_sees_the_same_history(workdir):
    """After writes through all members, a watch from revision 1 on each member replays alike."""
    base = workdir / "watch"
    with Cluster("etcdx", base, size=3, extra_args=CLUSTER_ARGS) as cluster:
        cluster.start()
        for i, m in enumerate(itertools.islice(itertools.cycle(cluster.members), 12)):
            m.kv.Put(rpc_pb2.PutRequest(key=b"w%d" % (i % 4), value=b"%d" % i), timeout=5)
        histories = []
        for m in cluster.members:
            m.kv.Range(rpc_pb2.RangeRequest(key=b"w0"), timeout=5)  # linearizable: caught up
            call = m.watch.Watch(iter([rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                key=b"\x00", range_end=b"\x00", start_revision=1))]), timeout=5)
            events = []
            for resp in call:
                events += [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in resp.events]
                if len(events) >= 12:
                    break
            call.cancel()
            histories.append(events)
        assert len(histories[0]) == 12
        assert histories[0] == histories[1] == histories[2]
        assert [ev[3] for ev in histories[0]] == list(range(2, 14))
