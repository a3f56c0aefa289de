"""Every RPC under auth gives the same answer on etcdx as on etcd 3.4, for four kinds of caller.

``support/auth_matrix.py`` has the calls and the set-up. The callers are a
bad token, no user, a user with some key-range grants, and root; the lines
hold the gRPC code and message of each refusal, and the response (less the
cluster-specific header fields) of each success, so which RPCs look at the
caller at all, in what order etcd checks, and which errors go out
untranslated (code Unknown, "auth: ...") are all compared. etcdx runs with and
without API workers (the worker checks reads itself and asks the core about
simple tokens).
"""

from __future__ import annotations

import pytest
from support import auth_matrix, procs

from etcdx.pb import rpc_pb2, rpc_pb2_grpc

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def etcd_lines(tmp_path_factory) -> list[str]:
    procs.require("etcd")
    with procs.MemberGroup(tmp_path_factory.mktemp("etcd")) as group:
        return auth_matrix.run(group.new("etcd").channel)


@pytest.mark.parametrize("args", [["--api-workers", "2"], []], ids=["workers", "no-workers"])
def test_every_rpc_checks_the_caller_as_etcd_does(args, etcd_lines, member_group):
    procs.require("etcdx")
    member = member_group.new("etcdx", extra_args=args)
    got = auth_matrix.run(member.channel)
    differing = [f"  etcd:  {a}\n  etcdx: {b}" for a, b in zip(etcd_lines, got) if a != b]
    assert len(got) == len(etcd_lines)
    assert not differing, "answers differ:\n" + "\n".join(differing)


def test_auth_status_answers_every_caller_but_a_bad_token(member_group):
    """AuthStatus is etcd 3.5's (3.4 has no such RPC): it looks only at the token."""
    procs.require("etcdx")
    member = member_group.new("etcdx")
    auth_matrix.setup(member.channel)
    stub = rpc_pb2_grpc.AuthStub(member.channel)
    root = auth_matrix.authenticate(member.channel, "root", auth_matrix.ROOT_PW)
    alice = auth_matrix.authenticate(member.channel, "alice", auth_matrix.ALICE_PW)
    statuses = [stub.AuthStatus(rpc_pb2.AuthStatusRequest(), metadata=md, timeout=10)
                for md in (None, [("token", alice)], [("token", root)])]
    assert {(s.enabled, s.authRevision) for s in statuses} == {(True, statuses[0].authRevision)}
    assert statuses[0].authRevision > 1
    with pytest.raises(Exception) as caught:
        stub.AuthStatus(rpc_pb2.AuthStatusRequest(), metadata=[("token", auth_matrix.BAD_TOKEN)], timeout=10)
    assert caught.value.code().name == "UNAUTHENTICATED"
    assert caught.value.details() == "etcdserver: invalid auth token"
