"""etcd's statuses map to typed exceptions by exact message, then by code."""

from __future__ import annotations

import grpc
import pytest

from etcdx.client import errors

U = grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize(
    ("code", "message", "cls", "may_have_applied"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided", errors.EmptyKey, False),
        (grpc.StatusCode.OUT_OF_RANGE, "etcdserver: mvcc: required revision has been compacted", errors.Compacted, False),
        (grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found", errors.LeaseNotFound, False),
        (grpc.StatusCode.UNAUTHENTICATED, "etcdserver: invalid auth token", errors.InvalidAuthToken, False),
        (U, "etcdserver: no leader", errors.NoLeader, False),
        (U, "etcdserver: leader changed", errors.LeaderChanged, False),
        (U, "etcdserver: request timed out", errors.RequestTimedOut, True),
        (U, "etcdserver: request timed out, possibly due to previous leader failure", errors.RequestTimedOut, True),
        (U, "etcdserver: request timed out, possibly due to connection lost", errors.RequestTimedOut, True),
        (U, "etcdserver: server stopped", errors.ServerStopped, True),
        (U, "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:1: Connection refused",
         errors.ConnectionFailed, False),
        (U, "Stream removed (Socket closed)", errors.ConnectionLost, True),
        (U, "Socket closed", errors.ConnectionLost, True),
        (U, "etcdserver: something new", errors.Unavailable, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", errors.DeadlineExceeded, True),
        (grpc.StatusCode.UNIMPLEMENTED, "Method not found!", errors.Unimplemented, False),
        (grpc.StatusCode.FAILED_PRECONDITION, "etcdserver: unknown precondition", errors.FailedPrecondition, False),
    ],
)  # fmt: skip
def test_status_maps_to_its_class(code, message, cls, may_have_applied):
    error = errors.error_from_status(code, message, "127.0.0.1:2379")
    assert type(error) is cls
    assert error.code is code and error.message == message and error.endpoint == "127.0.0.1:2379"
    assert error.may_have_applied is may_have_applied
    assert isinstance(error, errors.ClientError)


def test_a_message_keeps_the_code_it_came_with():
    error = errors.error_from_status(grpc.StatusCode.UNKNOWN, "etcdserver: no leader")
    assert isinstance(error, errors.NoLeader) and error.code is grpc.StatusCode.UNKNOWN


def test_str_names_code_message_and_endpoint():
    error = errors.error_from_status(U, "etcdserver: no leader", "m1:2379")
    assert str(error) == "UNAVAILABLE: etcdserver: no leader (endpoint m1:2379)"
