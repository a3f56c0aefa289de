"""Typed exceptions for everything the client raises.

etcd reports failures as a gRPC status whose message is one of a fixed set of
strings (``etcdserver: ...``); Go clients map them back by exact text, and so
do we: each known message has its own class, every other status falls back to
the class for its gRPC code. Every class carries the status ``code`` and the
``message`` exactly as the server (or gRPC) sent them.

``may_have_applied`` tells a caller what a failed *write* means: False when
the request certainly changed nothing (refused before it reached raft, or
never sent), True when it may have been applied (timed out, connection lost
after sending). The client never retries a non-idempotent request whose error
says True.
"""

from __future__ import annotations

import grpc


class ClientError(Exception):
    """Base of every exception raised by `etcdx.client`."""


class ClientClosed(ClientError):
    """The client (or the watch, lease or lock) was closed."""


class EtcdError(ClientError):
    """An RPC failed with gRPC status ``code`` and ``message``.

    ``endpoint`` is the member that answered (or could not be reached), when known.
    """

    may_have_applied = False

    def __init__(self, code: grpc.StatusCode, message: str, endpoint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.endpoint = endpoint

    def __str__(self) -> str:
        where = f" (endpoint {self.endpoint})" if self.endpoint else ""
        return f"{self.code.name}: {self.message}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.name}, {self.message!r})"


# -- one class per gRPC code -----------------------------------------------------------


class Cancelled(EtcdError):
    may_have_applied = True


class Unknown(EtcdError):
    may_have_applied = True


class InvalidArgument(EtcdError):
    pass


class DeadlineExceeded(EtcdError):
    """The call's time budget ran out; a write may or may not have been applied."""

    may_have_applied = True


class NotFound(EtcdError):
    pass


class AlreadyExists(EtcdError):
    pass


class PermissionDenied(EtcdError):
    pass


class ResourceExhausted(EtcdError):
    pass


class FailedPrecondition(EtcdError):
    pass


class Aborted(EtcdError):
    pass


class OutOfRange(EtcdError):
    pass


class Unimplemented(EtcdError):
    """The server does not have this RPC (etcdx before a service lands, or an older etcd)."""


class Internal(EtcdError):
    may_have_applied = True


class Unavailable(EtcdError):
    """The member could not serve the request; retried for reads, and for writes only when
    ``may_have_applied`` is False."""

    may_have_applied = True


class DataLoss(EtcdError):
    pass


class Unauthenticated(EtcdError):
    pass


# -- etcd's messages ------------------------------------------------------------------


class EmptyKey(InvalidArgument):
    """etcdserver: key is not provided"""


class ValueProvided(InvalidArgument):
    """etcdserver: value is provided (with ignore_value)"""


class LeaseProvided(InvalidArgument):
    """etcdserver: lease is provided (with ignore_lease)"""


class TooManyOps(InvalidArgument):
    """etcdserver: too many operations in txn request"""


class DuplicateKey(InvalidArgument):
    """etcdserver: duplicate key given in txn request"""


class RequestTooLarge(InvalidArgument):
    """etcdserver: request is too large"""


class AuthFailed(InvalidArgument):
    """Wrong user name or password."""


class UserEmpty(InvalidArgument):
    """etcdserver: user name is empty (auth is on and no token was sent)"""


class AuthOldRevision(InvalidArgument):
    """etcdserver: revision of auth store is old"""


class Compacted(OutOfRange):
    """The revision asked for has been compacted away.

    ``compact_revision`` is the oldest revision still available when the server
    said so (a watch does; a range does not, and leaves it None).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        endpoint: str | None = None,
        compact_revision: int | None = None,
    ) -> None:
        super().__init__(code, message, endpoint)
        self.compact_revision = compact_revision


class FutureRevision(OutOfRange):
    """etcdserver: mvcc: required revision is a future revision"""


class LeaseTTLTooLarge(OutOfRange):
    """etcdserver: too large lease TTL"""


class NoSpace(ResourceExhausted):
    """etcdserver: mvcc: database space exceeded (the NOSPACE alarm is raised)"""


class TooManyRequests(ResourceExhausted):
    """etcdserver: too many requests"""


class LeaseNotFound(NotFound):
    """etcdserver: requested lease not found"""


class MemberNotFound(NotFound):
    """etcdserver: member not found"""


class LeaseExists(FailedPrecondition):
    """etcdserver: lease already exists"""


class MemberExists(FailedPrecondition):
    """etcdserver: member ID already exist"""


class PeerURLExists(FailedPrecondition):
    """etcdserver: Peer URLs already exists"""


class NotEnoughStartedMembers(FailedPrecondition):
    """etcdserver: re-configuration failed due to not enough started members"""


class MemberNotLearner(FailedPrecondition):
    """etcdserver: can only promote a learner member"""


class LearnerNotReady(FailedPrecondition):
    """etcdserver: can only promote a learner member which is in sync with leader"""


class TooManyLearners(FailedPrecondition):
    """etcdserver: too many learner members in cluster"""


class AuthNotEnabled(FailedPrecondition):
    """etcdserver: authentication is not enabled"""


class UserExists(FailedPrecondition):
    """etcdserver: user name already exists"""


class UserNotFound(FailedPrecondition):
    """etcdserver: user name not found"""


class RoleExists(FailedPrecondition):
    """etcdserver: role name already exists"""


class RoleNotFound(FailedPrecondition):
    """etcdserver: role name not found"""


class NotLeader(FailedPrecondition):
    """etcdserver: not leader"""


class NoLeader(Unavailable):
    """etcdserver: no leader — refused before raft; safe to retry any request."""

    may_have_applied = False


class LeaderChanged(Unavailable):
    """etcdserver: leader changed — refused before applying; safe to retry."""

    may_have_applied = False


class UnhealthyCluster(Unavailable):
    """etcdserver: unhealthy cluster — a membership change refused before raft."""

    may_have_applied = False


class ServerStopped(Unavailable):
    """etcdserver: server stopped"""


class RequestTimedOut(Unavailable):
    """etcdserver: request timed out (and its variants): the proposal may still apply."""


class ConnectionFailed(Unavailable):
    """No connection to the endpoint: the request was never sent."""

    may_have_applied = False


class MemberTimedOut(Unavailable):
    """The member did not answer within the attempt's share of the time budget (it may hang).

    Raised only for idempotent calls, which are then retried on another member.
    """


class ConnectionLost(Unavailable):
    """The connection broke while the request was in flight: it may have been applied."""


class InvalidAuthToken(Unauthenticated):
    """etcdserver: invalid auth token — the client authenticates again and retries."""


class CorruptCluster(DataLoss):
    """etcdserver: corrupt cluster"""


# -- raised by the client itself ------------------------------------------------------


class WatchCanceled(ClientError):
    """The server canceled the watch for ``reason`` (not a compaction: see `Compacted`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LeaseExpired(ClientError):
    """The lease is gone: its TTL ran out before a keep-alive reached the leader, or it was revoked."""

    def __init__(self, lease_id: int) -> None:
        super().__init__(f"lease {lease_id:x} expired or was revoked")
        self.lease_id = lease_id


class LockLost(ClientError):
    """A write guarded by a lock failed: the lock key with our revision is gone (fenced)."""

    def __init__(self, key: bytes, revision: int) -> None:
        super().__init__(f"lock {key!r} held at revision {revision} is no longer held")
        self.key = key
        self.revision = revision


class ElectionNotLeader(ClientError):
    """election: not leader — proclaim or resign without holding leadership."""


class NoElectionLeader(ClientError):
    """election: no leader — nobody is campaigning."""


class TxnConflict(ClientError):
    """An STM transaction kept conflicting with other writers after every retry."""


_BY_CODE: dict[grpc.StatusCode, type[EtcdError]] = {
    grpc.StatusCode.CANCELLED: Cancelled,
    grpc.StatusCode.UNKNOWN: Unknown,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRange,
    grpc.StatusCode.UNIMPLEMENTED: Unimplemented,
    grpc.StatusCode.INTERNAL: Internal,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
}

_BY_MESSAGE: dict[str, type[EtcdError]] = {
    "etcdserver: key is not provided": EmptyKey,
    "etcdserver: value is provided": ValueProvided,
    "etcdserver: lease is provided": LeaseProvided,
    "etcdserver: too many operations in txn request": TooManyOps,
    "etcdserver: duplicate key given in txn request": DuplicateKey,
    "etcdserver: request is too large": RequestTooLarge,
    "etcdserver: authentication failed, invalid user ID or password": AuthFailed,
    "etcdserver: user name is empty": UserEmpty,
    "etcdserver: revision of auth store is old": AuthOldRevision,
    "etcdserver: mvcc: required revision has been compacted": Compacted,
    "etcdserver: mvcc: required revision is a future revision": FutureRevision,
    "etcdserver: too large lease TTL": LeaseTTLTooLarge,
    "etcdserver: mvcc: database space exceeded": NoSpace,
    "etcdserver: too many requests": TooManyRequests,
    "etcdserver: requested lease not found": LeaseNotFound,
    "etcdserver: member not found": MemberNotFound,
    "etcdserver: lease already exists": LeaseExists,
    "etcdserver: member ID already exist": MemberExists,
    "etcdserver: Peer URLs already exists": PeerURLExists,
    "etcdserver: re-configuration failed due to not enough started members": NotEnoughStartedMembers,
    "etcdserver: can only promote a learner member": MemberNotLearner,
    "etcdserver: can only promote a learner member which is in sync with leader": LearnerNotReady,
    "etcdserver: too many learner members in cluster": TooManyLearners,
    "etcdserver: authentication is not enabled": AuthNotEnabled,
    "etcdserver: user name already exists": UserExists,
    "etcdserver: user name not found": UserNotFound,
    "etcdserver: role name already exists": RoleExists,
    "etcdserver: role name not found": RoleNotFound,
    "etcdserver: not leader": NotLeader,
    "etcdserver: no leader": NoLeader,
    "etcdserver: leader changed": LeaderChanged,
    "etcdserver: unhealthy cluster": UnhealthyCluster,
    "etcdserver: server stopped": ServerStopped,
    "etcdserver: invalid auth token": InvalidAuthToken,
    "etcdserver: corrupt cluster": CorruptCluster,
}

# gRPC's own words for "no connection was available, nothing was sent".
_NOT_SENT_PREFIXES = ("failed to connect to all addresses", "DNS resolution failed", "Name resolution failure")


def error_from_status(code: grpc.StatusCode, message: str, endpoint: str | None = None) -> EtcdError:
    """The typed exception for a gRPC status (etcd's message first, then the code)."""
    message = message or ""
    cls = _BY_MESSAGE.get(message)
    if cls is None and code == grpc.StatusCode.UNAVAILABLE:
        if message.startswith("etcdserver: request timed out"):
            cls = RequestTimedOut
        elif message.startswith(_NOT_SENT_PREFIXES):
            cls = ConnectionFailed
        elif not message.startswith("etcdserver:"):
            cls = ConnectionLost
    if cls is None:
        cls = _BY_CODE.get(code, EtcdError)
    return cls(code, message, endpoint)


def error_from_rpc(e: grpc.RpcError, endpoint: str | None = None) -> EtcdError:
    """The typed exception for a failed call (sync `grpc` or `grpc.aio`)."""
    code = e.code() if callable(getattr(e, "code", None)) else grpc.StatusCode.UNKNOWN
    details = e.details() if callable(getattr(e, "details", None)) else str(e)
    return error_from_status(code or grpc.StatusCode.UNKNOWN, details or "", endpoint)
