"""The local driver: members as processes on this host, everything under one state directory.

    <state-dir>/
      cluster.json                 the cluster's name and whether it was bootstrapped
      status.json                  the last status (``etcdx operator status`` reads it)
      operator.log                 every decision with its reason (JSON lines)
      operator.lock                held by the running operator
      deletion-requested           written by ``etcdx operator delete``
      tls/                         the CA and the operator's client certificate
      members/<name>/slot.json     ports, version, pid, initial cluster settings
      members/<name>/data/         the member's --data-dir
      members/<name>/member.log    its stdout and stderr, appended across starts
      members/<name>/tls/          its certificate

Members run in their own session (a Ctrl-C to the operator does not reach
them) and outlive the operator, as pods outlive a Kubernetes controller: a
new ``operator run`` adopts them by the pid in ``slot.json``, checked against
the process's start time so a reused pid is never mistaken for a member.
Ports are chosen free when a slot is made and kept for its life, so a
restarted member is where the cluster expects it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from etcdx.operator.driver import ActionError, Driver
from etcdx.operator.installations import Installations
from etcdx.operator.members import ClientTLS, GrpcMemberAPI, MemberAPI
from etcdx.operator.model import Process, Slot
from etcdx.operator.pki import FileCA
from etcdx.operator.spec import ClusterSpec

HOST = "127.0.0.1"
STOP_TIMEOUT = 15.0
RESTORE_TIMEOUT = 300.0


@dataclass
class SlotRecord:
    name: str
    client_port: int
    peer_port: int
    initial_cluster: str
    initial_cluster_state: str  # "new" (bootstrap) or "existing" (joining)
    version: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    started: bool = False
    created_at: float = 0.0


def _free_ports(count: int, avoid: set[int]) -> list[int]:
    """Loopback ports the OS says are free, distinct and outside ``avoid``."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in avoid and port not in ports:
            ports.append(port)
    return ports


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _write_json(path: str, data: object) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def _read_json(path: str) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


