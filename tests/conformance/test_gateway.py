"""The HTTP side of the client port against etcd 3.4: the JSON gateway, /version, /health.

One transcript (``gateway_transcript.py``: every gateway route, decoding
errors, KV/lease/cluster/maintenance calls, auth set up and used through the
gateway, a watch stream) runs against a fresh etcd 3.4 and a fresh etcdx, with
and without API workers; every step's status line, meaningful headers, framing
and masked body must be equal, except the differences registered in
``KNOWN_GATEWAY_DIFFERENCES`` (each pins what etcdx answers instead). Without
the real etcd the reference is etcd 3.4.23's transcript pinned in
``gateway_etcd34.json`` (``ETCDX_GATEWAY_RECORD=1`` with etcd installed
rewrites it). Also: ``curl -i`` bytes, real curl over TLS (HTTP/2 by ALPN and
HTTP/1.1), half-closing clients, the snapshot stream, etcd's access checks (Host
whitelist, named client certificates), /livez and /readyz (etcd 3.5's, etcdx
only), and /health on a member that lost its leader.
"""

from __future__ import annotations

import base64
import json
import os
import pathlib
import re
import socket
import subprocess
import time

import pytest
from support import procs
from support.cluster import Cluster

import gateway_transcript as gt

from etcdx.gateway.state import STATE_CACHE_SECONDS

PINNED = pathlib.Path(__file__).with_name("gateway_etcd34.json")

# step -> (why etcdx differs, the body etcdx answers instead); everything else about the step must match.
_HEADER = '"header":{"cluster_id":"*","member_id":"*","raft_term":"*"}'
KNOWN_GATEWAY_DIFFERENCES: dict[str, tuple[str, str]] = {
    "defragment": ("Defragment responses carry a header, as etcd 3.5 fills it (3.4 sends none)", "{" + _HEADER + "}"),
    "alarm-get": ("Alarm responses carry a header, as etcd 3.5 fills it (3.4 sends none)", "{" + _HEADER + "}"),
    "alarm-activate": ("Alarm responses carry a header (etcd 3.5)",
                       "{" + _HEADER + ',"alarms":[{"memberID":"*","alarm":"NOSPACE"}]}'),
    "alarm-deactivate": ("Alarm responses carry a header (etcd 3.5)",
                         "{" + _HEADER + ',"alarms":[{"memberID":"*","alarm":"NOSPACE"}]}'),
    "health-alarm": ("/health names the reason when unhealthy, as etcd 3.5 does",
                     '{"health":"false","reason":"ALARM NOSPACE"}\n'),
    "transfer-leadership-self": ("MoveLeader to itself answers a filled header (3.4: an empty response)",
                                 '{"header":{"cluster_id":"*","member_id":"*","revision":"9","raft_term":"*"}}'),
}
# Accepted without a step to show them (the transcript cannot see them):
# - /v3/maintenance/hash is Hash as in 3.4; HashKV is /v3/maintenance/hashkv (3.6's path; 3.4 has none),
#   AuthStatus /v3/auth/status (3.5's path); /livez and /readyz are 3.5's (3.4 answers 404);
# - a client's half-close cancels etcd's request: a streamed answer ends with a "context canceled"
#   error chunk, an RPC in flight is answered 408 "context canceled"; etcdx ends a streamed answer
#   without that chunk and still answers the RPC;
# - the snapshot stream's messages carry a header and remaining_bytes (3.5), and a compaction-cancelled
#   watch its cancel_reason (3.6), as over gRPC;
# - in an API worker, /health and /readyz see the core's leader and alarms of up to a second ago.

ETCDX_MODES = {"etcdx": [], "etcdx-workers": ["--api-workers", "2"]}


@pytest.fixture(scope="module")
def group(tmp_path_factory):
    g = procs.MemberGroup(tmp_path_factory.mktemp("gateway"))
    yield g
    g.close()


