"""The front end against real peers other than grpcio: etcd 3.4's etcdctl (Go gRPC), curl
(HTTP/1.1, h2 prior knowledge, https with ALPN) and nghttp2's nghttp and h2load.

Needs Debian's etcd-client, curl and nghttp2-client; each test skips when its tool is missing.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import time

import grpc
import pytest

from etcdx.pb import rpc_pb2, rpc_pb2_grpc
from support.fake_etcd import ServerThread
from support.frontend_certs import make_certs


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} not installed")
    return path


def run(*args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


@pytest.fixture(scope="module")
def server():
    with ServerThread() as s:
        yield s


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_server(certs):
    with ServerThread(ssl_context=certs.server_context()) as s:
        yield s


# -- etcdctl (grpc-go) ------------------------------------------------------------------

def etcdctl(server, *args: str, tls=None) -> str:
    cmd = [need("etcdctl"), "--endpoints", f"{'https' if tls else 'http'}://127.0.0.1:{server.port}"]
    if tls is not None:
        cmd += ["--cacert", str(tls.ca)]
    return run(*cmd, *args).stdout


def test_etcdctl_put_get_and_delete(server) -> None:
    assert etcdctl(server, "put", "ctl-key", "ctl-value").strip() == "OK"
    assert etcdctl(server, "get", "ctl-key").split() == ["ctl-key", "ctl-value"]
    assert etcdctl(server, "get", "--prefix", "ctl-").split() == ["ctl-key", "ctl-value"]
    assert etcdctl(server, "del", "ctl-key").strip() == "1"


def test_etcdctl_endpoint_health_and_status(server) -> None:
    assert "is healthy" in run(need("etcdctl"), "--endpoints", server.endpoint, "endpoint", "health").stderr
    (status,) = json.loads(etcdctl(server, "endpoint", "status", "-w", "json"))
    assert status["Status"]["version"] == "3.4.23"


def test_etcdctl_watch_sees_a_put(server) -> None:
    proc = subprocess.Popen([need("etcdctl"), "--endpoints", server.endpoint, "watch", "watched"],
                            stdout=subprocess.PIPE, text=True)
    try:
        kv = rpc_pb2_grpc.KVStub(grpc.insecure_channel(server.endpoint))
        deadline = time.monotonic() + 10
        while not server.call(lambda: any(w[0] == b"watched" for w in server.fake.watchers)):
            assert time.monotonic() < deadline and proc.poll() is None, "watch never registered"
            time.sleep(0.01)
        kv.Put(rpc_pb2.PutRequest(key=b"watched", value=b"new"))
        assert [proc.stdout.readline().strip() for _ in range(3)] == ["PUT", "watched", "new"]
    finally:
        proc.kill()
        proc.wait()


def test_etcdctl_snapshot_save(server, tmp_path) -> None:
    out = tmp_path / "snap.db"
    etcdctl(server, "snapshot", "save", str(out))
    assert out.stat().st_size == (4 << 20) + 32      # etcdctl 3.4 keeps the SHA-256 trailer


def test_etcdctl_over_tls(tls_server, certs) -> None:
    assert etcdctl(tls_server, "put", "tls-key", "v", tls=certs).strip() == "OK"
    assert etcdctl(tls_server, "get", "tls-key", tls=certs).split() == ["tls-key", "v"]


# -- curl ---------------------------------------------------------------------------------

def curl(*args: str) -> subprocess.CompletedProcess:
    return run(need("curl"), "-sS", *args)


def test_curl_http1_health_version_and_404(server) -> None:
    base = f"http://{server.endpoint}"
    assert json.loads(curl(f"{base}/health").stdout) == {"health": "true"}
    assert json.loads(curl(f"{base}/version").stdout)["etcdserver"] == "3.4.23"
    r = curl("-o", "/dev/null", "-w", "%{http_code}", f"{base}/nowhere")
    assert r.stdout == "404"


def test_curl_http1_keep_alive_serves_several_requests_on_one_connection(server) -> None:
    base = f"http://{server.endpoint}"
    r = curl("-v", f"{base}/health", f"{base}/version", f"{base}/health")
    assert r.stderr.count("Re-using existing connection") == 2
    assert r.stdout.count('{"health":"true"}') == 2


def test_curl_http1_post_body_and_chunked_response(server) -> None:
    base = f"http://{server.endpoint}"
    assert curl("--data-binary", "payload-123", f"{base}/echo").stdout == "payload-123"
    r = run(need("curl"), "-sS", "-D", "-", "-o", "/dev/null", "-w", "%{size_download}", f"{base}/big")
    assert "transfer-encoding: chunked" in r.stdout.lower()
    assert r.stdout.rstrip().endswith(str(64 * 65536))


def test_curl_http2_prior_knowledge_shares_the_port(server) -> None:
    r = curl("--http2-prior-knowledge", "-D", "-", f"http://{server.endpoint}/health")
    assert r.stdout.startswith("HTTP/2 200") and "x-http-version: 2" in r.stdout
    r = curl("--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{size_download}", f"http://{server.endpoint}/big")
    assert r.stdout == str(64 * 65536)


def test_curl_https_negotiates_h2_or_http1_by_alpn(tls_server, certs) -> None:
    url = f"https://127.0.0.1:{tls_server.port}/health"
    r = curl("--cacert", str(certs.ca), "-D", "-", url)
    assert r.stdout.startswith("HTTP/2 200")
    r = curl("--cacert", str(certs.ca), "--http1.1", "-D", "-", url)
    assert r.stdout.startswith("HTTP/1.1 200") and '{"health":"true"}' in r.stdout


def test_request_body_over_the_limit_is_413(server) -> None:
    big = subprocess.run([need("curl"), "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Expect:",
                          "--data-binary", "@-", f"http://{server.endpoint}/echo"],
                         input=b"x" * (3 << 20), capture_output=True, timeout=30)
    assert big.stdout == b"413"


# -- nghttp2 ------------------------------------------------------------------------------

def test_nghttp_fetches_over_h2c(server) -> None:
    r = run(need("nghttp"), "-n", "-s", f"http://{server.endpoint}/big")
    assert re.search(r" 200 +4M /big$", r.stdout, re.M), r.stdout


def put_request_file(tmp_path) -> str:
    msg = rpc_pb2.PutRequest(key=b"h2load", value=b"v" * 256).SerializeToString()
    path = tmp_path / "put.bin"
    path.write_bytes(struct.pack(">BL", 0, len(msg)) + msg)
    return str(path)


def test_h2load_drives_grpc_puts_and_http_requests(server, tmp_path) -> None:
    h2load = need("h2load")
    r = run(h2load, "-n", "2000", "-c", "4", "-m", "32", "-H", "content-type: application/grpc",
            "-H", "te: trailers", "-d", put_request_file(tmp_path),
            f"http://{server.endpoint}/etcdserverpb.KV/Put")
    assert "2000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout
    r = run(h2load, "-n", "1000", "-c", "2", "-m", "16", f"http://{server.endpoint}/health")
    assert "1000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout


def test_h2load_over_tls(tls_server, tmp_path) -> None:
    r = run(need("h2load"), "-n", "500", "-c", "2", "-m", "8", "-H", "content-type: application/grpc",
            "-d", put_request_file(tmp_path), f"https://127.0.0.1:{tls_server.port}/etcdserverpb.KV/Put")
    assert "500 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout


def test_context_swapped_in_by_sni_callback_keeps_h2_when_it_has_alpn(certs) -> None:
    """Certificate reloading swaps the SSLContext in an sni_callback: ALPN comes from the new context."""
    from etcdx.frontend import ALPN_PROTOCOLS
    reloaded = certs.server_context()
    reloaded.set_alpn_protocols(ALPN_PROTOCOLS)
    seen: list = []

    def swap(sslobj, name, ctx) -> None:
        seen.append(name)
        sslobj.context = reloaded

    first = certs.server_context()
    first.sni_callback = swap
    with ServerThread(ssl_context=first) as s:
        r = curl("--cacert", str(certs.ca), "-D", "-", f"https://localhost:{s.port}/health")
        assert r.stdout.startswith("HTTP/2 200")
        r = run(need("etcdctl"), "--endpoints", f"https://localhost:{s.port}", "--cacert", str(certs.ca),
                "put", "sni", "ok")
        assert r.stdout.strip() == "OK"
    assert seen and seen[0] == "localhost"
