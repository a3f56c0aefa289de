"""Hostile input to every RPC, with auth on and off: etcd's errors, never a crash, a hang or lost data.

What is sent (``ETCDX_AUTH_FUZZ_EXAMPLES`` per hypothesis phase, default 100;
``ETCDX_AUTH_FUZZ_ROLES`` roles for the many-roles phase, default 300):

- random requests of every unary RPC (messages built field by field from the
  request's descriptor, any values), and random bytes, as no user, as alice (a
  user with one prefix) and with garbage tokens; with auth off too;
- every request of ``support/auth_matrix.py`` with random byte edits, same callers;
- auth management as root with names and passwords of any length and
  alphabet (past LMDB's 511-byte key limit, up to 1 MiB), permissions with
  random keys, range ends and types; a model of the users and roles that must
  exist afterwards;
- thousands of roles and permissions on one user, then its checks;
- wrong tokens (garbage, a login index far past the commit index, one just
  past it) and expired ones (a simple token past --auth-token-ttl, a JWT
  past its exp).

Alarm is left out of the random phases: any user may raise NOSPACE or
CORRUPT, which stops writes by design (etcd alike). During and after each
phase a bystander client (root) writes and reads every 20 ms and must never
fail, keys only root may write must be unchanged, and the member's memory
(core and API workers) must not grow without bound. Each test prints its
counts (``pytest -s``).
"""

from __future__ import annotations

import collections
import os
import re
import threading
import time

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from etcdx.api.rpcs import RPCS, Kind
from etcdx.pb import auth_pb2, rpc_pb2, rpc_pb2_grpc
from support import auth_matrix, auth_setup, procs
from support.auth_setup import ALICE_PW, ROOT_PW, md

pytestmark = pytest.mark.timeout(600)

EXAMPLES = int(os.environ.get("ETCDX_AUTH_FUZZ_EXAMPLES", "100"))
MANY_ROLES = int(os.environ.get("ETCDX_AUTH_FUZZ_ROLES", "300"))
CALL_TIMEOUT = 15
RSS_GROWTH_LIMIT_KIB = 64 * 1024  # per random phase, core and workers together
# Generation only: the member keeps its state from one example to the next, so shrinking
# would replay examples against a different store; a failure reports the example as sent.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.generate],
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
# etcd's own services: Lock and Campaign wait (for a holder, a leader) by design.
UNARY = [rpc for rpc in RPCS if rpc.kind is Kind.UNARY and rpc.method != "Alarm" and rpc.service.startswith("etcdserverpb.")]
SENTINELS = [b"s/%02d" % i for i in range(20)]

# Garbage tokens: printable (gRPC metadata), never "<anything>.<digits>", which names a login
# index the member would wait for (the tokens phase sends those on purpose).
GARBAGE_TOKEN = st.from_regex(r"[!-~]{1,120}", fullmatch=True).filter(lambda t: not re.search(r"\.\d+$", t))


