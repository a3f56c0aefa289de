"""The reconcile loop's brain: observation + spec → one safe action and its reason.

``decide`` is a pure function. It looks at what the driver observed (slots,
the cluster's membership, who answered, the leader, backups) and returns a
``Decision``: at most one action, the phase the cluster is in, and a reason a
person can read. The shell (``operator.loop``) carries the action out,
observes again and asks again; doing one thing at a time and looking again
before the next is what makes each step safe: no step is planned on a view
the previous step changed.

The rules, in the order they are tried (the first that applies wins):

1. deletion requested: stop members one by one, then delete their data if the
   policy says so;
2. no cluster yet: bootstrap ``size`` members (from ``restore`` if given);
3. no member answers: restart exited members on their data, else wait;
4. a slot whose member left the cluster: retire it (stop, delete its data);
5. a member that is not ours and does not answer: remove it;
6. an added member whose slot never ran: start it so it joins;
7. an exited member: restart it on its data; one whose data is gone, or
   that keeps crashing, is removed (a new member takes its place by rule 11);
8. a running member that has not answered for ``unready_grace``: restart it;
9. no quorum: wait (nothing that changes membership is safe);
10. a learner: remove it if not needed, promote it once caught up, else wait;
11. voters that do not answer yet: wait before changing the cluster;
12. a backup is due: take it; more backups than retention: delete the oldest;
13. fewer voters than ``size``: add one learner; more: remove one follower;
14. members on another version: roll one (the leader last, after moving
    its leadership away);
15. otherwise the cluster is as the spec says.

Removals are checked against quorum: after the change, the members that
answer must still be a majority of the voters.
"""

from __future__ import annotations

import re

from etcdx.operator.model import (
    AddMember,
    Bootstrap,
    Decision,
    DeleteBackup,
    DeleteData,
    MemberView,
    Observation,
    Phase,
    Process,
    PromoteMember,
    RemoveMember,
    RestartMember,
    RetireSlot,
    StartMember,
    StopMember,
    TakeBackup,
    TransferLeadership,
    UpgradeMember,
)
from etcdx.operator.spec import ClusterSpec

UNREADY_GRACE = 30.0
"""Seconds a running member may go without answering before it is restarted."""
MAX_FAILED_STARTS = 3
"""Starts in a row that die before the member answers; then the member is replaced."""
CATCH_UP_RATIO = 0.9
"""A learner is promoted once it has applied this share of the leader's log (etcd's own rule)."""


def quorum(voters: int) -> int:
    return voters // 2 + 1


def join(obs: Observation) -> list[MemberView]:
    """Members from the membership (matched to slots by peer URL), then slots outside it."""
    by_peer = {slot.peer_url: slot for slot in obs.slots}
    views: list[MemberView] = []
    matched: set[str] = set()
    for m in obs.membership or ():
        slot = next((by_peer[u] for u in m.peer_urls if u in by_peer), None)
        if slot is not None:
            matched.add(slot.name)
            views.append(MemberView(slot.name, slot, m, obs.health.get(slot.client_url)))
        else:
            health = next((obs.health[u] for u in m.client_urls if u in obs.health), None)
            views.append(MemberView(m.name or f"unknown-{m.id:x}", None, m, health))
    for slot in obs.slots:
        if slot.name not in matched:
            views.append(MemberView(slot.name, slot, None, obs.health.get(slot.client_url)))
    return views


def leader_of(views: list[MemberView]) -> MemberView | None:
    """The member the answering voters name as leader, if it is one of the views."""
    named = {v.health.leader_id for v in views if v.health is not None and v.health.has_leader}
    if len(named) != 1:
        return None
    lid = named.pop()
    return next((v for v in views if v.id == lid), None)


def ordinal(name: str) -> int:
    m = re.search(r"-([0-9]+)$", name)
    return int(m.group(1)) if m else -1


def next_name(spec: ClusterSpec, obs: Observation, views: list[MemberView]) -> str:
    """The lowest ordinal no slot or member uses (a StatefulSet-like, stable naming)."""
    taken = {v.name for v in views} | {s.name for s in obs.slots}
    return next(spec.member_name(i) for i in range(len(taken) + 1) if spec.member_name(i) not in taken)


def _removal_safe(views: list[MemberView], target: MemberView) -> bool:
    """True when removing ``target`` leaves a majority of the remaining voters answering."""
    if not target.is_voter:
        return True
    voters = [v for v in views if v.is_voter and v is not target]
    return sum(v.healthy for v in voters) >= quorum(len(voters)) if voters else False


