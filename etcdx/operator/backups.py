"""Backups on the policy: snapshot files in a destination directory, each verified.

A backup is ``<cluster>-<UTC time>.db`` (the Maintenance.Snapshot stream: an
etcd bbolt database and its SHA-256, as ``etcdctl snapshot save`` writes it)
and beside it ``<same>.db.json`` with what the verification found. A snapshot
counts as a backup only once it was written completely, its SHA-256 trailer
matched and ``snapshot status`` read it as a consistent database; only then is
the JSON written, and the listing takes only files that have one, so a crash
mid-write never leaves something that looks like a backup. Both drivers use
this module (on Kubernetes the destination is a volume of the operator's pod).
"""

from __future__ import annotations

import json
import os
import time

from etcdx.operator.members import MemberAPI
from etcdx.operator.model import Backup
from etcdx.snapshot.integrity import verify
from etcdx.snapshot.status import status

META_SUFFIX = ".json"


def list_backups(destination: str, cluster: str) -> tuple[Backup, ...]:
    """The verified backups of ``cluster`` in ``destination``, oldest first."""
    try:
        names = os.listdir(destination)
    except FileNotFoundError:
        return ()
    found = []
    for name in names:
        if not (name.startswith(f"{cluster}-") and name.endswith(".db" + META_SUFFIX)):
            continue
        path = os.path.join(destination, name[: -len(META_SUFFIX)])
        try:
            with open(path + META_SUFFIX, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            continue  # half-written or unreadable: not a backup
        if not os.path.exists(path):
            continue
        found.append(Backup(path, meta["takenAt"], meta["revision"], meta["hash"], meta["size"],
                            meta.get("member", "")))
    return tuple(sorted(found, key=lambda b: (b.taken_at, b.path)))


def take_backup(api: MemberAPI, url: str, destination: str, cluster: str, member: str,
                now: float | None = None) -> Backup:
    """Snapshot the member at ``url`` into ``destination``, verify it, record it.

    Raises ``MemberAPIError`` when the member fails the stream, and the
    snapshot's own errors (``IntegrityError``, ``CorruptDatabaseError``) when
    what arrived is not a whole, consistent database; nothing is left behind
    then.
    """
    now = time.time() if now is None else now
    os.makedirs(destination, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{now % 1:.3f}"[1:] + "Z"
    path = os.path.join(destination, f"{cluster}-{stamp}.db")
    partial = path + ".part"
    try:
        with open(partial, "wb") as out:
            api.snapshot(url, out)
            out.flush()
            os.fsync(out.fileno())
        verify(partial)
        st = status(partial)
        os.replace(partial, path)
    except BaseException:
        _remove(partial)
        raise
    backup = Backup(path, now, st.revision, st.hash, st.total_size, member)
    meta = {"takenAt": now, "revision": st.revision, "hash": st.hash, "size": st.total_size,
            "totalKey": st.total_key, "member": member, "verified": "sha256+bbolt-check"}
    tmp = path + META_SUFFIX + ".part"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(meta, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path + META_SUFFIX)
    return backup


def delete_backup(path: str) -> None:
    """Remove a backup: its record first, so a crash halfway leaves no listed backup without a file."""
    _remove(path + META_SUFFIX)
    _remove(path)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