def _rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its children (the API workers)."""
    total = 0
    pids = [pid]
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                pids += [int(c) for c in fh.read().split()]
    except FileNotFoundError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total


OLD_REVISION = "etcdserver: revision of auth store is old"


class Bystander(threading.Thread):
    """Root writing and reading one key every 20 ms: the client the fuzz must not disturb.

    A request authorised just before an auth change and applied just after it is
    refused as "revision of auth store is old", in etcd too; clients (clientv3)
    send it again, and so does this one.
    """

    def __init__(self, member: procs.Member, token: str | None) -> None:
        super().__init__(daemon=True)
        self.channel = grpc.insecure_channel(member.endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self.channel)
        self.md = md(token) if token else None
        self.stop = threading.Event()
        self.ok = 0
        self.retried = 0
        self.failures: list[str] = []
        self.last = b""

    def run(self) -> None:
        n = 0
        while not self.stop.wait(0.02):
            n += 1
            value = b"%d" % n
            try:
                self._call(self.kv.Put, rpc_pb2.PutRequest(key=b"s/bystander", value=value))
                got = self._call(self.kv.Range, rpc_pb2.RangeRequest(key=b"s/bystander"))
                if [kv.value for kv in got.kvs] != [value]:
                    self.failures.append(f"read {list(got.kvs)} after writing {value!r}")
                self.last = value
                self.ok += 1
            except grpc.RpcError as err:
                self.failures.append(f"{err.code().name}: {err.details()}")

    def _call(self, method, req):
        for _ in range(20):
            try:
                return method(req, metadata=self.md, timeout=10)
            except grpc.RpcError as err:
                if err.details() != OLD_REVISION:
                    raise
                self.retried += 1
        return method(req, metadata=self.md, timeout=10)

    def finish(self) -> None:
        self.stop.set()
        self.join(20)
        self.channel.close()


class Target:
    """A member under fuzz: who may call, what it answered, and the checks after each phase."""

    def __init__(self, member: procs.Member, auth: bool) -> None:
        self.m = member
        self.auth = auth
        self.counts: collections.Counter = collections.Counter()
        self.unexpected: list[str] = []
        self.tokens: dict[str, str | None] = {"none": None}
        self.sentinels: dict[bytes, tuple[bytes, int]] = {}
        if auth:
            auth_setup.enable(member.channel)
            self.tokens["root"] = auth_setup.token(member.channel, "root", ROOT_PW)
            self.tokens["alice"] = auth_setup.token(member.channel, "alice", ALICE_PW)
        root = md(self.tokens["root"]) if auth else None
        for key in SENTINELS:
            member.kv.Put(rpc_pb2.PutRequest(key=key, value=key + b"-v"), metadata=root, timeout=10)
        self.sentinels = self._read_sentinels()
        self.bystander = Bystander(member, self.tokens.get("root"))
        self.bystander.start()
        self.rss_start = _rss_kib(member.pid)

    def _read_sentinels(self) -> dict[bytes, tuple[bytes, int]]:
        root = md(self.tokens["root"]) if self.auth else None
        got = self.m.kv.Range(rpc_pb2.RangeRequest(key=b"s/", range_end=b"s/~"), metadata=root, timeout=10)
        return {kv.key: (kv.value, kv.mod_revision) for kv in got.kvs if kv.key in SENTINELS}

    def send(self, phase: str, path: str, body: bytes, token: str | None, request_class=None) -> str:
        """One call with raw bytes; counts its outcome and notes any the member must never give."""
        try:
            self.m.channel.unary_unary(path)(body, metadata=md(token) if token else None, timeout=CALL_TIMEOUT)
            code, details = "OK", ""
        except grpc.RpcError as err:
            code, details = err.code().name, err.details() or ""
        self.counts[(phase, code)] += 1
        if not _acceptable(code, details, body, request_class):
            self.unexpected.append(f"{phase} {path} {code} {details!r} body={body[:60]!r}")
        return code

    def check(self, phase: str) -> dict:
        """The member serves, the bystander never failed, root's keys are intact; RSS figures."""
        assert self.m.is_running(), self.m.log_tail(30)
        assert not self.unexpected, "\n".join(self.unexpected[:20])
        assert not self.bystander.failures, self.bystander.failures[:10]
        if self.auth:
            assert self._read_sentinels() == self.sentinels
        rss = _rss_kib(self.m.pid)
        figures = {"rss_kib": rss, "rss_growth_kib": rss - self.rss_start, "bystander_ok": self.bystander.ok,
                   "bystander_retried_old_revision": self.bystander.retried}
        print(f"\n[{phase}] auth={'on' if self.auth else 'off'} counts="
              f"{dict(sorted((c, n) for (p, c), n in self.counts.items() if p == phase))} {figures}")
        return figures

    def close(self) -> None:
        self.bystander.finish()


