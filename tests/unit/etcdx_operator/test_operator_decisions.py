"""The reconcile loop's decisions, scenario by scenario, in every driver's world.

Each scenario steps the real ``Operator`` (observe → decide → act → status)
over a fake cluster with plain calls and a fake clock: no processes, no
sleeps. ``make_world`` (conftest) gives the local driver's world and the
Kubernetes driver's world (fake API server + fake kubelet), so both drivers
are held to the same decisions.
"""

from __future__ import annotations

import os

import pytest

from etcdx.operator.model import Phase
from etcdx.operator.reconcile import MAX_FAILED_STARTS


def voters(world) -> list[str]:
    return sorted(m.name for m in world.cluster.members.values() if not m.learner)


def test_create_three_members_then_running(make_world):
    world = make_world(size=3)
    last = world.settle()
    assert last.decision.phase is Phase.RUNNING
    assert world.actions() == ["Bootstrap"]
    assert voters(world) == ["demo-0", "demo-1", "demo-2"]
    status = world.status
    assert status["phase"] == "Running" and status["readyMembers"] == 3 and status["leader"]
    assert {c["type"]: c["status"] for c in status["conditions"]} == {"Available": "True", "Ready": "True"}
    assert all(m["healthy"] and m["clientURLs"] for m in status["members"])


def test_resize_three_to_five_to_three_one_learner_at_a_time(make_world):
    world = make_world(size=3)
    world.settle()
    first_ids = {m.name: m.id for m in world.cluster.members.values()}
    world.set_spec(size=5)
    world.settle()
    assert voters(world) == ["demo-0", "demo-1", "demo-2", "demo-3", "demo-4"]
    grow = world.actions()[1:]
    assert grow == ["AddMember", "StartMember", "PromoteMember"] * 2
    # the loop waited for the learner to catch up before promoting it
    assert any("catching up" in t.decision.reason for t in world.turns)

    world.turns.clear()
    world.set_spec(size=3)
    world.settle()
    assert world.describe()[0].startswith("RemoveMember") and "demo-4" in world.describe()[0]
    assert world.actions() == ["RemoveMember", "RetireSlot"] * 2
    assert {m.name: m.id for m in world.cluster.members.values()} == first_ids
    assert world.data_names() == {"demo-0", "demo-1", "demo-2"}


def test_scale_down_never_removes_the_leader(make_world):
    world = make_world(size=3)
    world.settle()
    leader = world.cluster.leader()
    world.cluster.preferred_leader = max(world.cluster.members)  # the highest ordinal leads
    world.set_spec(size=1)
    world.settle()
    assert voters(world) == [world.cluster.members[max(world.cluster.members)].name]
    assert leader is not None


def test_killed_member_is_restarted_on_its_data_with_the_same_id(make_world):
    world = make_world(size=3)
    world.settle()
    ids = {m.name: m.id for m in world.cluster.members.values()}
    world.turns.clear()
    world.kill("demo-1")
    world.settle()
    assert world.describe() == ["StartMember(name=demo-1, version=0.1.0)"]
    assert {m.name: m.id for m in world.cluster.members.values()} == ids
    assert world.status["readyMembers"] == 3


def test_member_that_lost_its_data_is_replaced_by_a_new_member(make_world):
    world = make_world(size=3)
    world.settle()
    old_id = next(m.id for m in world.cluster.members.values() if m.name == "demo-2")
    world.turns.clear()
    world.lose_data("demo-2")
    world.settle()
    # Locally the slot (its directory) outlives its data and is retired after the removal; on Kubernetes
    # the claim *is* the slot, so a lost claim leaves a member with no slot, removed for that.
    assert [a for a in world.actions() if a != "RetireSlot"] == ["RemoveMember", "AddMember", "StartMember",
                                                                 "PromoteMember"]
    reason = world.turns[0].decision.reason
    assert "lost its data" in reason or "has no slot of ours" in reason
    new = next(m for m in world.cluster.members.values() if m.name == "demo-2")
    assert new.id != old_id and not new.learner
    assert voters(world) == ["demo-0", "demo-1", "demo-2"]


def test_crash_looping_member_is_replaced_after_repeated_failed_starts(make_world):
    world = make_world(size=3)
    world.settle()
    world.turns.clear()
    world.crash_loop("demo-0")
    for _ in range(40):
        turn = world.step()
        if turn.decision.action is not None and type(turn.decision.action).__name__ == "RemoveMember":
            break
    starts = [d for d in world.describe() if d.startswith("StartMember(name=demo-0")]
    assert len(starts) == MAX_FAILED_STARTS
    assert "failed 3 starts in a row" in turn.decision.reason


