"""``/version``, ``/health``, ``/livez`` and ``/readyz`` on the client port.

- ``/version``: etcd 3.4's shape, ``{"etcdserver":..,"etcdcluster":..}``, with
  etcdx's versions (it speaks etcd 3.5's API).
- ``/health``: healthy is etcd 3.4's ``{"health":"true"}``; unhealthy is 503
  with etcd 3.5's reason (``{"health":"false","reason":"RAFT NO LEADER"}``),
  checked as 3.5 does: active alarms not named by ``?exclude=``, then the
  leader (skipped with ``?serializable=true``), then a read (linearizable
  unless ``?serializable=true``).
- ``/livez`` and ``/readyz`` (etcd 3.5; 3.4 has none): "ok" or 503 with
  ``[+]check ok`` / ``[-]check failed: why`` lines; ``?verbose`` lists the
  checks on success, ``?exclude=check`` skips one, ``/readyz/<check>`` runs one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

from etcdx.frontend.httpapi import HttpRequest, HttpResponse
from etcdx.gateway.replies import TEXT, Replier
from etcdx.gateway.state import MemberState
from etcdx.server.errors import EtcdError
from etcdx.server.maintenance import CLUSTER_VERSION, SERVER_VERSION

VERSION_BODY = json.dumps({"etcdserver": SERVER_VERSION, "etcdcluster": CLUSTER_VERSION},
                          separators=(",", ":")).encode()


def _query(path: str) -> dict[str, list[str]]:
    return parse_qs(path.partition("?")[2], keep_blank_values=True)


class HealthEndpoints:
    """The member's health as etcd's probes read it."""

    def __init__(self, state: MemberState, replier: Replier, read_timeout: float) -> None:
        self.state = state
        self.reply = replier
        self.read_timeout = read_timeout
        self._livez: dict[str, Callable[[], Awaitable[None]]] = {"serializable_read": self._serializable_read}
        self._readyz: dict[str, Callable[[], Awaitable[None]]] = {
            "data_corruption": self._no_corruption, "serializable_read": self._serializable_read,
            "linearizable_read": self._linearizable_read}

    def routes(self) -> dict[str, Callable[[HttpRequest, HttpResponse], Awaitable[None]]]:
        """Exact paths (without the query) to their handlers."""
        out = {"/version": self.version, "/health": self.health,
               "/livez": self._root(self._livez), "/readyz": self._root(self._readyz)}
        for root, checks in (("/livez", self._livez), ("/readyz", self._readyz)):
            for name in checks:
                out[f"{root}/{name}"] = self._one(checks, name)
        return out

    async def version(self, request: HttpRequest, response: HttpResponse) -> None:
        if request.method != "GET":
            await self.reply.method_not_allowed(request, response, "GET")
            return
        await self.reply.whole(request, response, 200, [("Content-Type", "application/json")], VERSION_BODY)

    async def health(self, request: HttpRequest, response: HttpResponse) -> None:
        if request.method != "GET":
            await self.reply.method_not_allowed(request, response, "GET")
            return
        q = _query(request.path)
        reason = await self.unhealthy_reason(set(q.get("exclude", ())), q.get("serializable", [""])[0] == "true")
        if reason is None:
            await self.reply.whole(request, response, 200, [], b'{"health":"true"}', sniffed=TEXT)
        else:
            body = json.dumps({"health": "false", "reason": reason}, separators=(",", ":"))
            await self.reply.error(request, response, 503, body)

    async def unhealthy_reason(self, excluded: set[str], serializable: bool) -> str | None:
        """Why the member is unhealthy, in etcd 3.5's words; None if it is healthy."""
        state = await self.state.health_state()
        for alarm in state.alarms:
            if alarm not in excluded:
                return f"ALARM {alarm}" if alarm in ("NOSPACE", "CORRUPT") else "ALARM UNKNOWN"
        if not serializable and not state.leader:
            return "RAFT NO LEADER"
        try:
            await self._read(serializable)
        except EtcdError as err:
            return f"RANGE ERROR:{err.message}"
        return None

    async def _read(self, serializable: bool) -> None:
        try:
            await asyncio.wait_for(self.state.read_check(serializable), self.read_timeout)
        except asyncio.TimeoutError:
            raise EtcdError("DEADLINE_EXCEEDED", "context deadline exceeded") from None

    async def _serializable_read(self) -> None:
        await self._read(True)

    async def _linearizable_read(self) -> None:
        await self._read(False)

    async def _no_corruption(self) -> None:
        if "CORRUPT" in (await self.state.health_state()).alarms:
            raise EtcdError("UNKNOWN", "alarm activated: CORRUPT")

    def _root(self, checks: dict[str, Callable[[], Awaitable[None]]]) -> Callable:
        async def handle(request: HttpRequest, response: HttpResponse) -> None:
            excluded = set(_query(request.path).get("exclude", ()))
            await self._run(request, response, checks, [n for n in checks if n not in excluded])
        return handle

    def _one(self, checks: dict[str, Callable[[], Awaitable[None]]], name: str) -> Callable:
        async def handle(request: HttpRequest, response: HttpResponse) -> None:
            await self._run(request, response, checks, [name])
        return handle

    async def _run(self, request: HttpRequest, response: HttpResponse,
                   checks: dict[str, Callable[[], Awaitable[None]]], names: list[str]) -> None:
        if request.method != "GET":
            await self.reply.method_not_allowed(request, response, "GET")
            return
        lines, failed = [], False
        for name in names:
            try:
                await checks[name]()
            except EtcdError as err:
                failed = True
                lines.append(f"[-]{name} failed: {err.message}\n")
            else:
                lines.append(f"[+]{name} ok\n")
        report = "".join(lines)
        if failed:
            await self.reply.error(request, response, 503, report)
            return
        body = (report if "verbose" in _query(request.path) else "") + "ok\n"
        await self.reply.whole(request, response, 200, [("Content-Type", TEXT), ("X-Content-Type-Options", "nosniff")],
                               body.encode())
