"""etcd's checks on every HTTP request to the client port, before any handler.

- Plain HTTP (a DNS-rebinding defence, CVE-2018-5702): the Host header's
  name must be in ``--host-whitelist`` (default ``*``), else 421 with etcd's
  explanation.
- HTTPS with ``--client-cert-auth`` while auth is on: a gateway request from a
  client whose certificate has a common name is refused (400), because etcd's
  gateway would not act as that user.

Whether a request came over TLS is known from its verified client certificate
or, without one, from the member's client URLs all being https (a member
serving both schemes checks the whitelist on TLS requests without a
certificate too).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from etcdx.api.context import common_name
from etcdx.frontend.httpapi import HttpRequest, HttpResponse
from etcdx.gateway.replies import Replier
from etcdx.gateway.routes import PREFIXES
from etcdx.gateway.state import MemberState
from etcdx.server.config import Config

CN_REFUSED = "CommonName of client sending a request against gateway will be ignored and not used as expected"


def _misdirected(host: str) -> str:
    return (
        "\netcd received your request, but the Host header was unrecognized.\n\n"
        "To fix this, choose one of the following options:\n"
        "- Enable TLS, then any HTTPS request will be allowed.\n"
        "- Add the hostname you want to use to the whitelist in settings.\n"
        f'  - e.g. etcd --host-whitelist "{host}"\n\n'
        'This requirement has been added to help prevent "DNS Rebinding" attacks (CVE-2018-5702).\n')


def hostname(host_header: str) -> str:
    """The name in a Host header, without its port (Go's net.SplitHostPort, else the whole)."""
    if host_header.startswith("["):
        end = host_header.find("]")
        if end > 0 and host_header[end + 1:end + 2] == ":":
            return host_header[1:end]
        return host_header
    name, sep, port = host_header.rpartition(":")
    return name if sep and ":" not in name else host_header


class AccessCheck:
    def __init__(self, cfg: Config, state: MemberState, replier: Replier) -> None:
        self.whitelist = frozenset(cfg.host_whitelist)
        self.client_cert_auth = cfg.client_cert_auth
        self.all_tls = all(urlsplit(u).scheme in ("https", "unixs") for u in cfg.listen_client_urls)
        self.state = state
        self.reply = replier

    async def allows(self, request: HttpRequest, response: HttpResponse, path: str) -> bool:
        """True to go on; else the refusal has been sent."""
        if request.peer_certificate is None and not self.all_tls:
            if self.whitelist and "*" not in self.whitelist:
                host = hostname(request.header("host") or request.header(":authority") or "")
                if host not in self.whitelist:
                    await self.reply.error(request, response, 421, _misdirected(host), cors=False)
                    return False
        elif (self.client_cert_auth and path.startswith(PREFIXES) and common_name(request.peer_certificate)
              and self.state.auth_enabled()):
            await self.reply.error(request, response, 400, CN_REFUSED, cors=False)
            return False
        return True