def _transcript(member: procs.Member) -> dict:
    out = gt.run_in_thread(lambda: gt.run(member.client_port), 60.0)
    out["__watch"] = gt.run_in_thread(lambda: gt.watch_transcript(member.client_port), 20.0)
    return out


@pytest.fixture(scope="module")
def reference(group) -> dict:
    """etcd 3.4's transcript: live when etcd is installed (and checked against the pinned one), else pinned."""
    if not procs.etcd_available():
        return json.loads(PINNED.read_text())
    etcd = group.new("etcd")
    live = _transcript(etcd)
    live["__curl"] = {name: _curl_raw(etcd.client_port, args) for name, args in CURL_CASES.items()}
    if os.environ.get("ETCDX_GATEWAY_RECORD"):
        PINNED.write_text(json.dumps(live, indent=1) + "\n")
        return live
    assert live == json.loads(PINNED.read_text()), "etcd 3.4 no longer answers as the pinned transcript says"
    return live


@pytest.fixture(scope="module", params=sorted(ETCDX_MODES))
def candidate(request, group) -> tuple[procs.Member, dict]:
    procs.require("etcdx")
    member = group.new(procs.candidate_kind(), extra_args=ETCDX_MODES[request.param]
                       if procs.candidate_kind() == "etcdx" else [])
    return member, _transcript(member)


def test_transcript_matches_etcd_34(reference, candidate):
    _, got = candidate
    steps = {k: v for k, v in reference.items() if k != "__curl"}
    assert list(got) == list(steps)
    differ = []
    for name, want in steps.items():
        have = got[name]
        known = KNOWN_GATEWAY_DIFFERENCES.get(name)
        if known is not None and procs.candidate_kind() == "etcdx":
            want = {**want, "body": known[1]}
        if have != want:
            differ.append(f"{name}:\n  etcd : {json.dumps(want)}\n  etcdx: {json.dumps(have)}")
    assert not differ, f"{len(differ)} of {len(reference)} steps differ:\n" + "\n".join(differ)


def test_known_differences_still_differ(reference):
    """A registered difference that etcd 3.4 does not show any more must leave the registry."""
    for name, (_, body) in KNOWN_GATEWAY_DIFFERENCES.items():
        assert reference[name]["body"] != body, name


def test_watch_ends_when_the_client_half_closes(candidate):
    """As in Go's server, a client's half-close ends its request: the watch stops and the connection closes.

    (etcd writes a "context canceled" error chunk first; etcdx closes at once: accepted.)
    """
    member, _ = candidate
    body = f'{{"create_request":{{"key":"{gt.b64("hc")}"}}}}'.encode()
    with socket.create_connection(("127.0.0.1", member.client_port), timeout=5) as s:
        s.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        head = b""
        while b'"created":true' not in head:
            chunk = s.recv(65536)
            assert chunk, head
            head += chunk
        s.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 5
        while s.recv(65536):
            assert time.monotonic() < deadline
    # the member still serves
    assert _post(member, "/v3/kv/range", f'{{"key":"{gt.b64("hc")}"}}').startswith('{"header"')


def test_half_closing_client_still_gets_a_short_answer(candidate):
    """Go writes a handler's answer to a half-closed connection, then closes it: so does etcdx."""
    member, _ = candidate
    with socket.create_connection(("127.0.0.1", member.client_port), timeout=5) as s:
        s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b'"etcdcluster":"3.5.0"}' if
                                                                           member.kind == "etcdx" else b"}")