def decide(spec: ClusterSpec, obs: Observation, *, unready_grace: float = UNREADY_GRACE) -> Decision:
    """The next step towards ``spec`` from ``obs``; see the module docstring for the rules."""
    if obs.deleting:
        return _delete(spec, obs)
    if obs.installed_versions is not None and spec.version not in obs.installed_versions:
        versions = ", ".join(sorted(obs.installed_versions)) or "none"
        blocked = f"version {spec.version} is not installed (installed: {versions})"
        if not obs.bootstrapped:
            return Decision(None, f"cannot create the cluster: {blocked}", Phase.FAILED)
    else:
        blocked = ""
    if not obs.bootstrapped:
        names = tuple(spec.member_name(i) for i in range(spec.size))
        source = f" from the snapshot {spec.restore_from}" if spec.restore_from else ""
        return Decision(Bootstrap(names, spec.version, spec.restore_from),
                        f"no cluster yet: create {spec.size} member(s){source}", Phase.CREATING)
    views = join(obs)
    if obs.membership is None:
        return _no_answer(spec, obs, views)
    return _running(spec, obs, views, blocked, unready_grace)


def _delete(spec: ClusterSpec, obs: Observation) -> Decision:
    running = [s for s in obs.slots if s.process is Process.RUNNING]
    if running:
        return Decision(StopMember(running[-1].name),
                        f"deleting: stop {running[-1].name} ({len(running)} member(s) still running)", Phase.DELETING)
    if spec.deletion_policy == "Delete" and obs.data_left:
        return Decision(DeleteData(), "deleting: every member stopped; deletionPolicy Delete removes their data",
                        Phase.DELETING)
    kept = "data kept (deletionPolicy Retain)" if spec.deletion_policy == "Retain" else "data removed"
    return Decision(None, f"deleted: no member runs; {kept}", Phase.DELETED)


def _restart_version(spec: ClusterSpec, view: MemberView) -> str:
    return view.slot.version if view.slot and view.slot.version else spec.version


def _no_answer(spec: ClusterSpec, obs: Observation, views: list[MemberView]) -> Decision:
    startable = [v for v in views if v.slot and v.slot.process is not Process.RUNNING
                 and (v.slot.has_data or v.slot.process is Process.ABSENT)]
    starting = not any(s.ever_ready for s in obs.slots)
    if startable:
        v = startable[0]
        why = "has never run" if v.slot.process is Process.ABSENT else "has exited"
        return Decision(StartMember(v.name, _restart_version(spec, v)),
                        f"no member answers and {v.name} {why}: start it on its data dir",
                        Phase.CREATING if starting else Phase.REPAIRING)
    if any(s.process is Process.RUNNING for s in obs.slots):
        if starting:
            return Decision(None, "members are starting; none answers yet", Phase.CREATING)
        return Decision(None, "no member answers (no quorum, or members still starting); waiting",
                        Phase.UNAVAILABLE)
    return Decision(None, "every member is gone and none has data left: the cluster is lost; "
                          "create a new one from a backup (spec.restore)", Phase.FAILED)


