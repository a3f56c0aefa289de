"""Everything HTTP on the client port: the JSON gateway, /version, /health, /livez, /readyz.

``build_http(handlers, cfg, state, extra_routes)`` gives the front end's
``HttpHandler``: ``handlers`` is the object the gRPC router serves; ``state``
answers the health probes (``etcdx.gateway.state``); ``extra_routes`` maps
exact paths to more handlers (``/metrics``: one argument in main.py and
worker.py). Every request first passes etcd's access checks
(``etcdx.gateway.access``), then gets etcd's CORS headers; OPTIONS is answered
there. Anything else is Go's ``404 page not found``, as etcd's client port
answers.

Layout: ``routes`` (the path table), ``protojson`` (proto3 JSON as etcd 3.4's
gateway writes and reads it), ``gateway`` (the RPC calls and streams),
``health`` (/version, /health, /livez, /readyz), ``state`` (what the probes
ask of the core or, from a worker, of the core over IPC), ``replies`` (Go's
header order, ``http.Error``), ``access``.
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
from etcdx.server.etcdserver import request_timeout

__all__ = ["build_http", "health_route", "CoreState", "WorkerState", "MemberState"]


def build_http(handlers: object, cfg: Config, state: MemberState,
               extra_routes: Mapping[str, HttpHandler] | None = None) -> HttpHandler:
    """The client port's HTTP handler for ``handlers`` (see the module docstring)."""
    replier = Replier(cfg.cors)
    access = AccessCheck(cfg, state, replier)
    gateway = Gateway(handlers, replier)
    exact: dict[str, HttpHandler] = dict(HealthEndpoints(state, replier, request_timeout(cfg)).routes())
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


def health_route(cfg: Config, state: MemberState) -> dict[str, HttpHandler]:
    """``/health`` alone: what etcd serves beside ``/metrics`` on ``--listen-metrics-urls``."""
    return {"/health": HealthEndpoints(state, Replier(cfg.cors), request_timeout(cfg)).health}
