"""Building ``ssl.SSLContext``s from resolved TLS settings and files.

Every file is read and checked here first, so a bad one is reported by the
flag that named it ("--peer-key-file /x does not match --peer-cert-file /y")
rather than by OpenSSL's "PEM lib". Messages carry paths and OpenSSL's reason
codes, never file contents: a private key cannot end up in a log or an error.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import TLSConfigError
from .suites import DEFAULT_MIN_VERSION

if TYPE_CHECKING:  # cryptography costs ~10 MiB of RSS: imported where a TLS setting needs it
    from cryptography import x509


@dataclass(frozen=True)
class Settings:
    """Everything a context is built from, with files resolved and flags named for messages."""

    cert_file: str
    key_file: str
    trusted_ca_file: str
    crl_file: str
    verify_peer: bool  # server: require and verify client certificates; client: verify the server's
    min_version: ssl.TLSVersion | None
    max_version: ssl.TLSVersion | None
    ciphers: str | None
    alpn: tuple[str, ...]
    flags: dict[str, str]  # field name -> "--flag" for messages


def server_context(s: Settings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _common(ctx, s)
    _load_identity(ctx, s)
    if s.verify_peer:
        ctx.verify_mode = ssl.CERT_REQUIRED
        _load_trust(ctx, s)
        # A resumed session skips certificate verification: no tickets, so a client whose
        # certificate was revoked or whose CA was dropped since cannot come back on an old session.
        ctx.options |= ssl.OP_NO_TICKET
        ctx.num_tickets = 0
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_context(s: Settings) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _common(ctx, s)
    if s.cert_file:
        _load_identity(ctx, s)
    if not s.verify_peer:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif s.trusted_ca_file:
        _load_trust(ctx, s)
    else:
        ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        _load_crl(ctx, s)
    return ctx


def _common(ctx: ssl.SSLContext, s: Settings) -> None:
    ctx.minimum_version = s.min_version or DEFAULT_MIN_VERSION
    if s.max_version is not None:
        ctx.maximum_version = s.max_version
    if s.ciphers is not None:
        ctx.set_ciphers(s.ciphers)  # checked against this OpenSSL when the flag was validated
    if s.alpn:
        ctx.set_alpn_protocols(list(s.alpn))
    ctx.options |= ssl.OP_NO_RENEGOTIATION


def _read(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as err:
        raise TLSConfigError(f"{flag} {path}: {err.strerror or err}") from None


def _load_identity(ctx: ssl.SSLContext, s: Settings) -> None:
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    cert_flag, key_flag = s.flags["cert_file"], s.flags["key_file"]
    raw = _read(s.cert_file, cert_flag)
    try:
        certs = x509.load_pem_x509_certificates(raw)
    except ValueError:
        certs = []
    if not certs:
        raise TLSConfigError(f"{cert_flag} {s.cert_file}: no PEM certificate in it")
    raw = _read(s.key_file, key_flag)
    try:
        serialization.load_pem_private_key(raw, password=None)
    except TypeError:
        raise TLSConfigError(f"{key_flag} {s.key_file}: the private key is encrypted; "
                             "a key without a passphrase is needed (as in etcd)") from None
    except (ValueError, UnsupportedAlgorithm):
        raise TLSConfigError(f"{key_flag} {s.key_file}: no usable PEM private key in it") from None
    try:
        # A password is passed so that OpenSSL never prompts on the terminal for one.
        ctx.load_cert_chain(s.cert_file, s.key_file, password="")
    except ssl.SSLError as err:
        if err.reason == "KEY_VALUES_MISMATCH":
            raise TLSConfigError(f"{key_flag} {s.key_file} does not match {cert_flag} {s.cert_file} "
                                 "(private key does not match public key)") from None
        raise TLSConfigError(f"cannot use {cert_flag} {s.cert_file} with {key_flag} {s.key_file}: "
                             f"{err.reason or err.strerror}") from None
    except OSError as err:  # the files changed under us
        raise TLSConfigError(f"cannot read {cert_flag} {s.cert_file} or {key_flag} {s.key_file}: {err.strerror}") from None


def _load_trust(ctx: ssl.SSLContext, s: Settings) -> None:
    from cryptography import x509

    flag = s.flags["trusted_ca_file"]
    raw = _read(s.trusted_ca_file, flag)
    try:
        cas = x509.load_pem_x509_certificates(raw)
    except ValueError:
        cas = []
    if not cas:
        raise TLSConfigError(f"{flag} {s.trusted_ca_file}: no PEM certificate in it")
    try:
        ctx.load_verify_locations(cafile=s.trusted_ca_file)
    except (ssl.SSLError, OSError) as err:
        raise TLSConfigError(f"cannot use {flag} {s.trusted_ca_file}: {err.reason if isinstance(err, ssl.SSLError) else err.strerror}") from None
    _load_crl(ctx, s)


def _load_crl(ctx: ssl.SSLContext, s: Settings) -> None:
    """Check certificates against the CRL (PEM or DER); it must be issued by the CA that issued them."""
    from cryptography.hazmat.primitives import serialization

    if not s.crl_file:
        return
    flag = s.flags["crl_file"]
    raw = _read(s.crl_file, flag)
    crls = _parse_crls(raw)
    if not crls:
        raise TLSConfigError(f"{flag} {s.crl_file}: no certificate revocation list (PEM or DER) in it")
    # OpenSSL reads CRLs only from PEM files: hand it a PEM copy.
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in crls)
    with tempfile.TemporaryDirectory(prefix="etcdx-crl-") as tmp:
        path = os.path.join(tmp, "crl.pem")
        with open(path, "wb") as f:
            f.write(pem)
        try:
            ctx.load_verify_locations(cafile=path)
        except ssl.SSLError as err:
            raise TLSConfigError(f"cannot use {flag} {s.crl_file}: {err.reason or err.strerror}") from None
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def _parse_crls(raw: bytes) -> Sequence[x509.CertificateRevocationList]:
    from cryptography import x509

    if b"-----BEGIN X509 CRL-----" in raw:
        out = []
        marker = b"-----END X509 CRL-----"
        for block in raw.split(marker)[:-1]:
            start = block.find(b"-----BEGIN X509 CRL-----")
            try:
                out.append(x509.load_pem_x509_crl(block[start:] + marker + b"\n"))
            except ValueError:
                return []
        return out
    try:
        return [x509.load_der_x509_crl(raw)]
    except ValueError:
        return []
