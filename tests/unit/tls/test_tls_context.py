"""Server and client contexts built from TLSInfo: versions, suites, ALPN, client certificates, CRLs, CN/hostname."""

from __future__ import annotations

import ssl

import pytest
from tls_testkit import handshake

from etcdx.tls import TLSInfo
from tests.support.certs import CA


@pytest.fixture
def pki(tmp_path):
    ca = CA(tmp_path / "ca")
    return {
        "ca": ca,
        "server": ca.issue("server", cn="server"),
        "client": ca.issue("client", cn="client", dns=["member.example.com"]),
        "other_ca": CA(tmp_path / "other", name="other CA"),
    }


def server_info(pki, **kw) -> TLSInfo:
    s = pki["server"]
    return TLSInfo("peer", cert_file=str(s.cert), key_file=str(s.key), trusted_ca_file=str(pki["ca"].cert), **kw)


def client_info(pki, issued=None, ca=None, **kw) -> TLSInfo:
    c = issued or pki["client"]
    return TLSInfo("peer", cert_file=str(c.cert), key_file=str(c.key), trusted_ca_file=str((ca or pki["ca"]).cert), **kw)


def test_tls_1_2_is_the_minimum_and_1_3_is_negotiated_by_default(pki):
    server = server_info(pki).server_context()
    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    assert handshake(server, client_info(pki).client_context()).client.version() == "TLSv1.3"


def test_tls_max_version_caps_what_is_negotiated(pki):
    server = server_info(pki, max_version="TLS1.2").server_context()
    assert handshake(server, client_info(pki).client_context()).client.version() == "TLSv1.2"


def test_a_tls_1_3_only_server_refuses_a_tls_1_2_client(pki):
    server = server_info(pki, min_version="TLS1.3").server_context()
    with pytest.raises(ssl.SSLError):
        handshake(server, client_info(pki, max_version="TLS1.2").client_context())


