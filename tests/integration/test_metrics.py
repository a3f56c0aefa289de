"""/metrics: Prometheus text in etcd's names, figures that follow the load, summed over API workers.

A single-process member serves /metrics on its client port and on
--listen-metrics-urls; a member with two API workers (and --metrics
extensive) is loaded over many connections, so both workers serve requests,
and its text must count every one of them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from etcdx.pb import rpc_pb2, rpc_pb2_grpc
from support import procs

pytestmark = pytest.mark.timeout(120)

CONNECTIONS = 16  # spread over 2 workers by SO_REUSEPORT: P(one gets none) = 2**-15
PUTS = 48

# etcd 3.4's families that etcdx exports (a dashboard built for etcd finds them)
REQUIRED = [
    "etcd_server_has_leader", "etcd_server_is_leader", "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_committed_total", "etcd_server_proposals_applied_total",
    "etcd_server_proposals_pending", "etcd_server_proposals_failed_total",
    "etcd_disk_wal_fsync_duration_seconds_bucket", "etcd_disk_backend_commit_duration_seconds_bucket",
    "etcd_mvcc_db_total_size_in_bytes", "etcd_debugging_mvcc_keys_total",
    "grpc_server_started_total", "grpc_server_handled_total",
    "process_cpu_seconds_total", "process_resident_memory_bytes",
]

Samples = dict[tuple[str, frozenset], float]


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as resp:
        assert resp.status == 200
        assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
        text = resp.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def handled(samples: Samples, method: str, code: str = "OK", service: str = "etcdserverpb.KV") -> float:
    return value(samples, "grpc_server_handled_total", grpc_code=code, grpc_method=method,
                 grpc_service=service, grpc_type="unary")


def put_over_connections(member: procs.Member, n: int, prefix: bytes) -> None:
    channels = [grpc.insecure_channel(member.endpoint, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(CONNECTIONS)]
    try:
        for i in range(n):
            kv = rpc_pb2_grpc.KVStub(channels[i % CONNECTIONS])
            kv.Put(rpc_pb2.PutRequest(key=prefix + b"%d" % i, value=b"v"), timeout=10)
    finally:
        for ch in channels:
            ch.close()


def metrics_url(member: procs.Member) -> str:
    return f"http://127.0.0.1:{member.metrics_port}"


@pytest.fixture
def metrics_member(member_group):
    def make(*extra: str) -> procs.Member:
        procs.require("etcdx")
        port = procs.free_port()
        m = member_group.new("etcdx", extra_args=["--listen-metrics-urls", f"http://127.0.0.1:{port}", *extra])
        m.metrics_port = port
        return m
    return make


def test_metrics_in_etcds_names_follow_the_load(metrics_member):
    m = metrics_member()
    before = scrape(metrics_url(m))
    for name in REQUIRED:
        assert any(key[0] == name for key in before), f"{name} missing"
    assert value(before, "etcd_server_has_leader") == 1
    assert value(before, "etcd_server_is_leader") == 1
    assert value(before, "etcd_server_leader_changes_seen_total") >= 1
    assert not [key for key in before if key[0].endswith("_created")], "etcd has no *_created series"

    put_over_connections(m, PUTS, b"load/")
    with pytest.raises(grpc.RpcError):
        m.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=0x7E57), timeout=10)
    after = scrape(metrics_url(m))
    assert handled(after, "Put") - handled(before, "Put") == PUTS
    assert value(after, "grpc_server_started_total", grpc_method="Put", grpc_service="etcdserverpb.KV",
                 grpc_type="unary") - value(before, "grpc_server_started_total", grpc_method="Put",
                                            grpc_service="etcdserverpb.KV", grpc_type="unary") == PUTS
    assert handled(after, "LeaseRevoke", "NotFound", "etcdserverpb.Lease") == 1
    committed = "etcd_server_proposals_committed_total"
    assert value(after, committed) - value(before, committed) >= PUTS
    assert value(after, "etcd_server_proposals_applied_total") >= value(before, committed) + PUTS
    assert value(after, "etcd_debugging_mvcc_keys_total") - value(before, "etcd_debugging_mvcc_keys_total") == PUTS
    for hist in ("etcd_disk_wal_fsync_duration_seconds_count", "etcd_disk_backend_commit_duration_seconds_count"):
        assert value(after, hist) > value(before, hist)
    assert value(after, "etcd_mvcc_db_total_size_in_bytes") > 0

    # The client port serves the same text.
    on_client_port = scrape(m.client_url)
    assert handled(on_client_port, "Put") == handled(after, "Put")

    # The metrics URL also answers /health, as etcd's does, and nothing of the gateway.
    with urllib.request.urlopen(metrics_url(m) + "/health", timeout=10) as resp:
        assert json.loads(resp.read()) == {"health": "true"}
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(metrics_url(m) + "/version", timeout=10)
    assert err.value.code == 404


def test_metrics_count_requests_served_by_api_workers(metrics_member):
    m = metrics_member("--api-workers", "2", "--metrics", "extensive")
    before = scrape(metrics_url(m))
    put_over_connections(m, PUTS, b"workers/")
    deadline = time.monotonic() + 10
    while True:  # workers send their counts to the core once a second
        after = scrape(metrics_url(m))
        if handled(after, "Put") - handled(before, "Put") >= PUTS or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert handled(after, "Put") - handled(before, "Put") == PUTS, (handled(before, "Put"), handled(after, "Put"))
    put_seconds = {"grpc_method": "Put", "grpc_service": "etcdserverpb.KV", "grpc_type": "unary"}
    assert value(after, "grpc_server_handling_seconds_count", **put_seconds) - value(
        before, "grpc_server_handling_seconds_count", **put_seconds) == PUTS
    assert value(after, "etcd_server_has_leader") == 1

    # A worker asked on the client port answers with the member's sum (its own counts fresh).
    on_client_port = scrape(m.client_url)
    assert handled(on_client_port, "Put") >= handled(after, "Put"), (handled(on_client_port, "Put"), handled(after, "Put"))