def test_snapshot_stream_is_the_snapshot(candidate):
    """/v3/maintenance/snapshot streams the same bytes as the gRPC Snapshot, as base64 blobs.

    (Not compared with etcd: 3.4 sends neither header nor remaining_bytes, 3.5 does, as etcdx.)
    """
    member, _ = candidate
    stream = gt.StreamReader(member.client_port, "/v3/maintenance/snapshot", "{}")
    try:
        assert stream.head()["status"] == "200 OK"
        lines = [json.loads(line) for line in iter(stream.resp.readline, b"")]
    finally:
        stream.close()
    blobs = [base64.b64decode(line["result"]["blob"]) for line in lines]
    via_grpc = b"".join(r.blob for r in member.maintenance.Snapshot(procs.rpc_pb2.SnapshotRequest(), timeout=10))
    assert b"".join(blobs) == via_grpc
    assert "remaining_bytes" not in lines[-1]["result"]


# -- etcd 3.5's probes, on etcdx only --------------------------------------------------------------

def _get(member: procs.Member, path: str, method: str = "GET") -> tuple[str, str]:
    rec = gt.request(member.client_port, gt.Step(path, path, method=method), {})
    return rec["status"], rec["body"]


def _post(member: procs.Member, path: str, body: str = "{}") -> str:
    return gt.request(member.client_port, gt.Step(path, path, body=body), {})["body"]


def test_livez_readyz(candidate):
    member, _ = candidate
    if member.kind != "etcdx":
        pytest.skip("etcd 3.4 has no /livez or /readyz")
    assert _get(member, "/livez") == ("200 OK", "ok\n")
    assert _get(member, "/livez?verbose") == ("200 OK", "[+]serializable_read ok\nok\n")
    assert _get(member, "/readyz?verbose") == (
        "200 OK", "[+]data_corruption ok\n[+]serializable_read ok\n[+]linearizable_read ok\nok\n")
    assert _get(member, "/readyz?verbose&exclude=linearizable_read") == (
        "200 OK", "[+]data_corruption ok\n[+]serializable_read ok\nok\n")
    assert _get(member, "/readyz/linearizable_read?verbose") == ("200 OK", "[+]linearizable_read ok\nok\n")
    assert _get(member, "/readyz", "POST") == ("405 Method Not Allowed", "Method Not Allowed\n")
    assert _get(member, "/readyz/nothing")[0] == "404 Not Found"
    # a CORRUPT alarm fails readiness, not liveness (within the worker's state cache lifetime)
    member_id = member.maintenance.Status(procs.rpc_pb2.StatusRequest(), timeout=5).header.member_id
    alarm = f'{{"action":"%s","memberID":"{member_id}","alarm":"CORRUPT"}}'
    assert "CORRUPT" in _post(member, "/v3/maintenance/alarm", alarm % "ACTIVATE")
    try:
        corrupt = ("503 Service Unavailable",
                   "[-]data_corruption failed: alarm activated: CORRUPT\n[+]serializable_read ok\n"
                   "[+]linearizable_read ok\n\n")
        deadline = time.monotonic() + 3
        while (got := _get(member, "/readyz")) != corrupt and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got == corrupt
        assert _get(member, "/livez") == ("200 OK", "ok\n")
    finally:
        _post(member, "/v3/maintenance/alarm", alarm % "DEACTIVATE")


def _tls_member(group, tmp_path_factory, extra: list[str]) -> tuple[procs.Member, object]:
    from etcdx.testing.tls import make_tls_files

    files = make_tls_files(tmp_path_factory.mktemp("gateway-tls"))
    return group.new("etcdx", tls=files, extra_args=extra), files


