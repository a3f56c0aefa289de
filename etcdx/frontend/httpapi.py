"""What an HTTP handler sees: everything on the client port that is not gRPC.

HTTP/1.1 requests (JSON gateway, /health, /version, /metrics) and HTTP/2
requests whose content-type is not application/grpc (curl over TLS negotiates
h2 by ALPN) reach the same handler with the same request and response types.
The request body is read whole before the handler runs (bounded by the front
end's ``max_http_body_bytes``; a larger body is answered 413).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class HttpRequest:
    method: str
    path: str                            # with the query string
    headers: list[tuple[str, str]]       # names lower case, in order
    body: bytes
    peer: Any = None
    peer_certificate: dict | None = None
    http_version: str = "1.1"            # "1.0", "1.1" or "2"

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (lower case)."""
        for k, v in self.headers:
            if k == name:
                return v
        return default


class HttpResponse:
    """A response writer.

    `start` once with the status and headers; then `write` body chunks (each
    returns when the bytes are within flow control: back-pressure) and `end`,
    optionally with trailer fields (sent only where the framing carries them:
    HTTP/2, and chunked HTTP/1.1). Without a content-length header HTTP/1.1
    responses are chunked. A handler
    that returns without `end` gets it called for it; one that returns without
    `start` is answered 500.
    """

    def start(self, status: int, headers: list[tuple[str, str]]) -> None:
        raise NotImplementedError

    async def write(self, chunk: bytes) -> None:
        raise NotImplementedError

    async def end(self, trailers: list[tuple[str, str]] | None = None) -> None:
        raise NotImplementedError


HttpHandler = Callable[[HttpRequest, HttpResponse], Awaitable[None]]


async def not_found(request: HttpRequest, response: HttpResponse) -> None:
    """The handler used when the front end was given none."""
    body = b"404 page not found\n"
    response.start(404, [("content-type", "text/plain; charset=utf-8"), ("content-length", str(len(body)))])
    await response.write(body)
    await response.end()