def test_cipher_suites_take_gos_names(pki):
    suite = "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"
    server = server_info(pki, cipher_suites=(suite,), max_version="TLS1.2").server_context()
    assert handshake(server, client_info(pki).client_context()).client.cipher()[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"


def test_rsa_suites_work_with_an_rsa_certificate(pki):
    rsa = pki["ca"].issue("rsa-server", rsa_key=True)
    info = TLSInfo("client", cert_file=str(rsa.cert), key_file=str(rsa.key), max_version="TLS1.2",
                   cipher_suites=("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_RSA_WITH_AES_128_GCM_SHA256"))
    info.validate()
    client = TLSInfo("client", trusted_ca_file=str(pki["ca"].cert)).client_context()
    assert handshake(info.server_context(), client).client.cipher()[0] == "ECDHE-RSA-CHACHA20-POLY1305"


def test_client_port_alpn_offers_h2_and_http1(pki):
    server = server_info(pki).server_context(alpn=["h2", "http/1.1"])
    for offered, chosen in ((["h2"], "h2"), (["http/1.1"], "http/1.1"), (["h2", "http/1.1"], "h2")):
        ends = handshake(server, client_info(pki).client_context(alpn=offered))
        assert ends.client.selected_alpn_protocol() == chosen


def test_client_cert_auth_requires_a_certificate_from_the_trusted_ca(pki):
    server = server_info(pki, client_cert_auth=True).server_context()
    assert handshake(server, client_info(pki).client_context()).client_cert_cn() == "client"
    no_cert = TLSInfo("peer", trusted_ca_file=str(pki["ca"].cert)).client_context()
    with pytest.raises(ssl.SSLError, match="PEER_DID_NOT_RETURN_A_CERTIFICATE|certificate required"):
        handshake(server, no_cert)
    stranger = pki["other_ca"].issue("stranger")
    with pytest.raises(ssl.SSLError, match="certificate verify failed"):
        handshake(server, client_info(pki, issued=stranger).client_context())


def test_without_client_cert_auth_the_server_asks_for_no_certificate(pki):
    server = server_info(pki).server_context()
    ends = handshake(server, client_info(pki).client_context())
    assert ends.server.getpeercert() is None


def test_the_client_verifies_the_servers_host_name(pki):
    server = server_info(pki).server_context()
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        handshake(server, client_info(pki).client_context(), server_hostname="10.9.8.7")
    assert handshake(server, client_info(pki).client_context(), server_hostname="localhost").server_cert_cn() == "server"


def test_a_client_of_another_ca_does_not_trust_the_server(pki):
    server = server_info(pki).server_context()
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(server, client_info(pki, ca=pki["other_ca"]).client_context())


@pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
def test_a_revoked_client_certificate_is_refused_by_the_crl(pki, der):
    revoked = pki["ca"].issue("revoked")
    crl = pki["ca"].crl([revoked], der=der)
    server = server_info(pki, client_cert_auth=True, crl_file=str(crl)).server_context()
    assert handshake(server, client_info(pki).client_context()).client_cert_cn() == "client"
    with pytest.raises(ssl.SSLError, match="certificate verify failed|revoked"):
        handshake(server, client_info(pki, issued=revoked).client_context())


def test_allowed_cn_and_hostname_are_checked_on_the_verified_certificate(pki):
    der = ssl.PEM_cert_to_DER_cert(pki["client"].cert.read_text())
    assert TLSInfo("peer", allowed_cn="client").check_certificate(der) is None
    assert "not the allowed CN 'member'" in TLSInfo("peer", allowed_cn="member").check_certificate(der)
    assert TLSInfo("peer", allowed_hostname="member.example.com").check_certificate(der) is None
    assert TLSInfo("peer", allowed_hostname="MEMBER.example.com.").check_certificate(der) is None
    assert TLSInfo("peer", allowed_hostname="127.0.0.1").check_certificate(der) is None
    assert "allowed hostname 'other.example.com'" in TLSInfo("peer", allowed_hostname="other.example.com").check_certificate(der)
    assert "allowed hostname '10.0.0.1'" in TLSInfo("peer", allowed_hostname="10.0.0.1").check_certificate(der)
    assert TLSInfo("peer", allowed_cn="client").check_certificate(None) == "no client certificate presented"
    assert TLSInfo("peer").check_certificate(None) is None  # nothing asked, nothing refused
    wildcard = pki["ca"].issue("wild", dns=["*.example.com"], ips=[])
    wder = ssl.PEM_cert_to_DER_cert(wildcard.cert.read_text())
    assert TLSInfo("peer", allowed_hostname="a.example.com").check_certificate(wder) is None
    assert TLSInfo("peer", allowed_hostname="a.b.example.com").check_certificate(wder) is not None
    assert TLSInfo("peer", allowed_hostname="example.com").check_certificate(wder) is not None


def test_one_info_serves_the_same_settings_to_every_listener(pki):
    info = server_info(pki, client_cert_auth=True)
    first, second = info.server_context(), info.server_context(alpn=["h2"])
    for ctx in (first, second):
        assert ctx.verify_mode == ssl.CERT_REQUIRED
        assert handshake(ctx, client_info(pki).client_context()).client_cert_cn() == "client"
    assert info.client_context() is info.client_context()  # cached until a file changes


@pytest.mark.parametrize("version", ["TLS1.2", "TLS1.3"])
def test_a_resumed_session_is_refused_where_client_certificates_are_verified(pki, version):
    info = server_info(pki, client_cert_auth=True, max_version=version)
    server, client = info.server_context(), client_info(pki).client_context()
    first = handshake(server, client)
    assert info.check_connection(first.server) is None
    again = handshake(server, client, session=first.client.session)
    if again.server.session_reused:  # TLS 1.2 session ids; TLS 1.3 gets no tickets at all
        assert "resumed TLS sessions are not accepted" in info.check_connection(again.server)
    else:
        assert version == "TLS1.3" and info.check_connection(again.server) is None