def _acceptable(code: str, details: str, body: bytes, request_class) -> bool:
    if code in ("OK", "INVALID_ARGUMENT", "FAILED_PRECONDITION", "PERMISSION_DENIED", "UNAUTHENTICATED",
                "NOT_FOUND", "OUT_OF_RANGE", "RESOURCE_EXHAUSTED"):
        return True
    if code == "UNKNOWN":
        return details.startswith("auth: ")  # etcd 3.4's untranslated auth errors
    if code == "INTERNAL":  # grpc-go's answer to a request that does not decode, and only to that
        if not details.startswith("grpc: error unmarshalling request"):
            return False
        try:
            request_class.FromString(body)
        except DecodeError:
            return True
        return False
    return False


@pytest.fixture(scope="module", params=["auth-on", "auth-off"])
def target(request, tmp_path_factory):
    procs.require("etcdx")
    m = procs.Member("etcdx", tmp_path_factory.mktemp(request.param), extra_args=["--bcrypt-cost", "4"])
    m.start()
    t = Target(m, auth=request.param == "auth-on")
    try:
        yield t
    finally:
        t.close()
        m.close()


_SCALARS = {
    FieldDescriptor.TYPE_BOOL: st.booleans(),
    FieldDescriptor.TYPE_STRING: st.text(max_size=40),
    FieldDescriptor.TYPE_BYTES: st.one_of(st.binary(max_size=40), st.sampled_from([b"", b"\0", b"a/", b"a0", b"s/"])),
    FieldDescriptor.TYPE_INT64: st.integers(-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT64: st.integers(0, 2**64 - 1),
    FieldDescriptor.TYPE_INT32: st.integers(-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_UINT32: st.integers(0, 2**32 - 1),
    FieldDescriptor.TYPE_ENUM: st.integers(-1, 8),  # unknown values too: proto3 keeps them
}


@st.composite
def random_message(draw, message_class, depth: int = 0):
    """A message of ``message_class`` with any subset of its fields set to any values."""
    msg = message_class()
    for field in message_class.DESCRIPTOR.fields:
        if not draw(st.booleans()):
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            if depth >= 3:
                continue
            sub = message_factory.GetMessageClass(field.message_type)
            values = draw(st.lists(random_message(sub, depth + 1), max_size=3 if field.is_repeated else 1))
            if field.is_repeated:
                getattr(msg, field.name).extend(values)
            elif values:
                getattr(msg, field.name).CopyFrom(values[0])
        else:
            strategy = _SCALARS[field.type]
            if field.is_repeated:
                getattr(msg, field.name).extend(draw(st.lists(strategy, max_size=3)))
            else:
                setattr(msg, field.name, draw(strategy))
    return msg


@st.composite
def random_request(draw):
    """(rpc, body): a random message of the RPC's request type, or random bytes."""
    rpc = draw(st.sampled_from(UNARY))
    if draw(st.booleans()):
        return rpc, draw(random_message(rpc.request)).SerializeToString()
    return rpc, draw(st.binary(max_size=600))


def _callers(t: Target):
    named = st.sampled_from(sorted(n for n in t.tokens if n != "root")).map(lambda n: t.tokens[n])
    return st.one_of(named, GARBAGE_TOKEN)


def test_random_bytes_to_every_rpc(target):
    @FUZZ
    @given(request=random_request(), token=_callers(target))
    def fuzz(request, token):
        rpc, body = request
        target.send("random", rpc.path, body, token, rpc.request)

    fuzz()
    figures = target.check("random")
    assert figures["rss_growth_kib"] < RSS_GROWTH_LIMIT_KIB


_VALID = [(call, call.request.SerializeToString()) for call in auth_matrix.CALLS]


@st.composite
def _mutated(draw):
    call, body = draw(st.sampled_from(_VALID))
    data = bytearray(body)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data))))
        if kind == "flip" and data:
            data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete" and data:
            del data[min(pos, len(data) - 1)]
        elif kind == "truncate":
            del data[pos:]
    return call, bytes(data)


