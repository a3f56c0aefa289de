"""Member processes for tests: a real etcd or an etcdx member on loopback ports.

A `Member` is one server process with its own data dir, client port and peer
port (chosen free at runtime and kept across restarts, so a restarted member is
reachable at the same endpoint). The API is deliberately small:

    m = Member("etcdx", base_dir, extra_args=["--max-txn-ops", "4"])
    m.start()            # spawn, then wait until a Range succeeds (deadline)
    m.kv.Put(...)        # gRPC stubs: kv, lease, watch, cluster, maintenance
    m.kill()             # SIGKILL (crash), m.stop() is SIGTERM then SIGKILL
    m.pause(); m.resume()  # SIGSTOP / SIGCONT: a member that hangs without closing connections
    m.restart()          # stop + start on the same data dir and ports
    m.client()           # an etcdx.client.Client for this member (m.async_client(): AsyncClient)
    m.close()            # stop and release channels; idempotent
    m.log_tail()         # last lines of the member's log file

Every member's stdout/stderr goes to `<base_dir>/<name>.log` (appended across
restarts, each start marked). A start that fails raises `MemberStartError`
carrying the log tail. Members started from the main thread run under
`setpriv --pdeathsig KILL`, so they die with the test process even if it is
killed (the signal follows the spawning *thread*, hence main thread only); all
members still running at interpreter exit are killed too. `etcdx_available()` says whether etcdx's server
module exists; tests skip on etcdx only when it does not.

With ``tls=`` (`etcdx.testing.tls.TLSFiles`) the client port serves https and,
unless ``client_cert_auth=False``, asks clients for a certificate.

The real etcd is ``$ETCDX_TESTING_ETCD`` or /usr/bin/etcd (etcdctl likewise,
``$ETCDX_TESTING_ETCDCTL``).
"""

from __future__ import annotations

import atexit
import importlib
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Self

import grpc

from etcdx.pb import rpc_pb2, rpc_pb2_grpc

if TYPE_CHECKING:
    from etcdx.client import AsyncClient, Client

    from .tls import TLSFiles

ETCD_BIN = os.environ.get("ETCDX_TESTING_ETCD", "/usr/bin/etcd")
ETCDCTL_BIN = os.environ.get("ETCDX_TESTING_ETCDCTL", "/usr/bin/etcdctl")
ETCDX_MODULE = "etcdx.main"
# The directory holding the `etcdx` package this module came from: etcdx members
# started from here import the same etcdx (a checkout or a worktree under test).
REPO_ROOT = pathlib.Path(__file__).resolve().parents[2]

START_TIMEOUT = 30.0
AUTH_REFUSED_PROBE = "etcdserver: user name is empty"
STOP_TIMEOUT = 10.0


class MemberStartError(RuntimeError):
    """The member did not become ready before its deadline (message has the log tail)."""


def etcd_available() -> bool:
    return os.access(ETCD_BIN, os.X_OK)


def etcdctl_available() -> bool:
    return os.access(ETCDCTL_BIN, os.X_OK)


def etcdx_available() -> bool:
    """True when `etcdx.main` imports.

    Only a missing module counts as "not available"; any other import error
    propagates so a broken server fails the tests instead of skipping them.
    """
    try:
        importlib.import_module(ETCDX_MODULE)
    except ModuleNotFoundError as e:
        if e.name and ETCDX_MODULE.startswith(e.name):
            return False
        raise
    return True


ETCDX_UNAVAILABLE = "etcdx server not available"
ETCD_UNAVAILABLE = f"real etcd not installed ({ETCD_BIN})"


def require(kind: str) -> None:
    """Skip the calling test when the server `kind` cannot run here.

    etcdx is skipped only while its server module does not exist.
    """
    import pytest

    if kind == "etcd" and not etcd_available():
        pytest.skip(ETCD_UNAVAILABLE)
    if kind == "etcdx" and not etcdx_available():
        pytest.skip(ETCDX_UNAVAILABLE)
    if kind == "etcdctl" and not etcdctl_available():
        pytest.skip(f"etcdctl not installed ({ETCDCTL_BIN})")


