"""TLS with client certificates, against etcd and (once it has TLS) etcdx.

The certificates are made by `etcdx.testing.tls` with `cryptography`. etcdx
does not take TLS flags yet: its variants skip while it refuses them, and turn
on by themselves when it accepts them.
"""

from __future__ import annotations

import pytest

from etcdx.client import TLS, ConnectionFailed
from etcdx.testing.procs import MemberStartError
from etcdx.testing.tls import make_tls_files


@pytest.fixture
def tls_member(etcdx_factory, tmp_path):
    files = make_tls_files(tmp_path / "tls")
    try:
        return etcdx_factory.member(tls=files)
    except MemberStartError as e:
        if "unrecognized arguments" in str(e):
            pytest.skip("this server does not take TLS flags yet")
        raise


def test_a_client_with_a_certificate_talks_to_a_tls_member(tls_member, connect):
    c = connect(tls_member.client_url, tls=tls_member.tls.client_tls())
    c.put("k", "v")
    assert c.get("k").value == b"v"
    with c.watch("k") as w:
        c.put("k", "v2")
        assert w.get(timeout=10).events[0].kv.value == b"v2"


def test_a_client_without_a_certificate_is_refused(tls_member, connect):
    files = tls_member.tls
    c = connect(tls_member.client_url, tls=TLS(ca=files.ca), timeout=2.0)
    with pytest.raises(ConnectionFailed):
        c.get("k")


def test_a_client_that_does_not_trust_the_ca_is_refused(tls_member, connect, tmp_path):
    other = make_tls_files(tmp_path / "other-ca")
    c = connect(tls_member.client_url, tls=other.client_tls(), timeout=2.0)
    with pytest.raises(ConnectionFailed):
        c.get("k")


def test_a_plaintext_client_is_refused(tls_member, connect):
    c = connect(tls_member.endpoint, timeout=2.0)
    with pytest.raises(ConnectionFailed):
        c.get("k")
