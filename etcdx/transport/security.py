"""TLS on peer connections: which context a listener and a dialer use, and what a listener refuses.

The scheme of a peer URL decides: ``https`` is TLS, ``http`` is plaintext,
never the other way round. A listener on an ``https`` URL needs a certificate
(``--peer-cert-file``/``--peer-key-file`` or ``--peer-auto-tls``); a dialer
to an ``https`` URL verifies the peer's certificate and host name against
``--peer-trusted-ca-file`` (or the system's CAs without one; not at all with
auto TLS) and presents its own certificate as its client certificate. A
listener that verifies client certificates then checks the allowed CN or host
name; a refused dialer is told why on the connection (``ERR ...``).
"""

from __future__ import annotations

import ssl
from collections.abc import Callable

from etcdx.tls import TLSConfigError, TLSInfo

from .errors import TransportError
from .wire import Address


class PeerTLS:
    """The peer side's TLS for one Transport (``info`` None: no TLS settings were given)."""

    def __init__(self, info: TLSInfo | None) -> None:
        self.info = info
        self._default_client: ssl.SSLContext | None = None

    def listen_context(self, url: str, on_handshake_failure: Callable[[ssl.SSLError], None]) -> ssl.SSLContext:
        """The server context for an ``https`` listen URL; ValueError if there is no certificate to serve."""
        if self.info is None or not self.info.can_serve:
            raise ValueError(f"peer URL {url!r}: https needs --peer-cert-file and --peer-key-file "
                             "(or --peer-auto-tls); KeyFile and CertFile are not presented")
        try:
            return self.info.server_context(on_handshake_failure=on_handshake_failure)
        except TLSConfigError as err:
            raise ValueError(f"peer URL {url!r}: {err}") from None

    def dial_context(self, address: Address) -> ssl.SSLContext | None:
        """The client context to dial ``address`` with; None for plaintext (``http``)."""
        if not address.tls:
            return None
        info = self.info
        if info is not None and (info.can_serve or info.trusted_ca_file):
            try:
                return info.client_context()
            except TLSConfigError as err:  # only before the first successful build; later ones keep the last
                raise TransportError(str(err)) from None
        if self._default_client is None:
            self._default_client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            self._default_client.minimum_version = ssl.TLSVersion.TLSv1_2
        return self._default_client

    def refusal(self, ssl_object: ssl.SSLObject | None) -> str | None:
        """Why an accepted TLS connection must be refused (allowed CN/hostname, a resumed session), or None."""
        return None if self.info is None else self.info.check_connection(ssl_object)
