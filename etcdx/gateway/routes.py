"""The gateway's URL paths: etcd's google.api.http annotations, written out.

``etcdx/pb/rpc.proto`` has the annotations stripped, so the table is kept here:
etcd 3.4's paths (``POST /v3/...``; ``/v3beta/...`` is the same route), plus
the ones 3.5 and 3.6 added for RPCs etcdx serves that 3.4's gateway lacks
(``/v3/auth/status``, ``/v3/maintenance/hashkv``: in 3.4 HashKV and Hash share
``/v3/maintenance/hash`` and Hash answers it).

The Lock and Election services (``v3lock.proto``, ``v3election.proto``) are in
the same RPC table (``etcdx.api.rpcs``), so their paths are routed alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etcdx.api.rpcs import BY_METHOD, Kind

PREFIXES = ("/v3/", "/v3beta/")


@dataclass(frozen=True)
class Route:
    method: str  # the handler object's method name, as in etcdx.api.rpcs
    kind: Kind
    request: Any  # the request message class
    response: Any


# path below /v3/ -> RPC method name (etcd 3.4's protos, with the aliases)
_RPC_PATHS: dict[str, str] = {
    "kv/range": "Range", "kv/put": "Put", "kv/deleterange": "DeleteRange", "kv/txn": "Txn",
    "kv/compaction": "Compact",
    "watch": "Watch",
    "lease/grant": "LeaseGrant", "lease/revoke": "LeaseRevoke", "kv/lease/revoke": "LeaseRevoke",
    "lease/keepalive": "LeaseKeepAlive",
    "lease/timetolive": "LeaseTimeToLive", "kv/lease/timetolive": "LeaseTimeToLive",
    "lease/leases": "LeaseLeases", "kv/lease/leases": "LeaseLeases",
    "cluster/member/add": "MemberAdd", "cluster/member/remove": "MemberRemove",
    "cluster/member/update": "MemberUpdate", "cluster/member/list": "MemberList",
    "cluster/member/promote": "MemberPromote",
    "maintenance/alarm": "Alarm", "maintenance/status": "Status", "maintenance/defragment": "Defragment",
    "maintenance/hash": "Hash", "maintenance/hashkv": "HashKV", "maintenance/snapshot": "Snapshot",
    "maintenance/transfer-leadership": "MoveLeader",
    "auth/enable": "AuthEnable", "auth/disable": "AuthDisable", "auth/status": "AuthStatus",
    "auth/authenticate": "Authenticate",
    "auth/user/add": "UserAdd", "auth/user/get": "UserGet", "auth/user/list": "UserList",
    "auth/user/delete": "UserDelete", "auth/user/changepw": "UserChangePassword",
    "auth/user/grant": "UserGrantRole", "auth/user/revoke": "UserRevokeRole",
    "auth/role/add": "RoleAdd", "auth/role/get": "RoleGet", "auth/role/list": "RoleList",
    "auth/role/delete": "RoleDelete", "auth/role/grant": "RoleGrantPermission",
    "auth/role/revoke": "RoleRevokePermission",
    "lock/lock": "Lock", "lock/unlock": "Unlock",
    "election/campaign": "Campaign", "election/proclaim": "Proclaim", "election/leader": "Leader",
    "election/observe": "Observe", "election/resign": "Resign",
}


def table(handlers: object) -> dict[str, Route]:
    """Every gateway path (``/v3/...`` and ``/v3beta/...``) ``handlers`` serves, to its route."""
    routes: dict[str, Route] = {}
    for sub, method in _RPC_PATHS.items():
        if callable(getattr(handlers, method, None)):
            rpc = BY_METHOD[method]
            routes[sub] = Route(method, rpc.kind, rpc.request, rpc.response)
    return {prefix + sub: route for prefix in PREFIXES for sub, route in routes.items()}


def known_paths() -> frozenset[str]:
    """Every gateway path etcd has, served here or not (a POST elsewhere is 404, a GET here 405)."""
    return frozenset(prefix + sub for prefix in PREFIXES for sub in _RPC_PATHS)
