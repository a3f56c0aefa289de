"""User/password auth through the client, against etcd and etcdx alike.

A server without an Auth service (UserList answers UNIMPLEMENTED) would skip
these rather than fail them.
"""

from __future__ import annotations

import pytest

from etcdx.client import Permission, Unimplemented, errors


def enable_auth(c) -> None:
    """root (with the root role), and alice who may read and write under /app/."""
    try:
        c.user_list()  # (AuthStatus is etcd 3.5+)
    except Unimplemented:
        pytest.skip("this server has no Auth service yet (UNIMPLEMENTED)")
    c.user_add("root", "rootpw")
    c.role_add("root")
    c.user_grant_role("root", "root")
    c.user_add("alice", "alicepw")
    c.role_add("app")
    c.role_grant_permission("app", Permission.READWRITE, "/app/", prefix=True)
    c.user_grant_role("alice", "app")
    c.auth_enable()


def test_a_user_reads_and_writes_what_its_roles_allow(etcdx_member, connect):
    enable_auth(connect(etcdx_member.endpoint))
    alice = connect(etcdx_member.endpoint, user="alice", password="alicepw")
    alice.put("/app/k", "v")
    assert alice.get("/app/k").value == b"v"
    with pytest.raises(errors.PermissionDenied) as denied:
        alice.put("/other", "x")
    assert denied.value.message == "etcdserver: permission denied"
    with alice.watch_prefix("/app/") as w:
        alice.put("/app/k", "v2")
        assert w.get(timeout=10).events[0].kv.value == b"v2"
    with alice.lock("/app/lock", ttl=10) as lock:
        lock.put("/app/guarded", "1")


def test_admin_calls_and_status_need_the_root_user(etcdx_member, connect):
    enable_auth(connect(etcdx_member.endpoint))
    root = connect(etcdx_member.endpoint, user="root", password="rootpw")
    try:
        status = root.auth_status()
    except Unimplemented:
        assert etcdx_member.kind == "etcd"  # AuthStatus is new in etcd 3.5
    else:
        assert status.enabled and status.auth_revision > 0
    assert set(root.user_list()) == {"root", "alice"}
    assert root.user_get("alice") == ("app",)
    (perm,) = root.role_get("app")
    assert perm.type is Permission.READWRITE and perm.key == b"/app/" and perm.range_end == b"/app0"
    alice = connect(etcdx_member.endpoint, user="alice", password="alicepw")
    with pytest.raises(errors.PermissionDenied):
        alice.user_list()


def test_wrong_password_and_no_credentials_are_refused(etcdx_member, connect):
    enable_auth(connect(etcdx_member.endpoint))
    with pytest.raises(errors.AuthFailed):
        connect(etcdx_member.endpoint, user="alice", password="wrong").get("/app/k")
    with pytest.raises(errors.UserEmpty):
        connect(etcdx_member.endpoint).get("/app/k")


def test_an_invalid_token_is_renewed_and_the_call_retried(etcdx_member, connect):
    enable_auth(connect(etcdx_member.endpoint))
    alice = connect(etcdx_member.endpoint, user="alice", password="alicepw")
    alice.put("/app/k", "v")
    inner = getattr(alice, "_target", alice)  # the AsyncClient behind a Blocking view
    inner._token = "not-a-valid-token"  # as after the server forgot it (TTL, restart)
    assert alice.get("/app/k").value == b"v"
    assert inner._token != "not-a-valid-token"
