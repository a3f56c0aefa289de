"""The auth store's apply functions: etcd's errors, etcd's revision bumps, etcd's bucket layout.

Expected answers were taken from a real etcd 3.4.23 (the revisions through the
``revision`` claim of JWT tokens issued after each step).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from etcdx.auth import errors
from etcdx.auth.permissions import READ, READWRITE, WRITE
from etcdx.auth.state import AuthInfo
from etcdx.auth.store import AuthStore
from etcdx.backend import Backend, buckets
from etcdx.pb import auth_pb2, raft_internal_pb2, rpc_pb2

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]


def revision(store: AuthStore) -> int:
    return store.state().revision


def raises(err: errors.AuthError):
    return pytest.raises(errors.AuthError, match=f"^{err.message}$")


def test_fresh_store_is_disabled_at_revision_1(store):
    status = store.state().status()
    assert (status.enabled, status.authRevision) == (False, 1)


def test_enable_needs_root_user_with_root_role(apply, store):
    with raises(errors.ROOT_USER_NOT_EXIST):
        apply.enable()
    apply.user_add("root")
    with raises(errors.ROOT_ROLE_NOT_EXIST):
        apply.enable()
    apply.grant_role("root", "root")  # the root role need not exist as a role
    apply.enable()
    assert store.state().enabled


def test_revision_bumps_like_etcd(apply, store):
    apply.user_add("root")
    apply.user_add("u0")
    apply.grant_role("root", "root")
    assert revision(store) == 4
    apply.grant_role("root", "root")  # already granted: ignored, no bump
    assert revision(store) == 4
    apply.enable()  # no bump
    apply.enable()  # already enabled: nothing
    assert revision(store) == 4
    apply.role_add("r1")
    apply.grant_perm("r1", WRITE, b"k", b"l")
    apply.grant_perm("r1", WRITE, b"k", b"l")  # the same grant again still bumps
    assert revision(store) == 7
    apply.disable()  # bumps
    apply.disable()  # already disabled: nothing
    assert revision(store) == 8
    apply.enable()
    assert revision(store) == 8


def test_failed_changes_do_not_bump(apply, store):
    apply.with_root()
    before = revision(store)
    for field, req in [
        ("auth_user_add", rpc_pb2.AuthUserAddRequest(name="root")),
        ("auth_user_delete", rpc_pb2.AuthUserDeleteRequest(name="nobody")),
        ("auth_role_add", rpc_pb2.AuthRoleAddRequest(name="")),
        ("auth_user_revoke_role", rpc_pb2.AuthUserRevokeRoleRequest(name="root", role="x")),
        ("auth_role_revoke_permission", rpc_pb2.AuthRoleRevokePermissionRequest(role="nope")),
    ]:
        with pytest.raises(errors.AuthError):
            apply(**{field: req})
    assert revision(store) == before


@pytest.mark.parametrize("field, req, err", [
    ("auth_user_add", rpc_pb2.AuthUserAddRequest(name=""), errors.USER_EMPTY),
    ("auth_role_add", rpc_pb2.AuthRoleAddRequest(name=""), errors.ROLE_EMPTY),
    ("auth_user_delete", rpc_pb2.AuthUserDeleteRequest(name="zz"), errors.USER_NOT_FOUND),
    ("auth_user_get", rpc_pb2.AuthUserGetRequest(name="zz"), errors.USER_NOT_FOUND),
    ("auth_user_change_password", rpc_pb2.AuthUserChangePasswordRequest(name="zz"), errors.USER_NOT_FOUND),
    ("auth_user_grant_role", rpc_pb2.AuthUserGrantRoleRequest(user="zz", role="root"), errors.USER_NOT_FOUND),
    ("auth_user_grant_role", rpc_pb2.AuthUserGrantRoleRequest(user="u0", role="zz"), errors.ROLE_NOT_FOUND),
    ("auth_user_revoke_role", rpc_pb2.AuthUserRevokeRoleRequest(name="zz", role="r1"), errors.USER_NOT_FOUND),
    ("auth_user_revoke_role", rpc_pb2.AuthUserRevokeRoleRequest(name="u0", role="r0"), errors.ROLE_NOT_GRANTED),
    ("auth_role_delete", rpc_pb2.AuthRoleDeleteRequest(role="zz"), errors.ROLE_NOT_FOUND),
    ("auth_role_get", rpc_pb2.AuthRoleGetRequest(role="zz"), errors.ROLE_NOT_FOUND),
    ("auth_role_add", rpc_pb2.AuthRoleAddRequest(name="r1"), errors.ROLE_ALREADY_EXIST),
    ("auth_user_add", rpc_pb2.AuthUserAddRequest(name="u0"), errors.USER_ALREADY_EXIST),
    ("auth_role_grant_permission", rpc_pb2.AuthRoleGrantPermissionRequest(name="r1"), errors.PERMISSION_NOT_GIVEN),
    ("auth_role_grant_permission",
     rpc_pb2.AuthRoleGrantPermissionRequest(name="zz", perm=auth_pb2.Permission(key=b"b")), errors.ROLE_NOT_FOUND),
    ("auth_role_revoke_permission", rpc_pb2.AuthRoleRevokePermissionRequest(role="zz", key=b"q"), errors.ROLE_NOT_FOUND),
    ("auth_role_revoke_permission", rpc_pb2.AuthRoleRevokePermissionRequest(role="r1", key=b"q"),
     errors.PERMISSION_NOT_GRANTED),
    ("auth_user_delete", rpc_pb2.AuthUserDeleteRequest(name="root"), errors.INVALID_AUTH_MGMT),
    ("auth_user_revoke_role", rpc_pb2.AuthUserRevokeRoleRequest(name="root", role="root"), errors.INVALID_AUTH_MGMT),
    ("auth_role_delete", rpc_pb2.AuthRoleDeleteRequest(role="root"), errors.INVALID_AUTH_MGMT),
])
def test_refusals_carry_etcds_code_and_text(apply, field, req, err):
    apply.with_root()
    apply.role_add("root")
    apply.role_add("r0")
    apply.role_add("r1")
    apply.user_add("u0")
    apply.grant_role("u0", "r1")
    with pytest.raises(errors.AuthError) as caught:
        apply(**{field: req})
    assert (caught.value.code, caught.value.message) == (err.code, err.message)


def test_root_can_be_removed_once_auth_is_disabled(apply, store):
    apply.with_root()
    apply.role_add("root")
    apply.disable()
    apply(auth_user_revoke_role=rpc_pb2.AuthUserRevokeRoleRequest(name="root", role="root"))
    apply(auth_role_delete=rpc_pb2.AuthRoleDeleteRequest(role="root"))
    apply(auth_user_delete=rpc_pb2.AuthUserDeleteRequest(name="root"))
    assert store.state().user_list().users == []


def test_lists_are_in_byte_order_and_roles_sorted_per_user(apply, store):
    for name in ["u0", "root", "np", "Zed", "é"]:
        apply.user_add(name)
    for role in ["r1", "r0", "b"]:
        apply.role_add(role)
        apply.grant_role("u0", role)
    state = store.state()
    assert state.user_list().users == ["Zed", "np", "root", "u0", "é"]
    assert state.role_list().roles == ["b", "r0", "r1"]
    assert state.user_get("u0").roles == ["b", "r0", "r1"]


def test_role_delete_takes_the_role_from_every_user(apply, store):
    apply.role_add("r1")
    apply.role_add("r2")
    for user in ["a", "b"]:
        apply.user_add(user)
        apply.grant_role(user, "r1")
    apply.grant_role("b", "r2")
    before = revision(store)
    apply(auth_role_delete=rpc_pb2.AuthRoleDeleteRequest(role="r1"))
    state = store.state()
    assert state.revision == before + 1
    assert list(state.user("a").roles) == []
    assert list(state.user("b").roles) == ["r2"]


def test_grants_are_kept_sorted_by_key_and_updated_in_place(apply, store):
    apply.role_add("r1")
    apply.grant_perm("r1", WRITE, b"k", b"l")
    apply.grant_perm("r1", READWRITE, b"k", b"l")  # same key and end: type updated
    apply.grant_perm("r1", READ, b"a")
    apply.grant_perm("r1", READ, b"z", b"\0")
    apply.grant_perm("r1", WRITE, b"k", b"kz")  # same key, other end: after the existing one
    apply.grant_perm("r1", WRITE, b"b")
    got = [(p.permType, p.key, p.range_end) for p in store.state().role_get("r1").perm]
    # etcd 3.4.23 answered exactly this for the same grants
    assert got == [(READ, b"a", b""), (WRITE, b"b", b""), (READWRITE, b"k", b"l"),
                   (WRITE, b"k", b"kz"), (READ, b"z", b"\0")]
    apply(auth_role_revoke_permission=rpc_pb2.AuthRoleRevokePermissionRequest(role="r1", key=b"k", range_end=b"kz"))
    assert [(p.key, p.range_end) for p in store.state().role_get("r1").perm] == [
        (b"a", b""), (b"b", b""), (b"k", b"l"), (b"z", b"\0")]


def test_grants_that_cover_no_key_are_stored_as_etcd_does(apply, store):
    apply.role_add("r1")
    apply.grant_perm("r1", READ, b"")
    apply.grant_perm("r1", READ, b"b", b"a")
    assert len(store.state().role_get("r1").perm) == 2


def test_users_are_stored_in_etcds_layout(apply, backend):
    apply.user_add("np", no_password=True)
    apply.user_add("u0", "secret")
    apply.role_add("r1")
    apply.grant_role("u0", "r1")
    with backend.read() as txn:
        assert txn.get(buckets.AUTH, b"authRevision") == (5).to_bytes(8, "big")
        np = auth_pb2.User.FromString(txn.get(buckets.AUTH_USERS, b"np"))
        u0 = auth_pb2.User.FromString(txn.get(buckets.AUTH_USERS, b"u0"))
        role = auth_pb2.Role.FromString(txn.get(buckets.AUTH_ROLES, b"r1"))
    assert (np.name, np.password, np.options.no_password) == (b"np", b"", True)
    assert u0.HasField("options") and not u0.options.no_password  # etcd stores the empty options too
    assert u0.password.startswith(b"$2a$") and list(u0.roles) == ["r1"]
    assert role.name == b"r1"


def test_enabled_flag_is_one_byte(apply, backend):
    apply.with_root()
    with backend.read() as txn:
        assert txn.get(buckets.AUTH, b"authEnabled") == b"\x01"
    apply.disable()
    with backend.read() as txn:
        assert txn.get(buckets.AUTH, b"authEnabled") == b"\x00"


def test_password_check_before_proposing(apply, store):
    apply.user_add("u0", "secret")
    apply.user_add("np", no_password=True)
    with raises(errors.AUTH_NOT_ENABLED):
        store.check_password("u0", "secret")
    apply.with_root()
    assert store.check_password("u0", "secret") == store.state().revision
    with raises(errors.AUTH_FAILED):
        store.check_password("u0", "wrong")
    with raises(errors.AUTH_FAILED):
        store.check_password("nobody", "secret")
    with pytest.raises(errors.AuthError) as caught:
        store.check_password("np", "")
    assert (caught.value.code, caught.value.message) == (
        "UNKNOWN", "auth: authentication failed, password was given for no password user")


def test_change_password_replaces_the_hash_and_drops_the_users_tokens(apply, store):
    from etcdx.auth import passwords
    apply.with_root()
    apply.user_add("u0", "old")
    token = apply.authenticate("u0").token
    assert store.tokens.info(token, 1) is not None
    new_hash = passwords.encode_for_request(passwords.hash_password("new", 4))
    apply(auth_user_change_password=rpc_pb2.AuthUserChangePasswordRequest(name="u0", hashedPassword=new_hash))
    assert store.tokens.info(token, 1) is None
    assert store.check_password("u0", "new")
    with raises(errors.AUTH_FAILED):
        store.check_password("u0", "old")


def test_authenticate_assigns_prefix_dot_index_on_every_member(tmp_path, clock):
    """Two members apply the same entries and hand out the same token, usable on either."""
    from etcdx.auth.tokens import SimpleTokens

    members = []
    for name in ("m1", "m2"):
        b = Backend(str(tmp_path / name), map_size=64 << 20)
        members.append((b, AuthStore(b, SimpleTokens(clock=clock))))
    try:
        prefix = members[0][1].tokens.gen_prefix()  # chosen by the proposing member
        entries = [
            raft_internal_pb2.InternalRaftRequest(auth_user_add=rpc_pb2.AuthUserAddRequest(
                name="root", options=auth_pb2.UserAddOptions(no_password=True))),
            raft_internal_pb2.InternalRaftRequest(
                auth_user_grant_role=rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root")),
            raft_internal_pb2.InternalRaftRequest(auth_enable=rpc_pb2.AuthEnableRequest()),
            raft_internal_pb2.InternalRaftRequest(auth_user_add=rpc_pb2.AuthUserAddRequest(
                name="u0", hashedPassword="")),
            raft_internal_pb2.InternalRaftRequest(
                authenticate=raft_internal_pb2.InternalAuthenticateRequest(name="u0", simple_token=prefix)),
        ]
        tokens = []
        for backend, store in members:
            for index, entry in enumerate(entries, start=1):
                with backend.write() as txn:
                    resp = store.apply(txn, entry, index)
            tokens.append(resp.token)
        assert tokens == [f"{prefix}.5"] * 2
        for _, store in members:
            assert store.tokens.required_index(tokens[0]) == 5
            assert store.tokens.info(tokens[0], 9) == AuthInfo("u0", 9)
    finally:
        for b, _ in members:
            b.close()


def test_authenticate_refusals(apply):
    with raises(errors.AUTH_NOT_ENABLED):
        apply.authenticate("root")
    apply.with_root()
    apply.user_add("np", no_password=True)
    with raises(errors.AUTH_FAILED):
        apply.authenticate("nobody")
    with raises(errors.AUTH_FAILED):
        apply.authenticate("np")


def test_disable_drops_simple_tokens_and_enable_accepts_new_ones(apply, store):
    apply.with_root()
    token = apply.authenticate("root").token
    apply.disable()
    apply.enable()
    assert store.tokens.info(token, 1) is None
    token = apply.authenticate("root").token
    assert store.tokens.info(token, 7).username == "root"


READER = """
import json, sys
from etcdx.auth.store import AuthStore
from etcdx.backend import Backend
store = AuthStore(Backend(sys.argv[1], readonly=True))
last = None
for line in sys.stdin:
    state = store.state()
    print(json.dumps([state.enabled, state.revision, list(state.role_list().roles), state is last]), flush=True)
    last = state
