"""The real `etcdctl` (3.4, ETCDCTL_API=3) driven against etcdx and against a real etcd.

Each test starts a fresh etcd and a fresh etcdx (same member name, so the same
state from revision 1), runs the same etcdctl script against both and compares
the transcripts: exit code, stdout and stderr of every command, normalised for
what legitimately differs between two clusters (endpoints and URLs, cluster,
member and lease ids, raft terms, sizes, timings, remaining TTLs, the server
version). JSON output is compared as parsed data with those fields masked.

Snapshots (save, status, restore on both sides) are compared in detail in
test_snapshot.py; here `snapshot save` and `status` run in a transcript.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import time

import pytest
from support import compare, procs

from etcdx.pb import rpc_pb2

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(120)]

CTL_TIMEOUT = 20


@pytest.fixture
def pair(member_group):
    """(etcd, etcdx), both fresh, both named m1, started concurrently."""
    procs.require("etcdctl")
    procs.require("etcd")
    kind = procs.candidate_kind()
    procs.require(kind)
    ref = member_group.new("etcd", name="m1", subdir="etcd", start=False)
    cand = member_group.new(kind, name="m1", subdir="cand", start=False)
    procs.start_members([ref, cand])
    return ref, cand


def ctl_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    return env


class Ctl:
    """Runs etcdctl against one member and records a normalised transcript."""

    def __init__(self, member: procs.Member, workdir: pathlib.Path) -> None:
        self.member = member
        self.workdir = workdir
        self.transcript: list[str] = []

    def raw(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        cmd = [
            procs.ETCDCTL_BIN,
            f"--endpoints={self.member.endpoint}",
            "--dial-timeout=5s",
            "--command-timeout=15s",
            *args,
        ]
        return subprocess.run(
            cmd,
            input=stdin,
            capture_output=True,
            text=True,
            env=ctl_env(),
            check=False,
            timeout=CTL_TIMEOUT,
            cwd=self.workdir,
        )

    def __call__(
        self, *args: str, stdin: str | None = None
    ) -> subprocess.CompletedProcess:
        r = self.raw(*args, stdin=stdin)
        self.transcript.append(
            self.normalise(
                f"$ etcdctl {' '.join(args)}" + (f" <<< {stdin!r}" if stdin else "")
            )
        )
        self.transcript.append(f"exit {r.returncode}")
        self.transcript.extend(
            "out| " + line for line in self.normalise(r.stdout).splitlines()
        )
        self.transcript.extend(
            "err| " + line for line in self.normalise(r.stderr).splitlines()
        )
        return r

    def normalise(self, text: str) -> str:
        m = self.member
        text = text.replace(str(self.workdir), "<dir>")
        text = text.replace(m.client_url, "<client-url>").replace(
            m.peer_url, "<peer-url>"
        )
        text = text.replace(m.endpoint, "<endpoint>")
        stripped = text.strip()
        if stripped[:1] in "{[":
            try:
                return json.dumps(
                    mask_json(json.loads(stripped)), sort_keys=True, indent=1
                )
            except ValueError:
                pass
        text = "\n".join(self._log_line(line) for line in text.splitlines())
        text = re.sub(r'"(ClusterID|MemberID|RaftTerm)" : \d+', r'"\1" : <n>', text)
        # etcdctl prints ids with %x: a leading zero digit drops (1 id in 16 has 15 digits)
        text = re.sub(r"\b[0-9a-f]{13,16}\b", "<id>", text)
        text = re.sub(r"took = [0-9.]+[µnm]?s", "took = <t>", text)
        text = re.sub(r"remaining\(-?\d+s\)", "remaining(<ttl>s)", text)
        return text

    @staticmethod
    def _log_line(line: str) -> str:
        """etcdctl's zap log lines (retry warnings): keep level, message and error only."""
        if line.startswith('{"level"'):
            try:
                entry = json.loads(line)
            except ValueError:
                return line
            return f"log {entry.get('level')}: {entry.get('msg')}: {entry.get('error')}"
        return line


# Fields whose values legitimately differ between two clusters (or two servers' storage).
MASKED = {
    "cluster_id",
    "member_id",
    "raft_term",
    "ID",
    "id",
    "leader",
    "raftTerm",
    "raftIndex",
    "raftAppliedIndex",
    "dbSize",
    "dbSizeInUse",
    "version",
    "Endpoint",
    "name",
    "peerURLs",
    "clientURLs",
    "hash",
    "remaining-ttl",
    "took",
}


