"""A member with API worker processes (--api-workers) behaves like one without.

Every test talks to the member over many separate connections, so the
kernel spreads them over the workers (SO_REUSEPORT); `_serving_workers`
checks from /proc that more than one worker holds client connections.
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import signal
import socket
import threading
import time

import grpc
import pytest

from etcdx.pb import rpc_pb2, rpc_pb2_grpc
from support import procs

pytestmark = pytest.mark.timeout(180)

WORKERS = 2
CONNECTIONS = 24  # spread over 2 workers: P(one gets none) = 2**-23


def _wait_for(condition, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _children(pid: int) -> set[int]:
    out: set[int] = set()
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.update(int(c) for c in fh.read().split())
    except FileNotFoundError:
        pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def _worker_pids(member: procs.Member) -> set[int]:
    pids = set()
    for c in _children(member.pid):
        try:
            cmd = pathlib.Path(f"/proc/{c}/cmdline").read_bytes()
        except FileNotFoundError:
            continue
        if b"etcdx.api.worker" in cmd:
            pids.add(c)
    return pids


def _workers_when(member: procs.Member, ok) -> set[int] | None:
    pids = _worker_pids(member)
    return pids if ok(pids) else None


def _established_inodes(port: int) -> set[str]:
    """Socket inodes of established TCP connections whose local port is ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = pathlib.Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _serving_workers(member: procs.Member) -> set[int]:
    """Workers that hold at least one established client connection."""
    conns = _established_inodes(member.client_port)
    serving = set()
    for pid in _worker_pids(member):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except FileNotFoundError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in conns:
                serving.add(pid)
                break
    return serving


class Clients:
    """Many independent connections to one member."""

    def __init__(self, member: procs.Member, n: int = CONNECTIONS) -> None:
        # A local subchannel pool: a channel of its own is a TCP connection of its own.
        self.channels = [grpc.insecure_channel(member.endpoint, options=[("grpc.use_local_subchannel_pool", 1)])
                         for _ in range(n)]
        self.kv = [rpc_pb2_grpc.KVStub(c) for c in self.channels]
        self.watch = [rpc_pb2_grpc.WatchStub(c) for c in self.channels]
        self.lease = [rpc_pb2_grpc.LeaseStub(c) for c in self.channels]
        self.maintenance = [rpc_pb2_grpc.MaintenanceStub(c) for c in self.channels]
        self.cluster = [rpc_pb2_grpc.ClusterStub(c) for c in self.channels]
        for kv in self.kv:  # connect every channel now
            kv.Range(rpc_pb2.RangeRequest(key=b"connect", serializable=True), timeout=10)

    def close(self) -> None:
        for c in self.channels:
            c.close()


@pytest.fixture(scope="module")
def member(tmp_path_factory: pytest.TempPathFactory):
    procs.require("etcdx")
    m = procs.Member("etcdx", tmp_path_factory.mktemp("api-workers"),
                     extra_args=["--api-workers", str(WORKERS)])
    m.start()
    try:
        yield m
    finally:
        m.close()


@pytest.fixture(scope="module")
def clients(member: procs.Member):
    c = Clients(member)
    try:
        yield c
    finally:
        c.close()


def test_member_starts_the_requested_workers_and_spreads_connections(member: procs.Member, clients: Clients) -> None:
    assert len(_worker_pids(member)) == WORKERS
    assert len(_serving_workers(member)) == WORKERS


def test_put_is_visible_to_linearizable_and_serializable_reads_on_every_connection(clients: Clients) -> None:
    for i, kv in enumerate(clients.kv):
        key = f"rw/{i}".encode()
        put = kv.Put(rpc_pb2.PutRequest(key=key, value=b"v%d" % i), timeout=5)
        for other in clients.kv:
            got = other.Range(rpc_pb2.RangeRequest(key=key), timeout=5)
            assert [(x.key, x.value, x.mod_revision) for x in got.kvs] == [(key, b"v%d" % i, put.header.revision)]
            assert got.header.revision >= put.header.revision
        # serializable reads come from the worker's own view of the backend, already applied
        assert clients.kv[-1 - i].Range(rpc_pb2.RangeRequest(key=key, serializable=True), timeout=5).count == 1