@pytest.mark.parametrize("mode", sorted(ETCDX_MODES))
def test_curl_over_tls(group, tmp_path_factory, mode):
    """Real curl over https: HTTP/2 negotiated by ALPN, and HTTP/1.1."""
    procs.require("etcdx")
    member, files = _tls_member(group, tmp_path_factory, ETCDX_MODES[mode])
    base = ["curl", "-sS", "--max-time", "10", "--cacert", str(files.ca), "--cert", str(files.client_cert),
            "--key", str(files.client_key), "-w", "\\n%{http_version} %{http_code}"]
    put = subprocess.run([*base, "--http2", f"{member.client_url}/v3/kv/put", "-d",
                          f'{{"key":"{gt.b64("tls")}","value":"{gt.b64("v")}"}}'],
                         capture_output=True, text=True, timeout=20, check=True).stdout
    assert put.endswith("\n2 200") and '"revision":"2"' in put, put
    got = subprocess.run([*base, "--http1.1", f"{member.client_url}/v3/kv/range", "-d",
                          f'{{"key":"{gt.b64("tls")}"}}'], capture_output=True, text=True, timeout=20, check=True).stdout
    assert got.endswith("\n1.1 200") and f'"value":"{gt.b64("v")}"' in got, got
    health = subprocess.run([*base, "--http2", f"{member.client_url}/health"],
                            capture_output=True, text=True, timeout=20, check=True).stdout
    assert health == '{"health":"true"}\n2 200'


# -- /health without a leader --------------------------------------------------------------------

@pytest.mark.parametrize("mode", sorted(ETCDX_MODES))
def test_health_without_leader(tmp_path, mode):
    """A member whose only peer died loses its leader: /health says so; serializable probes still pass."""
    procs.require("etcdx")
    args = [*ETCDX_MODES[mode], "--heartbeat-interval", "50", "--election-timeout", "500"]
    with Cluster("etcdx", tmp_path, size=2, extra_args=args) as cluster:
        cluster.start()
        a, b = cluster.members
        # (/health itself is not asked before the kill: an API worker may answer it from the
        # core's state of up to a second ago, and that would only slow this test down.)
        assert _post(a, "/v3/kv/put", f'{{"key":"{gt.b64("k")}"}}').startswith('{"header"')
        b.kill()
        # Until its election timeout passes, a still follows the dead leader (and /health
        # fails its read instead); wait for a to campaign, which forgets the leader.
        deadline = time.monotonic() + 10
        while '"leader"' in _post(a, "/v3/maintenance/status") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _get(a, "/health") == ("503 Service Unavailable", '{"health":"false","reason":"RAFT NO LEADER"}\n')
        assert _get(a, "/health?serializable=true") == ("200 OK", '{"health":"true"}')
        assert _get(a, "/livez") == ("200 OK", "ok\n")
        assert _get(a, "/readyz/data_corruption") == ("200 OK", "ok\n")


# -- real curl, raw bytes -----------------------------------------------------------------------

CURL_CASES = {
    "health": ["/health"],
    "range-missing": ["/v3/kv/range", "-d", f'{{"key":"{gt.b64("x")}"}}'],
    "put-empty-key": ["/v3/kv/put", "-d", '{"key":""}'],
    "gateway-404": ["/v3/nope", "-d", "{}"],
    "not-an-object": ["/v3/kv/range", "-d", "[1]"],
    "watch-bad-first": ["/v3/watch", "-d", "{bad"],
}


def _curl_raw(port: int, args: list[str]) -> str:
    """``curl -si`` output with the Date and the per-member ids masked (Content-Length checked, then masked)."""
    out = subprocess.run(["curl", "-si", "--max-time", "5", f"http://127.0.0.1:{port}{args[0]}", *args[1:]],
                         capture_output=True, timeout=10, check=True).stdout.decode()
    head, _, body = out.partition("\r\n\r\n")
    length = re.search(r"\r\nContent-Length: (\d+)", head)
    if length is not None:
        assert int(length.group(1)) == len(body.encode()), out
        head = head.replace(length.group(0), "\r\nContent-Length: N")
    head = re.sub(r"\r\nDate: [^\r]*", "\r\nDate: X", head)
    body = re.sub(r'"(cluster_id|member_id|raft_term)":"\d+"', r'"\1":"X"', body)
    return head + "\r\n\r\n" + body


