"""TLS flags as etcd takes them: flags, ETCD_* variables, the YAML transport-security sections, refusals."""

from __future__ import annotations

import pathlib

import pytest

from etcdx.server.config import ConfigError, load
from tests.support.certs import CA


@pytest.fixture
def pki(tmp_path):
    ca = CA(tmp_path / "ca")
    m = ca.issue("m1")
    return {"ca": str(ca.cert), "cert": str(m.cert), "key": str(m.key), "crl": str(ca.crl([]))}


def test_tls_is_off_and_tls_1_2_the_floor_by_default():
    cfg, _ = load([], {})
    client, peer = cfg.client_tls_info(), cfg.peer_tls_info()
    assert not client.can_serve and not peer.can_serve
    assert client.min_version == peer.min_version == "TLS1.2"
    assert client.side == "client" and peer.side == "peer"


def test_flags_and_etcd_variables_fill_both_sides(pki):
    argv = ["--cert-file", pki["cert"], "--key-file", pki["key"], "--trusted-ca-file", pki["ca"],
            "--client-cert-auth", "--client-crl-file", pki["crl"],
            "--peer-cert-allowed-cn", "m1", "--cipher-suites",
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]
    env = {"ETCD_PEER_CERT_FILE": pki["cert"], "ETCD_PEER_KEY_FILE": pki["key"],
           "ETCD_PEER_TRUSTED_CA_FILE": pki["ca"], "ETCD_TLS_MAX_VERSION": "TLS1.3"}
    cfg, _ = load(argv, env)
    client, peer = cfg.client_tls_info(), cfg.peer_tls_info()
    assert (client.cert_file, client.key_file, client.trusted_ca_file) == (pki["cert"], pki["key"], pki["ca"])
    assert client.client_cert_auth and client.crl_file == pki["crl"]
    assert (peer.cert_file, peer.key_file, peer.trusted_ca_file, peer.allowed_cn) == (pki["cert"], pki["key"], pki["ca"], "m1")
    assert client.cipher_suites == peer.cipher_suites == ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                                                          "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
    assert peer.max_version == "TLS1.3"


@pytest.mark.parametrize("argv,expected", [
    (["--peer-auto-tls"], True),
    (["--peer-auto-tls=true"], True),
    (["--peer-auto-tls=false"], False),
    (["--peer-auto-tls", "--name", "m1"], True),
])
def test_a_boolean_flag_alone_means_true_as_with_go_flags(argv, expected):
    cfg, _ = load(argv, {})
    assert cfg.peer_auto_tls is expected


def test_peer_tls_is_mutual_whenever_a_peer_ca_is_given(pki):
    cfg, _ = load(["--peer-cert-file", pki["cert"], "--peer-key-file", pki["key"]], {})
    assert not cfg.peer_tls_info().client_cert_auth
    cfg, _ = load(["--peer-cert-file", pki["cert"], "--peer-key-file", pki["key"], "--peer-trusted-ca-file", pki["ca"]], {})
    assert cfg.peer_tls_info().verifies_clients
    cfg, _ = load(["--cert-file", pki["cert"], "--key-file", pki["key"], "--trusted-ca-file", pki["ca"]], {})
    assert not cfg.client_tls_info().client_cert_auth  # the client port keeps etcd's opt-in


def test_auto_tls_certificates_live_under_the_data_dir_for_the_listen_hosts(tmp_path):
    cfg, _ = load(["--data-dir", str(tmp_path / "d"), "--auto-tls", "--peer-auto-tls",
                   "--listen-client-urls", "https://127.0.0.1:2379,https://localhost:2381",
                   "--advertise-client-urls", "https://127.0.0.1:2379",
                   "--listen-peer-urls", "https://10.0.0.7:2380"], {})
    client, peer = cfg.client_tls_info(), cfg.peer_tls_info()
    assert client.auto_tls_dir == str(tmp_path / "d" / "fixtures" / "client")
    assert peer.auto_tls_dir == str(tmp_path / "d" / "fixtures" / "peer")
    assert client.auto_tls_hosts == ("127.0.0.1", "localhost") and peer.auto_tls_hosts == ("10.0.0.7",)
    assert client.self_signed and peer.self_signed and not peer.verifies_clients
    assert not (tmp_path / "d").exists()  # nothing is generated while the configuration is read


def test_yaml_transport_security_sections(tmp_path: pathlib.Path, pki):
    f = tmp_path / "etcd.yaml"
    f.write_text(
        "name: m1\n"
        "listen-peer-urls: https://127.0.0.1:2380\n"
        "initial-advertise-peer-urls: https://127.0.0.1:2380\n"
        "client-transport-security:\n"
        f"  cert-file: {pki['cert']}\n"
        f"  key-file: {pki['key']}\n"
        "  client-cert-auth: true\n"
        f"  trusted-ca-file: {pki['ca']}\n"
        "  auto-tls: false\n"
        "peer-transport-security:\n"
        f"  cert-file: {pki['cert']}\n"
        f"  key-file: {pki['key']}\n"
        "  client-cert-auth: true\n"
        f"  trusted-ca-file: {pki['ca']}\n"
        f"  crl-file: {pki['crl']}\n"
        "  allowed-cn: [m1]\n"
        "  skip-client-san-verification: false\n"
        "cipher-suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"
        "tls-min-version: TLS1.2\n"
    )
    cfg, _ = load(["--config-file", str(f)], {"ETCD_PEER_CERT_FILE": "/ignored"})
    client, peer = cfg.client_tls_info(), cfg.peer_tls_info()
    assert client.cert_file == pki["cert"] and client.client_cert_auth and client.trusted_ca_file == pki["ca"]
    assert peer.cert_file == pki["cert"] and peer.crl_file == pki["crl"] and peer.allowed_cn == "m1"
    assert peer.cipher_suites == ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",)


@pytest.mark.parametrize("argv,message", [
    (["--listen-client-urls", "https://127.0.0.1:2379", "--advertise-client-urls", "https://127.0.0.1:2379"],
     "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:2379 with HTTPS scheme"),
    (["--listen-peer-urls", "https://127.0.0.1:2380", "--peer-trusted-ca-file", "{ca}"],
     "cannot listen on TLS for 127.0.0.1:2380: KeyFile and CertFile are not presented"),
    (["--peer-key-file", "{key}"], "--peer-cert-file and --peer-key-file must both be given"),
    (["--cert-file", "{cert}", "--key-file", "{key}", "--client-cert-auth"],
     "--client-cert-auth needs --trusted-ca-file"),
    (["--peer-client-cert-auth", "--peer-cert-file", "{cert}", "--peer-key-file", "{key}"],
     "--peer-client-cert-auth needs --peer-trusted-ca-file"),
    (["--peer-auto-tls", "--peer-client-cert-auth"], "--peer-client-cert-auth cannot verify the self-signed certificates"),
    (["--cipher-suites", "TLS_RSA_WITH_AES_128_CBC_SHA,BOGUS"], 'invalid --cipher-suites: unexpected TLS cipher suite "BOGUS"'),
    (["--tls-min-version", "TLS1.0"], 'invalid --tls-min-version: unexpected TLS version "TLS1.0"'),
    (["--peer-cert-file", "{cert}", "--peer-key-file", "{ca}"], "--peer-key-file {ca}: no usable PEM private key in it"),
])
def test_inconsistent_tls_settings_are_refused_at_load_naming_the_flag(pki, argv, message):
    with pytest.raises(ConfigError) as err:
        load([a.format(**pki) for a in argv], {})
    assert message.format(**pki) in str(err.value)
