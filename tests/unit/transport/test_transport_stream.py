"""Raft message streams between transports: delivery, order, reconnection, refusal, removal."""

from __future__ import annotations

import asyncio
import logging
import socket

import pytest
from prometheus_client import REGISTRY
from transport_testkit import (
    CLUSTER,
    Member,
    RawPeer,
    app,
    eventually,
    free_port,
    mesh,
    run,
    url,
)

from etcdx.raft.codec import encode_message
from etcdx.raft.types import Message
from etcdx.transport import Transport
from etcdx.transport.conn import dial
from etcdx.transport.wire import U32, Handshake, parse_url


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_two_members_exchange_batches_in_order(tmp_path, loop):
    async def scenario():
        async with Member(1, str(tmp_path)) as a, Member(2, str(tmp_path)) as b:
            mesh(a, b)
            sent_ab = [app(1, 2, i, size=8 * (i % 50 + 1)) for i in range(600)]
            sent_ba = [app(2, 1, i) for i in range(300)]
            for start in range(0, 600, 37):  # uneven batches, some sent before the stream is up
                a.transport.send(sent_ab[start:start + 37])
                if start < 300:
                    b.transport.send(sent_ba[start:start + 37])
            await eventually(lambda: len(b.received) == 600 and len(a.received) == 300, "all messages")
            assert b.received == sent_ab
            assert a.received == sent_ba
            assert a.unreachable == [] and b.unreachable == []
            assert b.batches < 600  # queued messages travel together, not one frame each
    run(scenario, loop=loop)


def test_three_members_deliver_every_message_in_order_per_sender(tmp_path):
    async def scenario():
        async with Member(1, str(tmp_path)) as a, Member(2, str(tmp_path)) as b, Member(3, str(tmp_path)) as c:
            members = (a, b, c)
            mesh(*members)
            sent: dict[tuple[int, int], list[Message]] = {}
            for round_ in range(20):
                for m in members:
                    out = [app(m.id, other.id, round_ * 10 + k) for other in members if other is not m for k in range(10)]
                    for msg in out:
                        sent.setdefault((m.id, msg.to), []).append(msg)
                    m.transport.send(out)
            await eventually(lambda: all(len(m.received) == 400 for m in members), "400 messages at each member")
            for m in members:
                for other in members:
                    if other is not m:
                        assert m.from_(other.id) == sent[(other.id, m.id)]
    run(scenario)


def test_peer_that_starts_later_is_reached_and_reported_unreachable_meanwhile(tmp_path):
    port = free_port()

    async def scenario():
        async with Member(1, str(tmp_path)) as a:
            a.transport.add_peer(2, [url(port)])
            await eventually(lambda: a.unreachable == [2], "on_unreachable(2) while 2 is down")
            assert not a.transport.is_active(2) and a.transport.active_since(2) is None
            a.transport.send([app(1, 2, 0)])  # dropped: the peer is known to be down
            await eventually(lambda: len(a.unreachable) == 2, "on_unreachable for the dropped send")
            async with Member(2, str(tmp_path), port=port) as b:
                await eventually(lambda: a.transport.is_active(2), "stream to the late peer")
                assert a.transport.active_since(2) is not None
                sent = [app(1, 2, i) for i in range(1, 101)]
                a.transport.send(sent)
                await eventually(lambda: len(b.received) == 100, "messages sent after connecting")
                assert b.received == sent
    run(scenario)