def test_headers_carry_the_members_ids_and_term(member: procs.Member, clients: Clients) -> None:
    status = clients.maintenance[0].Status(rpc_pb2.StatusRequest(), timeout=5)
    for kv in clients.kv:
        for serializable in (False, True):
            h = kv.Range(rpc_pb2.RangeRequest(key=b"x", serializable=serializable), timeout=5).header
            assert (h.cluster_id, h.member_id, h.raft_term) == (status.header.cluster_id, status.header.member_id,
                                                                status.raftTerm)
            assert h.member_id == status.leader


def test_linearizable_read_your_write_across_connections_under_concurrency(clients: Clients) -> None:
    failures: list[str] = []

    def run(w: int) -> None:
        writer, reader = clients.kv[w], clients.kv[(w + 5) % len(clients.kv)]
        for i in range(40):
            key = f"ryw/{w}".encode()
            put = writer.Put(rpc_pb2.PutRequest(key=key, value=b"%d" % i), timeout=10)
            got = reader.Range(rpc_pb2.RangeRequest(key=key), timeout=10)
            if not got.kvs or got.kvs[0].value != b"%d" % i or got.header.revision < put.header.revision:
                failures.append(f"writer {w} step {i}: read {list(got.kvs)} at {got.header.revision} "
                                f"after put at {put.header.revision}")

    threads = [threading.Thread(target=run, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not failures, failures[:5]


def test_txn_and_delete_through_workers(clients: Clients) -> None:
    kv0, kv1 = clients.kv[0], clients.kv[1]
    kv0.Put(rpc_pb2.PutRequest(key=b"txn/a", value=b"1"), timeout=5)
    cmp = rpc_pb2.Compare(key=b"txn/a", target=rpc_pb2.Compare.VALUE, result=rpc_pb2.Compare.EQUAL, value=b"1")
    resp = kv1.Txn(rpc_pb2.TxnRequest(
        compare=[cmp],
        success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b"txn/b", value=b"2"))],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"txn/a"))]), timeout=5)
    assert resp.succeeded
    # read-only txns, serializable (answered by the worker) and linearizable
    for serializable in (True, False):
        ro = clients.kv[2].Txn(rpc_pb2.TxnRequest(
            compare=[cmp],
            success=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(
                key=b"txn/", range_end=b"txn0", serializable=serializable))]), timeout=5)
        assert ro.succeeded
        assert [kv.key for kv in ro.responses[0].response_range.kvs] == [b"txn/a", b"txn/b"]
        assert ro.header.revision == resp.header.revision
    failed = kv1.Txn(rpc_pb2.TxnRequest(
        compare=[rpc_pb2.Compare(key=b"txn/a", target=rpc_pb2.Compare.VALUE,
                                 result=rpc_pb2.Compare.EQUAL, value=b"nope")],
        failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=b"txn/a"))]), timeout=5)
    assert not failed.succeeded and failed.responses[0].response_range.kvs[0].value == b"1"
    deleted = clients.kv[3].DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"txn/", range_end=b"txn0", prev_kv=True),
                                        timeout=5)
    assert deleted.deleted == 2 and [kv.key for kv in deleted.prev_kvs] == [b"txn/a", b"txn/b"]
    for kv in clients.kv:
        assert kv.Range(rpc_pb2.RangeRequest(key=b"txn/", range_end=b"txn0"), timeout=5).count == 0


def test_errors_keep_etcds_codes_and_messages(clients: Clients) -> None:
    with pytest.raises(grpc.RpcError) as e:
        clients.kv[0].Put(rpc_pb2.PutRequest(key=b"", value=b"v"), timeout=5)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
    with pytest.raises(grpc.RpcError) as e:
        clients.lease[1].LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=0x7777), timeout=5)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.NOT_FOUND, "etcdserver: requested lease not found")
    with pytest.raises(grpc.RpcError) as e:
        clients.kv[2].Range(rpc_pb2.RangeRequest(key=b"x", revision=10**9, serializable=True), timeout=5)
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.OUT_OF_RANGE,
                                                   "etcdserver: mvcc: required revision is a future revision")


