"""Request checks, replaying what a real etcd 3.4.23 answered to the same requests.

The probe: users root (root role) and u0 holding role r1 with READ on "a",
WRITE on "b", READWRITE on [k, l), WRITE on [k, kz) and READ from "z" on.
"""

from __future__ import annotations

import pytest

from etcdx.auth import checks, errors
from etcdx.auth.permissions import READ, READWRITE, WRITE
from etcdx.auth.state import AuthInfo
from etcdx.pb import raft_internal_pb2, rpc_pb2

OK = None


@pytest.fixture
def probe(apply, store):
    apply.with_root()
    apply.user_add("u0", "p0")
    apply.role_add("r1")
    apply.role_add("r0")
    apply.grant_role("u0", "r1")
    for kind, key, end in [(READ, b"a", b""), (WRITE, b"b", b""), (READWRITE, b"k", b"l"),
                           (WRITE, b"k", b"kz"), (READ, b"z", b"\0")]:
        apply.grant_perm("r1", kind, key, end)
    state = store.state()
    return state, AuthInfo("u0", state.revision), AuthInfo("root", state.revision)


def outcome(fn, *args):
    try:
        fn(*args)
    except errors.AuthError as err:
        return err.message.removeprefix("etcdserver: ")
    return OK


def no_lease_keys(lease_id):
    return ()


def put(key, **kw):
    return rpc_pb2.PutRequest(key=key, value=b"v", **kw)


def op_put(key, **kw):
    return rpc_pb2.RequestOp(request_put=put(key, **kw))


def op_range(key, end=b""):
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key, range_end=end))


def test_kv_answers_match_etcd(probe):
    state, u0, _ = probe
    cases = [
        (checks.check_put, put(b"k1"), OK),
        (checks.check_put, put(b"k1", prev_kv=True), OK),
        (checks.check_put, put(b"a"), "permission denied"),
        (checks.check_put, put(b"b"), OK),
        (checks.check_put, put(b"b", prev_kv=True), "permission denied"),
        (checks.check_range, rpc_pb2.RangeRequest(key=b"a"), OK),
        (checks.check_range, rpc_pb2.RangeRequest(key=b"k", range_end=b"m"), "permission denied"),
        (checks.check_delete_range, rpc_pb2.DeleteRangeRequest(key=b"k1", prev_kv=True), OK),
        (checks.check_delete_range, rpc_pb2.DeleteRangeRequest(key=b"b", prev_kv=True), "permission denied"),
        (checks.check_delete_range, rpc_pb2.DeleteRangeRequest(key=b"b"), OK),
        (checks.check_txn, rpc_pb2.TxnRequest(compare=[rpc_pb2.Compare(key=b"b")]), "permission denied"),
        (checks.check_txn, rpc_pb2.TxnRequest(compare=[rpc_pb2.Compare(key=b"a")]), OK),
        (checks.check_txn, rpc_pb2.TxnRequest(failure=[op_put(b"a")]), "permission denied"),
        (checks.check_txn, rpc_pb2.TxnRequest(success=[op_range(b"k", b"l"), op_put(b"b")]), OK),
    ]
    for fn, req, want in cases:
        args = (state, u0, req, no_lease_keys) if fn in (checks.check_put, checks.check_txn) else (state, u0, req)
        assert outcome(fn, *args) == want, req


def test_txn_ops_are_checked_as_if_sent_alone_even_nested(probe):
    """Stricter than etcd 3.4, which lets these through (see checks' docstring)."""
    state, u0, root = probe
    nested_put = rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(
        success=[op_put(b"a")]))])
    nested_get = rpc_pb2.TxnRequest(failure=[rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(
        failure=[op_range(b"b")]))])
    put_prev = rpc_pb2.TxnRequest(success=[op_put(b"b", prev_kv=True)])
    for txn in (nested_put, nested_get, put_prev):
        assert outcome(checks.check_txn, state, u0, txn, no_lease_keys) == "permission denied"
        assert outcome(checks.check_txn, state, root, txn, no_lease_keys) == OK


def test_unauthenticated_and_stale_requests(probe, apply, store):
    state, u0, _ = probe
    assert outcome(checks.check_range, state, None, rpc_pb2.RangeRequest(key=b"a")) == "user name is empty"
    assert outcome(checks.check_admin, state, None) == "user name is empty"
    assert outcome(checks.check_range, state, AuthInfo("ghost", state.revision),
                   rpc_pb2.RangeRequest(key=b"a")) == "permission denied"
    assert outcome(checks.check_admin, state, AuthInfo("ghost", 1)) == "user name not found"
    apply.role_add("r2")  # any auth change makes earlier authorisations stale
    newer = store.state()
    assert outcome(checks.check_range, newer, u0, rpc_pb2.RangeRequest(key=b"a")) == "revision of auth store is old"
    assert outcome(checks.recheck_revision, newer, u0) == "revision of auth store is old"
    assert outcome(checks.recheck_revision, newer, None) == OK
    assert outcome(checks.check_admin, newer, AuthInfo("root", 1)) == OK  # admin ignores the revision, as etcd


def test_everything_passes_while_auth_is_disabled(apply, store):
    apply.user_add("u0")
    state = store.state()
    assert outcome(checks.check_range, state, None, rpc_pb2.RangeRequest(key=b"a")) == OK
    assert outcome(checks.check_admin, state, None) == OK
    assert outcome(checks.check_lease_revoke, state, None, [b"x"]) == OK


