"""Peer connections over TLS: https URLs are served and dialled with TLS, mutual when a CA is given.

A member whose certificate the listener does not trust, a plaintext dialer, and
a certificate outside the allowed CN are all refused; the listener logs why.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl

import pytest
from test_transport_snapshot import SnapshotSource, snap
from transport_testkit import CLUSTER, Member, app, eventually, mesh, run, url

from etcdx.tls import TLSInfo
from etcdx.transport import TransportError, fetch, snapshot_db_path
from etcdx.transport.conn import HandshakeRejected, dial
from etcdx.transport.security import PeerTLS
from etcdx.transport.wire import Handshake, parse_url
from tests.support.certs import CA


@pytest.fixture
def pki(tmp_path):
    return {"ca": CA(tmp_path / "ca"), "other": CA(tmp_path / "other", name="other CA")}


def peer_tls(pki, name: str, *, ca: str = "ca", trust: str = "ca", **kw) -> TLSInfo:
    """Peer settings for member ``name``: a certificate from ``ca``, trusting ``trust``, mutual."""
    issued = pki[ca].issue(name)
    info = TLSInfo("peer", cert_file=str(issued.cert), key_file=str(issued.key),
                   trusted_ca_file=str(pki[trust].cert), client_cert_auth=True, **kw)
    info.validate()
    return info


def warnings_about(caplog, text: str) -> list[str]:
    return [f"{r.getMessage()} {getattr(r, 'fields', {})}" for r in caplog.records if text in r.getMessage()]


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_members_exchange_messages_over_mutual_tls(tmp_path, pki, loop):
    async def scenario():
        async with Member(1, str(tmp_path), tls=peer_tls(pki, "m1")) as a, \
                Member(2, str(tmp_path), tls=peer_tls(pki, "m2")) as b:
            assert a.url.startswith("https://") and b.url.startswith("https://")
            mesh(a, b)
            sent_ab = [app(1, 2, i, size=64) for i in range(300)]
            sent_ba = [app(2, 1, i) for i in range(100)]
            a.transport.send(sent_ab)
            b.transport.send(sent_ba)
            await eventually(lambda: len(b.received) == 300 and len(a.received) == 100, "all messages")
            assert b.received == sent_ab and a.received == sent_ba
            (inbound,) = b.transport._inbound[1]
            assert inbound.get_extra_info("ssl_object").getpeercert()["subject"] == ((("commonName", "m1"),),)
    run(scenario, loop=loop)


def test_snapshots_and_calls_travel_over_tls(tmp_path, pki):
    content = os.urandom(3 * 1024 * 1024 + 7)

    async def echo(method: str, payload: bytes) -> bytes:
        return b"echo:" + payload

    async def scenario():
        source = SnapshotSource(tmp_path, content)
        async with Member(1, str(tmp_path / "a"), tls=peer_tls(pki, "m1"), open_snapshot=source) as a, \
                Member(2, str(tmp_path / "b"), tls=peer_tls(pki, "m2"), request_handler=echo) as b:
            mesh(a, b)
            assert await a.transport.call(2, "echo", b"hi", timeout=2) == b"echo:hi"
            a.transport.send([snap(1, 2, 0x33)])
            await eventually(lambda: a.snapshot_status == [(2, True)], "the snapshot was acknowledged", timeout=5)
            with open(snapshot_db_path(str(tmp_path / "b"), 0x33), "rb") as f:
                assert f.read() == content
    run(scenario)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_a_member_with_a_certificate_from_another_ca_is_refused_at_the_handshake(tmp_path, pki, caplog, loop):
    caplog.set_level(logging.WARNING, logger="etcdx.transport")

    async def scenario():
        # The stranger trusts the cluster's CA, so only the listener's check can stop it.
        async with Member(1, str(tmp_path), tls=peer_tls(pki, "m1")) as a, \
                Member(3, str(tmp_path), tls=peer_tls(pki, "stranger", ca="other")) as stranger:
            stranger.transport.add_peer(1, [a.url])
            stranger.transport.send([app(3, 1, 1)])
            await eventually(lambda: 1 in stranger.unreachable, "the stranger hears its peer is unreachable")
            await eventually(lambda: warnings_about(caplog, "rejected peer connection at the TLS handshake"),
                             "the listener logged the refusal")
            assert a.received == [] and 3 not in a.transport._inbound
            assert "certificate verify failed" in warnings_about(caplog, "at the TLS handshake")[0]
            address = parse_url(a.url)
            with pytest.raises(TransportError, match="does it trust our certificate|alert unknown ca"):
                await dial(address, Handshake("stream", 3, 1, CLUSTER), 2.0,
                           ssl_context=stranger.transport._tls.dial_context(address))
    run(scenario, loop=loop)


def test_a_plaintext_dialer_gets_nothing_from_an_https_listener(tmp_path, pki, caplog):
    caplog.set_level(logging.WARNING, logger="etcdx.transport")

    async def scenario():
        async with Member(1, str(tmp_path), tls=peer_tls(pki, "m1")) as a:
            host, port, _ = parse_url(a.url)
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(Handshake("stream", 2, 1, CLUSTER).line())
            assert await reader.read() == b""  # closed without an answer, never "OK"
            writer.close()
            plain = Member(2, str(tmp_path))
            async with plain:
                plain.transport.add_peer(1, [url(port)])  # it believes the peer speaks plaintext
                plain.transport.send([app(2, 1, 1)])
                await eventually(lambda: 1 in plain.unreachable, "the plaintext member cannot reach it")
            assert a.received == []
            assert "wrong version number" in warnings_about(caplog, "at the TLS handshake")[0]
    run(scenario)


def test_a_tls_dialer_does_not_fall_back_to_plaintext(tmp_path, pki):
    async def scenario():
        async with Member(1, str(tmp_path), tls=peer_tls(pki, "m1")) as a, Member(2, str(tmp_path)) as b:
            host, port, _ = parse_url(b.url)
            a.transport.add_peer(2, [url(port, "https")])  # the URL says https, the member listens plaintext
            a.transport.send([app(1, 2, 1)])
            await eventually(lambda: 2 in a.unreachable, "the dialer gives up on the handshake", timeout=8)
            assert b.received == []
    run(scenario)


def test_allowed_cn_admits_only_that_name(tmp_path, pki, caplog):
    caplog.set_level(logging.WARNING, logger="etcdx.transport")

    async def scenario():
        async with Member(1, str(tmp_path), tls=peer_tls(pki, "m1", allowed_cn="m2")) as a, \
                Member(2, str(tmp_path), tls=peer_tls(pki, "m2")) as b, \
                Member(3, str(tmp_path), tls=peer_tls(pki, "m3")) as c:
            for m in (b, c):
                m.transport.add_peer(1, [a.url])
                m.transport.send([app(m.id, 1, 1)])
            await eventually(lambda: [m.from_ for m in a.received] == [2], "m2's message arrived")
            await eventually(lambda: 1 in c.unreachable, "m3 was refused")
            hello = Handshake("stream", 3, 1, CLUSTER)
            with pytest.raises(HandshakeRejected, match="client certificate CN 'm3' is not the allowed CN 'm2'"):
                await dial(parse_url(a.url), hello, 2.0, ssl_context=c.transport._tls.dial_context(parse_url(a.url)))
            assert warnings_about(caplog, "certificate not allowed")
    run(scenario)


def test_the_listener_serves_a_rotated_certificate_to_new_connections(tmp_path, pki):
    live = pki["ca"].issue("live", cn="before")
    info = TLSInfo("peer", cert_file=str(live.cert), key_file=str(live.key), trusted_ca_file=str(pki["ca"].cert))

    async def server_cn(address) -> str:
        ctx = TLSInfo("peer", trusted_ca_file=str(pki["ca"].cert)).client_context()
        _, writer = await asyncio.open_connection(address.host, address.port, ssl=ctx, server_hostname=address.host)
        try:
            return dict(x[0] for x in writer.get_extra_info("peercert")["subject"])["commonName"]
        finally:
            writer.close()

    async def scenario():
        async with Member(1, str(tmp_path), tls=info) as a:
            address = parse_url(a.url)
            assert await server_cn(address) == "before"
            live.replace_with(pki["ca"].issue("next", cn="after"))
            assert await server_cn(address) == "after"
    run(scenario)


def test_a_joining_member_fetches_over_https_with_its_peer_tls(tmp_path, pki):
    async def members(method: str, payload: bytes) -> bytes:
        return b"the members"

    async def scenario():
        async with Member(1, str(tmp_path), tls=peer_tls(pki, "m1"), request_handler=members) as a:
            joiner = peer_tls(pki, "m4")
            assert await fetch([a.url], "members", b"", tls=joiner, timeout=2) == b"the members"
            with pytest.raises(TransportError, match="certificate verify failed"):
                await fetch([a.url], "members", b"", timeout=2)  # the system's CAs do not know ours
            with pytest.raises(TransportError):
                await fetch([a.url], "members", b"", tls=peer_tls(pki, "m5", ca="other"), timeout=2)
    run(scenario)


def test_https_listen_url_with_unusable_files_refuses_to_start(tmp_path, pki):
    issued = pki["ca"].issue("m1")
    info = TLSInfo("peer", cert_file=str(issued.cert), key_file=str(issued.key))
    os.remove(issued.key)

    async def scenario():
        m = Member(1, str(tmp_path), tls=info)
        with pytest.raises(ValueError, match="--peer-key-file .*: No such file or directory"):
            await m.transport.start()
        assert m.transport.urls == []
        await m.transport.stop()
    run(scenario)


def test_without_peer_tls_settings_https_peers_are_verified_against_the_system_cas():
    ctx = PeerTLS(None).dial_context(parse_url("https://127.0.0.1:1"))
    assert ctx is not None and ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert PeerTLS(None).dial_context(parse_url("http://127.0.0.1:1")) is None
