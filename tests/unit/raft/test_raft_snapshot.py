"""Log compaction and snapshots (Raft §7)."""

from __future__ import annotations

import pytest
from raft_testnet import Network

from etcdx.raft import ConfChange, ConfChangeType, MemoryStorage, Message, MessageType, SnapOutOfDateError
from etcdx.raft.progress import ProgressState


def compact_leader(n: Network, leader: int) -> int:
    """Snapshot the leader's applied state and drop its log up to there; returns the index."""
    s = n.storages[leader]
    index = n.nodes[leader].raft.log.applied
    s.create_snapshot(index, n.nodes[leader].status().conf_state, b"app-state@%d" % index)
    s.compact(index)
    return index


def test_lagging_follower_is_sent_a_snapshot_and_then_replicated():
    n = Network([1, 2, 3])
    n.elect(1)
    n.isolate(3)
    for i in range(10):
        n.nodes[1].propose(b"e%d" % i)
    n.stabilize()
    index = compact_leader(n, 1)
    n.heal()
    n.tick_all(1)
    snaps = n.messages_of(MessageType.SNAP)
    assert [m.to for m in snaps] == [3]
    assert n.storages[3].snapshot().metadata.index == index
    assert n.storages[3].snapshot().data == b"app-state@%d" % index
    # The follower's acknowledgement of the snapshot resumes replication by itself;
    # the transport's later report is then a no-op.
    pr = n.nodes[1].status().progress[3]
    assert pr.state == ProgressState.REPLICATE and pr.match == index
    n.nodes[1].report_snapshot(3, failed=False)
    n.nodes[1].propose(b"after")
    n.stabilize()
    assert n.applied_data(3) == [b"after"]
    assert n.nodes[1].status().progress[3].state == ProgressState.REPLICATE
    assert n.committed(3) == n.committed(1)


def test_failed_snapshot_is_retried_after_a_heartbeat():
    n = Network([1, 2, 3])
    n.elect(1)
    n.isolate(3)
    n.nodes[1].propose(b"a")
    n.stabilize()
    compact_leader(n, 1)
    n.heal()
    n.filter = lambda m: m.type != MessageType.SNAP
    n.tick_all(1)
    assert n.nodes[1].status().progress[3].state == ProgressState.SNAPSHOT
    n.nodes[1].report_snapshot(3, failed=True)
    assert n.nodes[1].status().progress[3].state == ProgressState.PROBE
    n.filter = None
    n.tick_all(2)
    assert len(n.messages_of(MessageType.SNAP)) >= 2
    assert n.storages[3].snapshot().metadata.index == n.storages[1].snapshot().metadata.index


def test_follower_ignores_a_snapshot_older_than_its_commit():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[1].propose(b"a")
    n.stabilize()
    snap = n.storages[1].snapshot()  # the bootstrap snapshot, index 1
    committed = n.committed(2)
    n.nodes[2].step(Message(type=MessageType.SNAP, from_=1, to=2, term=n.term(1), snapshot=snap))
    rd = n.nodes[2].ready()
    assert rd.snapshot is None
    assert [(m.type, m.index) for m in rd.messages] == [(MessageType.APP_RESP, committed)]


def test_new_member_with_empty_storage_catches_up_from_a_snapshot():
    n = Network([1, 2, 3])
    n.elect(1)
    for i in range(5):
        n.nodes[1].propose(b"e%d" % i)
    n.stabilize()
    compact_leader(n, 1)
    n.ids = [1, 2, 3, 4]
    n.add_node(4, MemoryStorage())
    n.nodes[1].propose_conf_change(ConfChange(type=ConfChangeType.ADD_NODE, node_id=4))
    n.stabilize()
    n.nodes[1].report_snapshot(4, failed=False)
    n.nodes[1].propose(b"last")
    n.stabilize()
    assert n.nodes[4].status().conf_state.voters == [1, 2, 3, 4]
    assert n.applied_data(4) == [b"last"]


def test_restart_from_snapshot_restores_commit_and_config():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[1].propose(b"a")
    n.stabilize()
    index = compact_leader(n, 1)
    node = n.restart(1)
    assert node.raft.log.committed >= index and node.raft.log.applied == n.applied[1][-1].index
    assert node.status().conf_state.voters == [1, 2, 3]


def test_storage_refuses_an_older_snapshot():
    n = Network([1])
    n.elect(1)
    n.nodes[1].propose(b"a")
    n.stabilize()
    s = n.storages[1]
    snap = s.create_snapshot(2, None, b"")
    with pytest.raises(SnapOutOfDateError):
        s.apply_snapshot(snap)


def test_report_snapshot_resumes_replication_when_the_ack_was_lost():
    n = Network([1, 2, 3])
    n.elect(1)
    n.isolate(3)
    n.nodes[1].propose(b"a")
    n.stabilize()
    index = compact_leader(n, 1)
    n.heal()
    # Lose the follower's acceptance of the snapshot (but not its rejections of appends).
    n.filter = lambda m: not (m.type == MessageType.APP_RESP and m.from_ == 3 and not m.reject)
    n.tick_all(1)
    assert n.storages[3].snapshot().metadata.index == index
    assert n.nodes[1].status().progress[3].state == ProgressState.SNAPSHOT
    n.filter = None
    n.nodes[1].report_snapshot(3, failed=False)
    assert n.nodes[1].status().progress[3].state == ProgressState.PROBE
    n.nodes[1].propose(b"b")
    n.stabilize()
    assert n.applied_data(3) == [b"b"]
    assert n.nodes[1].status().progress[3].state == ProgressState.REPLICATE