def _watch_events(stub: rpc_pb2_grpc.WatchStub, create: rpc_pb2.WatchCreateRequest, want: int,
                  started: threading.Event, out: list, timeout: float = 15.0) -> None:
    """Collect responses of one watch until ``want`` events arrived (or the deadline)."""
    done = threading.Event()

    def requests():
        yield rpc_pb2.WatchRequest(create_request=create)
        done.wait(timeout)

    call = stub.Watch(requests(), timeout=timeout)
    events = 0
    try:
        for resp in call:
            out.append(resp)
            if resp.created:
                started.set()
            events += len(resp.events)
            if events >= want:
                break
    finally:
        done.set()
        call.cancel()


def test_watch_sees_every_write_from_every_connection_in_order(clients: Clients) -> None:
    n = 3 * len(clients.kv)
    out: list[rpc_pb2.WatchResponse] = []
    started = threading.Event()
    t = threading.Thread(target=_watch_events, args=(
        clients.watch[0], rpc_pb2.WatchCreateRequest(key=b"watch/", range_end=b"watch0", prev_kv=True), n, started, out))
    t.start()
    assert started.wait(10)
    revisions = []
    for i in range(n):
        put = clients.kv[i % len(clients.kv)].Put(rpc_pb2.PutRequest(key=b"watch/%d" % (i % 4), value=b"%d" % i), timeout=5)
        revisions.append(put.header.revision)
    t.join(20)
    assert out[0].created and out[0].watch_id >= 0
    events = [ev for resp in out[1:] for ev in resp.events]
    assert [ev.kv.mod_revision for ev in events] == revisions
    assert [ev.kv.value for ev in events] == [b"%d" % i for i in range(n)]
    assert all(resp.header.revision >= resp.events[-1].kv.mod_revision for resp in out[1:])
    assert events[4].prev_kv.value == b"0"

    # a watch from a past revision on another connection replays the same history
    replay: list[rpc_pb2.WatchResponse] = []
    _watch_events(clients.watch[7], rpc_pb2.WatchCreateRequest(key=b"watch/", range_end=b"watch0",
                                                                start_revision=revisions[0]), n, threading.Event(), replay)
    assert [ev.kv.mod_revision for resp in replay for ev in resp.events] == revisions


def test_a_slow_watch_client_still_gets_every_event_in_order(clients: Clients) -> None:
    """The core sends a relayed stream only as far ahead as the worker's client reads."""
    n, value = 200, b"v" * 20000
    stop = threading.Event()

    def requests():
        yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"slow/", range_end=b"slow0"))
        stop.wait(60)

    call = clients.watch[3].Watch(requests(), timeout=60)
    try:
        it = iter(call)
        assert next(it).created
        revisions = [clients.kv[i % 8].Put(rpc_pb2.PutRequest(key=b"slow/%d" % (i % 7), value=value), timeout=5)
                     .header.revision for i in range(n)]
        seen: list[int] = []
        for resp in it:
            time.sleep(0.002)
            seen.extend(ev.kv.mod_revision for ev in resp.events)
            if len(seen) >= n:
                break
        assert seen == revisions
    finally:
        stop.set()
        call.cancel()


def test_progress_request_through_a_worker(clients: Clients) -> None:
    rev = clients.kv[0].Put(rpc_pb2.PutRequest(key=b"progress", value=b"v"), timeout=5).header.revision
    stop = threading.Event()

    def requests():
        yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"progress/none"))
        yield rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())
        stop.wait(10)

    call = clients.watch[4].Watch(requests(), timeout=10)
    try:
        it = iter(call)
        created, progress = next(it), next(it)
        assert created.created and not progress.events
        assert progress.watch_id == -1 and progress.header.revision >= rev
    finally:
        stop.set()
        call.cancel()


def test_lease_keep_alive_ttl_and_revoke_through_workers(clients: Clients) -> None:
    grant = clients.lease[0].LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=5)
    lid = grant.ID
    clients.kv[1].Put(rpc_pb2.PutRequest(key=b"leased", value=b"v", lease=lid), timeout=5)

    def keep_alives():
        for _ in range(3):
            yield rpc_pb2.LeaseKeepAliveRequest(ID=lid)
        yield rpc_pb2.LeaseKeepAliveRequest(ID=0x12345)

    for i in (2, 3):
        resps = list(clients.lease[i].LeaseKeepAlive(keep_alives(), timeout=10))
        assert [(r.ID, r.TTL) for r in resps] == [(lid, 30)] * 3 + [(0x12345, 0)]
        assert resps[0].header.member_id != 0
    ttl = clients.lease[4].LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lid, keys=True), timeout=5)
    assert ttl.grantedTTL == 30 and 0 < ttl.TTL <= 30 and list(ttl.keys) == [b"leased"]
    assert lid in [l.ID for l in clients.lease[5].LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=5).leases]
    clients.lease[6].LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lid), timeout=5)
    for kv in clients.kv:
        assert kv.Range(rpc_pb2.RangeRequest(key=b"leased"), timeout=5).count == 0


