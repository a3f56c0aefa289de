"""Which member a call goes to: endpoint parsing, round-robin balancing and failover.

Pure: the pool is told the time and which endpoints failed, and answers with
the endpoint to use next. Calls are spread round-robin over the endpoints not
known to be down; an endpoint that failed is skipped for a cool-down that
doubles with each consecutive failure (up to `MAX_COOLDOWN`), and is used again
as soon as a call through it succeeds. When every endpoint is down, the one
whose cool-down ends first is tried anyway.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

FIRST_COOLDOWN = 0.5
MAX_COOLDOWN = 5.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """``address`` is what gRPC dials (host:port or unix:path); ``secure`` means TLS."""

    address: str
    secure: bool


def parse_endpoint(endpoint: str) -> Endpoint:
    """``host:port``, ``http://host:port``, ``https://host:port`` (TLS) or ``unix:path``/``unixs:path``."""
    text = endpoint.strip()
    if not text:
        raise ValueError("empty endpoint")
    if text.startswith(("unix:", "unixs:")):
        scheme, _, rest = text.partition(":")
        return Endpoint(f"unix:{rest.removeprefix('//')}", scheme == "unixs")
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"endpoint {endpoint!r}: expected http(s)://host:port")
        return Endpoint(parts.netloc, parts.scheme == "https")
    return Endpoint(text, False)


class EndpointPool:
    """Round-robin over healthy endpoints; see the module docstring."""

    def __init__(self, endpoints: Iterable[str], rand: random.Random | None = None) -> None:
        self.endpoints: tuple[str, ...] = tuple(dict.fromkeys(endpoints))
        if not self.endpoints:
            raise ValueError("no endpoints given")
        rand = rand or random.Random()
        # Start at a random place so many clients with the same list spread out.
        self._next = rand.randrange(len(self.endpoints))
        self._down_until: dict[str, float] = {}
        self._failures: dict[str, int] = {}

    def pick(self, now: float, avoid: Sequence[str] = ()) -> str:
        """The endpoint for the next call; ``avoid`` ones only when nothing else is up."""
        n = len(self.endpoints)
        for preferred in (True, False):
            for i in range(n):
                ep = self.endpoints[(self._next + i) % n]
                if self._down_until.get(ep, 0.0) <= now and (not preferred or ep not in avoid):
                    self._next = (self._next + i + 1) % n
                    return ep
        return min(self.endpoints, key=lambda ep: self._down_until.get(ep, 0.0))

    def failed(self, endpoint: str, now: float) -> None:
        """A call could not be served by ``endpoint``: skip it for a while."""
        if endpoint not in self.endpoints:
            return
        count = self._failures.get(endpoint, 0) + 1
        self._failures[endpoint] = count
        self._down_until[endpoint] = now + min(MAX_COOLDOWN, FIRST_COOLDOWN * 2 ** (count - 1))

    def succeeded(self, endpoint: str) -> None:
        self._down_until.pop(endpoint, None)
        self._failures.pop(endpoint, None)

    def is_down(self, endpoint: str, now: float) -> bool:
        return self._down_until.get(endpoint, 0.0) > now
