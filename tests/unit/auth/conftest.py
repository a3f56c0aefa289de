"""Shared fixtures for the auth unit tests: a real backend, a store with simple tokens, a fake clock."""

from __future__ import annotations

import pytest

from etcdx.auth import passwords
from etcdx.auth.store import AuthStore
from etcdx.auth.tokens import SimpleTokens
from etcdx.backend import Backend
from etcdx.pb import raft_internal_pb2, rpc_pb2

FAST_COST = 4  # bcrypt's minimum: the tests check behaviour, not hashing strength


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def backend(tmp_path):
    b = Backend(str(tmp_path / "db"), map_size=64 << 20)
    yield b
    b.close()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(backend, clock) -> AuthStore:
    return AuthStore(backend, SimpleTokens(ttl=300, clock=clock))


class Applier:
    """Applies auth requests the way the server will: one write txn per entry, raft index counting up."""

    def __init__(self, backend, store: AuthStore) -> None:
        self.backend = backend
        self.store = store
        self.index = 10

    def __call__(self, **field):
        self.index += 1
        request = raft_internal_pb2.InternalRaftRequest(**field)
        with self.backend.write() as txn:
            return self.store.apply(txn, request, self.index)

    def user_add(self, name: str, password: str = "pw", no_password: bool = False):
        req = rpc_pb2.AuthUserAddRequest(name=name)
        if no_password:
            req.options.no_password = True
        else:
            req.hashedPassword = passwords.encode_for_request(passwords.hash_password(password, FAST_COST))
        return self(auth_user_add=req)

    def grant_role(self, user: str, role: str):
        return self(auth_user_grant_role=rpc_pb2.AuthUserGrantRoleRequest(user=user, role=role))

    def role_add(self, name: str):
        return self(auth_role_add=rpc_pb2.AuthRoleAddRequest(name=name))

    def grant_perm(self, role: str, kind: int, key: bytes, range_end: bytes = b""):
        from etcdx.pb import auth_pb2
        perm = auth_pb2.Permission(permType=kind, key=key, range_end=range_end)
        return self(auth_role_grant_permission=rpc_pb2.AuthRoleGrantPermissionRequest(name=role, perm=perm))

    def enable(self):
        return self(auth_enable=rpc_pb2.AuthEnableRequest())

    def disable(self):
        return self(auth_disable=rpc_pb2.AuthDisableRequest())

    def authenticate(self, name: str):
        prefix = self.store.tokens.gen_prefix()
        return self(authenticate=raft_internal_pb2.InternalAuthenticateRequest(name=name, simple_token=prefix))

    def with_root(self):
        self.user_add("root", "rootpw")
        self.grant_role("root", "root")
        self.enable()


@pytest.fixture
def apply(backend, store) -> Applier:
    return Applier(backend, store)
