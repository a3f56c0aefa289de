"""KV through the client, against etcd and etcdx, through both faces: typed results and errors."""

from __future__ import annotations

import pytest

from etcdx.client import EventType, SortOrder, SortTarget, errors, txn


def test_put_then_get_returns_the_value_and_its_revisions(member, connect, prefix):
    c = connect(member.endpoint)
    put = c.put(prefix + "k", "v1")
    got = c.get(prefix + "k")
    assert got.value == b"v1"
    assert got.kv.key == (prefix + "k").encode()
    assert got.kv.create_revision == got.kv.mod_revision == put.header.revision
    assert got.kv.version == 1 and got.count == 1 and not got.more
    assert c.get(prefix + "absent").kv is None
    assert c.get(prefix + "absent").value is None


def test_put_with_prev_kv_returns_the_overwritten_key(member, connect, prefix):
    c = connect(member.endpoint)
    assert c.put(prefix + "k", "v1", prev_kv=True).prev_kv is None
    second = c.put(prefix + "k", b"v2", prev_kv=True)
    assert second.prev_kv.value == b"v1" and second.prev_kv.version == 1


def test_get_prefix_and_range_with_limit_sort_and_count(member, connect, prefix):
    c = connect(member.endpoint)
    for i in range(5):
        c.put(f"{prefix}{i}", str(4 - i))
    c.put(prefix[:-1] + "0", "outside")  # shares the text but not the prefix
    everything = c.get_prefix(prefix)
    assert [kv.key for kv in everything] == [f"{prefix}{i}".encode() for i in range(5)]
    limited = c.get_prefix(prefix, limit=2, sort_order=SortOrder.DESCEND, sort_target=SortTarget.VALUE)
    assert [kv.value for kv in limited] == [b"4", b"3"]
    assert limited.more and limited.count == 5
    ranged = c.get_range(f"{prefix}1", f"{prefix}3")
    assert [kv.value for kv in ranged] == [b"3", b"2"]
    counted = c.get_prefix(prefix, count_only=True)
    assert counted.count == 5 and not counted.kvs
    keys = c.get_prefix(prefix, keys_only=True)
    assert all(kv.value == b"" for kv in keys) and len(keys) == 5


def test_get_at_an_old_revision_sees_the_old_value(member, connect, prefix):
    c = connect(member.endpoint)
    first = c.put(prefix + "k", "old")
    c.put(prefix + "k", "new")
    assert c.get(prefix + "k", revision=first.header.revision).value == b"old"
    assert c.get(prefix + "k", serializable=True).value == b"new"


def test_delete_prefix_returns_the_deleted_keys(member, connect, prefix):
    c = connect(member.endpoint)
    for i in range(3):
        c.put(f"{prefix}{i}", "x")
    assert c.delete(prefix + "absent").deleted == 0
    one = c.delete(f"{prefix}0", prev_kv=True)
    assert one.deleted == 1 and one.prev_kvs[0].key == f"{prefix}0".encode()
    rest = c.delete_prefix(prefix, prev_kv=True)
    assert rest.deleted == 2 and {kv.key for kv in rest.prev_kvs} == {f"{prefix}1".encode(), f"{prefix}2".encode()}
    assert c.get_prefix(prefix).count == 0


def test_txn_runs_the_branch_its_compares_choose(member, connect, prefix):
    c = connect(member.endpoint)
    key = prefix + "job"
    created = c.txn([txn.version(key) == 0], [txn.put(key, "mine")], [txn.get(key)])
    assert created.succeeded and created.responses[0].prev_kv is None
    again = c.txn([txn.version(key) == 0], [txn.put(key, "theirs")], [txn.get(key)])
    assert not again.succeeded and again.responses[0].value == b"mine"
    guarded = c.txn(
        [txn.value(key) == "mine", txn.mod_revision(key) == created.header.revision, txn.lease(key) == 0],
        [txn.put(key, "done", prev_kv=True), txn.delete(prefix + "absent"), txn.get_prefix(prefix)],
    )
    assert guarded.succeeded
    put, delete, get = guarded.responses
    assert put.prev_kv.value == b"mine" and delete.deleted == 0 and get.value == b"done"
    assert guarded.header.revision == created.header.revision + 1  # one revision per txn


def test_nested_txn_result_is_typed(member, connect, prefix):
    c = connect(member.endpoint)
    result = c.txn([], [txn.txn([txn.version(prefix + "x") > 0], [], [txn.put(prefix + "x", "1")])])
    inner = result.responses[0]
    assert not inner.succeeded and inner.responses[0].header.revision == result.header.revision


def test_txn_compare_over_a_prefix_must_hold_for_every_key(member, connect, prefix):
    c = connect(member.endpoint)
    c.put(prefix + "a", "1")
    c.put(prefix + "b", "2")
    assert c.txn([txn.version(prefix, prefix=True) > 0]).succeeded
    assert not c.txn([txn.value(prefix, prefix=True) == "1"]).succeeded


def test_etcd_errors_arrive_as_typed_exceptions_with_code_and_message(member, connect, prefix):
    c = connect(member.endpoint)
    with pytest.raises(errors.EmptyKey) as empty:
        c.put("", "v")
    assert empty.value.code.name == "INVALID_ARGUMENT"
    assert empty.value.message == "etcdserver: key is not provided"
    assert not empty.value.may_have_applied
    with pytest.raises(errors.DuplicateKey):
        c.txn([], [txn.put(prefix + "k", "1"), txn.put(prefix + "k", "2")])
    with pytest.raises(errors.FutureRevision):
        c.get(prefix + "k", revision=10**9)
    with pytest.raises(errors.LeaseNotFound):
        c.put(prefix + "k", "v", lease=0x1234)
    with pytest.raises(errors.ValueProvided):
        c.put(prefix + "k", "v", ignore_value=True)


def test_compaction_makes_old_revisions_unreadable(etcdx_member, connect):
    c = connect(etcdx_member.endpoint)
    first = c.put("k", "1")
    c.put("k", "2")
    c.compact(first.header.revision + 1, physical=True)
    with pytest.raises(errors.Compacted) as e:
        c.get("k", revision=first.header.revision)
    assert e.value.message == "etcdserver: mvcc: required revision has been compacted"
    assert c.get("k").value == b"2"


def test_keys_and_values_may_be_any_bytes(member, connect, prefix):
    c = connect(member.endpoint)
    key = prefix.encode() + b"\x00\xff\x01"
    c.put(key, b"\x00" * 3)
    assert c.get(key).value == b"\x00\x00\x00"
    assert c.get_prefix(prefix).kvs[0].key == key


def test_watch_sees_puts_and_deletes_of_a_prefix_in_order(member, connect, prefix):
    c = connect(member.endpoint)
    with c.watch_prefix(prefix, prev_kv=True) as w:
        c.put(prefix + "a", "1")
        c.put(prefix + "a", "2")
        c.delete(prefix + "a")
        events = []
        while len(events) < 3:
            events.extend(w.get(timeout=10).events)
    assert [(e.type, e.kv.value) for e in events] == [(EventType.PUT, b"1"), (EventType.PUT, b"2"), (EventType.DELETE, b"")]
    assert events[0].is_create and not events[1].is_create
    assert events[1].prev_kv.value == b"1" and events[2].prev_kv.value == b"2"
