"""Contexts that follow their files: certificate rotation without a restart.

A ``Reloader`` owns the current ``ssl.SSLContext`` built from a set of files
(certificate, key, CA bundle, CRL) and rebuilds it when any of them changed,
judged by ``stat`` (inode, size, modification time), which costs a few
microseconds per handshake. A rebuild that fails (a half-written file, a key
that does not match its certificate yet) keeps the previous context and logs
the reason once per state of the files, so a rotation done file by file goes
through as soon as the files agree again.

A listening socket keeps the context it was created with, so a server
context has to be swapped per connection: ``reloading_server_context`` returns
a context whose ``sni_callback`` (OpenSSL runs it on every ClientHello, with or
without SNI, before the certificate is chosen) moves the connection onto the
current one.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
from collections.abc import Callable

from .errors import TLSConfigError

log = logging.getLogger("etcdx.tls")

Signature = tuple[tuple[int, int, int, int, int] | None, ...]


def signature(paths: tuple[str, ...]) -> Signature:
    """What ``stat`` says about each of ``paths`` (None for a file that is missing)."""
    out = []
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            out.append(None)
        else:
            out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns))
    return tuple(out)


class Reloader:
    """The current context built by ``build`` from ``paths``; rebuilt when the files change.

    The first build happens in the constructor and raises TLSConfigError if it
    fails (a member must not start on files it cannot use). Safe to call from
    several threads.
    """

    def __init__(self, build: Callable[[], ssl.SSLContext], paths: tuple[str, ...], what: str) -> None:
        self._build = build
        self._paths = paths
        self._what = what
        self._lock = threading.Lock()
        sig = signature(paths)
        self._context = build()
        self._signature = sig
        self._failed_signature: Signature | None = None
        self.reloads = 0

    def current(self) -> ssl.SSLContext:
        sig = signature(self._paths)
        if sig == self._signature or sig == self._failed_signature:
            return self._context
        with self._lock:
            if sig == self._signature or sig == self._failed_signature:
                return self._context
            try:
                context = self._build()
            except TLSConfigError as err:
                self._failed_signature = sig
                log.warning("cannot reload TLS files; keeping the previous ones", extra={"fields": {
                    "what": self._what, "error": str(err)}})
                return self._context
            # The signature taken before the build: a file that changed during it is read again next time.
            self._context, self._signature, self._failed_signature = context, sig, None
            self.reloads += 1
        log.info("reloaded TLS files", extra={"fields": {"what": self._what, "files": list(self._paths)}})
        return context


def reloading_server_context(reloader: Reloader, build: Callable[[], ssl.SSLContext]) -> ssl.SSLContext:
    """A server context (from ``build``) that hands each new connection ``reloader``'s current context.

    Everything a handshake takes from the context after the ClientHello (the
    certificate and key, the CA store and CRLs that verify the client, ALPN)
    then comes from the current files; what the connection took before it
    (protocol versions, ciphers, verify mode and flags) is the same in every
    context built from one configuration.
    """
    front = build()

    def swap(ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext) -> None:
        try:
            current = reloader.current()
        except Exception:  # noqa: BLE001 - never fail a handshake over a reload bug; the front still works
            log.exception("TLS context reload failed")
            return
        if ssl_object.context is not current:
            ssl_object.context = current

    front.sni_callback = swap
    return front
