"""Certificates for TLS tests, made with ``cryptography``: a CA, certificates it issues, CRLs.

    ca = CA(tmp_path / "ca")                       # writes ca.pem
    m1 = ca.issue("m1", ips=["127.0.0.1"])          # m1.pem + m1-key.pem, for server and client use
    crl = ca.crl([m1])                              # crl.pem revoking m1

Keys are ECDSA P-256 unless ``rsa=True`` (suites named ``..._RSA_...`` need an
RSA certificate). Everything is valid from an hour ago for a year, so clocks
that differ a little do not matter.
"""

from __future__ import annotations

import datetime
import ipaddress
import pathlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    """A certificate and its key on disk."""

    name: str
    cert: pathlib.Path
    key: pathlib.Path
    serial: int

    def replace_with(self, other: Issued) -> None:
        """Overwrite this pair's files with ``other``'s (a rotation under a running server)."""
        tmp_cert, tmp_key = self.cert.with_suffix(".new"), self.key.with_suffix(".new")
        tmp_cert.write_bytes(other.cert.read_bytes())
        tmp_key.write_bytes(other.key.read_bytes())
        tmp_key.replace(self.key)
        tmp_cert.replace(self.cert)


def _key(use_rsa: bool):
    return rsa.generate_private_key(public_exponent=65537, key_size=2048) if use_rsa else ec.generate_private_key(ec.SECP256R1())


def _write_key(path: pathlib.Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class CA:
    """A self-signed certificate authority writing its files under ``directory``."""

    def __init__(self, directory: pathlib.Path | str, name: str = "etcdx test CA") -> None:
        self.dir = pathlib.Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject).issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert = self.dir / "ca.pem"
        self.cert.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    def issue(self, name: str, *, cn: str | None = None, ips: list[str] = ("127.0.0.1",),  # type: ignore[assignment]
              dns: list[str] = ("localhost",), server: bool = True, client: bool = True,  # type: ignore[assignment]
              rsa_key: bool = False, days: int = 365) -> Issued:
        """A certificate for ``name`` (CN ``cn or name``) with the given SANs and extended key usages."""
        key = _key(rsa_key)
        now = datetime.datetime.now(datetime.timezone.utc)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn or name)]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if usages:
            builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return Issued(name, cert_path, key_path, cert.serial_number)

    def crl(self, revoked: list[Issued], name: str = "crl", der: bool = False) -> pathlib.Path:
        """A CRL signed by this CA revoking ``revoked`` (PEM, or DER if asked), written to ``<name>.pem|der``."""
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - datetime.timedelta(hours=1))
            .next_update(now + datetime.timedelta(days=30))
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        for r in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(r.serial).revocation_date(now - datetime.timedelta(minutes=5)).build())
        crl = builder.sign(self._key, hashes.SHA256())
        path = self.dir / (f"{name}.der" if der else f"{name}.pem")
        path.write_bytes(crl.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM))
        return path
