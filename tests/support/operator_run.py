"""``etcdx operator run`` as a test drives it: a spec file, the operator process, its status.

    run = OperatorRun(tmp_path, size=3, member={...})
    run.start()                               # the operator, from this repo, as a child process
    run.wait_running(3)                       # status.json says Running with 3 healthy members
    run.set_spec(size=5)                      # edit the file; the operator picks it up
    run.close()                               # stop the operator, SIGKILL any member left

Members outlive the operator by design, so ``close`` kills every member the
state dir records as well. Waits poll ``status.json`` against a deadline.
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable

import yaml

from etcdx.operator.local import kill_members, process_start_time

from .procs import REPO_ROOT, SETPRIV

# Short timeouts so elections and restarts take a fraction of a second (as the fault tests use).
FAST_MEMBERS = {"heartbeatInterval": 50, "electionTimeout": 500, "apiWorkers": 0}
INTERVAL = "300ms"


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), e.get("PYTHONPATH")]))
    e.setdefault("PYTHONUNBUFFERED", "1")
    e.update(extra or {})
    return e


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``etcdx operator ARGS`` from this repo."""
    return subprocess.run([sys.executable, "-m", "etcdx.main", "operator", *args], capture_output=True, text=True,
                          env=env(), timeout=timeout, check=False)


class OperatorRun:
    def __init__(self, base_dir: pathlib.Path, name: str = "demo", versions_dir: pathlib.Path | None = None,
                 **spec: Any) -> None:
        self.base_dir = pathlib.Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        spec.setdefault("version", "0.1.0")
        spec.setdefault("member", dict(FAST_MEMBERS))
        self.doc = {"apiVersion": "etcdx.io/v1alpha1", "kind": "EtcdxCluster", "metadata": {"name": name},
                    "spec": spec}
        self.spec_path = self.base_dir / f"{name}.yaml"
        self.state_dir = self.base_dir / f"{name}.etcdx"
        self.log_path = self.base_dir / f"{name}-operator.log"
        self.versions_dir = versions_dir
        self.proc: subprocess.Popen | None = None
        self._write()

    def _write(self) -> None:
        tmp = self.spec_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.doc))
        tmp.replace(self.spec_path)

    def set_spec(self, **changes: Any) -> None:
        self.doc = copy.deepcopy(self.doc)
        self.doc["spec"].update(changes)
        self._write()

    def start(self) -> OperatorRun:
        cmd = [sys.executable, "-m", "etcdx.main", "operator", "run", "-f", str(self.spec_path), "--interval",
               INTERVAL]
        if self.versions_dir is not None:
            cmd += ["--versions-dir", str(self.versions_dir)]
        if SETPRIV and threading.current_thread() is threading.main_thread():
            cmd = [SETPRIV, "--pdeathsig", "KILL", "--", *cmd]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env(), cwd=self.base_dir)
        return self

    def stop(self) -> int | None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode if self.proc else None

    def close(self) -> None:
        self.stop()
        kill_members(str(self.state_dir))

    # -- what the operator says -----------------------------------------------------------------
    def status(self) -> dict:
        try:
            return json.loads((self.state_dir / "status.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def decisions(self) -> list[dict]:
        """Every decision the operator logged, in order."""
        out = []
        try:
            lines = (self.state_dir / "operator.log").read_text().splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if entry.get("msg") in ("decided", "waiting", "action failed"):
                out.append(entry)
        return out

    def wait(self, predicate: Callable[[dict], bool], timeout: float, what: str) -> float:
        """Seconds until ``predicate(status)`` held; AssertionError with the story otherwise."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the operator exited ({self.proc.returncode}) waiting for {what}\n"
                                     f"{self.log_tail()}")
            status = self.status()
            if status and predicate(status):
                return time.monotonic() - started
            time.sleep(0.1)
        raise AssertionError(f"not {what} after {timeout}s; status: {json.dumps(self.status(), indent=1)}\n"
                             f"{self.log_tail()}")

    def wait_running(self, size: int, timeout: float = 60, version: str | None = None) -> float:
        def ok(s: dict) -> bool:
            members = s.get("members", [])
            return (s.get("phase") == "Running" and len(members) == size
                    and all(m["healthy"] and m["role"] in ("leader", "follower") for m in members)
                    and (version is None or all(m["version"] == version for m in members)))
        return self.wait(ok, timeout, f"Running with {size} healthy member(s)")

    def endpoints(self) -> list[str]:
        return [m["clientURLs"][0].split("://", 1)[1] for m in self.status().get("members", []) if m["clientURLs"]]

    def slot(self, name: str) -> dict:
        return json.loads((self.state_dir / "members" / name / "slot.json").read_text())

    def member_pids(self) -> dict[str, int]:
        """Running member processes by name (pid checked against its recorded start time)."""
        out = {}
        members = self.state_dir / "members"
        for d in sorted(members.iterdir()) if members.is_dir() else ():
            s = json.loads((d / "slot.json").read_text())
            if s.get("pid") and process_start_time(s["pid"]) == s.get("pid_start"):
                out[s["name"]] = s["pid"]
        return out
