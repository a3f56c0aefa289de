"""Snapshots travel on their own connection and land durably before raft hears of them."""

from __future__ import annotations

import asyncio
import os

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
from etcdx.raft.types import ConfState, Message, MessageType, Snapshot, SnapshotMetadata
from etcdx.transport import snapshot_db_path
from etcdx.transport.wire import U64, Handshake, frame


def snap(frm: int, to: int, index: int) -> Message:
    meta = SnapshotMetadata(conf_state=ConfState(voters=[1, 2, 3]), index=index, term=4)
    return Message(type=MessageType.SNAP, to=to, from_=frm, term=4, snapshot=Snapshot(data=b"membership", metadata=meta))


class SnapshotSource:
    """open_snapshot for the sender: writes a fresh temp copy of ``content`` per call, optionally held at a gate."""

    def __init__(self, directory, content: bytes, gate: asyncio.Event | None = None) -> None:
        self.directory = directory
        self.content = content
        self.gate = gate
        self.paths: list[str] = []

    async def __call__(self) -> str:
        if self.gate is not None:
            await self.gate.wait()
        path = os.path.join(self.directory, f"outgoing-{len(self.paths)}.db")
        self.paths.append(path)
        await asyncio.to_thread(_write, path, self.content)
        return path


def _write(path: str, content: bytes) -> None:
    with open(path, "wb") as f:
        f.write(content)


def test_snapshot_file_arrives_byte_exact_before_the_message(tmp_path):
    content = os.urandom(5 * 1024 * 1024 + 123)
    source = SnapshotSource(tmp_path, content)
    recv_dir = tmp_path / "recv"
    final = snapshot_db_path(str(recv_dir), 0x2A)
    seen_at_delivery: list[bool] = []

    async def scenario():
        async with Member(1, str(tmp_path / "a"), open_snapshot=source) as a, Member(2, str(recv_dir)) as b:
            mesh(a, b)
            deliver = b.transport._on_messages

            def on_messages(batch):
                if batch[0].type == MessageType.SNAP:
                    seen_at_delivery.append(os.path.exists(final) and os.path.getsize(final) == len(content))
                deliver(batch)

            b.transport._on_messages = on_messages
            msg = snap(1, 2, 0x2A)
            a.transport.send([msg])
            await eventually(lambda: a.snapshot_status == [(2, True)], "snapshot acknowledged", timeout=5)
            assert b.received == [msg]
    run(scenario)
    assert final.endswith("000000000000002a.snap.db")
    assert seen_at_delivery == [True]
    with open(final, "rb") as f:
        assert f.read() == content
    assert not os.path.exists(final + ".part")
    assert source.paths and not any(os.path.exists(p) for p in source.paths), "sender deleted its temp file"


def test_snapshot_to_a_down_peer_fails(tmp_path):
    source = SnapshotSource(tmp_path, b"x" * 1000)

    async def scenario():
        async with Member(1, str(tmp_path), open_snapshot=source) as a:
            a.transport.add_peer(2, [url(free_port())])
            a.transport.send([snap(1, 2, 5)])
            await eventually(lambda: a.snapshot_status == [(2, False)], "snapshot failure reported")
    run(scenario)
    assert not any(os.path.exists(p) for p in source.paths)


def test_snapshot_cut_mid_transfer_fails_and_leaves_no_files(tmp_path):
    source = SnapshotSource(tmp_path, os.urandom(3 * 1024 * 1024))

    async def scenario():
        async with RawPeer() as peer, Member(1, str(tmp_path), open_snapshot=source) as a:
            a.transport.add_peer(2, [peer.url])
            a.transport.send([snap(1, 2, 5)])  # the raw peer reads everything and never acknowledges
            await eventually(lambda: len(peer.handshakes) == 2 and len(source.paths) == 1, "snapshot under way")
            await asyncio.sleep(0.05)
            for w in peer.writers:
                w.transport.abort()
            await eventually(lambda: a.snapshot_status == [(2, False)], "snapshot failure reported")
            assert {h.kind for h in peer.handshakes} == {"stream", "snapshot"}
    run(scenario)
    assert not os.path.exists(source.paths[0])


def test_one_snapshot_in_flight_per_peer_and_the_stream_keeps_flowing(tmp_path):
    async def scenario():
        gate = asyncio.Event()
        source = SnapshotSource(tmp_path, os.urandom(1 << 20), gate)
        async with Member(1, str(tmp_path / "a"), open_snapshot=source) as a, Member(2, str(tmp_path / "b")) as b:
            mesh(a, b)
            a.transport.send([snap(1, 2, 7)])
            a.transport.send([snap(1, 2, 8)])  # while 7 is in flight: refused
            await eventually(lambda: a.snapshot_status == [(2, False)], "second snapshot refused")
            sent = [app(1, 2, i) for i in range(50)]
            a.transport.send(sent)  # the snapshot is held up; raft traffic is not
            await eventually(lambda: len(b.received) == 50, "stream messages during the snapshot")
            gate.set()
            await eventually(lambda: a.snapshot_status == [(2, False), (2, True)], "first snapshot delivered")
            assert b.received[:50] == sent and b.received[50].snapshot.metadata.index == 7
            assert os.path.exists(snapshot_db_path(str(tmp_path / "b"), 7))
    run(scenario)


def test_two_senders_of_the_same_snapshot_do_not_share_a_part_file(tmp_path):
    first, second = os.urandom(1000), os.urandom(10)

    async def scenario():
        async with Member(2, str(tmp_path)) as b:
            port = int(b.url.rsplit(":", 1)[1])

            async def open_snapshot_conn(sender: int):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(Handshake("snapshot", sender, 2, CLUSTER).line())
                assert await reader.readline() == b"OK\n"
                return reader, writer

            r1, w1 = await open_snapshot_conn(1)
            w1.write(frame(encode_message(snap(1, 2, 9))) + U64.pack(len(first)) + first[:500])
            await eventually(lambda: os.path.exists(snapshot_db_path(str(tmp_path), 9) + ".part"), "first transfer")
            r3, w3 = await open_snapshot_conn(3)
            w3.write(frame(encode_message(snap(3, 2, 9))) + U64.pack(len(second)) + second)
            async with asyncio.timeout(1):
                assert await r3.read() == b""  # turned away, no OK
            w1.write(first[500:])
            async with asyncio.timeout(1):
                assert await r1.readline() == b"OK\n"
            await eventually(lambda: len(b.received) == 1, "the first sender's SNAP delivered")
            assert b.received[0].from_ == 1
            w1.close()
            w3.close()
    run(scenario)
    with open(snapshot_db_path(str(tmp_path), 9), "rb") as f:
        assert f.read() == first
