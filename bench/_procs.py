"""Server and tool processes for the benchmarks: start, wait until ready, measure, always clean up.

Every process is started in its own session (so its whole process group can be
signalled) and asks the kernel to SIGKILL it if the benchmark process dies.  The
groups still alive are killed at interpreter exit and on SIGINT/SIGTERM.
"""
from __future__ import annotations

import atexit
import ctypes
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import Any
from pathlib import Path

# grpc's fork handlers can deadlock a fork made while its threads wind a channel down
# (the load tools are forked right after the auth setup's calls); nothing here forks to use grpc.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import grpc  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from etcdx.pb import rpc_pb2, rpc_pb2_grpc  # noqa: E402

_live_groups: set[int] = set()


def _kill_all_groups() -> None:
    for pgid in list(_live_groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _live_groups.discard(pgid)


def _on_signal(signum, _frame) -> None:
    _kill_all_groups()
    raise KeyboardInterrupt(f"signal {signum}")


atexit.register(_kill_all_groups)
signal.signal(signal.SIGTERM, _on_signal)


def _die_with_parent() -> None:
    try:  # PR_SET_PDEATHSIG = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(cmd: list[str], log, env=None, cwd=None) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                            start_new_session=True, preexec_fn=_die_with_parent)
    _live_groups.add(proc.pid)
    return proc


def _end_group(proc: subprocess.Popen, sig: int, timeout: float) -> tuple[int | None, float]:
    """Signals the process group, waits for the leader; SIGKILLs the group after `timeout`.

    Returns (exit code, seconds the leader took to exit).
    """
    t0 = time.monotonic()
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        code = None
    elapsed = time.monotonic() - t0
    try:  # whatever is left of the group (workers, or a leader that ignored sig)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if code is None:
        code = proc.wait()
    _live_groups.discard(proc.pid)
    return code, elapsed


def run_tool(cmd: list[str], timeout: float) -> tuple[int | None, str, bool]:
    """Runs a load tool to completion; returns (exit code, stdout+stderr, timed out)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, preexec_fn=_die_with_parent, cwd=str(REPO_ROOT))
    _live_groups.add(proc.pid)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode(errors="replace"), False
    except subprocess.TimeoutExpired:
        _end_group(proc, signal.SIGINT, 5)
        out, _ = proc.communicate()
        return None, out.decode(errors="replace"), True
    finally:
        if proc.poll() is None:
            _end_group(proc, signal.SIGKILL, 5)
        _live_groups.discard(proc.pid)


def _proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of one process, in KiB (empty if it is gone)."""
    fields = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    fields[name] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return fields


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and all its descendants (an etcdx member and its API workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for p in [pid, *descendants(pid)]:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def dir_size_bytes(path: Path) -> int:
    """Disk usage of a directory tree (du -s, in bytes: allocated blocks, as `du` reports)."""
    out = subprocess.run(["du", "-s", "--block-size=1", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def dir_apparent_bytes(path: Path) -> int:
    out = subprocess.run(["du", "-s", "--apparent-size", "--block-size=1", str(path)],
                         capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


class ServerStartError(RuntimeError):
    pass


class Server:
    """One single-member server (etcd or etcdx) built from a command template.

    The template is a shell-like string whose {placeholders} are filled in:
    {python} {etcd} {name} {data_dir} {client_url} {peer_url} {client_port} {peer_port},
    plus whatever `values` adds (a cluster member gets {initial_cluster} and {token}).
    """

    def __init__(self, label: str, template: str, workdir: Path, name: str = "bench",
                 ports: tuple[int, int] | None = None, values: dict[str, str] | None = None,
                 data_dir: Path | None = None, tls: Any = None):
        self.label = label
        self.tls = tls  # etcdx.testing.tls.TLSFiles: serve https with client-certificate auth
        self.template = template
        self.workdir = workdir
        self.name = name
        self.data_dir = data_dir or workdir / f"{label}.data"
        self.log_path = workdir / f"{label}.log"
        self.client_port, self.peer_port = ports or (free_port(), free_port())
        self.values = dict(values or {})
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def command(self) -> list[str]:
        values = {
            "python": sys.executable,
            "etcd": shutil.which("etcd") or "/usr/bin/etcd",
            "name": self.name,
            "data_dir": str(self.data_dir),
            "client_url": f"{'https' if self.tls else 'http'}://127.0.0.1:{self.client_port}",
            "peer_url": f"http://127.0.0.1:{self.peer_port}",
            "client_port": str(self.client_port),
            "peer_port": str(self.peer_port),
            **self.values,
        }
        cmd = [arg.format(**values) for arg in shlex.split(self.template)]
        return cmd + (self.tls.server_flags(client_cert_auth=True) if self.tls else [])

    def tool_flags(self) -> list[str]:
        """etcd's Go benchmark flags that reach this server (its CA and a client certificate)."""
        if not self.tls:
            return []
        return ["--cacert", str(self.tls.ca), "--cert", str(self.tls.client_cert), "--key", str(self.tls.client_key)]

    def _grpc_channel(self, options: list | None = None) -> grpc.Channel:
        if not self.tls:
            return grpc.insecure_channel(self.endpoint, options=options)
        creds = grpc.ssl_channel_credentials(self.tls.ca.read_bytes(), self.tls.client_key.read_bytes(),
                                             self.tls.client_cert.read_bytes())
        return grpc.secure_channel(self.endpoint, creds, options=options)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, fresh: bool = False) -> None:
        if self.running():
            raise RuntimeError(f"{self.label} already running")
        if fresh and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env.setdefault("PYTHONUNBUFFERED", "1")
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== {time.strftime('%H:%M:%S')} {shlex.join(self.command())}\n".encode())
            log.flush()
            self.started_at = time.monotonic()
            self.proc = _spawn(self.command(), log, env=env, cwd=str(self.workdir))

    def wait_ready(self, timeout: float) -> float:
        """Polls a linearizable Range until one succeeds; returns seconds since start()."""
        opts = [("grpc.initial_reconnect_backoff_ms", 20), ("grpc.min_reconnect_backoff_ms", 20),
                ("grpc.max_reconnect_backoff_ms", 100), ("grpc.use_local_subchannel_pool", 1)]
        deadline = self.started_at + timeout
        last = None
        with self._grpc_channel(opts) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            while time.monotonic() < deadline:
                if not self.running():
                    raise ServerStartError(f"{self.label} exited with code {self.proc.returncode} before it "
                                           f"served a Range\n{self.log_tail()}")
                try:
                    kv.Range(rpc_pb2.RangeRequest(key=b"__bench_ready__"), timeout=1.0)
                    return time.monotonic() - self.started_at
                except grpc.RpcError as exc:
                    last = exc
                    time.sleep(0.01)
        raise ServerStartError(f"{self.label} not ready after {timeout}s (last error: {last!r})\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> tuple[int | None, float]:
        """Stops the whole process group; returns (exit code, seconds until the server exited)."""
        if self.proc is None:
            return None, 0.0
        if self.proc.poll() is not None:
            _live_groups.discard(self.proc.pid)
            return self.proc.returncode, 0.0
        return _end_group(self.proc, sig, timeout)

    def cpu_seconds(self) -> float:
        """CPU the server (with its child processes) has used so far."""
        return cpu_seconds(self.proc.pid) if self.proc is not None else 0.0

    def memory(self) -> dict[str, int]:
        """KiB of the server process plus its descendants (VmRSS, RssAnon, RssFile; VmHWM of the main one)."""
        if not self.running():
            return {}
        pids = [self.proc.pid, *descendants(self.proc.pid)]
        total = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0, "RssShmem": 0}
        for pid in pids:
            st = _proc_status(pid)
            for k in total:
                total[k] += st.get(k, 0)
        total["VmHWM_main"] = _proc_status(self.proc.pid).get("VmHWM", 0)
        total["processes"] = len(pids)
        return total

    def channel(self) -> grpc.Channel:
        """A new channel to the server (use it as a context manager)."""
        return self._grpc_channel([("grpc.max_receive_message_length", 64 << 20)])

    def put(self, key: bytes, value: bytes, timeout: float = 30.0) -> None:
        with self.channel() as ch:
            rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=key, value=value), timeout=timeout)

    def auth_on(self, user: str, password: str, timeout: float = 30.0) -> None:
        """Users ``root`` and ``user`` (a role with read and write on every key, not root), then
        auth on. Parts that exist already (a repeated run) are kept."""
        from etcdx.pb import auth_pb2

        every_key = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"\x00", range_end=b"\x00")
        with self.channel() as ch:
            auth = rpc_pb2_grpc.AuthStub(ch)
            for call, req in (
                    (auth.UserAdd, rpc_pb2.AuthUserAddRequest(name="root", password=password)),
                    (auth.UserGrantRole, rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root")),
                    (auth.UserAdd, rpc_pb2.AuthUserAddRequest(name=user, password=password)),
                    (auth.RoleAdd, rpc_pb2.AuthRoleAddRequest(name=user)),
                    (auth.RoleGrantPermission, rpc_pb2.AuthRoleGrantPermissionRequest(name=user, perm=every_key)),
                    (auth.UserGrantRole, rpc_pb2.AuthUserGrantRoleRequest(user=user, role=user)),
                    (auth.AuthEnable, rpc_pb2.AuthEnableRequest())):
                try:
                    call(req, timeout=timeout)
                except grpc.RpcError as err:
                    if err.code() != grpc.StatusCode.FAILED_PRECONDITION:
                        raise

    def auth_off(self, password: str, timeout: float = 30.0) -> None:
        with self.channel() as ch:
            auth = rpc_pb2_grpc.AuthStub(ch)
            token = auth.Authenticate(rpc_pb2.AuthenticateRequest(name="root", password=password), timeout=timeout).token
            auth.AuthDisable(rpc_pb2.AuthDisableRequest(), metadata=[("token", token)], timeout=timeout)

    def count_keys(self, timeout: float = 120.0) -> int:
        """Number of keys in the whole key space (count_only Range over everything)."""
        with self.channel() as ch:
            resp = rpc_pb2_grpc.KVStub(ch).Range(
                rpc_pb2.RangeRequest(key=b"\x00", range_end=b"\x00", count_only=True), timeout=timeout)
            return resp.count

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return b"".join(f.readlines()[-lines:]).decode(errors="replace")
        except FileNotFoundError:
            return ""


class ServerCluster:
    """`size` members of one system started together as a new cluster from one template.

    Members are named m1..mN, each on its own loopback client and peer ports and
    data dir; the template gets {initial_cluster} (every member's name=peer URL)
    and {token} (the --initial-cluster-token, unique per cluster).
    """

    def __init__(self, label: str, template: str, workdir: Path, size: int = 3, data_root: Path | None = None):
        self.label = label
        names = [f"m{i}" for i in range(1, size + 1)]
        ports = [(free_port(), free_port()) for _ in names]
        initial = ",".join(f"{n}=http://127.0.0.1:{peer}" for n, (_, peer) in zip(names, ports))
        values = {"initial_cluster": initial, "token": f"{label}-{os.getpid()}-{int(time.time())}"}
        self.members = [Server(f"{label}-{n}", template, workdir, name=n, ports=p, values=values,
                               data_dir=(data_root or workdir) / f"{label}-{n}.data")
                        for n, p in zip(names, ports)]
        self.started_at = 0.0

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def running(self) -> list[Server]:
        return [m for m in self.members if m.running()]

    def start(self, timeout: float, fresh: bool = True) -> float:
        """Spawns every member at once, then waits until each serves a linearizable Range.

        Returns seconds from the first spawn until the last member was ready.
        """
        self.started_at = time.monotonic()
        for m in self.members:
            m.start(fresh=fresh)
        for m in self.members:
            m.wait_ready(max(1.0, timeout - (time.monotonic() - self.started_at)))
        return time.monotonic() - self.started_at

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        for m in self.members:
            m.stop(sig, timeout)

    def verify(self, timeout: float = 30.0) -> None:
        """Raises ServerStartError unless the members form one cluster: the same cluster id,
        every member in every member's MemberList, and one leader they all name."""
        seen = {}
        for m in self.members:
            with m.channel() as ch:
                resp = rpc_pb2_grpc.ClusterStub(ch).MemberList(rpc_pb2.MemberListRequest(), timeout=timeout)
            seen[m.name] = (resp.header.cluster_id, sorted(x.name for x in resp.members))
        want = sorted(m.name for m in self.members)
        if len({c for c, _ in seen.values()}) != 1 or any(names != want for _, names in seen.values()):
            raise ServerStartError(f"{self.label}: members do not form one cluster "
                                   f"(cluster id, member names per member: {seen})")
        self.leader(timeout)

    def status(self, member: Server, timeout: float = 1.0) -> rpc_pb2.StatusResponse:
        """Maintenance.Status of one member (raises grpc.RpcError when it does not answer)."""
        with member.channel() as ch:
            return rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=timeout)

    def leader(self, timeout: float = 30.0) -> tuple[Server, dict[str, int]]:
        """The member every running member names as leader, and the members' ids by name.

        Waits (up to `timeout`) until all running members answer Status and agree.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                statuses = {m.name: self.status(m) for m in self.running()}
            except grpc.RpcError as exc:
                last = exc
                time.sleep(0.05)
                continue
            ids = {name: st.header.member_id for name, st in statuses.items()}
            leaders = {st.leader for st in statuses.values()}
            last = {name: st.leader for name, st in statuses.items()}
            if len(leaders) == 1 and (lead := leaders.pop()) in ids.values():
                name = next(n for n, i in ids.items() if i == lead)
                return next(m for m in self.members if m.name == name), ids
            time.sleep(0.05)
        raise ServerStartError(f"{self.label}: no leader agreed on after {timeout}s (last: {last!r})")

    def move_leader(self, target: Server, timeout: float = 30.0) -> None:
        """Makes `target` the leader (MoveLeader sent to the current leader)."""
        leader, ids = self.leader(timeout)
        if leader is target:
            return
        with leader.channel() as ch:
            rpc_pb2_grpc.MaintenanceStub(ch).MoveLeader(
                rpc_pb2.MoveLeaderRequest(targetID=ids[target.name]), timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.leader(timeout)[0] is not target:
            if time.monotonic() > deadline:
                raise ServerStartError(f"{self.label}: {target.name} did not become leader")
            time.sleep(0.05)

    def log_tails(self, lines: int = 15) -> str:
        return "\n".join(f"--- {m.label} ---\n{m.log_tail(lines)}" for m in self.members)