def test_user_and_role_get_by_non_root(probe):
    state, u0, root = probe
    assert outcome(checks.check_user_get, state, u0, "u0") == OK
    assert outcome(checks.check_user_get, state, u0, "root") == "permission denied"
    assert outcome(checks.check_user_get, state, u0, "zzz") == "permission denied"
    assert outcome(checks.check_role_get, state, u0, "r1") == OK
    assert outcome(checks.check_role_get, state, u0, "r0") == "permission denied"
    assert outcome(checks.check_role_get, state, root, "r0") == OK


def test_lease_revoke_and_put_with_lease_need_write_on_the_leases_keys(probe):
    state, u0, _ = probe
    keys = {1: [b"k1", b"kx"], 2: [b"k1", b"a"]}
    assert outcome(checks.check_lease_revoke, state, u0, keys[1]) == OK
    assert outcome(checks.check_lease_revoke, state, u0, keys[2]) == "permission denied"
    assert outcome(checks.check_lease_revoke, state, u0, []) == OK
    assert outcome(checks.check_put, state, u0, put(b"k2", lease=1), keys.get) == OK
    assert outcome(checks.check_put, state, u0, put(b"k2", lease=2), keys.get) == "permission denied"


def test_watch_refusal_reason_is_etcds(probe):
    state, u0, _ = probe
    with pytest.raises(errors.AuthError) as caught:
        checks.check_watch_create(state, u0, rpc_pb2.WatchCreateRequest(key=b"b"))
    assert errors.watch_cancel_reason(caught.value) == (
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied")
    with pytest.raises(errors.AuthError) as caught:
        checks.check_watch_create(state, None, rpc_pb2.WatchCreateRequest(key=b"a"))
    assert errors.watch_cancel_reason(caught.value) == (
        "rpc error: code = InvalidArgument desc = etcdserver: user name is empty")
    checks.check_watch_create(state, u0, rpc_pb2.WatchCreateRequest(key=b"a"))


def test_maintenance_refusal_is_untranslated_in_etcd_34(probe):
    state, u0, _ = probe
    with pytest.raises(errors.AuthError) as caught:
        checks.check_admin(state, u0)
    assert caught.value.untranslated() == ("UNKNOWN", "auth: permission denied")


def entry(info, **field):
    header = raft_internal_pb2.RequestHeader(username=info.username if info else "",
                                             auth_revision=info.revision if info else 0)
    return raft_internal_pb2.InternalRaftRequest(header=header, **field)


def test_check_apply_dispatches_like_etcds_applier(probe):
    state, u0, root = probe
    cases = [
        (u0, dict(put=put(b"k1")), OK),
        (u0, dict(put=put(b"a")), "permission denied"),
        (None, dict(put=put(b"k1")), "user name is empty"),
        (u0, dict(range=rpc_pb2.RangeRequest(key=b"a")), OK),
        (u0, dict(delete_range=rpc_pb2.DeleteRangeRequest(key=b"a")), "permission denied"),
        (u0, dict(txn=rpc_pb2.TxnRequest(success=[op_put(b"a")])), "permission denied"),
        (u0, dict(lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=2)), "permission denied"),
        (u0, dict(lease_grant=rpc_pb2.LeaseGrantRequest(TTL=5)), OK),
        (u0, dict(compaction=rpc_pb2.CompactionRequest(revision=1)), OK),  # etcd 3.4 checks nothing
        (u0, dict(auth_role_add=rpc_pb2.AuthRoleAddRequest(name="x")), "permission denied"),
        (u0, dict(auth_user_list=rpc_pb2.AuthUserListRequest()), "permission denied"),
        (None, dict(auth_enable=rpc_pb2.AuthEnableRequest()), "user name is empty"),
        (root, dict(auth_enable=rpc_pb2.AuthEnableRequest()), OK),
        (u0, dict(auth_user_get=rpc_pb2.AuthUserGetRequest(name="u0")), OK),
        (u0, dict(auth_role_get=rpc_pb2.AuthRoleGetRequest(role="r0")), "permission denied"),
        (None, dict(auth_status=rpc_pb2.AuthStatusRequest()), OK),
        (None, dict(authenticate=raft_internal_pb2.InternalAuthenticateRequest(name="u0")), OK),
        (checks.root_info(state), dict(lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=2)), OK),
    ]
    keys = {2: [b"a"]}
    for info, field, want in cases:
        got = outcome(checks.check_apply, state, entry(info, **field), lambda i: keys.get(i, ()))
        assert got == want, (info, field)


def test_identity_from_token_and_certificate(apply, store):
    from etcdx.auth import identity

    apply.with_root()
    token = apply.authenticate("root").token
    state = store.state()
    assert identity.from_token(state, store.tokens, None) is None
    assert identity.from_token(state, store.tokens, token) == AuthInfo("root", state.revision)
    with pytest.raises(errors.AuthError, match="^etcdserver: invalid auth token$"):
        identity.from_token(state, store.tokens, "forged.1")
    assert identity.from_common_name(state, "alice") == AuthInfo("alice", state.revision)
    assert identity.from_common_name(state, "") is None
    apply.disable()
    state = store.state()
    with pytest.raises(errors.AuthError, match="^etcdserver: invalid auth token$"):
        identity.from_token(state, store.tokens, token)  # etcd 3.4 refuses any token while disabled
    assert identity.from_common_name(state, "alice") is None