"""


def test_read_side_in_another_process_refreshes_when_the_revision_moves(apply, tmp_path):
    """An API worker reads the auth buckets from a read-only handle on the member's LMDB."""
    apply.role_add("r1")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    reader = subprocess.Popen([sys.executable, "-c", READER, str(tmp_path / "db")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)

    def read():
        reader.stdin.write("state\n")
        reader.stdin.flush()
        return json.loads(reader.stdout.readline())

    try:
        assert read() == [False, 2, ["r1"], False]
        assert read() == [False, 2, ["r1"], True]  # unchanged: the cached state
        apply.role_add("r2")
        assert read() == [False, 3, ["r1", "r2"], False]
        apply.with_root()  # AuthEnable does not bump the revision, but the flag is seen
        assert read()[:2] == [True, 5]
    finally:
        reader.stdin.close()
        reader.wait(10)


def test_checks_in_a_batch_see_earlier_entries_of_the_batch(apply, backend, store):
    apply.role_add("r1")
    with backend.write() as txn:
        store.apply(txn, raft_internal_pb2.InternalRaftRequest(
            auth_role_add=rpc_pb2.AuthRoleAddRequest(name="r2")), 100)
        assert store.state(txn).role_list().roles == ["r1", "r2"]
        store.apply(txn, raft_internal_pb2.InternalRaftRequest(
            auth_role_delete=rpc_pb2.AuthRoleDeleteRequest(role="r2")), 101)
        assert store.state(txn).role_list().roles == ["r1"]
    assert store.state().role_list().roles == ["r1"]


def test_apply_refuses_a_request_without_auth_fields(apply, backend, store):
    with backend.write() as txn, pytest.raises(ValueError):
        store.apply(txn, raft_internal_pb2.InternalRaftRequest(put=rpc_pb2.PutRequest(key=b"a")), 1)


def test_names_longer_than_an_lmdb_key_are_refused_cleanly(apply, store):
    with raises(errors.USER_NAME_TOO_LONG):
        apply.user_add("u" * 512)
    with raises(errors.ROLE_NAME_TOO_LONG):
        apply.role_add("é" * 256)
    apply.role_add("r" * 511)
    assert store.state().role_list().roles == ["r" * 511]
    with raises(errors.USER_NOT_FOUND):  # lookups of long names never reach LMDB
        apply.grant_role("u" * 100_000, "r" * 511)
    apply.user_add("u")
    with raises(errors.ROLE_NOT_FOUND):
        apply.grant_role("u", "x" * 100_000)


def test_thousands_of_roles_apply_without_reloading_the_store(apply, store, backend):
    """Each change derives the next state from the previous one: no quadratic reload."""
    with backend.write() as txn:
        for i in range(3000):
            store.apply_role_add(txn, rpc_pb2.AuthRoleAddRequest(name=f"role{i:05}"))
            store.apply_role_grant_permission(txn, rpc_pb2.AuthRoleGrantPermissionRequest(
                name=f"role{i:05}", perm=auth_pb2.Permission(permType=READ, key=b"k%d" % i)))
    state = store.state()
    assert state.revision == 1 + 6000 and len(state.role_list().roles) == 3000
    fresh = AuthStore(backend).state()  # a reader rebuilding from the backend agrees
    assert fresh.role_list() == state.role_list() and fresh.revision == state.revision
    assert fresh.role_get("role02999") == state.role_get("role02999")


def test_reload_after_an_aborted_apply_transaction_forgets_its_changes(apply, store, backend):
    apply.role_add("kept")
    with pytest.raises(RuntimeError), backend.write() as txn:
        store.apply_role_add(txn, rpc_pb2.AuthRoleAddRequest(name="lost"))
        raise RuntimeError("the batch failed")
    state = store.reload()
    assert state.role_list().roles == ["kept"]
    apply.role_add("other")  # the revision the aborted change had is reused with other content
    assert store.state().role_list().roles == ["kept", "other"]