class LocalDriver(Driver):
    def __init__(self, state_dir: str, installations: Installations | None = None, api: MemberAPI | None = None,
                 clock=time.time) -> None:
        super().__init__(api, clock)  # type: ignore[arg-type]  (made on first use when None: it needs the spec's TLS)
        self.state_dir = os.path.abspath(state_dir)
        self.installations = installations or Installations()
        self._procs: dict[str, subprocess.Popen] = {}
        os.makedirs(self.members_dir, exist_ok=True)

    # -- paths -----------------------------------------------------------------------------------
    @property
    def members_dir(self) -> str:
        return os.path.join(self.state_dir, "members")

    @property
    def tls_dir(self) -> str:
        return os.path.join(self.state_dir, "tls")

    def slot_dir(self, name: str) -> str:
        return os.path.join(self.members_dir, name)

    def data_dir(self, name: str) -> str:
        return os.path.join(self.slot_dir(name), "data")

    def log_path(self, name: str) -> str:
        return os.path.join(self.slot_dir(name), "member.log")

    @property
    def status_path(self) -> str:
        return os.path.join(self.state_dir, "status.json")

    @property
    def deletion_marker(self) -> str:
        return os.path.join(self.state_dir, "deletion-requested")

    # -- records ---------------------------------------------------------------------------------
    def _cluster(self) -> dict:
        return _read_json(os.path.join(self.state_dir, "cluster.json")) or {}

    def _set_cluster(self, **fields: object) -> None:
        _write_json(os.path.join(self.state_dir, "cluster.json"), {**self._cluster(), **fields})

    def records(self) -> list[SlotRecord]:
        out = []
        for name in sorted(os.listdir(self.members_dir)):
            data = _read_json(os.path.join(self.slot_dir(name), "slot.json"))
            if data is not None:
                out.append(SlotRecord(**data))
        return out

    def _record(self, name: str) -> SlotRecord:
        data = _read_json(os.path.join(self.slot_dir(name), "slot.json"))
        if data is None:
            raise ActionError(f"no slot named {name}")
        return SlotRecord(**data)

    def _save(self, rec: SlotRecord) -> None:
        os.makedirs(self.slot_dir(rec.name), exist_ok=True)
        _write_json(os.path.join(self.slot_dir(rec.name), "slot.json"), asdict(rec))

    # -- URLs and TLS ----------------------------------------------------------------------------
    @staticmethod
    def peer_url(spec: ClusterSpec, rec: SlotRecord) -> str:
        return f"{'https' if spec.tls.peer else 'http'}://{HOST}:{rec.peer_port}"

    @staticmethod
    def client_url(spec: ClusterSpec, rec: SlotRecord) -> str:
        return f"{'https' if spec.tls.client else 'http'}://{HOST}:{rec.client_port}"

    def _ca(self, spec: ClusterSpec) -> FileCA:
        return FileCA(self.tls_dir, f"etcdx {spec.name} CA", spec.tls.ca_cert_file, spec.tls.ca_key_file)

    def client_tls_files(self, spec: ClusterSpec) -> tuple[str, str, str]:
        """(CA, certificate, key) a client of this cluster's client port uses (the operator's own)."""
        ca = self._ca(spec)
        cert, key = ca.issue_files(self.tls_dir, "operator", "etcdx-operator", [])
        return ca.cert_path, cert, key

    def _tls_flags(self, spec: ClusterSpec, name: str) -> list[str]:
        if not spec.tls.enabled:
            return []
        ca = self._ca(spec)
        cert, key = ca.issue_files(os.path.join(self.slot_dir(name), "tls"), "member", name, [HOST, "localhost"])
        flags = []
        if spec.tls.peer:
            flags += ["--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca.cert_path,
                      "--peer-client-cert-auth"]
        if spec.tls.client:
            flags += ["--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca.cert_path,
                      "--client-cert-auth"]
        return flags

    def _ensure_api(self, spec: ClusterSpec) -> None:
        if self.api is None:
            self.api = GrpcMemberAPI(ClientTLS(*self.client_tls_files(spec)) if spec.tls.client else None)

    def close(self) -> None:
        super().close()
        if isinstance(self.api, GrpcMemberAPI):
            self.api.close()

    # -- Driver: observing -------------------------------------------------------------------------
    def observe(self, spec: ClusterSpec):
        self._ensure_api(spec)
        return super().observe(spec)

    def _process(self, rec: SlotRecord) -> Process:
        proc = self._procs.get(rec.name)
        if proc is not None and proc.pid == rec.pid:
            return Process.RUNNING if proc.poll() is None else Process.EXITED
        if rec.pid is not None and rec.pid_start is not None and process_start_time(rec.pid) == rec.pid_start:
            return Process.RUNNING
        return Process.EXITED if rec.started else Process.ABSENT

    def slots(self, spec: ClusterSpec) -> list[Slot]:
        return [Slot(rec.name, self.peer_url(spec, rec), self.client_url(spec, rec), self._process(rec),
                     os.path.isdir(os.path.join(self.data_dir(rec.name), "member")), rec.version)
                for rec in self.records()]

    def bootstrapped(self, spec: ClusterSpec) -> bool:
        return bool(self._cluster().get("bootstrapped"))

    def deleting(self, spec: ClusterSpec) -> bool:
        return os.path.exists(self.deletion_marker)

    def data_left(self, spec: ClusterSpec) -> bool:
        return bool(os.listdir(self.members_dir)) or os.path.exists(self.tls_dir)

    def installed_versions(self, spec: ClusterSpec) -> frozenset[str]:
        return self.installations.versions()

    def backup_destination(self, spec: ClusterSpec) -> str | None:
        return spec.backup.destination if spec.backup else None

    def write_status(self, status: dict) -> None:
        _write_json(self.status_path, status)

    def read_status(self) -> dict | None:
        return _read_json(self.status_path)

    # -- Driver: acting ------------------------------------------------------------------------------
    def _used_ports(self) -> set[int]:
        return {p for r in self.records() for p in (r.client_port, r.peer_port)}

    def create_slots(self, spec: ClusterSpec, names: Sequence[str], restore_from: str | None) -> None:
        for rec in self.records():
            if rec.started:
                raise ActionError(f"{rec.name} has run before; refusing to bootstrap over its slot")
            shutil.rmtree(self.slot_dir(rec.name))  # left by an interrupted bootstrap
        if restore_from is not None and not os.path.isfile(restore_from):
            raise ActionError(f"spec.restore.from: no such file: {restore_from}")
        ports = _free_ports(2 * len(names), self._used_ports())
        now = self.clock()
        recs = [SlotRecord(n, ports[2 * i], ports[2 * i + 1], "", "new", created_at=now) for i, n in enumerate(names)]
        initial = ",".join(f"{r.name}={self.peer_url(spec, r)}" for r in recs)
        for r in recs:
            r.initial_cluster = initial
            self._save(r)
        if restore_from is not None:
            for r in recs:
                self._restore(spec, r, restore_from)
        self._set_cluster(name=spec.name, bootstrapped=True, createdAt=now)

    def _restore(self, spec: ClusterSpec, rec: SlotRecord, source: str) -> None:
        cmd = self.installations.command(spec.version, "etcdxutl") + [
            "snapshot", "restore", source, "--name", rec.name, "--data-dir", self.data_dir(rec.name),
            "--initial-cluster", rec.initial_cluster, "--initial-cluster-token", spec.token,
            "--initial-advertise-peer-urls", self.peer_url(spec, rec)]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=RESTORE_TIMEOUT,
                                  env=self.installations.env(spec.version))
        except subprocess.TimeoutExpired:
            raise ActionError(f"restoring {rec.name} from {source} took over {RESTORE_TIMEOUT:g}s") from None
        if done.returncode != 0:
            shutil.rmtree(self.data_dir(rec.name), ignore_errors=True)
            raise ActionError(f"restoring {rec.name} from {source} failed: {done.stderr.strip()[-500:]}")

    def prepare_slot(self, spec: ClusterSpec, name: str) -> Slot:
        client_port, peer_port = _free_ports(2, self._used_ports())
        rec = SlotRecord(name, client_port, peer_port, "", "existing", created_at=self.clock())
        self._save(rec)
        return Slot(name, self.peer_url(spec, rec), self.client_url(spec, rec), Process.ABSENT, False)

    def command(self, spec: ClusterSpec, rec: SlotRecord, version: str) -> list[str]:
        client, peer = self.client_url(spec, rec), self.peer_url(spec, rec)
        flags = ["--name", rec.name, "--data-dir", self.data_dir(rec.name),
                 "--listen-client-urls", client, "--advertise-client-urls", client,
                 "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                 "--initial-cluster", rec.initial_cluster, "--initial-cluster-state", rec.initial_cluster_state,
                 "--initial-cluster-token", spec.token]
        try:
            binary = self.installations.command(version)
        except LookupError as err:
            raise ActionError(str(err)) from None
        return binary + flags + self._tls_flags(spec, rec.name) + spec.member.flags()

    def start(self, spec: ClusterSpec, name: str, version: str, join_cluster: str | None) -> None:
        rec = self._record(name)
        if self._process(rec) is Process.RUNNING:
            raise ActionError(f"{name} is already running (pid {rec.pid})")
        if join_cluster is not None:
            rec.initial_cluster, rec.initial_cluster_state = join_cluster, "existing"
        cmd = self.command(spec, rec, version)
        with open(self.log_path(name), "ab") as out:
            out.write(f"\n===== {time.strftime('%Y-%m-%dT%H:%M:%S')} start {name} ({version}): "
                      f"{' '.join(cmd)}\n".encode())
            out.flush()
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=self.installations.env(version), cwd=self.slot_dir(name),
                                    start_new_session=True)
        self._procs[name] = proc
        rec.pid, rec.pid_start, rec.started, rec.version = proc.pid, process_start_time(proc.pid), True, version
        self._save(rec)

    def stop(self, spec: ClusterSpec | None, name: str) -> None:
        rec = self._record(name)
        proc = self._procs.pop(name, None)
        if proc is not None and proc.pid == rec.pid:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(STOP_TIMEOUT)
        elif self._process(rec) is Process.RUNNING:
            _stop_adopted(rec.pid, rec.pid_start)
        rec.pid = rec.pid_start = None
        self._save(rec)

    def retire(self, spec: ClusterSpec, name: str) -> None:
        self.stop(spec, name)
        shutil.rmtree(self.slot_dir(name))

    def delete_data(self, spec: ClusterSpec) -> None:
        for rec in self.records():
            if self._process(rec) is Process.RUNNING:
                raise ActionError(f"{rec.name} still runs")
            shutil.rmtree(self.slot_dir(rec.name))
        shutil.rmtree(self.tls_dir, ignore_errors=True)
        self._set_cluster(bootstrapped=False)

    # -- deletion ------------------------------------------------------------------------------------
    def request_deletion(self) -> None:
        with open(self.deletion_marker, "w", encoding="utf-8") as f:
            f.write(f"{self.clock()}\n")

    def cancel_deletion(self) -> None:
        try:
            os.remove(self.deletion_marker)
        except FileNotFoundError:
            pass


def _stop_adopted(pid: int, start: int | None) -> None:
    """SIGTERM a member this operator did not start (it cannot wait for it), then SIGKILL after a deadline."""
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT), (signal.SIGKILL, STOP_TIMEOUT)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if process_start_time(pid) != start:
                return
            time.sleep(0.05)
    raise ActionError(f"pid {pid} survived SIGKILL")


def kill_members(state_dir: str) -> list[int]:
    """SIGKILL every member process recorded under ``state_dir`` (a last resort for tests and crashes)."""
    killed = []
    members = os.path.join(state_dir, "members")
    for name in os.listdir(members) if os.path.isdir(members) else ():
        data = _read_json(os.path.join(members, name, "slot.json"))
        if data and data.get("pid") and data.get("pid_start") == process_start_time(data["pid"]):
            try:
                os.kill(data["pid"], signal.SIGKILL)
                killed.append(data["pid"])
            except ProcessLookupError:
                pass
    return killed
