"""In-memory TLS handshakes for the context tests: two SSLObjects joined by memory BIOs, no sockets.

``handshake(server_ctx, client_ctx)`` returns both ends once both finished, or
raises the first SSLError either side hit (with TLS 1.3 a server that refuses
the client's certificate fails after the client has finished).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass
class Ends:
    server: ssl.SSLObject
    client: ssl.SSLObject

    def server_cert_cn(self) -> str:
        return _cn(self.client.getpeercert())

    def client_cert_cn(self) -> str:
        return _cn(self.server.getpeercert())


def _cn(cert: dict | None) -> str:
    assert cert, "no verified peer certificate"
    return next(v for rdn in cert["subject"] for k, v in rdn if k == "commonName")


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, server_hostname: str | None = "127.0.0.1",
              rounds: int = 20, session: ssl.SSLSession | None = None) -> Ends:
    s_in, s_out, c_in, c_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False, server_hostname=server_hostname, session=session)
    done = {"server": False, "client": False}
    for _ in range(rounds):
        for name, end in (("client", client), ("server", server)):
            if done[name]:
                continue
            try:
                end.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the server's verdict on the client certificate travels after the client finished.
            _exchange(server, client, s_in, s_out, c_in, c_out)
            return Ends(server, client)
    raise AssertionError("handshake did not finish")


def _exchange(server, client, s_in, s_out, c_in, c_out) -> None:
    client.write(b"ping")
    s_in.write(c_out.read())
    assert server.read(4) == b"ping"
    server.write(b"pong")
    c_in.write(s_out.read())
    assert client.read(4) == b"pong"
