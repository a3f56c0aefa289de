"""The lock/election and STM programs, stepped by hand: each yield is the request etcd would get."""

from __future__ import annotations

import pytest

from etcdx.client import Compacted, ElectionNotLeader, Isolation, LockLost
from etcdx.client import concurrency as c
from etcdx.client.ops import Call, WaitDeleted
from etcdx.pb import kv_pb2, rpc_pb2

H = rpc_pb2.ResponseHeader


def range_response(revision: int, *kvs: kv_pb2.KeyValue) -> rpc_pb2.RangeResponse:
    return rpc_pb2.RangeResponse(header=H(revision=revision), kvs=list(kvs), count=len(kvs))


def finish(program, value):
    with pytest.raises(StopIteration) as stop:
        program.send(value)
    return stop.value.value


def test_campaign_creates_its_key_then_waits_for_the_next_lower_contender():
    program = c.campaign(b"job/", 0xABC, b"")
    create = next(program)
    assert isinstance(create, Call) and create.method == "Txn" and create.idempotent
    assert create.request.success[0].request_put.key == b"job/abc"
    assert create.request.success[0].request_put.lease == 0xABC
    lookup = program.send(rpc_pb2.TxnResponse(header=H(revision=10), succeeded=True))
    assert lookup.method == "Range" and lookup.request.max_create_revision == 9
    assert lookup.request.sort_target == rpc_pb2.RangeRequest.CREATE and lookup.request.limit == 1
    wait = program.send(range_response(10, kv_pb2.KeyValue(key=b"job/1", create_revision=7)))
    assert wait == WaitDeleted(b"job/1", 10)
    again = program.send(12)
    assert again.method == "Range"
    assert finish(program, range_response(12)) == (b"job/abc", 10)


def test_campaign_with_an_existing_key_keeps_its_revision_and_proclaims_a_new_value():
    program = c.campaign(b"e/", 0x1, b"new")
    next(program)
    existing = rpc_pb2.TxnResponse(
        header=H(revision=20), succeeded=False,
        responses=[rpc_pb2.ResponseOp(response_range=range_response(20, kv_pb2.KeyValue(key=b"e/1", create_revision=4, value=b"old")))],
    )  # fmt: skip
    proclaim = program.send(existing)
    assert proclaim.method == "Txn" and proclaim.request.compare[0].create_revision == 4
    lookup = program.send(rpc_pb2.TxnResponse(header=H(revision=21), succeeded=True))
    assert lookup.request.max_create_revision == 3
    assert finish(program, range_response(21)) == (b"e/1", 4)


def test_a_compacted_wait_looks_again():
    program = c.wait_deletes(b"p/", 5)
    next(program)
    program.send(range_response(10, kv_pb2.KeyValue(key=b"p/1", create_revision=2)))
    again = program.throw(Compacted(None, "compacted", compact_revision=11))  # type: ignore[arg-type]
    assert again.method == "Range"


def test_a_guarded_txn_raises_lock_lost_when_the_fence_fails():
    program = c.guarded_txn(b"l/1", 9)
    call = next(program)
    assert call.request.compare[0].create_revision == 9
    with pytest.raises(LockLost):
        program.send(rpc_pb2.TxnResponse(header=H(revision=30), succeeded=False))


def test_proclaim_without_leadership_raises():
    program = c.proclaim(b"e/1", 4, b"v")
    next(program)
    with pytest.raises(ElectionNotLeader):
        program.send(rpc_pb2.TxnResponse(succeeded=False))


def test_election_view_follows_the_oldest_contender():
    from etcdx.client import Event, EventType, KeyValue

    def kv(key: bytes, created: int, value: bytes = b"") -> KeyValue:
        return KeyValue(key, value, created, created, 1, 0)

    view = c.ElectionView([kv(b"e/2", 8), kv(b"e/1", 5)])
    assert view.leader().key == b"e/1"
    view.apply(Event(EventType.DELETE, kv(b"e/1", 0), None))
    assert view.leader().key == b"e/2"
    view.apply(Event(EventType.DELETE, kv(b"e/2", 0), None))
    assert view.leader() is None


def test_stm_reads_at_one_revision_and_commits_only_if_nothing_changed():
    state = c.StmState(Isolation.SERIALIZABLE)
    read = state.get("a")
    first = next(read)
    assert first.request.revision == 0
    assert finish(read, range_response(50, kv_pb2.KeyValue(key=b"a", value=b"1", mod_revision=40))) == b"1"
    second = next(state.get("b"))
    assert second.request.revision == 50  # the snapshot revision
    state.put("b", "2")
    with pytest.raises(StopIteration) as cached:
        next(state.get("b"))  # our own write, no request
    assert cached.value.value == b"2"
    commit = next(state.commit())
    compares = {(cmp.key, cmp.result, cmp.mod_revision) for cmp in commit.request.compare}
    assert compares == {(b"a", rpc_pb2.Compare.LESS, 51), (b"b", rpc_pb2.Compare.LESS, 51)}
    assert commit.request.success[0].request_put.value == b"2" and not commit.idempotent


def test_stm_repeatable_read_compares_each_key_with_what_it_saw():
    state = c.StmState(Isolation.REPEATABLE_READ)
    read = state.get("a")
    next(read)
    finish(read, range_response(50))  # absent
    state.delete("a")
    commit = next(state.commit())
    assert [(cmp.key, cmp.result, cmp.mod_revision) for cmp in commit.request.compare] == [(b"a", rpc_pb2.Compare.EQUAL, 0)]
    assert commit.request.success[0].WhichOneof("request") == "request_delete_range"


def test_a_read_only_stm_commits_without_a_request():
    state = c.StmState()
    with pytest.raises(StopIteration) as stop:
        next(state.commit())
    assert stop.value.value is True
