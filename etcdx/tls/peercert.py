"""Checks on a verified peer certificate that the handshake cannot make: allowed CN, allowed hostname.

``--peer-cert-allowed-cn`` admits only certificates whose subject common name
is exactly that name; ``--peer-cert-allowed-hostname`` (and
``--client-cert-allowed-hostname``) only certificates valid for that host, by
the subject alternative names, as a TLS client checks a server's: DNS names
(case-insensitive, a ``*`` matching one whole left-most label) for a name, IP
addresses for an address. The common name is not a host name here, as in Go.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # cryptography costs ~10 MiB of RSS: imported where a TLS setting needs it
    from cryptography import x509


def refusal(der: bytes | None, allowed_cn: str, allowed_hostname: str) -> str | None:
    """Why the certificate ``der`` must be refused, or None if it passes (or nothing is asked)."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    if not allowed_cn and not allowed_hostname:
        return None
    if not der:
        return "no client certificate presented"
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return "undecodable client certificate"
    if allowed_cn:
        cns = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
        if allowed_cn not in cns:
            shown = cns[0] if cns else ""
            return f"client certificate CN {shown!r} is not the allowed CN {allowed_cn!r}"
    if allowed_hostname and not matches_hostname(cert, allowed_hostname):
        return f"client certificate is not valid for the allowed hostname {allowed_hostname!r}"
    return None


def matches_hostname(cert: x509.Certificate, host: str) -> bool:
    """True if ``cert``'s subject alternative names cover ``host`` (a DNS name or an IP address)."""
    from cryptography import x509

    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return ip in sans.get_values_for_type(x509.IPAddress)
    wanted = host.rstrip(".").lower()
    return any(_dns_match(pattern.rstrip(".").lower(), wanted) for pattern in sans.get_values_for_type(x509.DNSName))


def _dns_match(pattern: str, host: str) -> bool:
    if pattern == host:
        return True
    if not pattern.startswith("*."):
        return False
    first, dot, rest = host.partition(".")
    return bool(first and dot and rest) and rest == pattern[2:]