def test_compaction_status_hash_and_member_list_through_workers(clients: Clients) -> None:
    first = clients.kv[0].Put(rpc_pb2.PutRequest(key=b"compact/k", value=b"1"), timeout=5).header.revision
    last = clients.kv[1].Put(rpc_pb2.PutRequest(key=b"compact/k", value=b"2"), timeout=5).header.revision
    clients.kv[2].Compact(rpc_pb2.CompactionRequest(revision=last, physical=True), timeout=10)
    for kv in clients.kv:
        for serializable in (False, True):
            with pytest.raises(grpc.RpcError) as e:
                kv.Range(rpc_pb2.RangeRequest(key=b"compact/k", revision=first, serializable=serializable), timeout=5)
            assert e.value.code() == grpc.StatusCode.OUT_OF_RANGE
            assert e.value.details() == "etcdserver: mvcc: required revision has been compacted"
    status = clients.maintenance[3].Status(rpc_pb2.StatusRequest(), timeout=5)
    assert status.version and status.dbSize > 0 and status.raftAppliedIndex >= 1 and status.leader != 0
    hashes = {m.HashKV(rpc_pb2.HashKVRequest(revision=last), timeout=5).hash for m in clients.maintenance[:4]}
    assert len(hashes) == 1
    assert clients.maintenance[4].Hash(rpc_pb2.HashRequest(), timeout=5).hash != 0
    members = clients.cluster[5].MemberList(rpc_pb2.MemberListRequest(), timeout=5).members
    assert len(members) == 1 and members[0].ID == status.header.member_id


def test_defragment_through_any_process_makes_every_worker_read_the_new_file(clients: Clients) -> None:
    """An acknowledged write is committed to LMDB, so a serializable read on any worker sees it —
    unless that worker still reads the file a defragment replaced. Defragment is asked on every
    connection, so through each worker."""
    for i in range(50):
        clients.kv[i % 4].Put(rpc_pb2.PutRequest(key=b"defrag/%d" % i, value=b"x" * 1000), timeout=5)
    clients.kv[0].DeleteRange(rpc_pb2.DeleteRangeRequest(key=b"defrag/", range_end=b"defrag0"), timeout=5)
    for n, maintenance in enumerate(clients.maintenance):
        maintenance.Defragment(rpc_pb2.DefragmentRequest(), timeout=30)
        value = b"%d" % n
        clients.kv[n].Put(rpc_pb2.PutRequest(key=b"defrag/after", value=value), timeout=5)
        for kv in clients.kv:
            got = kv.Range(rpc_pb2.RangeRequest(key=b"defrag/", range_end=b"defrag0", serializable=True), timeout=5)
            assert [(x.key, x.value) for x in got.kvs] == [(b"defrag/after", value)], f"after defragment {n}"


def test_snapshot_streams_through_a_worker(clients: Clients) -> None:
    blobs = [r.blob for r in clients.maintenance[0].Snapshot(rpc_pb2.SnapshotRequest(), timeout=30)]
    data, digest = b"".join(blobs[:-1]), blobs[-1]
    assert len(data) > 0 and hashlib.sha256(data).digest() == digest


def test_a_dead_worker_is_replaced(member: procs.Member) -> None:
    before = _worker_pids(member)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    after = _wait_for(lambda: _workers_when(member, lambda p: len(p) == WORKERS and victim not in p),
                      what="a replacement worker")
    assert len(after - before) == 1
    c = Clients(member, 8)
    try:
        for kv in c.kv:
            kv.Put(rpc_pb2.PutRequest(key=b"after-restart", value=b"v"), timeout=5)
            assert kv.Range(rpc_pb2.RangeRequest(key=b"after-restart"), timeout=5).count == 1
    finally:
        c.close()