def _running(spec: ClusterSpec, obs: Observation, views: list[MemberView], blocked: str,
             unready_grace: float) -> Decision:
    voters = [v for v in views if v.is_voter]
    healthy_voters = [v for v in voters if v.healthy]
    leader = leader_of(views)

    # 4. slots whose member is not (or no longer) in the cluster
    for v in views:
        if v.raft is None and v.slot is not None:
            return Decision(RetireSlot(v.name), f"{v.name} is not a member of the cluster (removed, or its "
                                                f"MemberAdd failed): stop it and delete its data", Phase.REPAIRING)
    # 5. members that are not ours and do not answer
    for v in views:
        if v.slot is None and v.raft is not None and not v.healthy:
            if _removal_safe(views, v):
                return Decision(RemoveMember(v.raft.id, v.name), f"member {v.name} ({v.raft.id:x}) has no slot of "
                                f"ours and does not answer: remove it", Phase.REPAIRING)
    # 6. added members that never ran
    for v in views:
        if v.raft is not None and v.slot is not None and v.slot.process is Process.ABSENT and not v.slot.has_data:
            return Decision(StartMember(v.name, spec.version),
                            f"{v.name} was added to the cluster and has not run: start it to join", Phase.SCALING)
    # 7. exited members: restart on their data, or replace
    for v in views:
        if v.slot is None or v.slot.process is Process.RUNNING or v.raft is None:
            continue
        if v.slot.has_data and v.slot.failed_starts < MAX_FAILED_STARTS:
            return Decision(StartMember(v.name, _restart_version(spec, v)),
                            f"{v.name}'s process has exited: restart it on its data dir (same member id, "
                            f"no membership change)", Phase.REPAIRING)
        why = (f"has failed {v.slot.failed_starts} starts in a row" if v.slot.has_data
               else "has lost its data dir")
        if _removal_safe(views, v):
            return Decision(RemoveMember(v.raft.id, v.name),
                            f"{v.name} {why}: remove it from the cluster; a new member takes its place",
                            Phase.REPAIRING)
        return Decision(None, f"{v.name} {why}, but removing it would leave no quorum: waiting for "
                              f"other members", Phase.UNAVAILABLE)
    # 8. running members that stopped answering
    for v in views:
        s = v.slot
        if s is not None and s.process is Process.RUNNING and s.unready_since is not None \
                and obs.now - s.unready_since >= unready_grace:
            return Decision(RestartMember(v.name), f"{v.name} runs but has not answered for "
                            f"{obs.now - s.unready_since:.0f}s: restart it", Phase.REPAIRING)
    # 9. quorum
    if len(healthy_voters) < quorum(len(voters)):
        if any(v.slot is not None and not v.slot.ever_ready for v in voters):
            return Decision(None, f"members are starting: {len(healthy_voters)} of {len(voters)} voters answer",
                            Phase.CREATING)
        return Decision(None, f"no quorum: {len(healthy_voters)} of {len(voters)} voters answer; "
                              f"waiting for members to come back", Phase.UNAVAILABLE)
    # 10. a learner joining
    for v in views:
        if not v.is_learner:
            continue
        if len(voters) >= spec.size:
            return Decision(RemoveMember(v.raft.id, v.name), f"learner {v.name} is not needed: "
                            f"{len(voters)} voters, spec wants {spec.size}", Phase.SCALING)
        if v.health is not None and leader is not None and leader.health is not None \
                and v.health.applied_index >= CATCH_UP_RATIO * leader.health.raft_index:
            return Decision(PromoteMember(v.name, v.raft.id),
                            f"learner {v.name} has caught up (applied {v.health.applied_index} of "
                            f"{leader.health.raft_index}): promote it to a voter", Phase.SCALING)
        progress = f"applied {v.health.applied_index}" if v.health else "not answering yet"
        return Decision(None, f"learner {v.name} is catching up ({progress}); waiting", Phase.SCALING)
    # 11. voters that do not answer (yet)
    lagging = [v.name for v in voters if not v.healthy]
    if lagging:
        return Decision(None, f"{', '.join(lagging)} do(es) not answer yet: waiting before changing the cluster",
                        Phase.REPAIRING)
    # 12. backups
    backup = _backup(spec, obs, leader, healthy_voters)
    if backup is not None:
        return backup
    # 13. size
    if len(voters) < spec.size:
        name = next_name(spec, obs, views)
        return Decision(AddMember(name), f"{len(voters)} voter(s), spec wants {spec.size}: add {name} as a "
                                         f"learner", Phase.SCALING)
    if len(voters) > spec.size:
        candidates = sorted((v for v in voters if v is not leader), key=lambda v: ordinal(v.name), reverse=True)
        target = candidates[0]
        return Decision(RemoveMember(target.raft.id, target.name), f"{len(voters)} voters, spec wants "
                        f"{spec.size}: remove {target.name} (a follower)", Phase.SCALING)
    # 14. versions
    stale = [v for v in voters if v.slot is not None and v.slot.version != spec.version]
    if stale:
        if blocked:
            return Decision(None, f"cannot upgrade: {blocked}", Phase.FAILED)
        if any(a.startswith("CORRUPT") for a in obs.alarms):
            return Decision(None, "cannot upgrade while a CORRUPT alarm is raised", Phase.FAILED)
        followers = [v for v in stale if v is not leader]
        if followers:
            target = max(followers, key=lambda v: ordinal(v.name))
            return Decision(UpgradeMember(target.name, spec.version),
                            f"every member answers; roll {target.name} from {target.slot.version} to "
                            f"{spec.version} ({len(stale)} member(s) left)", Phase.UPGRADING)
        if len(voters) > 1 and leader is not None:
            to = next((v for v in healthy_voters if v is not leader and v.slot and v.slot.version == spec.version),
                      None) or next(v for v in healthy_voters if v is not leader)
            return Decision(TransferLeadership(leader.raft.id, to.raft.id, to.name),
                            f"the leader {leader.name} is the last member on {leader.slot.version}: move "
                            f"leadership to {to.name} before rolling it", Phase.UPGRADING)
        target = stale[0]
        note = " (a single member cannot be rolled without downtime)" if len(voters) == 1 else ""
        return Decision(UpgradeMember(target.name, spec.version),
                        f"roll {target.name} from {target.slot.version} to {spec.version}{note}", Phase.UPGRADING)
    versions = f"version {spec.version}"
    return Decision(None, f"the cluster is as the spec says: {len(voters)} voter(s) answering, {versions}",
                    Phase.RUNNING)


def _backup(spec: ClusterSpec, obs: Observation, leader: MemberView | None,
            healthy_voters: list[MemberView]) -> Decision | None:
    if spec.backup is None:
        return None
    policy = spec.backup
    if len(obs.backups) > policy.retention:
        oldest = obs.backups[0]
        return Decision(DeleteBackup(oldest.path), f"{len(obs.backups)} backups, retention is "
                        f"{policy.retention}: delete the oldest", Phase.RUNNING)
    last = obs.backups[-1] if obs.backups else None
    due = last is None or obs.now - last.taken_at >= policy.interval
    ours = [v for v in healthy_voters if v.slot is not None]
    if due and leader is not None and ours and not any(a.startswith("CORRUPT") for a in obs.alarms):
        source = leader if leader in ours else ours[0]
        why = "no backup yet" if last is None else f"last backup {obs.now - last.taken_at:.0f}s ago"
        return Decision(TakeBackup(source.name), f"{why}, interval {policy.interval:g}s: snapshot through "
                                                 f"{source.name}", Phase.RUNNING)
    return None
