"""Throwaway TLS material for tests: a CA, a server certificate and a client certificate.

    files = make_tls_files(tmp_path / "tls")          # PEM files, valid for 127.0.0.1 and localhost
    member = Member("etcd", tmp_path, tls=files)       # serves https with client-certificate auth
    client = Client(member.client_url, tls=files.client_tls())

The client certificate's common name is ``client_cn`` (etcd maps it to a user
when auth is on). Keys are ECDSA P-256: quick to make, and every TLS stack
here speaks them.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from etcdx.client import TLS


@dataclass(frozen=True)
class TLSFiles:
    ca: pathlib.Path
    server_cert: pathlib.Path
    server_key: pathlib.Path
    client_cert: pathlib.Path
    client_key: pathlib.Path

    def client_tls(self) -> TLS:
        """The client settings that trust the CA and present the client certificate."""
        from etcdx.client import TLS

        return TLS(ca=self.ca, cert=self.client_cert, key=self.client_key)

    def server_flags(self, client_cert_auth: bool = True) -> list[str]:
        """etcd's flags for a TLS client port (``--client-cert-auth`` makes clients show a certificate)."""
        flags = ["--cert-file", str(self.server_cert), "--key-file", str(self.server_key),
                 "--trusted-ca-file", str(self.ca)]  # fmt: skip
        return flags + (["--client-cert-auth"] if client_cert_auth else [])


def make_tls_files(
    directory: os.PathLike[str] | str,
    *,
    client_cn: str = "root",
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
) -> TLSFiles:
    """Write a fresh CA, a server certificate for ``hosts`` and a client certificate under ``directory``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    out = pathlib.Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key: ec.EllipticCurvePrivateKey, path: pathlib.Path) -> None:
        path.write_bytes(
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        path.chmod(0o600)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("etcdx test CA"))
        .issuer_name(name("etcdx test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )  # fmt: skip
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(cn: str, usage: list[x509.ObjectIdentifier], sans: Sequence[str]) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        )
        if sans:
            entries: list[x509.GeneralName] = []
            for host in sans:
                try:
                    entries.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    entries.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(entries), critical=False)
        return builder.sign(ca_key, hashes.SHA256()), key

    server_cert, server_key = leaf(
        "etcdx test server", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH], hosts
    )
    client_cert, client_key = leaf(client_cn, [ExtendedKeyUsageOID.CLIENT_AUTH], ())

    files = TLSFiles(out / "ca.pem", out / "server.pem", out / "server-key.pem", out / "client.pem", out / "client-key.pem")
    files.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    write_key(server_key, files.server_key)
    files.client_cert.write_bytes(client_cert.public_bytes(serialization.Encoding.PEM))
    write_key(client_key, files.client_key)
    return files
