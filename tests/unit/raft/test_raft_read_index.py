"""ReadIndex (thesis §6.4): linearizable reads without appending to the log."""

from __future__ import annotations

from raft_testnet import Network, make_storage

from etcdx.raft import Message, MessageType, ReadOnlyOption, ReadState


def test_leader_answers_read_index_after_a_quorum_heartbeat_round():
    n = Network([1, 2, 3])
    n.elect(1)
    n.trace.clear()
    n.nodes[1].read_index(b"r1")
    n.stabilize()
    assert n.read_states[1] == [ReadState(index=n.committed(1), request_ctx=b"r1")]
    assert {m.to for m in n.messages_of(MessageType.HEARTBEAT) if m.context == b"r1"} == {2, 3}


def test_read_index_is_not_answered_without_a_quorum():
    n = Network([1, 2, 3])
    n.elect(1)
    n.isolate(1)
    n.nodes[1].read_index(b"r1")
    n.stabilize()
    assert n.read_states[1] == []
    # The round is retried with the next heartbeats and completes once the partition heals.
    n.heal()
    n.tick_all(1)
    assert [rs.request_ctx for rs in n.read_states[1]] == [b"r1"]


def test_many_reads_share_one_heartbeat_round():
    n = Network([1, 2, 3])
    n.elect(1)
    n.trace.clear()
    for i in range(50):
        n.nodes[1].read_index(b"r%d" % i)
    n.stabilize()
    assert [rs.request_ctx for rs in n.read_states[1]] == [b"r%d" % i for i in range(50)]
    # One round for the first request, one for the 49 that arrived while it was in flight.
    assert len(n.messages_of(MessageType.HEARTBEAT)) == 2 * 2


def test_new_leader_defers_reads_until_it_commits_an_entry_of_its_term():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[1].propose(b"a")
    n.stabilize()
    # Node 2 takes over but its empty entry of the new term cannot commit yet.
    n.filter = lambda m: m.type != MessageType.APP_RESP
    n.nodes[2].raft.become_candidate()
    n.nodes[2].raft.become_leader()
    n.stabilize()
    n.nodes[2].read_index(b"early")
    n.stabilize()
    assert n.read_states[2] == []
    n.filter = None
    n.tick_all(1)
    assert n.read_states[2] == [ReadState(index=n.committed(2), request_ctx=b"early")]
    assert n.nodes[2].raft.log.term(n.committed(2)) == n.term(2)


def test_follower_read_index_is_forwarded_and_answered_with_leader_commit():
    n = Network([1, 2, 3])
    n.elect(1)
    n.nodes[1].propose(b"a")
    n.stabilize()
    n.nodes[3].read_index(b"from-3")
    n.stabilize()
    assert n.read_states[3] == [ReadState(index=n.committed(1), request_ctx=b"from-3")]
    assert n.messages_of(MessageType.READ_INDEX_RESP)[0].to == 3


def test_follower_without_leader_drops_read_index():
    n = Network([1, 2, 3])
    n.nodes[2].read_index(b"r")
    n.stabilize()
    assert n.read_states[2] == []


def test_lease_based_reads_skip_the_heartbeat_round():
    n = Network([1, 2, 3], read_only_option=ReadOnlyOption.LEASE_BASED)
    n.elect(1)
    n.isolate(1)
    n.nodes[1].read_index(b"r")
    n.stabilize()
    assert n.read_states[1] == [ReadState(index=n.committed(1), request_ctx=b"r")]


def test_single_voter_answers_reads_at_once():
    n = Network([1])
    n.elect(1)
    n.nodes[1].read_index(b"r")
    n.stabilize()
    assert n.read_states[1] == [ReadState(index=2, request_ctx=b"r")]


def test_stale_heartbeat_ack_for_unknown_context_is_ignored():
    n = Network([1, 2, 3], storages={i: make_storage([1, 2, 3]) for i in (1, 2, 3)})
    n.elect(1)
    n.nodes[1].step(Message(type=MessageType.HEARTBEAT_RESP, from_=2, to=1, term=n.term(1), context=b"nope"))
    n.stabilize()
    assert n.read_states[1] == []
