"""etcd's TLS version and cipher suite names, translated to what OpenSSL understands.

etcd takes Go's names: ``--tls-min-version``/``--tls-max-version`` are
``TLS1.2`` or ``TLS1.3`` (empty means the default), and ``--cipher-suites``
lists Go's (IANA) suite names such as ``TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256``.
OpenSSL calls the same suites ``ECDHE-RSA-AES128-GCM-SHA256``. Pure functions
of strings; what this OpenSSL build actually offers is asked of ``ssl`` once.
"""

from __future__ import annotations

import functools
import ssl

VERSIONS: dict[str, ssl.TLSVersion] = {"TLS1.2": ssl.TLSVersion.TLSv1_2, "TLS1.3": ssl.TLSVersion.TLSv1_3}
DEFAULT_MIN_VERSION = ssl.TLSVersion.TLSv1_2

GO_SUITES: dict[str, str | None] = {
    # TLS 1.0-1.2 suites Go knows (its secure and insecure lists): Go name -> OpenSSL name.
    "TLS_RSA_WITH_RC4_128_SHA": "RC4-SHA",
    "TLS_RSA_WITH_3DES_EDE_CBC_SHA": "DES-CBC3-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_CBC_SHA256": "AES128-SHA256",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_RC4_128_SHA": "ECDHE-ECDSA-RC4-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_RC4_128_SHA": "ECDHE-RSA-RC4-SHA",
    "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA": "ECDHE-RSA-DES-CBC3-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256": "ECDHE-ECDSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256": "ECDHE-RSA-AES128-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    # TLS 1.3 suites: always on when TLS 1.3 is, in Go and in Python's ssl alike (neither
    # can configure them), so naming them changes nothing.
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
}


def parse_version(text: str) -> ssl.TLSVersion | None:
    """The TLS version etcd's name stands for; None for "" (the default). ValueError with etcd's text otherwise."""
    if text == "":
        return None
    try:
        return VERSIONS[text]
    except KeyError:
        raise ValueError(f'unexpected TLS version "{text}" (must be one of: TLS1.2, TLS1.3)') from None


def openssl_ciphers(names: tuple[str, ...] | list[str]) -> str | None:
    """The OpenSSL cipher list for Go suite ``names`` (None: nothing to restrict, keep the defaults).

    ValueError names the first suite Go does not know (etcd's message) or that this
    OpenSSL build cannot offer (RC4 and 3DES are gone from OpenSSL 3's defaults).
    """
    out: list[str] = []
    for name in names:
        if name not in GO_SUITES:
            raise ValueError(f'unexpected TLS cipher suite "{name}"')
        openssl = GO_SUITES[name]
        if openssl is None:
            continue
        if not _available(openssl):
            raise ValueError(f"TLS cipher suite {name} ({openssl}) is not offered by this OpenSSL ({ssl.OPENSSL_VERSION})")
        if openssl not in out:
            out.append(openssl)
    return ":".join(out) if out else None


@functools.cache
def _available(openssl_name: str) -> bool:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.set_ciphers(openssl_name)
    except ssl.SSLError:
        return False
    return any(c["name"] == openssl_name for c in ctx.get_ciphers())
