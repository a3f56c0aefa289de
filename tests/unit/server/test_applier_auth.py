"""The applier checks every entry against the auth state it applies at, with the proposer's header.

Entries are applied by the member's real ``Applier`` over a temporary backend,
in batches as raft hands them over, so these tests pin what every member does
with the same log: an entry authorised under an older auth revision (a role
was revoked between its proposal and its apply) is refused with "revision of
auth store is old", and a change earlier in the same batch counts.
"""

from __future__ import annotations

import pytest

from etcdx.auth import SimpleTokens, passwords
from etcdx.backend import Backend
from etcdx.pb import auth_pb2, raft_internal_pb2, rpc_pb2
from etcdx.raft.types import Entry, EntryType
from etcdx.server import errors
from etcdx.server.applier import Applier
from etcdx.server.stores import Stores

FAST_COST = 4
OLD_REVISION = errors.EtcdError("INVALID_ARGUMENT", "etcdserver: revision of auth store is old")
DENIED = errors.EtcdError("PERMISSION_DENIED", "etcdserver: permission denied")
Req = raft_internal_pb2.InternalRaftRequest


class Log:
    """A member's applier fed with entries, a batch at a time; results by request id."""

    def __init__(self, tmp_path) -> None:
        self.backend = Backend(str(tmp_path / "db"), map_size=1 << 26)
        self.stores = Stores(self.backend, min_lease_ttl=2, tokens=SimpleTokens())
        self.applier = Applier(self.stores, 1, apply_conf_change=lambda cc: None)
        self.index = 1
        self.next_id = 100

    def close(self) -> None:
        self.backend.close()

    def request(self, user: str = "", revision: int = 0, **field) -> Req:
        req = Req(**field)
        self.next_id += 1
        req.header.id = self.next_id
        if user:
            req.header.username, req.header.auth_revision = user, revision
        return req

    def apply(self, *reqs: Req) -> list:
        entries = []
        for req in reqs:
            self.index += 1
            entries.append(Entry(term=1, index=self.index, type=EntryType.NORMAL, data=req.SerializeToString()))
        results = dict(self.applier.apply(entries).results)
        return [results[req.header.id] for req in reqs]

    @property
    def revision(self) -> int:
        return self.stores.auth.state().revision


@pytest.fixture
def log(tmp_path):
    lg = Log(tmp_path)
    hashed = passwords.encode_for_request(passwords.hash_password("pw", FAST_COST))
    rw = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"a/", range_end=b"a0")
    lg.apply(
        lg.request(auth_user_add=rpc_pb2.AuthUserAddRequest(name="root", hashedPassword=hashed)),
        lg.request(auth_user_grant_role=rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root")),
        lg.request(auth_user_add=rpc_pb2.AuthUserAddRequest(name="alice", hashedPassword=hashed)),
        lg.request(auth_role_add=rpc_pb2.AuthRoleAddRequest(name="rw")),
        lg.request(auth_role_grant_permission=rpc_pb2.AuthRoleGrantPermissionRequest(name="rw", perm=rw)),
        lg.request(auth_user_grant_role=rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="rw")),
        lg.request(auth_enable=rpc_pb2.AuthEnableRequest()),
    )
    yield lg
    lg.close()


def put(key: bytes) -> dict:
    return {"put": rpc_pb2.PutRequest(key=key, value=b"v")}


def test_a_write_authorised_before_a_revoke_in_the_same_batch_is_refused(log):
    rev = log.revision
    revoke = log.request("root", rev, auth_user_revoke_role=rpc_pb2.AuthUserRevokeRoleRequest(name="alice", role="rw"))
    refused, = log.apply(revoke, log.request("alice", rev, **put(b"a/1")))[1:]
    assert refused == OLD_REVISION
    assert log.stores.kv.range(b"a/1").kvs == []


def test_a_write_authorised_before_a_revoke_in_an_earlier_batch_is_refused(log):
    rev = log.revision
    log.apply(log.request("root", rev, auth_user_revoke_role=rpc_pb2.AuthUserRevokeRoleRequest(
        name="alice", role="rw")))
    assert log.apply(log.request("alice", rev, **put(b"a/1"))) == [OLD_REVISION]
    # authorised again at the new revision, the check is the permission's
    assert log.apply(log.request("alice", log.revision, **put(b"a/1"))) == [DENIED]


def test_any_auth_change_makes_earlier_authorisations_old_even_a_grant(log):
    rev = log.revision
    log.apply(log.request("root", rev, auth_role_add=rpc_pb2.AuthRoleAddRequest(name="other")))
    assert log.apply(log.request("alice", rev, **put(b"a/1"))) == [OLD_REVISION]


def test_a_write_authorised_at_the_current_revision_applies(log):
    resp, = log.apply(log.request("alice", log.revision, **put(b"a/1")))
    assert isinstance(resp, rpc_pb2.PutResponse)
    assert [kv.key for kv in log.stores.kv.range(b"a/1").kvs] == [b"a/1"]


def test_an_entry_without_a_user_is_refused_while_auth_is_on(log):
    assert log.apply(log.request(**put(b"a/1"))) == [
        errors.EtcdError("INVALID_ARGUMENT", "etcdserver: user name is empty")]


def test_admin_requests_do_not_look_at_the_revision(log):
    """As etcd: only key access compares revisions; root's stale header still manages users."""
    stale = log.revision - 1
    resp, = log.apply(log.request("root", stale, auth_role_add=rpc_pb2.AuthRoleAddRequest(name="r2")))
    assert isinstance(resp, rpc_pb2.AuthRoleAddResponse)
    denied, = log.apply(log.request("alice", log.revision, auth_role_add=rpc_pb2.AuthRoleAddRequest(name="r3")))
    assert denied == DENIED


def test_a_lease_revoke_as_root_deletes_keys_no_user_may_write(log):
    """The member revokes expired leases as root (etcd's WithRoot), whatever keys they hold."""
    log.apply(log.request("root", log.revision, lease_grant=rpc_pb2.LeaseGrantRequest(ID=7, TTL=60)),
              log.request("root", log.revision, put=rpc_pb2.PutRequest(key=b"z", value=b"v", lease=7)))
    assert log.apply(log.request("alice", log.revision, lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=7))) == [DENIED]
    resp, = log.apply(log.request("root", log.revision, lease_revoke=rpc_pb2.LeaseRevokeRequest(ID=7)))
    assert isinstance(resp, rpc_pb2.LeaseRevokeResponse)
    assert log.stores.kv.range(b"z").kvs == []


def test_a_put_onto_a_lease_the_same_batch_gave_a_forbidden_key_is_refused(log):
    """The lease's keys are read in the batch's own transaction, not the committed state."""
    rev = log.revision
    out = log.apply(log.request("root", rev, lease_grant=rpc_pb2.LeaseGrantRequest(ID=8, TTL=60)),
                    log.request("root", rev, put=rpc_pb2.PutRequest(key=b"z", value=b"v", lease=8)),
                    log.request("alice", rev, put=rpc_pb2.PutRequest(key=b"a/2", value=b"v", lease=8)))
    assert out[2] == DENIED


def test_authenticate_assigns_the_proposers_prefix_at_the_entry_index(log):
    """Every member applies the same entry at the same index: the same simple token everywhere."""
    req = raft_internal_pb2.InternalAuthenticateRequest(name="alice", simple_token="abcdefghijklmnop")
    resp, = log.apply(log.request(authenticate=req))
    assert resp.token == f"abcdefghijklmnop.{log.index}"
    assert log.stores.auth.tokens.info(resp.token, log.revision).username == "alice"
