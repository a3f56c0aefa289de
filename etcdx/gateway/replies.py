"""HTTP replies shaped as etcd 3.4's Go server sends them.

Go's net/http writes the handler's headers sorted by name, then Date, then the
length or chunked encoding, then a sniffed Content-Type if the handler set
none; ``http.Error`` answers text/plain with ``nosniff`` and a newline after
the text. etcd wraps its client port in a CORS handler (``--cors``, default
``*``) that adds three headers to every answer and answers OPTIONS itself.
"""

from __future__ import annotations

from email.utils import formatdate

from etcdx.frontend.httpapi import HttpRequest, HttpResponse
from etcdx.frontend.rpc import StreamClosed

TEXT = "text/plain; charset=utf-8"


class Replier:
    """Starts responses with Go's header order and the member's CORS headers."""

    def __init__(self, cors: list[str]) -> None:
        self.cors = list(cors)

    def cors_headers(self, request: HttpRequest) -> list[tuple[str, str]]:
        if "*" in self.cors:
            origin = "*"
        else:
            origin = request.header("origin") or ""
            if origin not in self.cors:
                return []
        return [("Access-Control-Allow-Headers", "accept, content-type, authorization"),
                ("Access-Control-Allow-Methods", "POST, GET, OPTIONS, PUT, DELETE"),
                ("Access-Control-Allow-Origin", origin)]

    def start(self, request: HttpRequest, response: HttpResponse, status: int,
              headers: list[tuple[str, str]], length: int | None = None, sniffed: str | None = None,
              cors: bool = True) -> None:
        """``headers`` as the handler set them; ``length`` None means chunked (streamed)."""
        out = sorted((self.cors_headers(request) if cors else []) + headers, key=lambda kv: kv[0])
        out.append(("Date", formatdate(usegmt=True)))
        if length is not None:
            out.append(("Content-Length", str(length)))
        if sniffed is not None:
            out.append(("Content-Type", sniffed))
        response.start(status, out)

    async def whole(self, request: HttpRequest, response: HttpResponse, status: int,
                    headers: list[tuple[str, str]], body: bytes, sniffed: str | None = None,
                    cors: bool = True) -> None:
        """A response whose body is known: sent with its length."""
        self.start(request, response, status, headers, len(body), sniffed, cors)
        try:
            await response.write(body)
            await response.end()
        except StreamClosed:
            pass  # the client went away first

    async def error(self, request: HttpRequest, response: HttpResponse, status: int, text: str,
                    extra: list[tuple[str, str]] = (), cors: bool = True) -> None:
        """Go's ``http.Error``."""
        headers = [*extra, ("Content-Type", TEXT), ("X-Content-Type-Options", "nosniff")]
        await self.whole(request, response, status, headers, (text + "\n").encode(), cors=cors)

    async def method_not_allowed(self, request: HttpRequest, response: HttpResponse, allow: str) -> None:
        await self.error(request, response, 405, "Method Not Allowed", [("Allow", allow)])

    async def preflight(self, request: HttpRequest, response: HttpResponse) -> None:
        """OPTIONS: etcd's CORS handler answers it with its headers and nothing else."""
        await self.whole(request, response, 200, [], b"")
