"""Maintenance programs: status, alarms, defragment, hashes, leader moves.

Calls about one member take ``endpoint`` (a member's client address as given
to the client, or any other address) and are never failed over to another
member; without one they go to whichever member the client picks. Snapshots
are streams and live in the faces.
"""

from __future__ import annotations

from etcdx.pb import rpc_pb2

from .errors import EtcdError
from .ops import Call, Program
from .types import Alarm, AlarmType, HashKV, Header, Status

_Action = rpc_pb2.AlarmRequest.AlarmAction


def status(endpoint: str | None = None, *, timeout: float | None = None) -> Program[Status]:
    """The member's status: version, db size, leader, raft index and term."""
    response = yield Call(
        "Maintenance", "Status", rpc_pb2.StatusRequest(), idempotent=True, timeout=timeout, endpoint=endpoint
    )
    return Status.from_pb(response)


def alarms(*, timeout: float | None = None) -> Program[tuple[Alarm, ...]]:
    """Every raised alarm (NOSPACE, CORRUPT) of every member."""
    request = rpc_pb2.AlarmRequest(action=_Action.GET, memberID=0, alarm=AlarmType.NONE)
    response = yield Call("Maintenance", "Alarm", request, idempotent=True, timeout=timeout)
    return tuple(Alarm(a.memberID, AlarmType(a.alarm)) for a in response.alarms)


def alarm_disarm(
    member_id: int = 0, alarm: AlarmType = AlarmType.NONE, *, timeout: float | None = None
) -> Program[tuple[Alarm, ...]]:
    """Clear alarms: by default every raised one (as ``etcdctl alarm disarm``); returns those cleared."""
    if member_id == 0 and alarm == AlarmType.NONE:
        raised = yield from alarms(timeout=timeout)
    else:
        raised = (Alarm(member_id, AlarmType(alarm)),)
    cleared: list[Alarm] = []
    for a in raised:
        request = rpc_pb2.AlarmRequest(action=_Action.DEACTIVATE, memberID=a.member_id, alarm=a.alarm)
        response = yield Call("Maintenance", "Alarm", request, idempotent=True, timeout=timeout)
        cleared.extend(Alarm(x.memberID, AlarmType(x.alarm)) for x in response.alarms)
    return tuple(cleared)


def defragment(endpoint: str | None = None, *, timeout: float | None = None) -> Program[Header]:
    """Defragment one member's backend (it stops serving meanwhile; give it a long ``timeout``)."""
    response = yield Call(
        "Maintenance", "Defragment", rpc_pb2.DefragmentRequest(), idempotent=True, timeout=timeout, endpoint=endpoint
    )
    return Header.from_pb(response.header)


def hash_kv(revision: int = 0, endpoint: str | None = None, *, timeout: float | None = None) -> Program[HashKV]:
    """The member's hash of the key space up to ``revision`` (0: latest): equal on healthy members."""
    request = rpc_pb2.HashKVRequest(revision=revision)
    response = yield Call("Maintenance", "HashKV", request, idempotent=True, timeout=timeout, endpoint=endpoint)
    return HashKV(response.hash, response.compact_revision, Header.from_pb(response.header))


def move_leader(target_id: int, *, endpoints: tuple[str, ...], timeout: float | None = None) -> Program[Header]:
    """Hand leadership to ``target_id``: the request must reach the leader, found by asking ``endpoints``."""
    leader_endpoint = None  # none answered as leader: let a member say "not leader"
    for endpoint in endpoints:
        try:
            st = yield from status(endpoint, timeout=timeout)
        except EtcdError:
            continue
        if st.is_leader:
            leader_endpoint = endpoint
            break
    request = rpc_pb2.MoveLeaderRequest(targetID=target_id)
    response = yield Call(
        "Maintenance", "MoveLeader", request, idempotent=False, timeout=timeout, endpoint=leader_endpoint
    )
    return Header.from_pb(response.header)
