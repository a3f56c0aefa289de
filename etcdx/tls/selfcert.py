"""Self-signed certificates for ``--auto-tls`` and ``--peer-auto-tls``, kept where etcd keeps them.

etcd writes ``cert.pem`` and ``key.pem`` under ``<data-dir>/fixtures/client``
(or ``/peer``) the first time and reuses them on every later start, so a
restarted member presents the same certificate. The certificate names the
hosts of the listen URLs (IP addresses as IP SANs, names as DNS SANs), is
valid for a year, and serves both as server and client certificate.
Nobody verifies it: auto TLS encrypts, it does not authenticate.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence


log = logging.getLogger("etcdx.tls")

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
VALIDITY = datetime.timedelta(days=365)


def ensure_self_signed(directory: str, hosts: Sequence[str]) -> tuple[str, str]:
    """(cert path, key path) in ``directory``, generated unless both files are already there.

    Several processes may ask at once (API workers): each generates into a
    private directory and renames it into place; a process that loses the race
    uses the winner's pair, so a certificate never meets another process's key.
    """
    directory = os.path.abspath(directory)
    cert_path, key_path = os.path.join(directory, CERT_NAME), os.path.join(directory, KEY_NAME)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    parent = os.path.dirname(directory)
    os.makedirs(parent, mode=0o700, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".autotls-", dir=parent)
    try:
        cert_pem, key_pem = _generate(hosts)
        _write(os.path.join(staging, KEY_NAME), key_pem, 0o600)
        _write(os.path.join(staging, CERT_NAME), cert_pem, 0o644)
        _fsync_dir(staging)
        try:
            os.rename(staging, directory)  # atomic; fails if a non-empty directory is there
        except OSError:
            if os.path.exists(cert_path) and os.path.exists(key_path):
                return cert_path, key_path  # another process won the race
            # A directory holding only part of a pair (an interrupted older run): complete it.
            os.makedirs(directory, mode=0o700, exist_ok=True)
            os.replace(os.path.join(staging, KEY_NAME), key_path)
            os.replace(os.path.join(staging, CERT_NAME), cert_path)
        _fsync_dir(parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("generated a self-signed TLS certificate", extra={"fields": {
        "cert-file": cert_path, "key-file": key_path, "hosts": list(hosts)}})
    return cert_path, key_path


def _generate(hosts: Sequence[str]) -> tuple[bytes, bytes]:
    # Imported here: cryptography costs ~10 MiB of RSS, and only auto TLS needs it here.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    names: list[x509.GeneralName] = []
    for host in hosts:
        if not host:
            continue
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "etcd")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _write(path: str, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
