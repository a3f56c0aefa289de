"""Linearizable reads share one ReadIndex round; one reader giving up must not fail the others."""

from __future__ import annotations

import asyncio
import pathlib

from etcdx.pb import rpc_pb2
from etcdx.server.config import load
from etcdx.server.etcdserver import EtcdServer


def _server(tmp_path: pathlib.Path) -> EtcdServer:
    cfg, _ = load(["--data-dir", str(tmp_path / "m.etcd")], {})
    s = EtcdServer(cfg)
    s.open()
    return s


def test_cancelled_reader_does_not_cancel_the_shared_round(tmp_path: pathlib.Path) -> None:
    async def scenario() -> rpc_pb2.RangeResponse:
        s = _server(tmp_path)
        await s.start()
        try:
            await s.kv.put(rpc_pb2.PutRequest(key=b"k", value=b"v"))
            first = asyncio.ensure_future(s.kv.range(rpc_pb2.RangeRequest(key=b"k")))
            second = asyncio.ensure_future(s.kv.range(rpc_pb2.RangeRequest(key=b"k")))
            await asyncio.sleep(0)  # both are now waiting on the same round
            first.cancel()
            return await asyncio.wait_for(second, 5)
        finally:
            await s.stop()

    resp = asyncio.run(scenario())
    assert [kv.value for kv in resp.kvs] == [b"v"]


def test_reads_see_every_write_acknowledged_before_them(tmp_path: pathlib.Path) -> None:
    async def scenario() -> list[int]:
        s = _server(tmp_path)
        await s.start()
        try:
            seen = []
            for i in range(20):
                put = await s.kv.put(rpc_pb2.PutRequest(key=b"k", value=str(i).encode()))
                got = await s.kv.range(rpc_pb2.RangeRequest(key=b"k"))
                assert got.kvs[0].mod_revision == put.header.revision
                seen.append(got.header.revision)
            return seen
        finally:
            await s.stop()

    revs = asyncio.run(scenario())
    assert revs == sorted(revs) and len(set(revs)) == 20


def test_a_read_never_joins_a_round_sent_before_it_arrived(tmp_path: pathlib.Path) -> None:
    """Found by the fault harness (seed 603, 3 members): a leader paused mid-round and resumed
    answered a read made during the pause with a round confirmed before it. A read arriving
    while a round is in flight must wait for the next round, which all such reads share."""

    async def scenario() -> None:
        s = _server(tmp_path)
        await s.start()
        try:
            await s.kv.put(rpc_pb2.PutRequest(key=b"k", value=b"v"))
            sent: list[bytes] = []
            s.driver.node.read_index = sent.append  # hold the rounds: answer them by hand below
            early = asyncio.ensure_future(s.linearizable_barrier())
            await asyncio.sleep(0)
            assert len(sent) == 1
            late = [asyncio.ensure_future(s.linearizable_barrier()) for _ in range(3)]
            await asyncio.sleep(0)
            assert len(sent) == 1, "a read joined the round already in flight"
            s.read_index.answer(sent[0], s.applied.index)
            await asyncio.wait_for(early, 5)
            assert len(sent) == 2, "the reads that waited get one new round"
            assert not any(f.done() for f in late)
            s.read_index.answer(sent[1], s.applied.index)
            await asyncio.wait_for(asyncio.gather(*late), 5)
        finally:
            await s.stop()

    asyncio.run(scenario())
