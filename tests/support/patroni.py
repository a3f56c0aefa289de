"""Patroni nodes (Patroni + PostgreSQL) on loopback, for end-to-end tests against an etcd-like store.

    with PatroniSite(scope="t", etcd_hosts=["127.0.0.1:2379"]) as site:
        pg1 = site.node("pg1").start()
        pg1.wait_role("primary")
        pg1.sql("CREATE TABLE t (v int)")
        pg1.kill()                  # kill -9 of Patroni and its postmaster (and the backends)

Why this shape: PostgreSQL refuses to run as root, so each node runs Patroni as
the unprivileged ``postgres`` system user (Debian's postgresql-common makes it)
through ``setpriv``, which also gives it ``--pdeathsig KILL`` so Patroni dies
with the test. Patroni detaches its postmaster into a session of its own, so
the postmaster is found through its ``postmaster.pid`` and killed by pid.
pytest's tmp_path lives under a 0700 root directory the ``postgres`` user
cannot enter, hence the site's own directory under /dev/shm (or /tmp), owned
by that user and removed on close (its logs are copied to ``keep_logs_in``).

Debian's ``patroni`` package (3.0.x) is used: it runs on the system python3
with Debian's psycopg2/urllib3/python-etcd, so nothing Patroni needs touches the
project's Python. The store is reached through Patroni's ``etcd3`` backend,
which speaks etcd's JSON gateway (``/v3/kv/range``, ``/v3/watch`` ...).
"""

from __future__ import annotations

import json
import os
import pathlib
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from typing import Any, Self, TypeVar

from etcdx.testing.procs import SETPRIV, free_port, fast_tmp_root