def test_mutated_requests_of_every_rpc(target):
    @FUZZ
    @given(mutated=_mutated(), token=_callers(target))
    def fuzz(mutated, token):
        call, body = mutated
        path = f"/etcdserverpb.{call.service}/{call.method}"
        if call.method in ("Snapshot", "Alarm"):
            return
        target.send("mutated", path, body, token, type(call.request))

    fuzz()
    figures = target.check("mutated")
    assert figures["rss_growth_kib"] < RSS_GROWTH_LIMIT_KIB


PROTECTED = {"root", "alice", "rw"}
NAMES = st.one_of(st.text(max_size=24), st.text(min_size=480, max_size=560),
                  st.sampled_from(["", "x" * 511, "x" * 512, "é" * 256]))
PASSWORDS = st.one_of(st.text(max_size=80), st.sampled_from(["", "p" * 72, "p" * 73]),
                      st.text(min_size=1000, max_size=4000))


def test_auth_management_with_any_names_passwords_and_permissions(target):
    if not target.auth:
        pytest.skip("as root, with auth on")
    auth = rpc_pb2_grpc.AuthStub(target.m.channel)
    root = md(target.tokens["root"])
    users, roles = {"root", "alice"}, {"rw"}
    made_users, made_roles = set(), set()

    def send(call, req) -> str:
        try:
            call(req, metadata=root, timeout=CALL_TIMEOUT)
            code, details = "OK", ""
        except grpc.RpcError as err:
            code, details = err.code().name, err.details() or ""
        target.counts[("structured", code)] += 1
        if code not in ("OK", "INVALID_ARGUMENT", "FAILED_PRECONDITION"):
            target.unexpected.append(f"structured {type(req).__name__} {code} {details!r}")
        return code

    perms = st.builds(auth_pb2.Permission, permType=st.integers(0, 5), key=st.binary(max_size=600),
                      range_end=st.one_of(st.just(b""), st.just(b"\0"), st.binary(max_size=600)))

    @FUZZ
    @given(data=st.data())
    def fuzz(data):
        op = data.draw(st.sampled_from(["user_add", "role_add", "grant", "revoke_perm", "user_grant",
                                        "user_revoke", "user_delete", "role_delete", "passwd", "get"]))
        # The same draws whatever exists (the store is state outside hypothesis): a random
        # name, or, when there is one, one of the users or roles this test made.
        user_pick, role_pick = data.draw(NAMES), data.draw(NAMES)
        mine, i, j = data.draw(st.booleans()), data.draw(st.integers(0, 1 << 16)), data.draw(st.integers(0, 1 << 16))
        some_user = sorted(made_users)[i % len(made_users)] if mine and made_users else user_pick
        some_role = sorted(made_roles)[j % len(made_roles)] if mine and made_roles else role_pick
        if op == "user_add":
            name = data.draw(NAMES)
            req = rpc_pb2.AuthUserAddRequest(name=name, password=data.draw(PASSWORDS))
            req.options.no_password = data.draw(st.booleans())
            if send(auth.UserAdd, req) == "OK":
                users.add(name)
                made_users.add(name)
        elif op == "role_add":
            name = data.draw(NAMES)
            if send(auth.RoleAdd, rpc_pb2.AuthRoleAddRequest(name=name)) == "OK":
                roles.add(name)
                made_roles.add(name)
        elif op == "grant":
            send(auth.RoleGrantPermission, rpc_pb2.AuthRoleGrantPermissionRequest(
                name=some_role, perm=data.draw(perms)))
        elif op == "revoke_perm":
            p = data.draw(perms)
            send(auth.RoleRevokePermission, rpc_pb2.AuthRoleRevokePermissionRequest(
                role=some_role, key=p.key, range_end=p.range_end))
        elif op == "user_grant":
            send(auth.UserGrantRole, rpc_pb2.AuthUserGrantRoleRequest(user=some_user,
                                                                       role=some_role))
        elif op == "user_revoke":
            send(auth.UserRevokeRole, rpc_pb2.AuthUserRevokeRoleRequest(name=some_user,
                                                                         role=some_role))
        elif op == "user_delete":
            name = some_user
            if name not in PROTECTED and send(auth.UserDelete, rpc_pb2.AuthUserDeleteRequest(name=name)) == "OK":
                users.discard(name)
                made_users.discard(name)
        elif op == "role_delete":
            name = some_role
            if name not in PROTECTED and send(auth.RoleDelete, rpc_pb2.AuthRoleDeleteRequest(role=name)) == "OK":
                roles.discard(name)
                made_roles.discard(name)
        elif op == "passwd":
            send(auth.UserChangePassword, rpc_pb2.AuthUserChangePasswordRequest(
                name=some_user, password=data.draw(PASSWORDS)))
        else:
            send(auth.UserGet, rpc_pb2.AuthUserGetRequest(name=some_user))
            send(auth.RoleGet, rpc_pb2.AuthRoleGetRequest(role=some_role))

    fuzz()
    # the store holds exactly what the answers said
    assert list(auth.UserList(rpc_pb2.AuthUserListRequest(), metadata=root, timeout=10).users) == sorted(
        users, key=str.encode)
    assert list(auth.RoleList(rpc_pb2.AuthRoleListRequest(), metadata=root, timeout=10).roles) == sorted(
        roles, key=str.encode)
    # past LMDB's key limit: refused with a clear error, the same on every member
    too_long = rpc_pb2.AuthUserAddRequest(name="n" * 512, password="p")
    with pytest.raises(grpc.RpcError) as caught:
        auth.UserAdd(too_long, metadata=root, timeout=10)
    assert (caught.value.code(), caught.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT,
                                                             "etcdserver: user name is too long")
    # a 1 MiB password: bcrypt uses its first 72 bytes, as Go's does in etcd 3.4
    long_pw = "q" * (1 << 20)
    auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="longpw", password=long_pw), metadata=root, timeout=10)
    assert auth_setup.token(target.m.channel, "longpw", "q" * 72 + "anything")
    target.check("structured")


