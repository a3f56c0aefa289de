"""Users, roles and tokens for tests that run with auth on.

``enable(channel)`` makes ``root`` (root role) and ``alice`` (role ``rw``:
read and write on the prefix ``a/``), then turns auth on; ``token`` logs in;
``md`` is the gRPC metadata that carries a token. ``jwt_keys`` writes an RSA
key pair and returns etcd's ``--auth-token`` value for it.
"""

from __future__ import annotations

import pathlib

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from etcdx.pb import auth_pb2, rpc_pb2, rpc_pb2_grpc

TIMEOUT = 10
ROOT_PW = "rootpw"
ALICE_PW = "alicepw"


def prefix(p: bytes) -> auth_pb2.Permission:
    return auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=p, range_end=p[:-1] + bytes([p[-1] + 1]))


def enable(channel: grpc.Channel) -> None:
    auth = rpc_pb2_grpc.AuthStub(channel)
    auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password=ROOT_PW), timeout=TIMEOUT)
    auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=TIMEOUT)
    auth.UserAdd(rpc_pb2.AuthUserAddRequest(name="alice", password=ALICE_PW), timeout=TIMEOUT)
    auth.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="rw"), timeout=TIMEOUT)
    auth.RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(name="rw", perm=prefix(b"a/")), timeout=TIMEOUT)
    auth.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="alice", role="rw"), timeout=TIMEOUT)
    auth.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=TIMEOUT)


def token(channel: grpc.Channel, name: str, password: str) -> str:
    return rpc_pb2_grpc.AuthStub(channel).Authenticate(
        rpc_pb2.AuthenticateRequest(name=name, password=password), timeout=TIMEOUT).token


def md(tok: str) -> list[tuple[str, str]]:
    return [("token", tok)]


def outcome(fn) -> str:
    """"ok", or the gRPC code and message of the refusal."""
    try:
        fn()
    except grpc.RpcError as err:
        return f"{err.code().name}: {err.details()}"
    return "ok"


def jwt_keys(directory: pathlib.Path, ttl: str = "10m") -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv, pub = directory / "jwt.key", directory / "jwt.pub"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl={ttl}"
