"""Compares and ops build etcd's protobuf requests."""

from __future__ import annotations

import pytest

from etcdx.client import prefix_range_end, txn
from etcdx.pb import rpc_pb2

C = rpc_pb2.Compare


@pytest.mark.parametrize(
    ("compare", "target", "result", "field", "value"),
    [
        (txn.value("k") == "v", C.VALUE, C.EQUAL, "value", b"v"),
        (txn.version("k") > 0, C.VERSION, C.GREATER, "version", 0),
        (txn.create_revision("k") != 5, C.CREATE, C.NOT_EQUAL, "create_revision", 5),
        (txn.mod_revision("k") < 9, C.MOD, C.LESS, "mod_revision", 9),
        (txn.lease("k") == 0x10, C.LEASE, C.EQUAL, "lease", 0x10),
    ],
)
def test_compares(compare, target, result, field, value):
    pb = compare.pb
    assert (pb.target, pb.result, pb.key, pb.WhichOneof("target_union")) == (target, result, b"k", field)
    assert getattr(pb, field) == value


def test_a_compare_over_a_prefix_or_range():
    assert (txn.version("a/", prefix=True) > 0).pb.range_end == b"a0"
    assert (txn.version("a", range_end="c") > 0).pb.range_end == b"c"
    with pytest.raises(ValueError):
        txn.version("a", range_end="c", prefix=True)


def test_compares_want_the_right_type():
    with pytest.raises(TypeError):
        txn.version("k") == "1"
    with pytest.raises(TypeError):
        txn.version("k") == True  # noqa: E712


def test_ops_and_nesting():
    request = txn.txn_request(
        [txn.value("k") == b"v"],
        [txn.put("k", "v2", lease=7, prev_kv=True), txn.get_prefix("p/", limit=3), txn.txn([], [txn.delete("d")])],
        [txn.delete_prefix("p/", prev_kv=True)],
    )
    put, get, nested = request.success
    assert put.request_put == rpc_pb2.PutRequest(key=b"k", value=b"v2", lease=7, prev_kv=True)
    assert get.request_range == rpc_pb2.RangeRequest(key=b"p/", range_end=b"p0", limit=3)
    assert nested.request_txn.success[0].request_delete_range.key == b"d"
    assert request.failure[0].request_delete_range == rpc_pb2.DeleteRangeRequest(key=b"p/", range_end=b"p0", prev_kv=True)


def test_a_txn_is_read_only_when_no_branch_writes():
    assert txn.is_read_only(txn.txn_request([], [txn.get("a")], [txn.txn([], [txn.get("b")])]))
    assert not txn.is_read_only(txn.txn_request([], [txn.get("a")], [txn.txn([], [txn.put("b", "")])]))
    assert not txn.is_read_only(txn.txn_request([], [], [txn.delete("a")]))


def test_branches_take_only_ops_and_compares():
    with pytest.raises(TypeError):
        txn.txn_request([txn.put("k", "v")])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        txn.txn_request([], [txn.value("k") == "v"])  # type: ignore[list-item]


@pytest.mark.parametrize(
    ("prefix", "end"),
    [(b"a", b"b"), (b"a\xff", b"b"), (b"\xff\xff", b"\0"), (b"", b"\0"), ("é", "é".encode()[:-1] + bytes([0xA9 + 1]))],
)
def test_prefix_range_end(prefix, end):
    assert prefix_range_end(prefix) == end


def test_the_empty_prefix_means_every_key():
    request = txn.range_request("", prefix=True)
    assert (request.key, request.range_end) == (b"\0", b"\0")