def test_thousands_of_roles_and_permissions_on_one_user(target):
    if not target.auth:
        pytest.skip("with auth on")
    auth = rpc_pb2_grpc.AuthStub(target.m.channel)
    root = md(target.tokens["root"])

    def pipelined(calls) -> None:
        for i in range(0, len(calls), 200):
            futures = [call.future(req, metadata=root, timeout=60) for call, req in calls[i:i + 200]]
            for f in futures:
                f.result()

    auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="many", password="pw"), metadata=root, timeout=10)
    pipelined([(auth.RoleAdd, rpc_pb2.AuthRoleAddRequest(name=f"m{i}")) for i in range(MANY_ROLES)])
    pipelined([(auth.RoleGrantPermission, rpc_pb2.AuthRoleGrantPermissionRequest(
        name=f"m{i}", perm=auth_setup.prefix(b"t/%d/" % (i * 3 + j)))) for i in range(MANY_ROLES) for j in range(3)])
    pipelined([(auth.UserGrantRole, rpc_pb2.AuthUserGrantRoleRequest(user="many", role=f"m{i}"))
               for i in range(MANY_ROLES)])
    assert len(auth.UserGet(rpc_pb2.AuthUserGetRequest(name="many"), metadata=root, timeout=10).roles) == MANY_ROLES
    many = md(auth_setup.token(target.m.channel, "many", "pw"))
    kv = target.m.kv
    checked = 0
    for i in range(0, 3 * MANY_ROLES, max(1, MANY_ROLES // 50)):
        kv.Put(rpc_pb2.PutRequest(key=b"t/%d/k" % i, value=b"v"), metadata=many, timeout=10)
        got = kv.Range(rpc_pb2.RangeRequest(key=b"t/%d/" % i, range_end=b"t/%d0" % i, serializable=True),
                       metadata=many, timeout=10)
        assert [x.key for x in got.kvs] == [b"t/%d/k" % i]
        for denied in (rpc_pb2.RangeRequest(key=b"t/", range_end=b"t0"),
                       rpc_pb2.RangeRequest(key=b"t/%d" % (3 * MANY_ROLES))):
            with pytest.raises(grpc.RpcError) as caught:
                kv.Range(denied, metadata=many, timeout=10)
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        checked += 1
    print(f"\n[many] {MANY_ROLES} roles, {3 * MANY_ROLES} permissions, one user with all of them; "
          f"{checked} keys checked")
    target.check("many")


def test_wrong_tokens_are_refused_without_waiting_for_ever(target):
    m = target.m
    status = m.maintenance.Status(rpc_pb2.StatusRequest(), timeout=10)
    tokens = [f"NotAToken.{status.raftIndex + 10**9}",  # far past the commit index: refused at once
              f"NotAToken.{status.raftIndex + 20}",  # just past it: waited for (the bystander writes), then refused
              "", "token.with.dots", "x" * 4000]
    req = rpc_pb2.RangeRequest(key=b"a/1").SerializeToString()
    for token in tokens:
        for path in ("/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put", "/etcdserverpb.Auth/AuthStatus"):
            code = target.send("tokens", path, req, token or "-", rpc_pb2.RangeRequest)
            assert code in ("UNAUTHENTICATED", "INVALID_ARGUMENT"), (token[:40], path, code)
    target.check("tokens")


@pytest.mark.parametrize("option", ["simple", "jwt"])
def test_expired_tokens_are_refused_everywhere(option, member_group, tmp_path):
    procs.require("etcdx")
    args = (["--auth-token-ttl", "1"] if option == "simple"
            else ["--auth-token", auth_setup.jwt_keys(tmp_path, ttl="1s")])
    m = member_group.new("etcdx", extra_args=[*args, "--bcrypt-cost", "4"])
    auth_setup.enable(m.channel)
    alice = auth_setup.token(m.channel, "alice", ALICE_PW)
    assert auth_setup.outcome(lambda: m.kv.Range(rpc_pb2.RangeRequest(key=b"a/1"), metadata=md(alice),
                                                 timeout=10)) == "ok"
    time.sleep(2.5)  # the TTL itself is what must pass (unused for longer than it)
    for _ in range(8):  # over several connections: every API worker refuses it
        ch = grpc.insecure_channel(m.endpoint, options=[("grpc.use_local_subchannel_pool", 1)])
        try:
            kv = rpc_pb2_grpc.KVStub(ch)
            assert auth_setup.outcome(lambda: kv.Range(rpc_pb2.RangeRequest(key=b"a/1", serializable=True),
                                                       metadata=md(alice), timeout=10)) == (
                "UNAUTHENTICATED: etcdserver: invalid auth token")
        finally:
            ch.close()


def test_an_undecodable_write_through_a_worker_leaves_the_worker_serving(member_group):
    """A garbage Put used to raise out of the core's IPC handler, which dropped the worker's
    connection: the worker exited, with every client connection it held."""
    procs.require("etcdx")
    m = member_group.new("etcdx")
    channels = [grpc.insecure_channel(m.endpoint, options=[("grpc.use_local_subchannel_pool", 1)]) for _ in range(8)]
    try:
        stubs = [rpc_pb2_grpc.KVStub(ch) for ch in channels]
        for kv in stubs:
            kv.Range(rpc_pb2.RangeRequest(key=b"k"), timeout=10)
        for ch in channels:
            with pytest.raises(grpc.RpcError) as caught:
                ch.unary_unary("/etcdserverpb.KV/Put")(b"\xff\xff\xff", timeout=10)
            assert caught.value.code() == grpc.StatusCode.INTERNAL
            assert caught.value.details().startswith("grpc: error unmarshalling request")
        for kv in stubs:  # the same connections still work: no worker went away
            kv.Put(rpc_pb2.PutRequest(key=b"k", value=b"v"), timeout=10)
        assert "lost the connection to the member's core" not in m.log_path.read_text(errors="replace")
    finally:
        for ch in channels:
            ch.close()