def test_curl_bytes_match_etcd_34(candidate, reference):
    """Status line, headers in Go's order and body, byte for byte (as curl -i prints them)."""
    member, _ = candidate
    # The transcript raised and cleared an alarm; an API worker's /health may show the core's
    # state of up to STATE_CACHE_SECONDS ago (a documented lag), so let that pass.
    time.sleep(STATE_CACHE_SECONDS)
    for name, args in CURL_CASES.items():
        want = reference["__curl"][name]
        assert _curl_raw(member.client_port, args) == want, name


# -- access checks -------------------------------------------------------------------------------

MISDIRECTED = (
    'HTTP/1.1 421 Misdirected Request\r\nContent-Type: text/plain; charset=utf-8\r\n'
    'X-Content-Type-Options: nosniff\r\nDate: X\r\nContent-Length: N\r\n\r\n'
    '\netcd received your request, but the Host header was unrecognized.\n\n'
    'To fix this, choose one of the following options:\n'
    '- Enable TLS, then any HTTPS request will be allowed.\n'
    '- Add the hostname you want to use to the whitelist in settings.\n'
    '  - e.g. etcd --host-whitelist "evil.example"\n\n'
    'This requirement has been added to help prevent "DNS Rebinding" attacks (CVE-2018-5702).\n\n')


@pytest.mark.parametrize("kind", [pytest.param("etcd", marks=pytest.mark.etcd), "etcdx"])
def test_host_whitelist_on_plain_http(group, kind):
    """etcd 3.4's DNS-rebinding defence: a Host outside --host-whitelist gets 421 (OPTIONS too), gRPC is not concerned."""
    procs.require(kind)
    member = group.new(kind, extra_args=["--host-whitelist", "good.example,127.0.0.1"])
    assert _curl_raw(member.client_port, ["/health", "-H", "Host: evil.example:2379"]) == MISDIRECTED
    assert _curl_raw(member.client_port, ["/v3/kv/range", "-X", "OPTIONS", "-H", "Host: evil.example"]) == MISDIRECTED
    ok = _curl_raw(member.client_port, ["/health", "-H", "Host: good.example"])
    assert ok.startswith("HTTP/1.1 200 OK\r\nAccess-Control-Allow-Headers") and ok.endswith('{"health":"true"}')
    assert member.kv.Range(procs.rpc_pb2.RangeRequest(key=b"a"), timeout=5).count == 0


@pytest.mark.parametrize("kind", [pytest.param("etcd", marks=pytest.mark.etcd), "etcdx"])
def test_gateway_refuses_named_client_certificates_while_auth_is_on(group, tmp_path_factory, kind):
    """With --client-cert-auth and auth on, etcd's gateway will not act as a certificate's user: 400."""
    from etcdx.testing.tls import make_tls_files

    procs.require(kind)
    files = make_tls_files(tmp_path_factory.mktemp("gateway-cn"))
    member = group.new(kind, tls=files)
    curl = ["curl", "-sS", "--max-time", "10", "--cacert", str(files.ca), "--cert", str(files.client_cert),
            "--key", str(files.client_key), "-w", "\\n%{http_code}"]

    def post(path: str, body: str) -> str:
        return subprocess.run([*curl, f"{member.client_url}{path}", "-d", body],
                              capture_output=True, text=True, timeout=20, check=True).stdout

    assert post("/v3/auth/user/add", '{"name":"root","password":"pw"}').endswith("\n200")
    assert post("/v3/auth/user/grant", '{"user":"root","role":"root"}').endswith("\n200")
    assert post("/v3/auth/enable", "{}").endswith("\n200")
    refused = ("CommonName of client sending a request against gateway will be ignored and not used as expected"
               "\n\n400")
    assert post("/v3/kv/range", f'{{"key":"{gt.b64("a")}"}}') == refused
    assert post("/v3beta/kv/range", "{}") == refused
    health = subprocess.run([*curl, f"{member.client_url}/health"], capture_output=True, text=True, timeout=20,
                            check=True).stdout
    assert health == '{"health":"true"}\n200'
