"""etcd's client-visible errors: a gRPC status code and an exact message.

Clients (the Go clientv3 above all) map errors back by their text, so the
messages are etcd's, byte for byte. The server layer raises ``EtcdError``
without knowing gRPC; ``etcdx.api`` turns the code name into a gRPC status.
"""

from __future__ import annotations


class EtcdError(Exception):
    """An error a client sees: ``code`` is a gRPC status code name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"EtcdError({self.code}, {self.message!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EtcdError) and (self.code, self.message) == (other.code, other.message)

    def __hash__(self) -> int:
        return hash((self.code, self.message))


def _e(code: str, message: str) -> EtcdError:
    return EtcdError(code, "etcdserver: " + message)


# InvalidArgument
EMPTY_KEY = _e("INVALID_ARGUMENT", "key is not provided")
KEY_NOT_FOUND = _e("INVALID_ARGUMENT", "key not found")
VALUE_PROVIDED = _e("INVALID_ARGUMENT", "value is provided")
LEASE_PROVIDED = _e("INVALID_ARGUMENT", "lease is provided")
TOO_MANY_OPS = _e("INVALID_ARGUMENT", "too many operations in txn request")
DUPLICATE_KEY = _e("INVALID_ARGUMENT", "duplicate key given in txn request")
INVALID_SORT_OPTION = _e("INVALID_ARGUMENT", "invalid sort option")
MEMBER_BAD_URLS = _e("INVALID_ARGUMENT", "given member URLs are invalid")
REQUEST_TOO_LARGE = _e("INVALID_ARGUMENT", "request is too large")

# OutOfRange
COMPACTED = _e("OUT_OF_RANGE", "mvcc: required revision has been compacted")
FUTURE_REV = _e("OUT_OF_RANGE", "mvcc: required revision is a future revision")
LEASE_TTL_TOO_LARGE = _e("OUT_OF_RANGE", "too large lease TTL")

# ResourceExhausted
NO_SPACE = _e("RESOURCE_EXHAUSTED", "mvcc: database space exceeded")
TOO_MANY_REQUESTS = _e("RESOURCE_EXHAUSTED", "too many requests")

# NotFound
LEASE_NOT_FOUND = _e("NOT_FOUND", "requested lease not found")
MEMBER_NOT_FOUND = _e("NOT_FOUND", "member not found")

# FailedPrecondition
LEASE_EXISTS = _e("FAILED_PRECONDITION", "lease already exists")
MEMBER_EXISTS = _e("FAILED_PRECONDITION", "member ID already exist")
PEER_URL_EXISTS = _e("FAILED_PRECONDITION", "Peer URLs already exists")
NOT_LEADER = _e("FAILED_PRECONDITION", "not leader")
BAD_LEADER_TRANSFEREE = _e("FAILED_PRECONDITION", "bad leader transferee")
NOT_CAPABLE = _e("FAILED_PRECONDITION", "not capable")
NOT_ENOUGH_STARTED_MEMBERS = _e("FAILED_PRECONDITION", "re-configuration failed due to not enough started members")
MEMBER_NOT_LEARNER = _e("FAILED_PRECONDITION", "can only promote a learner member")
LEARNER_NOT_READY = _e("FAILED_PRECONDITION", "can only promote a learner member which is in sync with leader")
TOO_MANY_LEARNERS = _e("FAILED_PRECONDITION", "too many learner members in cluster")
CLUSTER_ID_MISMATCH = _e("FAILED_PRECONDITION", "cluster ID mismatch")
LEARNER_NOT_SUPPORTED = _e("FAILED_PRECONDITION", "rpc not supported for learner")

# Unavailable
NO_LEADER = _e("UNAVAILABLE", "no leader")
LEADER_CHANGED = _e("UNAVAILABLE", "leader changed")
STOPPED = _e("UNAVAILABLE", "server stopped")
TIMEOUT = _e("UNAVAILABLE", "request timed out")
TIMEOUT_DUE_TO_LEADER_FAIL = _e("UNAVAILABLE", "request timed out, possibly due to previous leader failure")
TIMEOUT_LEADER_TRANSFER = _e("UNAVAILABLE", "request timed out, leader transfer took too long")
UNHEALTHY_CLUSTER = _e("UNAVAILABLE", "unhealthy cluster")

# DataLoss
CORRUPT = _e("DATA_LOSS", "corrupt cluster")

# Canceled
WATCH_CANCELED = _e("CANCELLED", "watch canceled")
REQUEST_CANCELED = _e("CANCELLED", "request canceled")
