"""Rotation without restart: certificate, key, CA bundle and CRL files replaced under a live context."""

from __future__ import annotations

import logging
import ssl

import pytest
from tls_testkit import handshake

from etcdx.tls import TLSConfigError, TLSInfo
from tests.support.certs import CA


@pytest.fixture
def ca(tmp_path):
    return CA(tmp_path / "ca")


def test_a_listener_presents_the_new_certificate_once_the_files_are_replaced(ca, tmp_path):
    live = ca.issue("live", cn="before")
    info = TLSInfo("client", cert_file=str(live.cert), key_file=str(live.key))
    server = info.server_context()
    client = TLSInfo("client", trusted_ca_file=str(ca.cert)).client_context()
    assert handshake(server, client).server_cert_cn() == "before"
    live.replace_with(ca.issue("next", cn="after"))
    assert handshake(server, client).server_cert_cn() == "after"


def test_a_certificate_rewritten_in_place_is_picked_up_too(ca):
    live = ca.issue("live", cn="before")
    info = TLSInfo("client", cert_file=str(live.cert), key_file=str(live.key))
    server = info.server_context()
    client = TLSInfo("client", trusted_ca_file=str(ca.cert)).client_context()
    handshake(server, client)
    new = ca.issue("next", cn="after")
    with open(live.key, "r+b") as f:  # same inode: only size and mtime tell
        f.truncate(0)
        f.write(new.key.read_bytes())
    with open(live.cert, "r+b") as f:
        f.truncate(0)
        f.write(new.cert.read_bytes())
    assert handshake(server, client).server_cert_cn() == "after"


def test_a_new_ca_bundle_admits_clients_of_the_new_ca(ca, tmp_path):
    server_cert = ca.issue("server")
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(ca.cert.read_bytes())
    server = TLSInfo("client", cert_file=str(server_cert.cert), key_file=str(server_cert.key),
                     trusted_ca_file=str(bundle), client_cert_auth=True).server_context()
    new_ca = CA(tmp_path / "new-ca", name="new CA")
    newcomer = new_ca.issue("newcomer")
    client = TLSInfo("client", cert_file=str(newcomer.cert), key_file=str(newcomer.key),
                     trusted_ca_file=str(ca.cert)).client_context()
    with pytest.raises(ssl.SSLError):
        handshake(server, client)
    staged = tmp_path / "trusted.new"
    staged.write_bytes(ca.cert.read_bytes() + new_ca.cert.read_bytes())
    staged.replace(bundle)
    assert handshake(server, client).client_cert_cn() == "newcomer"


def test_a_new_crl_revokes_a_certificate_without_a_restart(ca, tmp_path):
    server_cert, member = ca.issue("server"), ca.issue("member")
    crl_path = ca.crl([], name="live-crl")
    server = TLSInfo("peer", cert_file=str(server_cert.cert), key_file=str(server_cert.key),
                     trusted_ca_file=str(ca.cert), client_cert_auth=True, crl_file=str(crl_path)).server_context()
    client = TLSInfo("peer", cert_file=str(member.cert), key_file=str(member.key),
                     trusted_ca_file=str(ca.cert)).client_context()
    assert handshake(server, client).client_cert_cn() == "member"
    ca.crl([member], name="next-crl").replace(crl_path)
    with pytest.raises(ssl.SSLError, match="revoked|certificate verify failed"):
        handshake(server, client)


def test_a_half_done_rotation_keeps_the_old_certificate_until_the_files_agree(ca, caplog):
    live = ca.issue("live", cn="before")
    new = ca.issue("next", cn="after")
    server = TLSInfo("client", cert_file=str(live.cert), key_file=str(live.key)).server_context()
    client = TLSInfo("client", trusted_ca_file=str(ca.cert)).client_context()
    with caplog.at_level(logging.WARNING, logger="etcdx.tls"):
        live.cert.write_bytes(new.cert.read_bytes())  # the key still belongs to the old certificate
        assert handshake(server, client).server_cert_cn() == "before"
        assert handshake(server, client).server_cert_cn() == "before"
    warnings = [r for r in caplog.records if r.getMessage().startswith("cannot reload TLS files")]
    assert len(warnings) == 1  # once per state of the files, not per handshake
    assert "does not match" in warnings[0].fields["error"]
    live.key.write_bytes(new.key.read_bytes())
    assert handshake(server, client).server_cert_cn() == "after"


def test_a_dialer_presents_its_new_client_certificate_once_the_files_are_replaced(ca):
    server_cert, member = ca.issue("server"), ca.issue("member", cn="before")
    server = TLSInfo("peer", cert_file=str(server_cert.cert), key_file=str(server_cert.key),
                     trusted_ca_file=str(ca.cert), client_cert_auth=True).server_context()
    dialer = TLSInfo("peer", cert_file=str(member.cert), key_file=str(member.key), trusted_ca_file=str(ca.cert))
    first = dialer.client_context()
    assert handshake(server, first).client_cert_cn() == "before"
    member.replace_with(ca.issue("member2", cn="after"))
    second = dialer.client_context()
    assert second is not first
    assert handshake(server, second).client_cert_cn() == "after"


SECRET = "c2VjcmV0IGtleSBtYXRlcmlhbCB0aGF0IG11c3Qgbm90IGxlYWs="


def test_no_error_or_log_line_carries_the_private_key(ca, tmp_path, caplog):
    live, other = ca.issue("live"), ca.issue("other")
    garbage = tmp_path / "garbage-key.pem"
    garbage.write_text(f"-----BEGIN PRIVATE KEY-----\n{SECRET}\n-----END PRIVATE KEY-----\n")
    key_lines = [line for line in other.key.read_text().splitlines() if "-----" not in line]
    messages = []
    for key in (garbage, other.key):
        with pytest.raises(TLSConfigError) as err:
            TLSInfo("peer", cert_file=str(live.cert), key_file=str(key)).validate()
        messages.append(str(err.value))
    assert "no usable PEM private key" in messages[0] and "does not match" in messages[1]
    with caplog.at_level(logging.DEBUG, logger="etcdx.tls"):
        server = TLSInfo("peer", cert_file=str(live.cert), key_file=str(live.key)).server_context()
        live.key.write_text(garbage.read_text())
        handshake(server, TLSInfo("peer", trusted_ca_file=str(ca.cert)).client_context())
    messages += [r.getMessage() + repr(getattr(r, "fields", "")) for r in caplog.records]
    assert any("no usable PEM private key" in m for m in messages[2:])
    for m in messages:
        assert SECRET not in m
        assert not any(line in m for line in key_lines)