def _masked(key: str, value) -> bool:
    if key == "version":  # the server's version string, not a key's version number
        return isinstance(value, str)
    return key in MASKED


def mask_json(value):
    if isinstance(value, dict):
        return {
            k: ("<masked>" if _masked(k, v) else mask_json(v)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_json(v) for v in value]
    return value


def run_both(pair, tmp_path: pathlib.Path, script) -> tuple[Ctl, Ctl]:
    """Run `script(ctl)` against etcd, then etcdx; their transcripts must be equal."""
    ctls = []
    for side, m in zip(("ref", "cand"), pair):
        work = tmp_path / f"ctl-{side}"
        work.mkdir()
        ctl = Ctl(m, work)
        script(ctl)
        ctls.append(ctl)
    a, b = ctls
    assert a.transcript == b.transcript, (
        "etcdctl transcripts differ:\n" + compare.diff_lines(a.transcript, b.transcript)
    )
    return a, b


def test_put_get_del_flags(pair, tmp_path):
    for m in pair:  # a lease with a fixed ID, so `--lease` names the same lease on both
        m.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(ID=0x64, TTL=600))

    def script(ctl):
        ctl("put", "a", "1")
        ctl("put", "a/b", "2")
        ctl("put", "a/c", "3")
        ctl("put", "b", "4")
        ctl("put", "a", "10", "--prev-kv")
        ctl("put", "c", "5", "--lease=64")
        ctl("put", "c", "--ignore-value", "--prev-kv")
        ctl("put", "c", "6", "--ignore-lease")
        ctl("put", "nokey", "--ignore-value")
        ctl("put", "c", "7", "--lease=999")
        ctl("get", "a")
        ctl("get", "a", "--prefix")
        ctl("get", "a/", "--from-key")
        ctl("get", "", "--from-key", "--keys-only")
        ctl("get", "a", "--prefix", "--limit=2")
        ctl("get", "a", "--rev=2")
        ctl("get", "a", "--rev=100")
        for target in ("KEY", "VALUE", "VERSION", "CREATE", "MODIFY"):
            for order in ("ASCEND", "DESCEND"):
                ctl("get", "a", "--prefix", f"--sort-by={target}", f"--order={order}")
        ctl("get", "a", "--prefix", "--keys-only")
        ctl("get", "a", "--prefix", "--count-only", "-w", "json")
        ctl("get", "a", "--prefix", "--print-value-only")
        ctl("get", "a", "--prefix", "--consistency=s")
        ctl("get", "a", "--prefix", "-w", "json")
        ctl("get", "c", "-w", "json")
        ctl("get", "a", "-w", "fields")
        ctl("get", "a", "b")  # a range [a, b)
        ctl("del", "nokey")
        ctl("del", "a/b", "--prev-kv")
        ctl("del", "a", "--prefix", "--prev-kv", "-w", "json")
        ctl("del", "b", "--from-key")
        ctl("get", "", "--from-key")

    run_both(pair, tmp_path, script)


TXN_SUCCESS = """mod("a") > "0"
value("b") = "4"
version("a") = "1"
create("b") != "0"

put a yes
get b
del c

put a no

"""

TXN_FAILURE = """value("a") = "zzz"

put x 1

put x 2
get a --prefix

"""


def test_txn_interactive(pair, tmp_path):
    def script(ctl):
        ctl("put", "a", "1")
        ctl("put", "b", "4")
        ctl("put", "c", "5")
        ctl("txn", "-i", stdin=TXN_SUCCESS)
        ctl("txn", "-i", stdin=TXN_FAILURE)
        ctl(
            "txn", stdin=TXN_FAILURE
        )  # non-interactive form reads the same stdin, no prompts
        ctl("txn", "-w", "json", stdin=TXN_SUCCESS)
        ctl("get", "", "--from-key")

    run_both(pair, tmp_path, script)


def test_compaction(pair, tmp_path):
    def script(ctl):
        for i in range(5):
            ctl("put", "k", str(i))
        ctl("compaction", "3")
        ctl("compaction", "2")
        ctl("compaction", "4", "--physical")
        ctl("compaction", "100")
        ctl("get", "k", "--rev=3")
        ctl("get", "k", "--rev=4")
        ctl("get", "k", "--rev=5", "-w", "json")

    run_both(pair, tmp_path, script)