def test_restarted_peer_is_reconnected_and_later_messages_all_arrive(tmp_path, caplog):
    port = free_port()
    caplog.set_level(logging.INFO, logger="etcdx.transport")

    async def scenario():
        async with Member(1, str(tmp_path)) as a:
            async with Member(2, str(tmp_path), port=port):
                a.transport.add_peer(2, [url(port)])
                await eventually(lambda: a.transport.is_active(2), "first connection")
                first_since = a.transport.active_since(2)
            await eventually(lambda: not a.transport.is_active(2), "stream loss noticed")
            await eventually(lambda: 2 in a.unreachable, "on_unreachable after the peer went down")
            async with Member(2, str(tmp_path), port=port) as b2:
                await eventually(lambda: a.transport.is_active(2), "reconnection")
                assert a.transport.active_since(2) > first_since
                sent = [app(1, 2, i) for i in range(200)]
                for i in range(0, 200, 20):
                    a.transport.send(sent[i:i + 20])
                await eventually(lambda: len(b2.received) == 200, "all messages sent after reconnection")
                assert b2.received == sent
    run(scenario)
    became = [r.getMessage() for r in caplog.records if r.getMessage().startswith("peer became")]
    assert became == ["peer became active", "peer became inactive", "peer became active"]


def test_cluster_id_mismatch_is_refused_and_logged(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="etcdx.transport")

    async def scenario():
        async with Member(1, str(tmp_path)) as a, Member(2, str(tmp_path), cluster_id=CLUSTER + 1) as b:
            mesh(a, b)
            a.transport.send([app(1, 2, i) for i in range(5)])
            await eventually(lambda: 2 in a.unreachable and 1 in b.unreachable, "both sides fail to connect")
            assert b.received == [] and a.received == []
            assert not a.transport.is_active(2) and not b.transport.is_active(1)
    run(scenario)
    rejected = [r for r in caplog.records if r.getMessage() == "request cluster ID mismatch"]
    assert rejected, "the acceptor logs the mismatch"
    assert rejected[0].fields["remote-peer-cluster-id"] in (f"{CLUSTER:x}", f"{CLUSTER + 1:x}")
    refused = [r for r in caplog.records if r.getMessage() == "peer rejected the connection"]
    assert refused and refused[0].fields["error"] == "cluster ID mismatch"


def test_connection_to_the_wrong_member_is_refused(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="etcdx.transport")

    async def scenario():
        async with Member(1, str(tmp_path)) as a, Member(2, str(tmp_path)) as b:
            a.transport.add_peer(3, [b.url])  # member 3's URL points at member 2
            a.transport.send([app(1, 3, 0)])
            await eventually(lambda: 3 in a.unreachable, "refused connection reported")
            assert b.received == [] and not a.transport.is_active(3)
    run(scenario)
    assert any(r.getMessage() == "request member ID mismatch" for r in caplog.records)
    assert any(getattr(r, "fields", {}).get("error") == "member ID mismatch" for r in caplog.records)


def test_remove_peer_closes_its_stream_and_drops_later_sends(tmp_path):
    async def scenario():
        async with RawPeer() as peer, Member(1, str(tmp_path)) as a:
            a.transport.add_peer(2, [peer.url])
            await eventually(lambda: a.transport.is_active(2), "stream up")
            assert peer.handshakes[0].kind == "stream"
            a.transport.remove_peer(2)
            await eventually(lambda: peer.eofs == 1, "the removed peer's stream to be closed")
            assert not a.transport.is_active(2)
            a.transport.send([app(1, 2, 0)])  # dropped: unknown peer, no callback
            with pytest.raises(Exception, match="unknown peer"):
                await a.transport.call(2, "m", b"", timeout=0.5)
            assert a.unreachable == []
            assert len(peer.handshakes) == 1  # no redial
    run(scenario)


def test_removed_member_cannot_reconnect(tmp_path):
    async def scenario():
        async with Member(1, str(tmp_path)) as a, Member(2, str(tmp_path)) as b:
            mesh(a, b)
            await eventually(lambda: b.transport.is_active(1), "2's stream to 1")
            a.transport.remove_peer(2)
            await eventually(lambda: not b.transport.is_active(1), "1 closes 2's stream")
            b.transport.send([app(2, 1, 0)])
            await eventually(lambda: len(b.unreachable) >= 2, "2 keeps failing to reach 1")
            assert a.received == []
    run(scenario)