def candidate_kind() -> str:
    """The server under test in conformance suites: etcdx, unless
    ETCDX_CONFORMANCE_CANDIDATE=etcd asks to run them etcd-against-etcd (to check
    that a suite compares only deterministic things)."""
    kind = os.environ.get("ETCDX_CONFORMANCE_CANDIDATE", "etcdx")
    if kind not in ("etcd", "etcdx"):
        raise ValueError(f"ETCDX_CONFORMANCE_CANDIDATE={kind!r}: want etcd or etcdx")
    return kind


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (the OS picks it), never one this
    process handed out before: the OS may offer a port again once its socket is closed,
    and two members of one cluster given the same port fail to start (seen under load)."""
    with _handed_out_lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port


def fast_tmp_root() -> pathlib.Path | None:
    """A tmpfs directory for throwaway data dirs, if the machine has one."""
    shm = pathlib.Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else None


SETPRIV = shutil.which("setpriv")
_live_members: weakref.WeakSet[Member] = weakref.WeakSet()


def _kill_leftovers() -> None:
    for m in list(_live_members):
        if m.is_running():
            m.proc.kill()


atexit.register(_kill_leftovers)


class Member:
    """One etcd-compatible member process; see the module docstring."""

    def __init__(
        self,
        kind: str,
        base_dir: os.PathLike | str,
        name: str = "m1",
        extra_args: Sequence[str] = (),
        env: dict[str, str] | None = None,
        tls: TLSFiles | None = None,
        client_cert_auth: bool = True,
    ) -> None:
        if kind not in ("etcd", "etcdx"):
            raise ValueError(f"unknown member kind {kind!r}")
        self.kind = kind
        self.name = name
        self.base_dir = pathlib.Path(base_dir)
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = self.base_dir / f"{name}.data"
        self.log_path = self.base_dir / f"{name}.log"
        self.extra_args = list(extra_args)
        self.env = env
        self.tls = tls
        self.client_cert_auth = client_cert_auth
        self.paused = False
        self.client_port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen | None = None
        self._channel: grpc.Channel | None = None
        self._starts = 0

    # -- addresses -------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """host:port for gRPC clients and `etcdctl --endpoints`."""
        return f"127.0.0.1:{self.client_port}"

    peer_scheme = "http"  # "https" for a member whose peer port serves TLS (its flags must say how)
    client_scheme = "http"  # "https" for a client port whose TLS flags the test gives itself (else ``tls=``)
    # (CA, certificate, key) the test's own gRPC channel trusts and presents, with client_scheme "https"
    client_tls: tuple[pathlib.Path, pathlib.Path, pathlib.Path] | None = None

    @property
    def client_url(self) -> str:
        scheme = "https" if self.tls is not None else self.client_scheme
        return f"{scheme}://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.peer_scheme}://127.0.0.1:{self.peer_port}"

    def command(self) -> list[str]:
        """The command line (etcd's flags; etcdx accepts the same ones)."""
        flags = [
            "--name",
            self.name,
            "--data-dir",
            str(self.data_dir),
            "--listen-client-urls",
            self.client_url,
            "--advertise-client-urls",
            self.client_url,
            "--listen-peer-urls",
            self.peer_url,
            "--initial-advertise-peer-urls",
            self.peer_url,
            "--initial-cluster",
            f"{self.name}={self.peer_url}",
            *self.tls_flags(),
            *self.extra_args,
        ]
        if self.kind == "etcd":
            return [ETCD_BIN, *flags]
        return [sys.executable, "-m", ETCDX_MODULE, *flags]

    def tls_flags(self) -> list[str]:
        return self.tls.server_flags(self.client_cert_auth) if self.tls is not None else []

    # -- lifecycle -------------------------------------------------------------
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def is_running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT, wait: bool = True) -> Member:
        """Spawn the process (on the same data dir and ports as before) and wait until ready.

        On the very first start, a port taken by someone else between choosing
        and binding is retried with fresh ports.
        """
        if self.is_running():
            raise RuntimeError(f"{self} is already running")
        for attempt in range(3):
            self._spawn()
            if not wait:
                return self
            try:
                self.wait_ready(timeout)
                return self
            except MemberStartError:
                in_use = "address already in use" in self.log_tail(40).lower()
                self._terminate(signal.SIGKILL)
                if not (in_use and self._starts == 1 and attempt < 2):
                    raise
                self.client_port, self.peer_port = free_port(), free_port()
                if self.data_dir.exists():
                    shutil.rmtree(self.data_dir)
                self._starts = 0
        raise AssertionError("unreachable")

    def _spawn(self) -> None:
        self._close_channel()
        self._starts += 1
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.kind == "etcdx":
            env["PYTHONPATH"] = os.pathsep.join(
                filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")])
            )
        if self.env:
            env.update(self.env)
        with open(self.log_path, "ab") as log:
            log.write(
                f"\n===== start #{self._starts} of {self.kind} {self.name}: {' '.join(self.command())}\n".encode()
            )
            log.flush()
            cmd = self.command()
            if SETPRIV and threading.current_thread() is threading.main_thread():
                cmd = [SETPRIV, "--pdeathsig", "KILL", "--", *cmd]
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=str(self.base_dir),
            )
        _live_members.add(self)

    # A ready probe that needs no quorum (a cluster member cut off from the others is still up).
    ready_probe_serializable = False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until a Range succeeds; raise MemberStartError with the log tail otherwise."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.is_running():
                raise MemberStartError(
                    f"{self} exited with code {self.proc.returncode if self.proc else None} before ready\n"
                    f"--- log tail ({self.log_path}) ---\n{self.log_tail()}"
                )
            try:
                probe = rpc_pb2.RangeRequest(key=b"__ready_probe__", serializable=self.ready_probe_serializable)
                self.kv.Range(probe, timeout=1.0)
                return
            except grpc.RpcError as e:
                if e.details() == AUTH_REFUSED_PROBE:
                    return  # auth is on: the member read the probe and refused it, so it serves
                last_error = e
                time.sleep(0.05)
        raise MemberStartError(
            f"{self} not ready after {timeout}s (last error: {last_error!r})\n"
            f"--- log tail ({self.log_path}) ---\n{self.log_tail()}"
        )

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """Graceful stop: SIGTERM, then SIGKILL after `timeout`. Returns the exit code."""
        return self._terminate(signal.SIGTERM, timeout)

    def kill(self) -> int | None:
        """Crash the member: SIGKILL and reap. Returns the exit code."""
        return self._terminate(signal.SIGKILL)

    def pause(self) -> None:
        """SIGSTOP the member and its child processes (etcdx's API workers): it hangs with its
        ports open, as in a long GC pause or a frozen VM."""
        if not self.is_running():
            raise RuntimeError(f"{self} is not running")
        for pid in [*_descendants(self.proc.pid), self.proc.pid]:
            _signal(pid, signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        """SIGCONT after `pause`."""
        if self.is_running():
            for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
                _signal(pid, signal.SIGCONT)
        self.paused = False

    def restart(self, timeout: float = START_TIMEOUT, hard: bool = False) -> Member:
        """Stop (SIGKILL if `hard`, else SIGTERM) and start again on the same data dir."""
        if hard:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """Stop the process if running and release the channel. Safe to call twice."""
        self.stop()
        self._close_channel()

    def _terminate(self, sig: int, timeout: float = STOP_TIMEOUT) -> int | None:
        self._close_channel()
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                if self.paused:  # a stopped process only acts on SIGTERM once continued
                    self.resume()
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(STOP_TIMEOUT)
            except ProcessLookupError:
                pass
        return self.proc.returncode

    # -- logs --------------------------------------------------------------------
    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # -- gRPC --------------------------------------------------------------------
    @property
    def channel(self) -> grpc.Channel:
        if self._channel is None:
            options = [
                ("grpc.max_receive_message_length", 64 * 1024 * 1024),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.enable_retries", 0),
            ]
            if self.tls is not None:
                credentials = grpc.ssl_channel_credentials(
                    self.tls.ca.read_bytes(), self.tls.client_key.read_bytes(), self.tls.client_cert.read_bytes()
                )
                self._channel = grpc.secure_channel(self.endpoint, credentials, options=options)
            elif self.client_tls is not None:
                ca, cert, key = self.client_tls
                credentials = grpc.ssl_channel_credentials(ca.read_bytes(), key.read_bytes(), cert.read_bytes())
                self._channel = grpc.secure_channel(self.endpoint, credentials, options=options)
            else:
                self._channel = grpc.insecure_channel(self.endpoint, options=options)
        return self._channel

    def _close_channel(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    @property
    def kv(self) -> rpc_pb2_grpc.KVStub:
        return rpc_pb2_grpc.KVStub(self.channel)

    @property
    def lease(self) -> rpc_pb2_grpc.LeaseStub:
        return rpc_pb2_grpc.LeaseStub(self.channel)

    @property
    def watch(self) -> rpc_pb2_grpc.WatchStub:
        return rpc_pb2_grpc.WatchStub(self.channel)

    @property
    def cluster(self) -> rpc_pb2_grpc.ClusterStub:
        return rpc_pb2_grpc.ClusterStub(self.channel)

    @property
    def maintenance(self) -> rpc_pb2_grpc.MaintenanceStub:
        return rpc_pb2_grpc.MaintenanceStub(self.channel)

    # -- etcdx.client ------------------------------------------------------------
    def client(self, **options: Any) -> Client:
        """An `etcdx.client.Client` for this member (TLS set up when the member has it)."""
        from etcdx.client import Client

        if self.tls is not None:
            options.setdefault("tls", self.tls.client_tls())
        return Client([self.endpoint], **options)

    def async_client(self, **options: Any) -> AsyncClient:
        """An `etcdx.client.AsyncClient` for this member (create it inside the event loop that uses it)."""
        from etcdx.client import AsyncClient

        if self.tls is not None:
            options.setdefault("tls", self.tls.client_tls())
        return AsyncClient([self.endpoint], **options)

    def __repr__(self) -> str:
        state = ("paused, " if self.paused else "") + f"pid {self.pid}" if self.is_running() else "stopped"
        return f"<{self.kind} member {self.name} at {self.endpoint}, {state}>"


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    queue = list(children.get(pid, []))
    while queue:
        child = queue.pop(0)
        found.append(child)
        queue.extend(children.get(child, []))
    return found


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def start_members(members: Iterable[Member], timeout: float = START_TIMEOUT) -> None:
    """Spawn several members at once, then wait for each (startups overlap)."""
    members = list(members)
    for m in members:
        m.start(wait=False)
    try:
        for m in members:
            m.wait_ready(timeout)
    except MemberStartError:
        for m in members:
            m.kill()
        raise


class MemberGroup:
    """Owns members created through it and closes all of them on `close()`.

    Fixtures hand one out so a test can make members with custom flags
    (`group.new("etcdx", extra_args=[...])`) without leaking processes.
    """

    def __init__(self, base_dir: os.PathLike | str) -> None:
        self.base_dir = pathlib.Path(base_dir)
        self.members: list[Member] = []

    def new(
        self,
        kind: str,
        name: str | None = None,
        start: bool = True,
        subdir: str | None = None,
        **kwargs,
    ) -> Member:
        """A member in its own directory (`subdir`, default its name); started unless `start=False`."""
        name = name or f"{kind}{len(self.members) + 1}"
        m = Member(kind, self.base_dir / (subdir or name), name=name, **kwargs)
        self.members.append(m)
        if start:
            m.start()
        return m

    def close(self) -> None:
        for m in self.members:
            m.close()
        self.members.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