def test_no_membership_change_without_quorum(make_world):
    world = make_world(size=3)
    world.settle()
    world.lose_data("demo-1")
    world.lose_data("demo-2")
    turn = world.step()
    assert turn.decision.action is None and turn.decision.phase is Phase.UNAVAILABLE
    assert "no quorum" in turn.decision.reason
    assert len(world.cluster.members) == 3


def test_backups_on_the_interval_verified_and_pruned_to_retention(make_world, tmp_path):
    world = make_world(size=1, backup={"interval": "10s", "retention": 2, "destination": str(tmp_path)})
    world.settle()
    assert world.actions() == ["Bootstrap", "TakeBackup"]
    for _ in range(35):  # 35 fake seconds: 3 more backups, each over retention deletes the oldest
        world.step()
    taken = [d for d in world.describe() if d.startswith("TakeBackup")]
    deleted = [d for d in world.describe() if d.startswith("DeleteBackup")]
    assert len(taken) == 4 and len(deleted) == 2
    files = sorted(f for f in os.listdir(tmp_path) if f.endswith(".db"))
    assert len(files) == 2 and all(os.path.exists(tmp_path / (f + ".json")) for f in files)
    last = world.status["backups"]["last"]
    assert last["revision"] == 4 and last["hash"] and world.status["backups"]["count"] == 2


def test_rolling_upgrade_followers_first_then_the_leader_after_moving_leadership(make_world):
    world = make_world(size=3)
    world.settle()
    leader = world.cluster.leader().name
    world.turns.clear()
    world.set_spec(version="0.2.0")
    down_at_once = []
    for _ in range(60):
        turn = world.step()
        down_at_once.append(sum(not world.cluster.hosts[m.peer_url].running for m in world.cluster.members.values()))
        if turn.decision.phase is Phase.RUNNING and turn.decision.action is None:
            break
    steps = world.describe()
    upgrades = [s for s in steps if s.startswith("UpgradeMember")]
    assert len(upgrades) == 3 and leader in upgrades[-1]
    assert steps.index(next(s for s in steps if s.startswith("TransferLeadership"))) == len(steps) - 2
    assert max(down_at_once) <= 1  # never two members down: the quorum held throughout
    assert {h.version for h in world.cluster.hosts.values() if h.running} == {"0.2.0"}
    assert world.cluster.leader().name != leader


def test_upgrade_to_a_version_not_installed_is_refused(make_world):
    world = make_world(size=3)
    if world.driver_name == "kube":
        pytest.skip("Kubernetes lists no installed versions: a missing image leaves the first rolled pod "
                    "unready, and rule 11 stops the roll there")
    world.settle()
    world.set_spec(version="9.9.9")
    turn = world.settle()
    assert turn.decision.phase is Phase.FAILED and "9.9.9 is not installed" in turn.decision.reason
    assert {h.version for h in world.cluster.hosts.values()} == {"0.1.0"}


def test_delete_with_retain_stops_members_and_keeps_data(make_world):
    world = make_world(size=3)
    world.settle()
    world.turns.clear()
    world.request_deletion()
    last = world.settle()
    assert last.decision.phase is Phase.DELETED and "data kept" in last.decision.reason
    assert world.actions() == ["StopMember"] * 3
    assert not any(h.running for h in world.cluster.hosts.values())
    assert world.data_names() == {"demo-0", "demo-1", "demo-2"}


def test_delete_with_policy_delete_removes_data(make_world):
    world = make_world(size=3, deletionPolicy="Delete")
    world.settle()
    world.turns.clear()
    world.request_deletion()
    last = world.settle()
    assert world.actions() == ["StopMember"] * 3 + ["DeleteData"]
    assert last.decision.phase is Phase.DELETED and world.data_names() == set()


def test_restore_bootstraps_every_member_from_the_snapshot(make_world, tmp_path):
    snap = tmp_path / "backup.db"
    snap.write_bytes(b"")
    world = make_world(size=3, restore={"from": str(snap)})
    world.settle()
    first = world.turns[0].decision
    assert first.action.restore_from == str(snap) and "from the snapshot" in first.reason
