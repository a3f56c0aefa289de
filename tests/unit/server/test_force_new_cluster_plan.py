"""--force-new-cluster: which entries a member keeps, which it writes, and that the WAL keeps them."""

from __future__ import annotations

import pytest

from etcdx.backend import Backend
from etcdx.raft.codec import decode_conf_change, encode_conf_change
from etcdx.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
)
from etcdx.server import bootstrap
from etcdx.server.config import load
from etcdx.server.force_new_cluster import ForceNewClusterError, members_after, plan
from etcdx.server.membership import Member


def conf(index: int, kind: ConfChangeType, nid: int, term: int = 2) -> Entry:
    cc = ConfChange(type=kind, node_id=nid, context=Member(nid, "", [f"http://h:{nid}"]).encode())
    return Entry(term, index, EntryType.CONF_CHANGE, encode_conf_change(cc))


def removed_ids(entries: list[Entry]) -> list[int]:
    out = []
    for e in entries:
        cc = decode_conf_change(e)
        assert cc.type == ConfChangeType.REMOVE_NODE
        out.append(cc.node_id)
    return out


def test_the_others_are_removed_after_the_commit_index_and_the_uncommitted_tail_is_dropped():
    cs = ConfState(voters=[1, 2, 3])
    tail = [Entry(2, 11, data=b"put"), conf(12, ConfChangeType.ADD_LEARNER_NODE, 4),
            Entry(2, 13, data=b"put"), conf(14, ConfChangeType.ADD_NODE, 5), Entry(3, 15, data=b"put")]
    p = plan(1, HardState(term=3, vote=1, commit=13), cs, tail)
    assert p.discarded == 2  # 14 (adding 5) and 15 were never known committed here
    assert [e.index for e in p.entries] == [11, 12, 13, 14, 15, 16]
    assert p.entries[:3] == tail[:3] and p.appended == p.entries[3:]
    assert removed_ids(p.appended) == [2, 3, 4] and p.removed == [2, 3, 4]
    assert all(e.term == 3 for e in p.appended)
    assert p.hard_state == HardState(term=3, vote=1, commit=16)


def test_a_member_already_alone_overwrites_a_discarded_tail_with_an_empty_entry():
    p = plan(1, HardState(term=4, vote=1, commit=20), ConfState(voters=[1]), [Entry(4, 20), Entry(4, 21, data=b"x")])
    assert p.removed == [] and p.discarded == 1
    assert p.appended == [Entry(4, 21)] and p.hard_state.commit == 21
    p = plan(1, HardState(term=4, vote=1, commit=21), ConfState(voters=[1]), [Entry(4, 20), Entry(4, 21)])
    assert p.appended == [] and p.hard_state.commit == 21  # nothing to write: a restart with the flag is a no-op


@pytest.mark.parametrize("cs,tail,why", [
    (ConfState(voters=[2, 3], learners=[1]), [], "learner"),
    (ConfState(voters=[1, 2, 3]), [conf(11, ConfChangeType.REMOVE_NODE, 1)], "removed"),
    (ConfState(voters=[1, 2], voters_outgoing=[1, 2, 3]), [], "joint"),
])
def test_a_member_that_cannot_lead_alone_is_refused(cs, tail, why):
    with pytest.raises(ForceNewClusterError, match=why):
        plan(1, HardState(term=2, vote=1, commit=11), cs, tail)


def test_members_after_follows_promotions_and_removals():
    tail = [conf(2, ConfChangeType.ADD_LEARNER_NODE, 4), conf(3, ConfChangeType.ADD_NODE, 4),
            conf(4, ConfChangeType.REMOVE_NODE, 2)]
    assert members_after(ConfState(voters=[1, 2, 3]), tail) == ({1, 3, 4}, set())


def test_boot_with_the_flag_rewrites_the_log_durably(tmp_path):
    """A 3-member data dir with committed and uncommitted entries restarts alone, and stays alone."""
    cfg, _ = load(["--name", "m1", "--data-dir", str(tmp_path / "m1"), "--initial-advertise-peer-urls",
                   "http://127.0.0.1:2380", "--initial-cluster",
                   "m1=http://127.0.0.1:2380,m2=http://127.0.0.1:2381,m3=http://127.0.0.1:2382"], environ={})
    wal_dir = str(tmp_path / "wal")
    backend = Backend(str(tmp_path / "db"))
    bs = bootstrap.boot(cfg, backend, wal_dir)
    me, others = bs.member_id, sorted(set(bs.storage.snapshot().metadata.conf_state.voters) - {bs.member_id})
    # entries 2..4 committed (2..3 applied), 5..6 appended but never known committed
    bs.wal.save(HardState(term=2, vote=me, commit=4), [Entry(2, i, data=b"e%d" % i) for i in range(2, 7)])
    with backend.write() as btx:
        btx.set_consistent_index(3, 2)
    bs.wal.close()

    forced = bootstrap.boot(load(["--force-new-cluster", *cfg_args(cfg)], environ={})[0], backend, wal_dir)
    assert (forced.member_id, forced.cluster_id, forced.applied) == (bs.member_id, bs.cluster_id, 3)
    kept = forced.storage.entries(4, forced.storage.last_index() + 1)
    assert [e.index for e in kept] == [4, 5, 6] and kept[0].data == b"e4"
    assert removed_ids(kept[1:]) == others
    assert forced.storage.initial_state()[0] == HardState(term=2, vote=me, commit=6)
    forced.wal.close()

    again = bootstrap.boot(cfg, backend, wal_dir)  # no flag: the WAL holds the removals, not e5 and e6
    entries = again.storage.entries(4, again.storage.last_index() + 1)
    assert entries == kept and again.storage.initial_state()[0].commit == 6
    again.wal.close()
    backend.close()


def cfg_args(cfg) -> list[str]:
    return ["--name", cfg.name, "--data-dir", cfg.data_dir, "--initial-advertise-peer-urls",
            ",".join(cfg.initial_advertise_peer_urls), "--initial-cluster", cfg.initial_cluster]
