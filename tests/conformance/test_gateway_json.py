"""The gateway's pure parts: proto3 JSON both ways and the route table (no servers).

The wire forms themselves are pinned against etcd 3.4 by ``test_gateway.py``;
these check what a transcript cannot cover exhaustively: every message type
survives a round trip, and the route table follows the handler object.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.api.rpcs import RPCS, Kind
from etcdx.gateway import protojson, routes
from etcdx.pb import rpc_pb2, v3election_pb2, v3lock_pb2

ints64 = st.integers(-(2**63), 2**63 - 1)
keys = st.binary(max_size=12)


@st.composite
def range_requests(draw) -> rpc_pb2.RangeRequest:
    return rpc_pb2.RangeRequest(
        key=draw(keys), range_end=draw(keys), limit=draw(ints64), revision=draw(ints64),
        sort_order=draw(st.sampled_from([0, 1, 2])), sort_target=draw(st.integers(0, 4)),
        serializable=draw(st.booleans()), keys_only=draw(st.booleans()), count_only=draw(st.booleans()))


@st.composite
def txn_requests(draw) -> rpc_pb2.TxnRequest:
    t = rpc_pb2.TxnRequest()
    for _ in range(draw(st.integers(0, 2))):
        c = t.compare.add(key=draw(keys), result=draw(st.integers(0, 3)), target=draw(st.integers(0, 4)))
        which = draw(st.sampled_from(["version", "create_revision", "mod_revision", "value", "lease"]))
        setattr(c, which, draw(keys) if which == "value" else draw(ints64))
    for ops in (t.success, t.failure):
        for _ in range(draw(st.integers(0, 2))):
            kind = draw(st.sampled_from(["range", "put", "delete", "txn"]))
            if kind == "range":
                ops.add(request_range=draw(range_requests()))
            elif kind == "put":
                ops.add(request_put=rpc_pb2.PutRequest(key=draw(keys), value=draw(keys), lease=draw(ints64),
                                                       prev_kv=draw(st.booleans())))
            elif kind == "delete":
                ops.add(request_delete_range=rpc_pb2.DeleteRangeRequest(key=draw(keys)))
            else:
                ops.add(request_txn=rpc_pb2.TxnRequest())
    return t


@settings(max_examples=150, deadline=None)
@given(st.one_of(range_requests(), txn_requests(),
                 st.builds(rpc_pb2.AuthRoleGrantPermissionRequest, name=st.text(max_size=8))))
def test_round_trip(msg):
    text = protojson.dumps(msg)
    assert protojson.parse(json.loads(text), type(msg)) == msg


def test_writes_as_go_does():
    kv = rpc_pb2.RangeResponse(count=1)
    kv.kvs.add(key=b"a", value=b"<&>", version=1)
    kv.header.revision = 5
    assert protojson.dumps(kv) == ('{"header":{"revision":"5"},"kvs":[{"key":"YQ==","version":"1",'
                                   '"value":"PCY+"}],"count":"1"}')
    assert protojson.dumps(rpc_pb2.HashResponse(hash=2**32 - 1)) == '{"hash":4294967295}'
    assert protojson.dumps(rpc_pb2.AuthRoleGetResponse(perm=[{"permType": 2, "key": b"k"}])) == (
        '{"perm":[{"permType":"READWRITE","key":"aw=="}]}')
    assert protojson.go_string("<a>&\u2028\n\b") == '"\\u003ca\\u003e\\u0026\\u2028\\n\\u0008"'


@pytest.mark.parametrize("body,text", [
    (b"{bad", "invalid character 'b' looking for beginning of object key string"),
    (b'{"key":', "unexpected EOF"),
    (b'{"key" 1}', "invalid character '1' after object key"),
    (b'{"key":"YQ==" "x":1}', "invalid character '\"' after object key:value pair"),
    (b'{"key":["a" 1]}', "invalid character '1' after array element"),
    (b"[]", "json: cannot unmarshal array into Go value of type map[string]json.RawMessage"),
    (b'{"key":5}', "json: cannot unmarshal number into Go value of type []uint8"),
    (b'{"key":"!!"}', "illegal base64 data at input byte 0"),
    (b'{"key":"YQ"}', "illegal base64 data at input byte 0"),
    (b'{"key":"YQ=x"}', "illegal base64 data at input byte 2"),
    (b'{"key":"YQ==YQ=="}', "illegal base64 data at input byte 4"),
    (b'{"key":"-_-_"}', "illegal base64 data at input byte 0"),
    (b'{"limit":"abc"}', "invalid character 'a' looking for beginning of value"),
    (b'{"limit":1.5}', "json: cannot unmarshal number 1.5 into Go value of type int64"),
    (b'{"serializable":"yes"}', "json: cannot unmarshal string into Go value of type bool"),
    (b'{"sort_order":"BOGUS"}', 'unknown value "BOGUS" for enum etcdserverpb.RangeRequest_SortOrder'),
])
def test_refuses_with_go_texts(body, text):
    with pytest.raises(protojson.JsonError) as err:
        protojson.parse(protojson.first_value(body), rpc_pb2.RangeRequest)
    assert str(err.value) == text


def test_reads_leniently_as_go_does():
    r = protojson.parse(protojson.first_value(b' {"key":"YQ==","rangeEnd":"Yg==","limit":"3","nope":{}} trailing'),
                        rpc_pb2.RangeRequest)
    assert (r.key, r.range_end, r.limit) == (b"a", b"b", 3)
    assert protojson.parse(protojson.first_value(b""), rpc_pb2.RangeRequest) == rpc_pb2.RangeRequest()
    got, err = protojson.messages(b'{"ID":1} {"ID":"2"} {bad', rpc_pb2.LeaseKeepAliveRequest)
    assert [m.ID for m in got] == [1, 2] and str(err).startswith("invalid character 'b'")


class _AllRpcs:
    def __getattr__(self, name):
        return lambda *a: None


def test_every_rpc_has_a_route():
    table = routes.table(_AllRpcs())
    methods = {r.method for r in table.values()}
    assert methods >= {rpc.method for rpc in RPCS}
    assert table["/v3/kv/range"] is table["/v3beta/kv/range"]
    assert table["/v3/kv/lease/revoke"].method == "LeaseRevoke"
    assert table["/v3/maintenance/hash"].method == "Hash"
    assert table["/v3/watch"].kind is Kind.BIDI_STREAM


def test_lock_and_election_routes_follow_the_handlers_methods():
    class Handlers:
        async def Lock(self, r, ctx): ...

        async def Observe(self, r, ctx): ...

    table = routes.table(Handlers())
    assert table["/v3/lock/lock"].method == "Lock" and table["/v3/lock/lock"].kind is Kind.UNARY
    assert (table["/v3/lock/lock"].request, table["/v3/lock/lock"].response) == (
        v3lock_pb2.LockRequest, v3lock_pb2.LockResponse)
    assert table["/v3/election/observe"].kind is Kind.SERVER_STREAM
    assert table["/v3/election/observe"].request is v3election_pb2.LeaderRequest
    assert "/v3/lock/unlock" not in table  # the handler has no Unlock
    assert "/v3/election/campaign" not in table


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8)
field_names = st.sampled_from(["key", "range_end", "limit", "sort_order", "serializable", "compare", "success",
                               "request_range", "request_put", "result", "target", "version", "value", "lease",
                               "prev_kv", "ID", "TTL", "perm", "permType", "name", "create_request", "filters",
                               "watch_id", "nope"])
requests = st.recursive(st.dictionaries(field_names, json_values, max_size=4),
                        lambda inner: st.dictionaries(field_names, inner | st.lists(inner, max_size=2), max_size=4),
                        max_leaves=6)
message_classes = st.sampled_from([rpc_pb2.RangeRequest, rpc_pb2.TxnRequest, rpc_pb2.WatchRequest,
                                   rpc_pb2.AuthRoleGrantPermissionRequest, rpc_pb2.LeaseGrantRequest,
                                   rpc_pb2.AlarmRequest])


@settings(max_examples=300, deadline=None)
@given(message_classes, requests | json_values)
def test_any_json_is_a_message_or_go_s_refusal(message_class, value):
    """Whatever JSON a client sends, the answer is a request or a JsonError, never a crash."""
    try:
        msg = protojson.parse(value, message_class)
    except protojson.JsonError as err:
        assert str(err)
    else:
        assert isinstance(msg, message_class)
        assert protojson.parse(json.loads(protojson.dumps(msg)), message_class) == msg
