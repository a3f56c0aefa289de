"""TLSInfo.validate refuses settings that contradict each other, naming the flag; auto TLS certificates."""

from __future__ import annotations

import os
import ssl
import stat

import pytest
from cryptography import x509
from tls_testkit import handshake

from etcdx.tls import TLSConfigError, TLSInfo
from etcdx.tls.selfcert import ensure_self_signed
from tests.support.certs import CA


@pytest.fixture
def files(tmp_path):
    ca = CA(tmp_path / "ca")
    m = ca.issue("m")
    return {"ca": str(ca.cert), "cert": str(m.cert), "key": str(m.key), "other_key": str(ca.issue("o").key),
            "crl": str(ca.crl([]))}


CASES = [
    # (side, settings, message); {name} is replaced by the path from the fixture.
    ("peer", dict(key_file="{key}"), "--peer-cert-file and --peer-key-file must both be given (KeyFile and CertFile must both be present"),
    ("client", dict(cert_file="{cert}"), "--cert-file and --key-file must both be given"),
    ("client", dict(cert_file="{cert}", key_file="{key}", client_cert_auth=True),
     "--client-cert-auth needs --trusted-ca-file to verify client certificates against"),
    ("peer", dict(auto_tls=True, auto_tls_dir="/tmp/x", client_cert_auth=True, trusted_ca_file="{ca}"),
     "--peer-client-cert-auth cannot verify the self-signed certificates of --peer-auto-tls"),
    ("peer", dict(cert_file="{cert}", key_file="{key}", trusted_ca_file="{ca}", client_cert_auth=True,
                  allowed_cn="a", allowed_hostname="b"),
     '--peer-cert-allowed-cn and --peer-cert-allowed-hostname: AllowedCN and AllowedHostname are mutually exclusive (cn="a", hostname="b")'),
    ("peer", dict(cert_file="{cert}", key_file="{key}", allowed_cn="a"),
     "--peer-cert-allowed-cn needs --peer-trusted-ca-file: only verified client certificates are checked"),
    ("client", dict(cert_file="{cert}", key_file="{key}", trusted_ca_file="{ca}", crl_file="{crl}"),
     "--client-crl-file needs --client-cert-auth"),
    ("client", dict(cipher_suites=("TLS_FAKE_SUITE",)), 'invalid --cipher-suites: unexpected TLS cipher suite "TLS_FAKE_SUITE"'),
    ("client", dict(cipher_suites=("TLS_RSA_WITH_RC4_128_SHA",)), "TLS_RSA_WITH_RC4_128_SHA (RC4-SHA) is not offered by this OpenSSL"),
    ("peer", dict(min_version="TLS1.1"), 'invalid --tls-min-version: unexpected TLS version "TLS1.1" (must be one of: TLS1.2, TLS1.3)'),
    ("peer", dict(max_version="1.3"), 'invalid --tls-max-version: unexpected TLS version "1.3"'),
    ("peer", dict(min_version="TLS1.3", max_version="TLS1.2"),
     "--tls-min-version and --tls-max-version: min version (TLS1.3) is greater than max version (TLS1.2)"),
    ("client", dict(min_version="TLS1.3", cipher_suites=("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",)),
     "--cipher-suites: cipher suites cannot be configured when only TLS1.3 is enabled"),
    ("peer", dict(cert_file="{cert}", key_file="{other_key}"),
     "--peer-key-file {other_key} does not match --peer-cert-file {cert} (private key does not match public key)"),
    ("peer", dict(cert_file="/nonexistent.pem", key_file="{key}"), "--peer-cert-file /nonexistent.pem: No such file or directory"),
    ("client", dict(cert_file="{key}", key_file="{key}"), "--cert-file {key}: no PEM certificate in it"),
    ("peer", dict(trusted_ca_file="{key}"), "--peer-trusted-ca-file {key}: no PEM certificate in it"),
    ("peer", dict(cert_file="{cert}", key_file="{key}", trusted_ca_file="{ca}", client_cert_auth=True, crl_file="{cert}"),
     "--peer-crl-file {cert}: no certificate revocation list (PEM or DER) in it"),
]


@pytest.mark.parametrize("side,settings,message", CASES, ids=[c[2][:48] for c in CASES])
def test_inconsistent_settings_are_refused_naming_the_flag(files, side, settings, message):
    resolved = {k: v.format(**files) if isinstance(v, str) else v for k, v in settings.items()}
    with pytest.raises(TLSConfigError) as err:
        TLSInfo(side, **resolved).validate()
    assert message.format(**files) in str(err.value)


def test_consistent_settings_pass(files):
    TLSInfo("peer", cert_file=files["cert"], key_file=files["key"], trusted_ca_file=files["ca"], client_cert_auth=True,
            crl_file=files["crl"], allowed_cn="m", min_version="TLS1.2", max_version="TLS1.3",
            cipher_suites=("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256")).validate()
    TLSInfo("client", auto_tls=True, auto_tls_dir="/nonexistent/fixtures/client").validate()  # generated later


def test_serving_without_a_certificate_is_refused(files):
    with pytest.raises(TLSConfigError, match="--peer-cert-file and --peer-key-file \\(or --peer-auto-tls\\) are needed"):
        TLSInfo("peer", trusted_ca_file=files["ca"]).server_context()


def test_auto_tls_keeps_its_certificate_in_the_given_directory_and_reuses_it(tmp_path):
    where = tmp_path / "data" / "fixtures" / "peer"
    cert, key = ensure_self_signed(str(where), ["127.0.0.1", "member.example.com"])
    assert (cert, key) == (str(where / "cert.pem"), str(where / "key.pem"))
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(where).st_mode) == 0o700
    parsed = x509.load_pem_x509_certificate(open(cert, "rb").read())
    sans = parsed.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["member.example.com"]
    before = open(cert, "rb").read()
    assert ensure_self_signed(str(where), ["10.0.0.1"]) == (cert, key)
    assert open(cert, "rb").read() == before  # a restarted member presents the same certificate


def test_auto_tls_completes_a_pair_left_half_written(tmp_path):
    where = tmp_path / "fixtures" / "client"
    where.mkdir(parents=True)
    (where / "cert.pem").write_text("left over")
    cert, key = ensure_self_signed(str(where), ["127.0.0.1"])
    TLSInfo("client", cert_file=cert, key_file=key).validate()


def test_auto_tls_members_talk_without_verifying_each_other(tmp_path):
    a = TLSInfo("peer", auto_tls=True, auto_tls_dir=str(tmp_path / "a"), auto_tls_hosts=("127.0.0.1",))
    b = TLSInfo("peer", auto_tls=True, auto_tls_dir=str(tmp_path / "b"), auto_tls_hosts=("127.0.0.1",))
    ends = handshake(a.server_context(), b.client_context())
    assert ends.client.version() == "TLSv1.3"
    assert ends.server.getpeercert() is None  # the server asked for no certificate
    assert a.server_context().verify_mode == ssl.CERT_NONE


def test_given_certificates_win_over_auto_tls(files, tmp_path):
    info = TLSInfo("peer", cert_file=files["cert"], key_file=files["key"], trusted_ca_file=files["ca"],
                   auto_tls=True, auto_tls_dir=str(tmp_path / "auto"))
    info.validate()
    client = TLSInfo("peer", trusted_ca_file=files["ca"]).client_context()
    assert handshake(info.server_context(), client).server_cert_cn() == "m"
    assert not (tmp_path / "auto").exists()
