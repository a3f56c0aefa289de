"""The cluster's status as the operator reports it, and its terminal table.

``summarize`` is pure: spec + observation + decision (+ the previous status,
for the conditions' transition times) → a JSON-able dict shaped like a
Kubernetes status (camelCase, ``conditions`` with ``lastTransitionTime``).
The local driver writes it to ``status.json``; the Kubernetes driver patches
it into the resource's ``status``. ``table`` draws it for ``etcdx operator status``.
"""

from __future__ import annotations

import datetime
from typing import Any

from etcdx.operator.model import Decision, Observation, Phase
from etcdx.operator.reconcile import join, leader_of, quorum
from etcdx.operator.spec import ClusterSpec


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def summarize(spec: ClusterSpec, obs: Observation, decision: Decision,
              previous: dict[str, Any] | None = None) -> dict[str, Any]:
    views = join(obs)
    leader = leader_of(views)
    voters = [v for v in views if v.is_voter]
    members = []
    for v in sorted(views, key=lambda v: v.name):
        role = "leader" if v is leader else "learner" if v.is_learner else "follower" if v.is_voter else "none"
        members.append({
            "name": v.name,
            "id": f"{v.id:x}" if v.id is not None else "",
            "role": role,
            "healthy": v.healthy,
            "clientURLs": list(v.client_urls),
            "peerURLs": list(v.raft.peer_urls) if v.raft else ([v.slot.peer_url] if v.slot else []),
            "version": v.slot.version if v.slot and v.slot.version else "",
            "process": v.slot.process.value if v.slot else "unknown",
            "raftIndex": v.health.raft_index if v.health else 0,
        })
    available = obs.membership is not None and sum(v.healthy for v in voters) >= quorum(len(voters)) \
        and leader is not None
    ready = decision.phase is Phase.RUNNING and available and all(v.healthy for v in views)
    conditions = [
        _condition("Available", available, "Quorum" if available else "NoQuorum",
                   f"{sum(v.healthy for v in voters)} of {len(voters)} voters answer", previous, obs.now),
        _condition("Ready", ready, decision.phase.value, decision.reason, previous, obs.now),
    ]
    status: dict[str, Any] = {
        "phase": decision.phase.value,
        "reason": decision.reason,
        "size": spec.size,
        "version": spec.version,
        "readyMembers": sum(v.healthy for v in views),
        "leader": leader.name if leader else "",
        "revision": leader.health.revision if leader and leader.health else 0,
        "members": members,
        "alarms": list(obs.alarms),
        "backups": {"count": len(obs.backups), "last": _backup(obs)},
        "conditions": conditions,
        "observedAt": iso(obs.now),
    }
    return status


def _backup(obs: Observation) -> dict[str, Any] | None:
    if not obs.backups:
        return None
    b = obs.backups[-1]
    return {"path": b.path, "takenAt": iso(b.taken_at), "revision": b.revision, "hash": b.hash, "size": b.size,
            "member": b.member}


def _condition(kind: str, ok: bool, reason: str, message: str, previous: dict[str, Any] | None,
               now: float) -> dict[str, Any]:
    state = "True" if ok else "False"
    before = next((c for c in (previous or {}).get("conditions", []) if c.get("type") == kind), None)
    since = before["lastTransitionTime"] if before and before.get("status") == state else iso(now)
    return {"type": kind, "status": state, "reason": reason, "message": message, "lastTransitionTime": since}


def _grid(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    out = [rule, "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |", rule]
    out += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    out.append(rule)
    return out


def table(status: dict[str, Any]) -> str:
    """The status as ``etcdx operator status`` prints it: a headline, members, backups."""
    lines = [f"cluster phase {status.get('phase', '?')}: {status.get('reason', '')}",
             f"size {status.get('size')}, version {status.get('version')}, leader {status.get('leader') or '-'}, "
             f"revision {status.get('revision', 0)}, observed {status.get('observedAt', '?')}"]
    rows = [[m["name"], m["id"] or "-", m["role"], "yes" if m["healthy"] else "no", m["process"],
             m["version"] or "-", ",".join(m["clientURLs"]) or "-"] for m in status.get("members", [])]
    lines += _grid(["NAME", "ID", "ROLE", "HEALTHY", "PROCESS", "VERSION", "CLIENT URLS"], rows)
    backups = status.get("backups") or {}
    last = backups.get("last")
    if last:
        lines += [f"backups: {backups.get('count', 0)}"]
        lines += _grid(["LAST BACKUP", "TAKEN AT", "REVISION", "HASH", "SIZE"],
                       [[last["path"], last["takenAt"], str(last["revision"]), f"{last['hash']:x}",
                         str(last["size"])]])
    else:
        lines.append("backups: none")
    if status.get("alarms"):
        lines.append("alarms: " + ", ".join(status["alarms"]))
    act = status.get("lastAction")
    if act:
        lines.append(f"last action: {act.get('action')} at {act.get('at')}: {act.get('result')}")
    return "\n".join(lines)
