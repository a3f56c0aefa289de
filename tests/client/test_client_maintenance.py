"""Maintenance calls on one member, against etcd and etcdx, through both faces."""

from __future__ import annotations

import hashlib

import pytest

from etcdx.client import AlarmType, errors


def test_status_names_the_member_and_its_leader(member, connect):
    c = connect(member.endpoint)
    status = c.status(member.endpoint)
    assert status.is_leader and status.leader == status.header.member_id
    assert status.version and status.db_size > 0 and status.raft_index > 0
    assert c.status().header.member_id == status.header.member_id  # without an endpoint: any member


def test_member_list_of_a_single_member(member, connect):
    c = connect(member.endpoint)
    (only,) = c.member_list()
    assert only.name == member.name and only.client_urls == (member.client_url,) and not only.is_learner


def test_snapshot_is_saved_whole_with_progress_reports(member, connect, prefix, tmp_path):
    c = connect(member.endpoint)
    c.put(prefix + "k", "v" * 1000)
    reports: list[tuple[int, int]] = []
    info = c.snapshot(tmp_path / "snap.db", progress=lambda received, total: reports.append((received, total)))
    data = (tmp_path / "snap.db").read_bytes()
    assert info.size == len(data) and info.path == str(tmp_path / "snap.db")
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]  # etcd's trailer, checked by the client too
    assert reports[-1] == (len(data), len(data))
    assert [r[0] for r in reports] == sorted(r[0] for r in reports)
    assert not (tmp_path / "snap.db.part").exists()


def test_defragment_and_hash_kv_on_the_member(member, connect, prefix):
    c = connect(member.endpoint)
    revision = c.put(prefix + "k", "v").header.revision
    first = c.hash_kv(revision, member.endpoint)
    c.defragment(member.endpoint, timeout=60)
    assert c.hash_kv(revision, member.endpoint).hash == first.hash


def test_alarms_list_and_disarm_when_none_is_raised(member, connect):
    c = connect(member.endpoint)
    assert c.alarms() == ()
    assert c.alarm_disarm() == ()
    assert c.alarm_disarm(c.status(member.endpoint).header.member_id, AlarmType.NOSPACE) == ()


def test_membership_errors_are_typed(member, connect):
    c = connect(member.endpoint)
    with pytest.raises(errors.MemberNotFound):
        c.member_remove(0xDEAD)
    with pytest.raises(errors.PeerURLExists):
        c.member_add([member.peer_url])
