"""etcd flags that etcdx honours beyond the basics: each one changes what the member does.

--wal-dir, --max-wals 0, --experimental-compaction-batch-limit,
--initial-election-tick-advance, --unsafe-no-fsync and
--experimental-warning-apply-duration.
"""

from __future__ import annotations

import asyncio
import logging
import pathlib
import types

import pytest
from support import procs

from etcdx.backend import Backend
from etcdx.pb import rpc_pb2
from etcdx.raft import Config, Entry, HardState, MemoryStorage, RawNode, StateType
from etcdx.server.bootstrap import BootError
from etcdx.server.compactor import Compactor
from etcdx.server.config import load
from etcdx.server.etcdserver import EtcdServer
from etcdx.server.raft_driver import RaftDriver
from etcdx.server.snapshots import Snapshotter
from etcdx.server.stores import Stores


def _cfg(tmp_path: pathlib.Path, *extra: str):
    peer = f"http://127.0.0.1:{procs.free_port()}"
    cfg, _ = load(["--data-dir", str(tmp_path / "m.etcd"), "--listen-peer-urls", peer,
                   "--initial-advertise-peer-urls", peer, *extra], {})
    return cfg


async def _put_and_stop(cfg, key: bytes) -> rpc_pb2.RangeResponse:
    s = EtcdServer(cfg)
    s.open()
    await s.start()
    try:
        await s.kv.put(rpc_pb2.PutRequest(key=key, value=b"v"))
        return await s.kv.range(rpc_pb2.RangeRequest(key=b"\0", range_end=b"\0"))
    finally:
        await s.stop()


def test_wal_dir_holds_the_wal_and_a_data_dir_with_its_own_wal_is_not_silently_split(tmp_path):
    cfg = _cfg(tmp_path, "--wal-dir", str(tmp_path / "wal"))
    asyncio.run(_put_and_stop(cfg, b"a"))
    assert list((tmp_path / "wal").glob("*.wal")) and not (tmp_path / "m.etcd" / "member" / "wal").exists()
    resp = asyncio.run(_put_and_stop(cfg, b"b"))  # a restart finds its WAL there
    assert [kv.key for kv in resp.kvs] == [b"a", b"b"]

    plain = _cfg(tmp_path / "other")
    asyncio.run(_put_and_stop(plain, b"a"))
    moved = _cfg(tmp_path / "other", "--wal-dir", str(tmp_path / "elsewhere"))
    with pytest.raises(BootError, match="move it there"):
        EtcdServer(moved).open()


def test_warning_apply_duration_logs_slow_apply_batches(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="etcdx.server"):
        asyncio.run(_put_and_stop(_cfg(tmp_path, "--experimental-warning-apply-duration=0s"), b"k"))
    assert any(r.getMessage() == "apply request took too long" for r in caplog.records)


def _kv_entries(backend: Backend) -> int:
    with backend.read() as rtx:
        return sum(1 for _ in rtx.scan(b"key", b""))


@pytest.mark.parametrize("limit,left", [(3, 17), (1000, 10)])
def test_compaction_batch_limit_bounds_the_revisions_one_step_visits(tmp_path, limit, left):
    backend = Backend(str(tmp_path / "db"))
    stores = Stores(backend, min_lease_ttl=1)
    with backend.write() as btx:
        for _ in range(2):  # ten keys written twice: revisions 2..21
            for i in range(10):
                tw = stores.kv.write(btx)
                tw.put(b"k%d" % i, b"v")
                tw.end()
        stores.kv.compact(21, btx)
    compactor = Compactor(stores, mode="periodic", retention="0", propose=None, is_leader=lambda: True,
                          step_entries=limit)
    compactor.scheduled()
    compactor.step()
    assert _kv_entries(backend) == left  # each visited revision's key lost its older revision
    backend.close()


class _RecordingWAL:
    def __init__(self) -> None:
        self.syncs: list[bool] = []
        self.released: list[int] = []

    def save(self, hard_state, entries, sync=True) -> None:
        self.syncs.append(sync)

    def save_snapshot(self, index, term) -> None:
        pass

    def release_to(self, index) -> None:
        self.released.append(index)

    def close(self) -> None:
        pass


class _Host:
    def on_soft_state(self, ss) -> None: ...
    async def install_snapshot(self, snap) -> None: ...
    def apply(self, entries) -> None: ...
    def on_read_states(self, states) -> None: ...
    def after_ready(self) -> None: ...


def _driver(wal: _RecordingWAL, **kw) -> RaftDriver:
    storage = MemoryStorage()
    RawNode.bootstrap(storage, [1])
    node = RawNode(Config(id=1, storage=storage, election_tick=10, applied=1))
    return RaftDriver(node, storage, wal, member_id=1, tick_interval=10.0, host=_Host(), send=lambda m: None,
                      on_fatal=lambda r: None, **kw)


@pytest.mark.parametrize("fsync", [True, False])
def test_unsafe_no_fsync_writes_the_wal_without_fsync(fsync):
    async def scenario() -> list[bool]:
        wal = _RecordingWAL()
        driver = _driver(wal, fsync=fsync)
        driver.node.campaign()
        driver.node.propose(b"x")
        task = asyncio.ensure_future(driver.run())
        for _ in range(50):
            await asyncio.sleep(0)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        driver.close()
        return wal.syncs

    syncs = asyncio.run(scenario())
    assert syncs and any(syncs) is fsync


def _follower() -> RawNode:
    storage = MemoryStorage()
    RawNode.bootstrap(storage, [1, 2, 3])
    return RawNode(Config(id=1, storage=storage, election_tick=10))


def _ticks_to_campaign(node: RawNode, limit: int) -> int | None:
    for i in range(1, limit + 1):
        node.tick()
        if node.raft_state != StateType.FOLLOWER:
            return i
    return None


def test_initial_tick_advance_leaves_a_follower_two_ticks_short_of_its_election_timeout():
    advanced = _follower()
    driver = types.SimpleNamespace(node=advanced, _wake=asyncio.Event())
    RaftDriver.advance_ticks(driver, 10 - 2)
    assert advanced.raft_state == StateType.FOLLOWER  # advancing never starts an election itself
    # the randomized timeout is in [10, 20) ticks: 2..11 ticks are left after the advance, >= 10 without it
    assert _ticks_to_campaign(advanced, 11) is not None
    assert _ticks_to_campaign(_follower(), 9) is None


def test_max_wals_zero_keeps_every_wal_segment():
    async def scenario(release: bool) -> list[int]:
        wal = _RecordingWAL()
        storage = MemoryStorage()
        RawNode.bootstrap(storage, [1])
        storage.append([Entry(1, i) for i in range(2, 12)])
        storage.set_hard_state(HardState(term=1, vote=1, commit=11))
        driver = types.SimpleNamespace(
            wal=wal, storage=storage, node=types.SimpleNamespace(status=lambda: types.SimpleNamespace(
                conf_state=storage.snapshot().metadata.conf_state)),
            in_wal_thread=lambda fn: asyncio.sleep(0, fn()))
        stores = types.SimpleNamespace(backend=types.SimpleNamespace(sync=lambda: None))
        applied = types.SimpleNamespace(index=11, term=1)
        snap = Snapshotter(stores, driver, applied, snap_dir="", snapshot_count=1, catchup_entries=5,
                           release_wal=release)
        await snap.save()
        return wal.released

    assert asyncio.run(scenario(True)) == [11]
    assert asyncio.run(scenario(False)) == []