PATRONI_BIN = shutil.which("patroni") or "/usr/bin/patroni"
PATRONICTL_BIN = shutil.which("patronictl") or "/usr/bin/patronictl"
PG_BIN_DIR = pathlib.Path(os.environ.get("ETCDX_TESTING_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "postgres"
PSQL_BIN = shutil.which("psql") or "/usr/bin/psql"

T = TypeVar("T")


def unavailable_reason() -> str | None:
    """Why Patroni nodes cannot run here, or None when they can."""
    if not os.access(PATRONI_BIN, os.X_OK):
        return f"patroni not installed ({PATRONI_BIN}; Debian package 'patroni')"
    if not (PG_BIN_DIR / "postgres").exists():
        return f"PostgreSQL 15 not installed ({PG_BIN_DIR}; Debian package 'postgresql-15')"
    if not os.access(PSQL_BIN, os.X_OK):
        return "psql not installed (Debian package 'postgresql-client-15')"
    if SETPRIV is None:
        return "setpriv not installed (util-linux)"
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        return f"no '{PG_USER}' system user (Debian's postgresql-common creates it)"
    if os.geteuid() != 0:
        return "needs root to run Patroni as the postgres user"
    return None


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    timeout: float,
    interval: float = 0.25,
    detail: Callable[[], str] = lambda: "",
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` (and `detail()`) after `timeout` s.

    `probe` may raise OSError, SubprocessError or ValueError meaning "not yet"
    (a node still starting); an AssertionError from it fails at once.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = result
        except (OSError, subprocess.SubprocessError, ValueError) as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})\n{detail()}")
        time.sleep(interval)


class PatroniNode:
    """One Patroni process and the PostgreSQL it manages; see the module docstring."""

    def __init__(self, site: PatroniSite, name: str) -> None:
        self.site = site
        self.name = name
        self.dir = site.dir / name
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "patroni.yml"
        self.pg_port = free_port()
        self.rest_port = free_port()
        self.proc: subprocess.Popen | None = None
        self.dir.mkdir()
        self.data_dir.mkdir(mode=0o700)
        self.config_path.write_text(json.dumps(self.config(), indent=2))  # JSON is YAML
        self.site.chown(self.dir)

    def config(self) -> dict[str, Any]:
        """Patroni's configuration: the etcd3 backend on the site's hosts, loose timings."""
        s = self.site
        return {
            "scope": s.scope,
            "name": self.name,
            "log": {"level": "INFO", "dir": str(self.dir), "file_num": 1},
            "restapi": {
                "listen": f"127.0.0.1:{self.rest_port}",
                "connect_address": f"127.0.0.1:{self.rest_port}",
            },
            "etcd3": {"hosts": list(s.etcd_hosts), "protocol": "http", **s.etcd3_options},
            "bootstrap": {
                "dcs": {
                    "ttl": s.ttl,
                    "loop_wait": s.loop_wait,
                    "retry_timeout": s.retry_timeout,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "remove_data_directory_on_rewind_failure": True,
                        "remove_data_directory_on_diverged_timelines": True,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "max_wal_senders": 5,
                            "max_replication_slots": 5,
                            "wal_log_hints": "on",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg_port}",
                "connect_address": f"127.0.0.1:{self.pg_port}",
                "data_dir": str(self.data_dir),
                "bin_dir": str(PG_BIN_DIR),
                "pgpass": str(self.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": "postgres-pw"},
                    "replication": {"username": "replicator", "password": "replicator-pw"},
                    "rewind": {"username": "postgres", "password": "postgres-pw"},
                },
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication all 127.0.0.1/32 trust",
                ],
                "parameters": {
                    "unix_socket_directories": str(self.dir),
                    "shared_buffers": "16MB",
                    "max_connections": 20,
                    "fsync": "off",  # throwaway clusters: durability is not under test, speed is
                    "synchronous_commit": "off",
                    # Dynamic shared memory in the data dir, not /dev/shm: a postmaster killed with -9
                    # leaves its segments behind, and they go with the data dir this way.
                    "dynamic_shared_memory_type": "mmap",
                },
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False},
        }

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> Self:
        """Spawn Patroni as the postgres user (it bootstraps or joins by itself)."""
        if self.is_running():
            raise RuntimeError(f"{self.name} is already running")
        user = pwd.getpwnam(PG_USER)
        # --pdeathsig follows the spawning thread: only the main thread lives as long as the test run.
        die_with_us = ["--pdeathsig", "KILL"] if threading.current_thread() is threading.main_thread() else []
        cmd = [
            SETPRIV, "--reuid", str(user.pw_uid), "--regid", str(user.pw_gid), "--init-groups",
            *die_with_us, "--", PATRONI_BIN, str(self.config_path),
        ]  # fmt: skip
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.dir),
            "LANG": "C.UTF-8",
            "PGPASSFILE": str(self.dir / "pgpass"),
        }
        with open(self.dir / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=str(self.dir)
            )
        return self

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def kill(self) -> None:
        """kill -9 of Patroni and its postmaster (the backends follow the postmaster out)."""
        pm = self.postmaster_pid()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(10)
        if pm is not None and self._is_our_postmaster(pm):
            os.kill(pm, signal.SIGKILL)
            wait_for(f"{self.name}'s postmaster {pm} to exit", lambda: not self._is_our_postmaster(pm), 10, 0.05)

    def _is_our_postmaster(self, pid: int) -> bool:
        """True while `pid` is a live postgres on this node's data dir (a stale postmaster.pid may name
        a pid the OS gave to someone else since)."""
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return False
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                return str(self.data_dir).encode() in f.read().split(b"\0")
        except (OSError, IndexError):
            return False

    # -- observation ---------------------------------------------------------------
    def peer_ports(self) -> set[int]:
        """Remote ports of Patroni's established TCP connections to 127.0.0.1 (which store members it uses)."""
        if not self.is_running():
            return set()
        inodes = set()
        fd_dir = pathlib.Path(f"/proc/{self.proc.pid}/fd")
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue  # closed meanwhile
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        ports = set()
        for line in pathlib.Path(f"/proc/{self.proc.pid}/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            if state == "01" and inode in inodes and remote.startswith("0100007F:"):  # ESTABLISHED to 127.0.0.1
                ports.add(int(remote.split(":")[1], 16))
        return ports

    def rest(self, path: str, method: str = "GET", body: dict | None = None, timeout: float = 5.0) -> tuple[int, Any]:
        """(status, parsed JSON or text) of a call to this node's Patroni REST API."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.rest_port}{path}", data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            status, raw = e.code, e.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode(errors="replace")

    def role(self) -> str | None:
        """'primary', 'replica' (running and streaming or recovering), or None when not reachable."""
        try:
            _, state = self.rest("/patroni", timeout=2.0)
        except OSError:
            return None
        if not isinstance(state, dict) or state.get("state") != "running":
            return None
        return {"master": "primary", "primary": "primary", "replica": "replica"}.get(state.get("role", ""))

    def wait_role(self, role: str, timeout: float) -> float:
        """Wait until this node reports `role`; return how long it took."""
        t0 = time.monotonic()

        def probe() -> bool:
            if not self.is_running():
                code = self.proc.returncode if self.proc else None
                raise AssertionError(f"{self.name}'s Patroni exited ({code})\n{self.log_tail()}")
            return self.role() == role

        wait_for(f"{self.name} to be {role}", probe, timeout, detail=self.log_tail)
        return time.monotonic() - t0

    def sql(self, query: str, timeout: float = 10.0) -> str:
        """Run `query` through psql as the postgres superuser; return its unaligned output."""
        out = subprocess.run(
            [PSQL_BIN, "-X", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres", "-d", "postgres",
             "-v", "ON_ERROR_STOP=1", "-Atc", query],
            capture_output=True, text=True, timeout=timeout, env={"PATH": "/usr/bin:/bin", "PGCONNECT_TIMEOUT": "3"},
        )  # fmt: skip
        if out.returncode != 0:
            raise subprocess.SubprocessError(f"psql on {self.name} failed: {out.stderr.strip()}")
        return out.stdout.strip()

    def patronictl(self, *args: str, timeout: float = 30.0) -> Any:
        """Run ``patronictl -c <this node's config> ARGS -f json`` (a separate client of the store); parsed output."""
        out = subprocess.run(
            [PATRONICTL_BIN, "-c", str(self.config_path), *args, "-f", "json"],
            capture_output=True, text=True, timeout=timeout, env={"PATH": "/usr/bin:/bin", "HOME": str(self.dir)},
        )  # fmt: skip
        if out.returncode != 0:
            raise subprocess.SubprocessError(f"patronictl {' '.join(args)} failed: {out.stderr.strip()}")
        return json.loads(out.stdout)

    def log_tail(self, lines: int = 30) -> str:
        chunks = []
        for p in (self.dir / "stdout.log", self.dir / "patroni.log"):
            try:
                chunks.append(f"--- {p} ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:]))
            except OSError:
                pass
        return "\n".join(chunks)


class PatroniSite:
    """A directory owned by the postgres user holding several Patroni nodes of one scope."""

    def __init__(
        self,
        scope: str,
        etcd_hosts: Sequence[str],
        ttl: int = 10,
        loop_wait: int = 1,
        retry_timeout: int = 4,
        keep_logs_in: os.PathLike | str | None = None,
        etcd3_options: dict[str, Any] | None = None,
    ) -> None:
        """`etcd3_options` go into each node's ``etcd3:`` section beside the hosts (username, password ...)."""
        self.scope = scope
        self.etcd_hosts = list(etcd_hosts)
        self.ttl, self.loop_wait, self.retry_timeout = ttl, loop_wait, retry_timeout
        self.keep_logs_in = pathlib.Path(keep_logs_in) if keep_logs_in is not None else None
        self.etcd3_options = dict(etcd3_options or {})
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="etcdx-patroni-", dir=fast_tmp_root()))
        self.chown(self.dir)
        self.nodes: list[PatroniNode] = []

    def take_file(self, src: os.PathLike | str) -> pathlib.Path:
        """A copy of `src` in the site directory, readable by the postgres user (certificates, keys)."""
        dest = self.dir / pathlib.Path(src).name
        shutil.copyfile(src, dest)
        dest.chmod(0o600)
        self.chown(dest)
        return dest

    def chown(self, path: pathlib.Path) -> None:
        user = pwd.getpwnam(PG_USER)
        for p in [path, *path.rglob("*")]:
            os.chown(p, user.pw_uid, user.pw_gid)

    def node(self, name: str) -> PatroniNode:
        n = PatroniNode(self, name)
        self.nodes.append(n)
        return n

    def log_tails(self) -> str:
        return "\n".join(n.log_tail() for n in self.nodes)

    def close(self) -> None:
        """Kill every node, keep its logs if asked, remove the site directory."""
        for n in self.nodes:
            try:
                n.kill()
            except (OSError, AssertionError, subprocess.SubprocessError):
                pass  # best effort at teardown: a stuck postmaster must not hide the test's own failure
        if self.keep_logs_in is not None:
            for n in self.nodes:
                dest = self.keep_logs_in / n.name
                dest.mkdir(parents=True, exist_ok=True)
                for log in n.dir.glob("*.log"):
                    shutil.copy(log, dest / log.name)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
