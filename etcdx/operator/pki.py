"""Certificates for a cluster's TLS: a CA, and certificates it issues to members and the operator.

Members get one certificate for both ends (server and client auth: a member
dials its peers with the same certificate it serves), with the names and
addresses it is reached at. The operator gets a client certificate to talk to
client ports that ask for one. ECDSA P-256, valid for ten years from an hour
ago (clocks that differ a little do not matter); keys are written 0600.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALID_DAYS = 3650


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _window() -> tuple[datetime.datetime, datetime.datetime]:
    start = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=1)
    return start, start + datetime.timedelta(days=VALID_DAYS)


def make_ca(common_name: str) -> tuple[bytes, bytes]:
    """A new self-signed CA: (certificate PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    start, end = _window()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False),
                           critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


def issue(ca_cert_pem: bytes, ca_key_pem: bytes, common_name: str, hosts: Sequence[str]) -> tuple[bytes, bytes]:
    """A certificate for ``hosts`` (DNS names and IP addresses), good for server and client auth."""
    ca_cert = x509.load_pem_x509_certificate(ca_cert_pem)
    ca_key = serialization.load_pem_private_key(ca_key_pem, password=None)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for h in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            names.append(x509.DNSName(h))
    start, end = _window()
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                     ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _pem_key(key)


class FileCA:
    """A CA kept as ``ca.crt``/``ca.key`` in a directory (made on first use, or copied from given files)."""

    def __init__(self, directory: str, common_name: str, cert_file: str | None = None,
                 key_file: str | None = None) -> None:
        self.dir = directory
        self.cert_path = os.path.join(directory, "ca.crt")
        self.key_path = os.path.join(directory, "ca.key")
        if not os.path.exists(self.cert_path):
            os.makedirs(directory, exist_ok=True)
            if cert_file and key_file:
                with open(cert_file, "rb") as f:
                    cert = f.read()
                with open(key_file, "rb") as f:
                    key = f.read()
            else:
                cert, key = make_ca(common_name)
            _write(self.key_path, key, 0o600)
            _write(self.cert_path, cert)

    def issue_files(self, directory: str, stem: str, common_name: str, hosts: Sequence[str]) -> tuple[str, str]:
        """``<stem>.crt`` and ``<stem>.key`` in ``directory``, issued once and reused."""
        cert_path, key_path = os.path.join(directory, f"{stem}.crt"), os.path.join(directory, f"{stem}.key")
        if not (os.path.exists(cert_path) and os.path.exists(key_path)):
            os.makedirs(directory, exist_ok=True)
            with open(self.cert_path, "rb") as f:
                ca_cert = f.read()
            with open(self.key_path, "rb") as f:
                ca_key = f.read()
            cert, key = issue(ca_cert, ca_key, common_name, hosts)
            _write(key_path, key, 0o600)
            _write(cert_path, cert)
        return cert_path, key_path