def test_a_dead_workers_lmdb_reader_slot_is_released(member: procs.Member) -> None:
    """A process killed inside a read transaction keeps its reader slot (and every page it could
    see) until someone checks for dead readers; the core does when a worker dies."""
    import subprocess
    import sys

    import lmdb

    db = str(member.data_dir / "member" / "snap" / "db")
    reader = subprocess.Popen([sys.executable, "-c", (
        "import lmdb, sys, time\n"
        f"env = lmdb.open({db!r}, readonly=True, max_dbs=32, max_readers=1024)\n"
        "txn = env.begin()\n"
        "print('reading', flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE)
    try:
        assert reader.stdout.readline() == b"reading\n"
        reader.kill()
        reader.wait(10)
        env = lmdb.open(db, readonly=True, max_dbs=32, max_readers=1024)
        try:
            def reader_slot_of(pid: int) -> bool:
                return any(line.split()[:1] == [str(pid)] for line in env.readers().splitlines())

            assert reader_slot_of(reader.pid)
            victim = min(_worker_pids(member))
            os.kill(victim, signal.SIGKILL)
            _wait_for(lambda: not reader_slot_of(reader.pid), what="the core to release dead readers")
            _wait_for(lambda: _workers_when(member, lambda p: len(p) == WORKERS and victim not in p),
                      what="a replacement worker")
        finally:
            env.close()
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(10)


def test_sigterm_stops_the_workers_with_the_member(tmp_path: pathlib.Path) -> None:
    procs.require("etcdx")
    m = procs.Member("etcdx", tmp_path, extra_args=["--api-workers", str(WORKERS)])
    m.start()
    try:
        workers = _wait_for(lambda: _workers_when(m, lambda p: len(p) == WORKERS), what="workers")
        assert m.stop() == 0
        _wait_for(lambda: not any(_alive(p) for p in workers), what="workers to exit")
    finally:
        m.close()


def test_a_taken_client_port_fails_the_start(tmp_path: pathlib.Path) -> None:
    procs.require("etcdx")
    m = procs.Member("etcdx", tmp_path, extra_args=["--api-workers", str(WORKERS)])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", m.client_port))
        squatter.listen()
        try:
            m.start(wait=False)  # start() itself would retry on other ports
            with pytest.raises(procs.MemberStartError):
                m.wait_ready(timeout=30)
            assert m.proc.returncode not in (None, 0)
            assert "cannot start the API workers" in m.log_tail()
            _wait_for(lambda: not _worker_pids(m), what="no workers left")
        finally:
            m.close()


def test_a_second_member_cannot_share_the_client_port_through_so_reuseport(member: procs.Member,
                                                                           tmp_path: pathlib.Path) -> None:
    procs.require("etcdx")
    intruder = procs.Member("etcdx", tmp_path, extra_args=["--api-workers", str(WORKERS)])
    intruder.client_port = member.client_port
    try:
        intruder.start(wait=False)
        assert intruder.proc.wait(30) not in (None, 0)
        assert "address already in use" in intruder.log_tail().lower()
        assert not _worker_pids(intruder)
        assert member.kv.Range(rpc_pb2.RangeRequest(key=b"x"), timeout=5).header.member_id != 0
    finally:
        intruder.close()


def test_killing_the_member_leaves_no_worker_behind(tmp_path: pathlib.Path) -> None:
    procs.require("etcdx")
    m = procs.Member("etcdx", tmp_path, extra_args=["--api-workers", str(WORKERS)])
    m.start()
    try:
        workers = _wait_for(lambda: _workers_when(m, lambda p: len(p) == WORKERS), what="workers")
        m.kill()
        _wait_for(lambda: not any(_alive(p) for p in workers), what="workers to die with the member")
        with pytest.raises(grpc.RpcError):
            with grpc.insecure_channel(m.endpoint) as ch:
                rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b"x"), timeout=1)
        # and the member comes back on the same data dir, with its workers
        m.start()
        assert len(_wait_for(lambda: _workers_when(m, lambda p: len(p) == WORKERS), what="workers")) == WORKERS
    finally:
        m.close()
