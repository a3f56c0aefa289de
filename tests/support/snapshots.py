"""Snapshot tools for tests: etcdctl's and etcdxutl's snapshot commands, and
members started on restored data dirs.

    save(member, path)                      # etcdctl snapshot save
    status("etcdctl", path)                 # the JSON status, from either tool
    restore("etcdxutl", path, member)       # restore into a not-yet-started Member's data dir
    dump(member)                            # every key at every revision, for comparisons
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

from etcdx.pb import rpc_pb2

from .procs import ETCDCTL_BIN, REPO_ROOT, Member

TIMEOUT = 120


def run(tool: str, *args: str, cwd: os.PathLike | str | None = None) -> subprocess.CompletedProcess:
    """``etcdctl`` (the real one, API 3) or ``etcdxutl`` (this repo's) with ``args``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    if tool == "etcdctl":
        cmd = [ETCDCTL_BIN, *args]
        env["ETCDCTL_API"] = "3"
    elif tool == "etcdxutl":
        cmd = [sys.executable, "-m", "etcdx.ctl.etcdxutl", *args]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    else:
        raise ValueError(f"unknown tool {tool!r}")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd, timeout=TIMEOUT, check=False)


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def save(member: Member, path: pathlib.Path) -> None:
    r = run("etcdctl", f"--endpoints={member.endpoint}", "--command-timeout=60s", "snapshot", "save", str(path))
    assert r.returncode == 0, r.stderr


def status(tool: str, path: pathlib.Path) -> dict:
    r = run(tool, "snapshot", "status", str(path), "-w", "json")
    assert r.returncode == 0, f"{tool} snapshot status: {r.stderr}"
    return json.loads(r.stdout)


def restore(tool: str, snapshot: pathlib.Path, member: Member, *, initial_cluster: str | None = None,
            token: str = "etcd-cluster", peer_url: str | None = None) -> subprocess.CompletedProcess:
    """Restore ``snapshot`` into ``member``'s data dir with its name and peer URL; must succeed."""
    peer_url = peer_url or member.peer_url
    r = run(tool, "snapshot", "restore", str(snapshot), "--data-dir", str(member.data_dir), "--name", member.name,
            "--initial-cluster", initial_cluster or f"{member.name}={peer_url}",
            "--initial-cluster-token", token, "--initial-advertise-peer-urls", peer_url)
    assert r.returncode == 0, f"{tool} snapshot restore: {r.stderr}"
    return r


def dump(member: Member, first: int, last: int) -> dict[int, list[tuple]]:
    """Every live key (key, value, create, mod, version, lease) at each revision in [first, last]."""
    out = {}
    for revision in range(first, last + 1):
        resp = member.kv.Range(rpc_pb2.RangeRequest(key=b"\x00", range_end=b"\x00", revision=revision,
                                                    serializable=True), timeout=30)
        out[revision] = [(kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)
                         for kv in resp.kvs]
    return out


def hash_kv(member: Member, revision: int = 0) -> tuple[int, int, int]:
    r = member.maintenance.HashKV(rpc_pb2.HashKVRequest(revision=revision), timeout=60)
    return r.hash, r.compact_revision, r.header.revision