def _watch_until(
    ctl: Ctl, args: list[str], writes, marker: str, timeout: float = 15.0
) -> None:
    """Run `etcdctl watch ARGS` in the background, do `writes()`, wait for `marker`, stop it."""
    out = ctl.workdir / f"watch-{len(ctl.transcript)}.out"
    cmd = [procs.ETCDCTL_BIN, f"--endpoints={ctl.member.endpoint}", "watch", *args]
    with open(out, "w") as f:
        proc = subprocess.Popen(
            cmd, stdout=f, stderr=subprocess.STDOUT, env=ctl_env(), cwd=ctl.workdir
        )
    try:
        writes()
        deadline = time.monotonic() + timeout
        while (
            marker not in out.read_text()
            and time.monotonic() < deadline
            and proc.poll() is None
        ):
            time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)
    ctl.transcript.append(f"$ etcdctl watch {' '.join(args)}")
    ctl.transcript.extend(
        "out| " + line for line in ctl.normalise(out.read_text()).splitlines()
    )


def test_watch(pair, tmp_path):
    def script(ctl):
        ctl("put", "a", "1")
        ctl("put", "a/b", "2")
        ctl("del", "a")
        ctl("put", "b", "3")
        ctl("put", "a/end", "END1")
        # history from revision 1, prefix, with previous values
        _watch_until(
            ctl, ["--prefix", "a", "--prev-kv", "--rev=1"], lambda: None, "END1"
        )

        # live: start at the next revision so no event can be missed, then write
        def writes():
            ctl("put", "w", "x")
            ctl("put", "w", "y")
            ctl("txn", stdin="\nput w z\ndel a/b\n\n\n")
            ctl("put", "w", "END2")

        _watch_until(ctl, ["w", "--prev-kv", "--rev=7"], writes, "END2")
        _watch_until(ctl, ["--rev=2", "a", "a/zzz"], lambda: None, "a/end")

    run_both(pair, tmp_path, script)


def test_lease_commands(pair, tmp_path):
    def script(ctl):
        r = ctl("lease", "grant", "600")
        lease_id = r.stdout.split()[1]
        ctl("put", "k1", "v", f"--lease={lease_id}")
        ctl("lease", "timetolive", lease_id)
        ctl("lease", "timetolive", lease_id, "--keys")
        ctl("lease", "timetolive", lease_id, "--keys", "-w", "json")
        ctl("lease", "list")
        ctl("lease", "keep-alive", "--once", lease_id)
        ctl("lease", "revoke", lease_id)
        ctl("lease", "timetolive", lease_id)
        ctl("lease", "revoke", lease_id)
        ctl("lease", "keep-alive", "--once", lease_id)
        ctl("lease", "list")
        ctl("get", "k1")
        ctl("lease", "grant", "9000000001")

    run_both(pair, tmp_path, script)


def test_endpoint_member_alarm_defrag(pair, tmp_path):
    def script(ctl):
        ctl("put", "a", "1")
        ctl("endpoint", "health")
        ctl("endpoint", "health", "-w", "json")
        ctl("endpoint", "status", "-w", "json")
        r = ctl.raw("endpoint", "status", "-w", "table")
        header = r.stdout.splitlines()[1] if r.returncode == 0 else r.stderr
        # column widths follow the id's width (see normalise): compare the words
        ctl.transcript.append(f"status table header: {' '.join(header.split())}")
        ctl("endpoint", "hashkv", "-w", "json")
        r = ctl.raw("endpoint", "hashkv")
        ctl.transcript.append(
            "hashkv: " + re.sub(r"\d+$", "<hash>", ctl.normalise(r.stdout.strip()))
        )
        ctl("member", "list")
        ctl("member", "list", "-w", "json")
        ctl("alarm", "list")
        ctl("alarm", "disarm")
        ctl("defrag")
        ctl("get", "a")

    run_both(pair, tmp_path, script)


def test_hashkv_agrees_with_etcd_for_the_same_history(pair, tmp_path):
    """etcd's HashKV is a CRC over the key bucket; etcdx keeps etcd's key layout, so equal
    histories should hash equal. Informative rather than contractual: clients only compare
    hashes between members of one cluster."""
    hashes = []
    for m in pair:
        for i in range(3):
            m.kv.Put(rpc_pb2.PutRequest(key=b"h%d" % i, value=b"v"))
        m.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"h1"))
        hashes.append(m.maintenance.HashKV(rpc_pb2.HashKVRequest(revision=0)))
    a, b = hashes
    assert (a.hash, a.compact_revision, a.header.revision) == (
        b.hash,
        b.compact_revision,
        b.header.revision,
    )


