"""Everything HTTP on the client port: the JSON gateway, /version, /health, /livez, /readyz.

``build_http(handlers, cfg, state, extra_routes)`` gives the front end's
``HttpHandler``. Every request first passes etcd's access checks
(``etcdx.gateway.access``: the Host whitelist on plain HTTP, CORS). ``handlers`` is the object the gRPC router serves;
``state`` answers the health probes (``etcdx.gateway.state``); ``extra_routes``
maps exact paths to more handlers (``/metrics``). Anything else is Go's
``404 page not found``, as etcd's client port answers.
"""

from __future__ import annotations

from collections.abc import Mapping

from etcdx.frontend.httpapi import HttpHandler, HttpRequest, HttpResponse
from etcdx.gateway.access import AccessCheck
from etcdx.gateway.gateway import Gateway
from etcdx.gateway.health import HealthEndpoints
from etcdx.gateway.replies import Replier
from etcdx.gateway.state import CoreState, MemberState, WorkerState
from etcdx.server.config import Config

__all__ = ["build_http", "CoreState", "WorkerState", "MemberState"]


def _request_timeout(cfg: Config) -> float:
    return 5.0 + 2 * cfg.election_timeout / 1000.0


def build_http(handlers: object, cfg: Config, state: MemberState,
               extra_routes: Mapping[str, HttpHandler] | None = None) -> HttpHandler:
    """The client port's HTTP handler for ``handlers`` (see the module docstring)."""
    replier = Replier(cfg.cors)
    access = AccessCheck(cfg, state, replier)
    gateway = Gateway(handlers, replier)
    exact: dict[str, HttpHandler] = dict(HealthEndpoints(state, replier, _request_timeout(cfg)).routes())
    exact.update(extra_routes or {})

    async def handle(request: HttpRequest, response: HttpResponse) -> None:
        path = request.path.partition("?")[0]
        if not await access.allows(request, response, path):
            return
        if request.method == "OPTIONS":
            await replier.preflight(request, response)
        elif path in exact:
            await exact[path](request, response)
        elif gateway.owns(path):
            await gateway(request, response, path)
        else:
            await replier.error(request, response, 404, "404 page not found")
    return handle