def test_send_to_unknown_peer_is_dropped_quietly(tmp_path):
    async def scenario():
        async with Member(1, str(tmp_path)) as a, Member(2, str(tmp_path)) as b:
            mesh(a, b)
            a.transport.send([app(1, 9, 0), app(1, 2, 1), app(1, 1, 2)])
            await eventually(lambda: len(b.received) == 1, "the message to the known peer")
            assert b.received[0].index == 1 and a.unreachable == []
    run(scenario)


def test_callbacks_never_run_inside_send(tmp_path):
    async def scenario():
        async with Member(1, str(tmp_path)) as a:
            a.transport.add_peer(2, [url(free_port())])
            await eventually(lambda: a.unreachable, "first dial failure")
            a.unreachable.clear()
            for _ in range(3):
                a.transport.send([app(1, 2, i) for i in range(10)])
                assert a.unreachable == []  # reported later, once per loop pass
            await eventually(lambda: a.unreachable == [2], "one coalesced report")
    run(scenario)


def test_idle_stream_stays_up_and_a_silent_dialer_is_cut(tmp_path):
    async def scenario():
        async with Member(1, str(tmp_path), conn_timeout=0.4) as a, Member(2, str(tmp_path), conn_timeout=0.4) as b:
            mesh(a, b)
            await eventually(lambda: a.transport.is_active(2) and b.transport.is_active(1), "streams up")
            since = a.transport.active_since(2)
            await asyncio.sleep(1.0)  # 2.5 read timeouts with nothing to send: link heartbeats keep it up
            assert a.transport.active_since(2) == since and b.transport.active_since(1) is not None
            a.transport.send([app(1, 2, 7)])
            await eventually(lambda: len(b.received) == 1, "message on the idle stream")
            assert a.unreachable == [] and b.unreachable == []

            # a dialer that handshakes and then says nothing is closed after conn_timeout
            reader, writer = await asyncio.open_connection("127.0.0.1", int(b.url.rsplit(":", 1)[1]))
            writer.write(Handshake("stream", 5, 2, CLUSTER).line())
            assert await reader.readline() == b"OK\n"
            async with asyncio.timeout(1.5):
                assert await reader.read() == b""
            writer.close()
    run(scenario)


def test_peer_metrics_use_etcds_names(tmp_path):
    async def scenario():
        async with Member(11, str(tmp_path)) as a, Member(12, str(tmp_path)) as b:
            mesh(a, b)
            a.transport.send([app(11, 12, i, size=1000) for i in range(10)])
            await eventually(lambda: len(b.received) == 10, "messages")
            await eventually(lambda: b.transport.is_active(11), "12's stream")
            sent = REGISTRY.get_sample_value("etcd_network_peer_sent_bytes_total", {"To": "c"})
            received = REGISTRY.get_sample_value("etcd_network_peer_received_bytes_total", {"From": "b"})
            assert sent >= 10_000 and received >= 10_000
            assert REGISTRY.get_sample_value("etcd_network_active_peers", {"Local": "b", "Remote": "c"}) == 1
        assert REGISTRY.get_sample_value("etcd_network_active_peers", {"Local": "b", "Remote": "c"}) == 0
    run(scenario)


def test_https_without_a_certificate_and_missing_urls_are_refused(tmp_path):
    async def scenario():
        t = Transport(local_id=1, cluster_id=CLUSTER, listen_urls=["https://127.0.0.1:0"], on_messages=print,
                      on_unreachable=print, on_snapshot_status=print, snapshot_dir=str(tmp_path))
        with pytest.raises(ValueError, match="https needs --peer-cert-file and --peer-key-file"):
            await t.start()
        assert t.urls == []  # nothing was bound, not even as plaintext
        await t.stop()
        fresh = Transport(local_id=1, cluster_id=CLUSTER, listen_urls=[url(0)], on_messages=print,
                          on_unreachable=print, on_snapshot_status=print, snapshot_dir=str(tmp_path))
        with pytest.raises(ValueError, match="want http://host:port or https://host:port"):
            fresh.add_peer(2, ["unix://127.0.0.1:2380"])
        with pytest.raises(ValueError, match="at least one URL"):
            fresh.add_peer(2, [])
    run(scenario)


