"""A peer that stops reading costs a bounded queue, dropped messages and unreachable reports, nothing more."""

from __future__ import annotations

import asyncio
import logging
import time
import tracemalloc

from prometheus_client import REGISTRY
from transport_testkit import Member, RawPeer, app, eventually, run

from etcdx.raft.types import Entry, Message, MessageType
from etcdx.transport.peer import MAX_QUEUE


def test_stuck_peer_keeps_queue_bounded_and_loop_responsive(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="etcdx.transport")

    async def scenario():
        async with RawPeer(read=False) as stuck, Member(0x51, str(tmp_path)) as a:
            a.transport.add_peer(0x52, [stuck.url])
            await eventually(lambda: a.transport.is_active(0x52), "stream to the stuck peer")
            peer = a.transport._peers[0x52]
            failures_before = REGISTRY.get_sample_value("etcd_network_peer_sent_failures_total", {"To": "52"}) or 0

            blob = bytes(16 * 1024)  # shared by all messages: only what the transport allocates is measured

            async def flood(rounds: int) -> int:
                """Send rounds x 500 x 16 KiB (8 MB a round); return the longest queue seen."""
                longest = 0
                for r in range(rounds):
                    a.transport.send([Message(type=MessageType.APP, to=0x52, from_=0x51, index=r * 500 + i,
                                              entries=[Entry(term=1, index=r * 500 + i + 1, data=blob)])
                                      for i in range(500)])
                    longest = max(longest, len(peer.queue))
                    await asyncio.sleep(0.002)
                return longest

            # Responsiveness: the longest gap between two 5 ms timer callbacks, in this process's CPU
            # time, so that other processes on a loaded machine do not count as our stall (the
            # figure includes tracemalloc's own overhead, so it is an upper bound).
            lag = 0.0
            flooding = True

            async def ticker():
                nonlocal lag
                while flooding:
                    t = time.process_time()
                    await asyncio.sleep(0.005)
                    lag = max(lag, time.process_time() - t)

            tick = asyncio.ensure_future(ticker())
            tracemalloc.start()
            try:
                baseline = tracemalloc.get_traced_memory()[0]
                max_queue = await flood(40)  # 320 MB if it were all buffered
                grown = tracemalloc.get_traced_memory()[1] - baseline
            finally:
                tracemalloc.stop()
                flooding = False
                await tick

            assert max_queue <= MAX_QUEUE
            await eventually(lambda: 0x52 in a.unreachable, "drops reported as unreachable")
            failures = REGISTRY.get_sample_value("etcd_network_peer_sent_failures_total", {"To": "52"})
            assert failures - failures_before > 10_000
            assert grown < 24 * 1024 * 1024, f"memory grew by {grown / 1e6:.0f} MB"
            assert lag < 0.3, f"event loop stalled for {lag:.3f}s of CPU"
            assert a.transport.is_active(0x52)  # a slow peer is not a dead one (yet)
    run(scenario)
    assert any(r.getMessage() == "dropped internal raft message since sending buffer is full" for r in caplog.records)


def test_write_that_cannot_drain_closes_the_stream_and_redials(tmp_path):
    async def scenario():
        async with RawPeer(read=False) as stuck, Member(1, str(tmp_path), conn_timeout=0.3) as a:
            a.transport.add_peer(2, [stuck.url])
            await eventually(lambda: a.transport.is_active(2), "stream up")
            for i in range(20):  # far more than the socket buffers hold
                a.transport.send([app(1, 2, i * 100 + k, size=64 * 1024) for k in range(100)])
                await asyncio.sleep(0)
            await eventually(lambda: not a.transport.is_active(2), "write timeout declares the stream dead")
            assert 2 in a.unreachable
            await eventually(lambda: len(stuck.handshakes) >= 2, "redial after the write timeout")
            await eventually(lambda: a.transport.is_active(2), "new stream")
    run(scenario)
