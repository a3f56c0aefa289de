"""How the operator talks to members: a small interface, and its gRPC implementation.

The reconcile shell needs only a handful of calls (Status, MemberList,
MemberAdd/Remove/Promote, MoveLeader, Alarm, Snapshot, HashKV), always to one
member named by its client URL, always with a deadline. ``MemberAPI`` is that
set; ``GrpcMemberAPI`` implements it with etcd's generated stubs (so it works
against etcdx and etcd alike), and tests put a fake cluster behind the same
interface. When ``etcdx.client`` lands it can implement ``MemberAPI`` instead.
"""

from __future__ import annotations

import threading
from typing import IO, Protocol
from urllib.parse import urlsplit

import grpc

from etcdx.operator.model import Health, RaftMember
from etcdx.pb import rpc_pb2, rpc_pb2_grpc

CALL_TIMEOUT = 2.0
SNAPSHOT_TIMEOUT = 300.0

CHANNEL_OPTIONS = [
    # A member that was down is dialled again within half a second of coming back.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.max_receive_message_length", 64 << 20),
    ("grpc.enable_retries", 0),
]


class MemberAPIError(RuntimeError):
    """A member refused or did not answer a call; ``code`` is the gRPC status code's name."""

    def __init__(self, url: str, call: str, code: str, message: str) -> None:
        super().__init__(f"{call} at {url}: {code}: {message}")
        self.url, self.call, self.code, self.message = url, call, code, message


class MemberAPI(Protocol):
    def status(self, url: str, timeout: float = CALL_TIMEOUT) -> Health: ...

    def member_list(self, url: str) -> tuple[RaftMember, ...]: ...

    def member_add(self, url: str, peer_urls: list[str], learner: bool) -> tuple[int, tuple[RaftMember, ...]]:
        """The new member's id and the membership after the add."""

    def member_remove(self, url: str, member_id: int) -> None: ...

    def member_promote(self, url: str, member_id: int) -> None: ...

    def move_leader(self, leader_url: str, to_id: int) -> None: ...

    def alarms(self, url: str) -> tuple[tuple[int, str], ...]:
        """(member id, alarm name) for every raised alarm."""

    def snapshot(self, url: str, out: IO[bytes]) -> None:
        """Write the member's snapshot stream (database and SHA-256 trailer) to ``out``."""

    def hash_kv(self, url: str, revision: int = 0) -> tuple[int, int]:
        """(hash, hash revision) of the key space at ``revision`` (0: the current one)."""


class ClientTLS:
    """The CA to trust and the certificate the operator presents on client ports."""

    def __init__(self, ca_file: str, cert_file: str, key_file: str) -> None:
        with open(ca_file, "rb") as f:
            ca = f.read()
        with open(cert_file, "rb") as f:
            cert = f.read()
        with open(key_file, "rb") as f:
            key = f.read()
        self.credentials = grpc.ssl_channel_credentials(ca, key, cert)

    @classmethod
    def from_pem(cls, ca: bytes, cert: bytes, key: bytes) -> ClientTLS:
        tls = cls.__new__(cls)
        tls.credentials = grpc.ssl_channel_credentials(ca, key, cert)
        return tls


def _raft_member(m: rpc_pb2.Member) -> RaftMember:
    return RaftMember(m.ID, m.name, tuple(m.peerURLs), tuple(m.clientURLs), m.isLearner)


class GrpcMemberAPI:
    """``MemberAPI`` over gRPC, one cached channel per member address."""

    def __init__(self, tls: ClientTLS | None = None) -> None:
        self._tls = tls
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()

    def _channel(self, url: str) -> grpc.Channel:
        parts = urlsplit(url)
        target = parts.netloc or url
        with self._lock:
            ch = self._channels.get(target)
            if ch is None:
                if parts.scheme == "https":
                    if self._tls is None:
                        raise MemberAPIError(url, "dial", "FAILED_PRECONDITION", "https member but no client TLS")
                    ch = grpc.secure_channel(target, self._tls.credentials, options=CHANNEL_OPTIONS)
                else:
                    ch = grpc.insecure_channel(target, options=CHANNEL_OPTIONS)
                self._channels[target] = ch
            return ch

    def close(self) -> None:
        with self._lock:
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()

    def _call(self, url: str, name: str, fn):
        try:
            return fn(self._channel(url))
        except grpc.RpcError as err:
            raise MemberAPIError(url, name, err.code().name, err.details() or "") from None

    def status(self, url: str, timeout: float = CALL_TIMEOUT) -> Health:
        r = self._call(url, "Status", lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).Status(
            rpc_pb2.StatusRequest(), timeout=timeout))
        return Health(r.header.member_id, r.leader, r.raftIndex, r.raftAppliedIndex, r.header.revision,
                      r.isLearner, tuple(r.errors))

    def member_list(self, url: str) -> tuple[RaftMember, ...]:
        r = self._call(url, "MemberList", lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberList(
            rpc_pb2.MemberListRequest(linearizable=True), timeout=CALL_TIMEOUT))
        return tuple(_raft_member(m) for m in r.members)

    def member_add(self, url: str, peer_urls: list[str], learner: bool) -> tuple[int, tuple[RaftMember, ...]]:
        r = self._call(url, "MemberAdd", lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberAdd(
            rpc_pb2.MemberAddRequest(peerURLs=peer_urls, isLearner=learner), timeout=CALL_TIMEOUT * 3))
        return r.member.ID, tuple(_raft_member(m) for m in r.members)

    def member_remove(self, url: str, member_id: int) -> None:
        self._call(url, "MemberRemove", lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberRemove(
            rpc_pb2.MemberRemoveRequest(ID=member_id), timeout=CALL_TIMEOUT * 3))

    def member_promote(self, url: str, member_id: int) -> None:
        self._call(url, "MemberPromote", lambda ch: rpc_pb2_grpc.ClusterStub(ch).MemberPromote(
            rpc_pb2.MemberPromoteRequest(ID=member_id), timeout=CALL_TIMEOUT * 3))

    def move_leader(self, leader_url: str, to_id: int) -> None:
        self._call(leader_url, "MoveLeader", lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).MoveLeader(
            rpc_pb2.MoveLeaderRequest(targetID=to_id), timeout=CALL_TIMEOUT * 3))

    def alarms(self, url: str) -> tuple[tuple[int, str], ...]:
        r = self._call(url, "Alarm", lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).Alarm(
            rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=CALL_TIMEOUT))
        return tuple((a.memberID, rpc_pb2.AlarmType.Name(a.alarm)) for a in r.alarms)

    def snapshot(self, url: str, out: IO[bytes]) -> None:
        def stream(ch: grpc.Channel) -> None:
            for chunk in rpc_pb2_grpc.MaintenanceStub(ch).Snapshot(rpc_pb2.SnapshotRequest(),
                                                                   timeout=SNAPSHOT_TIMEOUT):
                out.write(chunk.blob)
        self._call(url, "Snapshot", stream)

    def hash_kv(self, url: str, revision: int = 0) -> tuple[int, int]:
        r = self._call(url, "HashKV", lambda ch: rpc_pb2_grpc.MaintenanceStub(ch).HashKV(
            rpc_pb2.HashKVRequest(revision=revision), timeout=CALL_TIMEOUT * 5))
        return r.hash, r.header.revision