def test_corrupt_frame_closes_only_that_connection(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="etcdx.transport")

    async def scenario():
        async with Member(1, str(tmp_path)) as a, Member(2, str(tmp_path)) as b:
            mesh(a, b)
            reader, writer = await asyncio.open_connection("127.0.0.1", int(b.url.rsplit(":", 1)[1]))
            writer.write(Handshake("stream", 7, 2, CLUSTER).line())
            assert await reader.readline() == b"OK\n"
            writer.write(b"\x00\x00\x00\x07" + b"\x00\x00\x00\x03\xff\xff\xff")
            async with asyncio.timeout(1):
                assert await reader.read() == b""  # closed by the acceptor
            writer.close()
            a.transport.send([app(1, 2, 0)])
            await eventually(lambda: len(b.received) == 1, "the real peer's stream unaffected")
            assert b.received[0].from_ == 1
    run(scenario)
    assert any(r.getMessage() == "peer connection failed" and "undecodable" in r.fields["error"]
               for r in caplog.records)


def test_a_peers_new_stream_replaces_its_stale_one(tmp_path):
    async def scenario():
        async with Member(2, str(tmp_path)) as b:
            port = int(b.url.rsplit(":", 1)[1])
            conns = []
            for _ in range(2):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(Handshake("stream", 7, 2, CLUSTER).line())
                assert await reader.readline() == b"OK\n"
                conns.append((reader, writer))
            async with asyncio.timeout(1):
                assert await conns[0][0].read() == b""  # the older one was closed
            frame_ = encode_message(app(7, 2, 1))
            conns[1][1].write(U32.pack(len(frame_) + 4) + U32.pack(len(frame_)) + frame_)
            await eventually(lambda: len(b.received) == 1, "message on the newer stream")
            for _, w in conns:
                w.close()
    run(scenario)


def test_peer_urls_are_tried_in_turn_and_updates_redial(tmp_path):
    async def scenario():
        async with RawPeer() as old, Member(1, str(tmp_path)) as a, Member(2, str(tmp_path)) as b:
            a.transport.add_peer(2, [url(free_port()), b.url])  # the first URL is dead
            await eventually(lambda: a.transport.is_active(2), "stream via the second URL")
            a.transport.update_peer(2, [old.url])
            await eventually(lambda: len(old.handshakes) == 1, "redial at the new URL")
            await eventually(lambda: a.transport.is_active(2), "stream at the new URL")
            a.transport.send([app(1, 2, 0)])
            a.transport.update_peer(2, [b.url])
            await eventually(lambda: old.eofs == 1, "the old URL's stream closed")
            await eventually(lambda: a.transport.is_active(2), "back at the real member")
            a.transport.send([app(1, 2, 1)])
            await eventually(lambda: any(m.index == 1 for m in b.received), "message at the real member")
    run(scenario)


def test_stop_is_idempotent_and_works_without_start(tmp_path):
    async def scenario():
        idle = Member(1, str(tmp_path)).transport
        idle.add_peer(2, [url(free_port())])
        await idle.stop()
        await idle.stop()
        async with Member(3, str(tmp_path)) as c:
            c.transport.add_peer(2, [url(free_port())])
            await c.transport.stop()
        assert not c.transport.is_active(2)
    run(scenario)


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_peer_sockets_give_up_on_unacknowledged_data_after_conn_timeout(tmp_path, loop):
    # A peer host that lost power never closes the connection; the kernel's TCP_USER_TIMEOUT does.
    async def scenario():
        async with Member(2, str(tmp_path), conn_timeout=4.0) as b:
            _, writer = await dial(parse_url(b.url), Handshake("stream", 1, 2, CLUSTER), 1.0, user_timeout=2.5)
            dialled = writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT)
            await eventually(lambda: 1 in b.transport._inbound, "the acceptor registered the stream")
            (accepted,) = b.transport._inbound[1]
            assert dialled == 2500
            assert accepted.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 4000
            writer.close()
    run(scenario, loop=loop)