def test_snapshot_save(pair, tmp_path):
    def script(ctl):
        ctl("put", "a", "1")
        r = ctl("snapshot", "save", "snap.db")
        assert r.returncode == 0, r.stderr
        assert (ctl.workdir / "snap.db").stat().st_size > 0

    etcd_ctl, etcdx_ctl = run_both(pair, tmp_path, script)
    want = json.loads(etcd_ctl.raw("snapshot", "status", "snap.db", "-w", "json").stdout)
    got = json.loads(etcdx_ctl.raw("snapshot", "status", "snap.db", "-w", "json").stdout)
    assert got["revision"] == want["revision"] == 2
    # etcdx's meta bucket also holds the term of the consistent index (as etcd 3.5's does).
    assert got["totalKey"] == want["totalKey"] + (1 if procs.candidate_kind() == "etcdx" else 0)


class Background:
    """An etcdctl command left running (lock holder, campaigner, observer); output to a file."""

    def __init__(self, ctl: Ctl, *args: str) -> None:
        self.ctl = ctl
        self.args = args
        self.out = ctl.workdir / f"bg-{len(ctl.transcript)}-{args[0]}.out"
        cmd = [procs.ETCDCTL_BIN, f"--endpoints={ctl.member.endpoint}", *args]
        with open(self.out, "w") as f:
            self.proc = subprocess.Popen(
                cmd, stdout=f, stderr=subprocess.STDOUT, env=ctl_env(), cwd=ctl.workdir
            )

    def text(self) -> str:
        return self.out.read_text()

    def wait_for(self, needle: str, timeout: float = 10.0) -> bool:
        return compare.wait_for(lambda: needle in self.text(), timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def record(self, label: str) -> None:
        self.ctl.transcript.append(f"[{label}] $ etcdctl {' '.join(self.args)}")
        self.ctl.transcript.extend(
            "out| " + line for line in self.ctl.normalise(self.text()).splitlines()
        )


def test_lock_and_elect(pair, tmp_path):
    """etcdctl's lock and elect use clientv3's concurrency recipes (lease + revision-ordered
    keys + watches on the predecessor): contention, release on exit, leader observation."""

    def script(ctl):
        ctl("lock", "mylock", "echo", "uncontended")
        holder = Background(ctl, "lock", "mylock")
        try:
            assert holder.wait_for("mylock/"), holder.text()
            waiter = Background(ctl, "lock", "mylock", "echo", "acquired after release")
            try:
                time.sleep(1.0)  # the waiter must still be blocked behind the holder
                ctl.transcript.append(
                    f"waiter done while held: {waiter.proc.poll() is not None}"
                )
                holder.stop()
                ctl.transcript.append(
                    f"waiter acquired: {waiter.wait_for('acquired after release')}"
                )
            finally:
                waiter.stop()
            waiter.record("waiter")
        finally:
            holder.stop()
        holder.record("holder")
        ctl("get", "mylock", "--prefix", "--keys-only")

        leader = Background(ctl, "elect", "myelection", "proposal-1")
        observer = None
        try:
            assert leader.wait_for("proposal-1"), leader.text()
            observer = Background(ctl, "elect", "-l", "myelection")
            ctl.transcript.append(
                f"observer sees leader: {observer.wait_for('proposal-1')}"
            )
            second = Background(ctl, "elect", "myelection", "proposal-2")
            try:
                time.sleep(1.0)
                ctl.transcript.append(
                    f"second elected while first leads: {'proposal-2' in second.text()}"
                )
                leader.stop()
                ctl.transcript.append(
                    f"second elected after first quits: {second.wait_for('proposal-2')}"
                )
                ctl.transcript.append(
                    f"observer sees new leader: {observer.wait_for('proposal-2')}"
                )
            finally:
                second.stop()
        finally:
            leader.stop()
            if observer:
                observer.stop()
        ctl("get", "myelection", "--prefix", "--keys-only")

    a, _ = run_both(pair, tmp_path, script)
    assert "waiter done while held: False" in a.transcript
    assert "waiter acquired: True" in a.transcript
    assert "second elected after first quits: True" in a.transcript
