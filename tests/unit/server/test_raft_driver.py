"""The raft driver keeps bad peer input apart from broken invariants.

A follower (member 2 of 1..3) has entries 2 and 3 of term 2, committed up to 3
but not applied yet. Junk from a peer is dropped and counted; a message raft
refuses as a broken log halts the driver before anything more is persisted,
sent or applied.
"""

from __future__ import annotations

import asyncio

from etcdx.raft import Config, Entry, HardState, MemoryStorage, Message, MessageType, RawNode
from etcdx.server.raft_driver import RaftDriver


class FakeWAL:
    def __init__(self) -> None:
        self.saved: list[tuple] = []

    def save(self, hard_state, entries, sync=True) -> None:
        self.saved.append((hard_state, list(entries)))

    def close(self) -> None:
        pass


class Host:
    def __init__(self) -> None:
        self.applied: list[int] = []

    def on_soft_state(self, ss) -> None:
        pass

    async def install_snapshot(self, snap) -> None:
        raise AssertionError("no snapshot expected")

    def apply(self, entries):
        self.applied += [e.index for e in entries]

    def on_read_states(self, states) -> None:
        pass

    def after_ready(self) -> None:
        pass


def _driver() -> tuple[RaftDriver, Host, list[str], list[Message]]:
    storage = MemoryStorage()
    RawNode.bootstrap(storage, [1, 2, 3])
    storage.append([Entry(index=2, term=2, data=b"a"), Entry(index=3, term=2, data=b"b")])
    storage.set_hard_state(HardState(term=2, vote=1, commit=3))
    node = RawNode(Config(id=2, storage=storage, applied=1))
    host, fatal, sent = Host(), [], []
    driver = RaftDriver(node, storage, FakeWAL(), member_id=2, tick_interval=10.0, host=host,
                        send=sent.extend, on_fatal=fatal.append)
    return driver, host, fatal, sent


async def _run_briefly(driver: RaftDriver) -> None:
    task = asyncio.ensure_future(driver.run())
    for _ in range(20):
        await asyncio.sleep(0)
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def test_junk_from_a_peer_is_dropped_and_counted_and_the_member_goes_on():
    async def scenario() -> None:
        driver, host, fatal, _ = _driver()
        driver.step_peer_messages([
            Message(type=MessageType.HUP, from_=1, to=2, term=2),  # a local-only message type
            Message(type=MessageType.HEARTBEAT, from_=1, to=3, term=2),  # addressed to another member
        ])
        assert driver.dropped_peer_messages == 2 and not fatal and not driver.halted
        await _run_briefly(driver)
        assert host.applied == [2, 3]  # the committed entries still apply

    asyncio.run(scenario())


def test_a_broken_invariant_halts_the_driver_before_anything_more_happens():
    """The leader's heartbeat claims a commit index past the follower's last entry: one of
    the two logs is broken (raft refuses to go on, as etcd's panics)."""
    async def scenario() -> None:
        driver, host, fatal, sent = _driver()
        driver.step_peer_messages([Message(type=MessageType.HEARTBEAT, from_=1, to=2, term=2, commit=9)])
        assert driver.halted and len(fatal) == 1 and "raft refused" in fatal[0], fatal
        await _run_briefly(driver)
        assert host.applied == [] and sent == [] and driver.wal.saved == []
        driver.step_peer_messages([Message(type=MessageType.HEARTBEAT, from_=1, to=2, term=2, commit=3)])
        assert len(fatal) == 1  # nothing is stepped any more

    asyncio.run(scenario())
