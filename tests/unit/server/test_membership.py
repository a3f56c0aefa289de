"""Membership changes and boot: etcd's checks and what each boot path yields."""

from __future__ import annotations

import pytest

from etcdx.backend import Backend
from etcdx.raft.types import ConfChange, ConfChangeType, Entry, HardState
from etcdx.server import bootstrap, errors
from etcdx.server.config import load
from etcdx.server.ids import cluster_id, member_id
from etcdx.server.membership import (Member, apply_conf_change, load_members, load_removed, save_member,
                                     validate_conf_change)


def members() -> dict[int, Member]:
    return {1: Member(1, "a", ["http://h:1"]), 2: Member(2, "b", ["http://h:2"])}


def add(nid: int, url: str, learner: bool = False) -> ConfChange:
    t = ConfChangeType.ADD_LEARNER_NODE if learner else ConfChangeType.ADD_NODE
    return ConfChange(type=t, node_id=nid, context=Member(nid, "", [url], [], learner).encode())


@pytest.mark.parametrize("cc, err", [
    (add(2, "http://h:9"), errors.MEMBER_EXISTS),
    (add(3, "http://h:2"), errors.PEER_URL_EXISTS),
    (add(5, "http://h:9"), errors.MEMBER_EXISTS),  # 5 was removed: ids never come back
    (ConfChange(type=ConfChangeType.REMOVE_NODE, node_id=9), errors.MEMBER_NOT_FOUND),
    (ConfChange(type=ConfChangeType.UPDATE_NODE, node_id=9, context=Member(9, "", ["http://h:9"]).encode()),
     errors.MEMBER_NOT_FOUND),
    (ConfChange(type=ConfChangeType.UPDATE_NODE, node_id=1, context=Member(1, "", ["http://h:2"]).encode()),
     errors.PEER_URL_EXISTS),
])
def test_invalid_changes_get_etcds_errors(cc, err):
    with pytest.raises(errors.EtcdError) as raised:
        validate_conf_change(members(), {5}, cc)
    assert raised.value == err


def test_one_learner_at_most_and_promotion(tmp_path):
    ms = members()
    backend = Backend(str(tmp_path / "db"))
    with backend.write() as btx:
        for m in ms.values():
            save_member(btx, m)
        validate_conf_change(ms, set(), add(3, "http://h:3", learner=True))
        apply_conf_change(btx, ms, add(3, "http://h:3", learner=True))
    assert ms[3].is_learner
    with pytest.raises(errors.EtcdError) as raised:
        validate_conf_change(ms, set(), add(4, "http://h:4", learner=True))
    assert raised.value == errors.TOO_MANY_LEARNERS
    promote = ConfChange(type=ConfChangeType.ADD_NODE, node_id=3, context=ms[3].encode())
    validate_conf_change(ms, set(), promote)  # adding an existing learner as a voter promotes it
    with backend.write() as btx:
        apply_conf_change(btx, ms, promote)
        apply_conf_change(btx, ms, ConfChange(type=ConfChangeType.REMOVE_NODE, node_id=2))
    assert not ms[3].is_learner
    assert sorted(load_members(backend)) == [1, 3] and load_removed(backend) == {2}
    backend.close()


def _cfg(tmp_path, *extra: str):
    cfg, _ = load(["--name", "m1", "--data-dir", str(tmp_path / "m1"),
                   "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
                   "--initial-cluster", "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2381,m3=http://127.0.0.1:2382",
                   *extra], environ={})
    return cfg


def test_new_cluster_ids_membership_and_restart(tmp_path):
    cfg = _cfg(tmp_path)
    backend = Backend(str(tmp_path / "db"))
    bs = bootstrap.boot(cfg, backend, str(tmp_path / "wal"))
    ids = [member_id([f"http://127.0.0.1:{p}"], "etcd-cluster") for p in (2380, 2381, 2382)]
    assert bs.member_id == ids[0] and bs.cluster_id == cluster_id(ids)
    assert sorted(load_members(backend)) == sorted(ids) and bs.applied == 1
    snap = bs.storage.snapshot()
    assert (snap.metadata.index, snap.metadata.term) == (1, 1)
    assert snap.metadata.conf_state.voters == sorted(ids)
    # entries 2..4 reach the WAL, 2..3 are applied, then the member restarts
    bs.wal.save(HardState(term=2, vote=ids[0], commit=4), [Entry(2, i) for i in (2, 3, 4)])
    with backend.write() as btx:
        btx.set_consistent_index(3, 2)
    bs.wal.close()
    again = bootstrap.boot(cfg, backend, str(tmp_path / "wal"))
    assert (again.member_id, again.cluster_id, again.applied) == (bs.member_id, bs.cluster_id, 3)
    assert again.storage.first_index() == 4 and again.storage.last_index() == 4
    assert again.storage.initial_state()[0] == HardState(term=2, vote=ids[0], commit=4)
    assert again.storage.initial_state()[1].voters == sorted(ids)
    again.wal.close()
    backend.close()


def test_join_finds_itself_by_peer_urls_or_refuses(tmp_path):
    cfg = _cfg(tmp_path, "--initial-cluster-state", "existing")
    me = Member(42, "", ["http://127.0.0.1:2380"])
    info = bootstrap.ClusterInfo(7, [Member(1, "m2", ["http://127.0.0.1:2381"]), me])
    backend = Backend(str(tmp_path / "db"))
    bs = bootstrap.boot(cfg, backend, str(tmp_path / "wal"), info)
    assert (bs.member_id, bs.cluster_id, bs.applied, bs.joining) == (42, 7, 0, True)
    assert bs.storage.last_index() == 0 and sorted(load_members(backend)) == [1, 42]
    bs.wal.close()
    backend.close()
    with pytest.raises(bootstrap.BootError):
        other = Backend(str(tmp_path / "db2"))
        try:
            bootstrap.boot(cfg, other, str(tmp_path / "wal2"), bootstrap.ClusterInfo(7, info.members[:1]))
        finally:
            other.close()


def test_members_payload_round_trip():
    raw = bootstrap.members_payload(7, members(), {5})
    info = bootstrap.parse_members_payload(raw)
    assert info.cluster_id == 7 and info.removed == {5}
    assert sorted(m.id for m in info.members) == [1, 2]
