"""Request checks match etcd's: size limits, empty keys, and the duplicate-key rule of txns."""

from __future__ import annotations

import pytest

from etcdx.api import validate
from etcdx.pb import rpc_pb2
from etcdx.server import errors


def put(k: bytes) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=b"v"))


def delete(k: bytes, end: bytes = b"") -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=k, range_end=end))


def txn(success=(), failure=(), compare=()) -> rpc_pb2.TxnRequest:
    return rpc_pb2.TxnRequest(success=list(success), failure=list(failure), compare=list(compare))


def nested(success=(), failure=()) -> rpc_pb2.RequestOp:
    return rpc_pb2.RequestOp(request_txn=txn(success, failure))


def check(t: rpc_pb2.TxnRequest, max_ops: int = 128) -> None:
    validate.check_txn(t, max_ops)


def test_two_puts_of_one_key_are_a_duplicate() -> None:
    with pytest.raises(errors.EtcdError) as e:
        check(txn([put(b"a"), put(b"a")]))
    assert e.value == errors.DUPLICATE_KEY


def test_put_inside_a_deleted_range_is_a_duplicate() -> None:
    with pytest.raises(errors.EtcdError):
        check(txn([delete(b"a", b"c"), put(b"b")]))


def test_overlapping_deletes_are_fine() -> None:
    check(txn([delete(b"a", b"c"), delete(b"b", b"d")]))


def test_from_key_delete_does_not_conflict_as_in_etcd() -> None:
    check(txn([delete(b"a", b"\x00"), put(b"b")]))


def test_the_branches_of_a_nested_txn_may_put_the_same_key() -> None:
    check(txn([nested([put(b"a")], [put(b"a")])]))


def test_a_nested_put_conflicts_with_an_outer_put() -> None:
    with pytest.raises(errors.EtcdError):
        check(txn([put(b"a"), nested([put(b"a")])]))


def test_success_and_failure_are_checked_separately() -> None:
    check(txn([put(b"a")], [put(b"a")]))


def test_too_many_operations() -> None:
    with pytest.raises(errors.EtcdError) as e:
        check(txn([put(bytes([65 + i])) for i in range(5)]), max_ops=4)
    assert e.value == errors.TOO_MANY_OPS


def test_nested_txn_counts_against_the_remaining_budget() -> None:
    inner = nested([put(b"x"), put(b"y"), put(b"z")])
    with pytest.raises(errors.EtcdError) as e:
        check(txn([put(b"a"), inner]), max_ops=4)
    assert e.value == errors.TOO_MANY_OPS


def test_empty_keys_and_bad_put_options() -> None:
    with pytest.raises(errors.EtcdError) as e:
        validate.check_put(rpc_pb2.PutRequest(key=b""))
    assert e.value == errors.EMPTY_KEY
    with pytest.raises(errors.EtcdError) as e:
        validate.check_put(rpc_pb2.PutRequest(key=b"a", value=b"v", ignore_value=True))
    assert e.value == errors.VALUE_PROVIDED
    with pytest.raises(errors.EtcdError) as e:
        validate.check_put(rpc_pb2.PutRequest(key=b"a", lease=5, ignore_lease=True))
    assert e.value == errors.LEASE_PROVIDED
    with pytest.raises(errors.EtcdError) as e:
        validate.check_range(rpc_pb2.RangeRequest(key=b""))
    assert e.value == errors.EMPTY_KEY
