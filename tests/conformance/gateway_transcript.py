"""A transcript of HTTP requests to a member's client port, and how to run and normalise it.

Each step is one request (or a stream read); its record is what a client sees
that matters: the status line, the headers that carry meaning, whether the
body was sized or chunked, and the body with the per-member values masked
(cluster_id, member_id, raft_term, member ids, tokens, sizes). The same
transcript runs against etcd 3.4 and etcdx, and the records are compared.
"""

from __future__ import annotations

import http.client
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

KEPT_HEADERS = ("content-type", "grpc-metadata-content-type", "trailer", "allow", "x-content-type-options",
                "access-control-allow-origin", "access-control-allow-methods", "access-control-allow-headers")
ALWAYS_MASKED = ("cluster_id", "member_id", "raft_term")


def b64(s: str) -> str:
    import base64

    return base64.b64encode(s.encode()).decode()


def mask(body: str, fields: tuple[str, ...]) -> str:
    for name in (*ALWAYS_MASKED, *fields):
        body = re.sub(rf'"{re.escape(name)}":(\[[^\]]*\]|"[^"]*"|-?\d+|true|false)', f'"{name}":"*"', body)
    return body


@dataclass
class Step:
    name: str
    path: str
    body: str | Callable[[dict], str] | None = None
    method: str = "POST"
    headers: dict[str, str] | Callable[[dict], dict[str, str]] = field(default_factory=dict)
    masked: tuple[str, ...] = ()
    keep: Callable[[dict, dict], None] | None = None  # remember something of the answer for later steps
    # Ask again (within SETTLE_SECONDS) until the status starts so: an API worker may answer
    # /health from the core's state of up to a second ago (etcdx.gateway.state).
    until: str | None = None
    first_line: bool = False  # an endless stream (watch): read its first message, then leave


SETTLE_SECONDS = 3.0


def request(port: int, step: Step, memo: dict, timeout: float = 10.0) -> dict[str, Any]:
    """Send ``step`` and return its record."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        record = _request(port, step, memo, timeout)
        if step.until is None or record["status"].startswith(step.until) or time.monotonic() > deadline:
            return record
        time.sleep(0.05)


def _request(port: int, step: Step, memo: dict, timeout: float) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        body = step.body(memo) if callable(step.body) else step.body
        headers = step.headers(memo) if callable(step.headers) else dict(step.headers)
        if body is not None:
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")  # what curl -d sends
        conn.request(step.method, step.path, body=body.encode() if body is not None else None, headers=headers)
        resp = conn.getresponse()
        text = (resp.readline() if step.first_line else resp.read()).decode()
        record = record_of(resp, text, step.masked)
        if step.keep is not None and text.startswith("{"):
            step.keep(memo, json.loads(text))
        return record
    finally:
        conn.close()


def record_of(resp: http.client.HTTPResponse, body: str, masked: tuple[str, ...]) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in resp.getheaders()}
    return {
        "status": f"{resp.status} {resp.reason}",
        "headers": {k: headers[k] for k in KEPT_HEADERS if k in headers},
        "framing": "chunked" if headers.get("transfer-encoding") == "chunked" else "sized",
        "body": mask(body, masked),
    }


class StreamReader:
    """A streaming gateway call (watch): the response head, then one line per message."""

    def __init__(self, port: int, path: str, body: str, headers: dict[str, str] | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10.0)
        self.conn.request("POST", path, body=body.encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})
        self.resp = self.conn.getresponse()

    def head(self) -> dict[str, Any]:
        return record_of(self.resp, "", ())

    def line(self, masked: tuple[str, ...] = ()) -> str:
        return mask(self.resp.readline().decode(), masked)

    def close(self) -> None:
        sock = self.conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conn.close()


def _member_id(memo: dict, answer: dict) -> None:
    memo["member"] = answer["members"][0]["ID"]


def _token(memo: dict, answer: dict) -> None:
    memo["token"] = answer.get("token", "")


def _lease(memo: dict, answer: dict) -> None:
    memo["lease"] = answer.get("ID", "0")


STATUS_MASKED = ("version", "dbSize", "dbSizeInUse", "leader", "raftIndex", "raftAppliedIndex", "raftTerm")
A, B, FOO = b64("a"), b64("b"), b64("foo")

TRANSCRIPT: list[Step] = [
    # -- plain HTTP paths
    Step("version", "/version", method="GET", masked=("etcdserver", "etcdcluster")),
    Step("version-post", "/version", body="{}"),
    Step("health", "/health", method="GET"),
    Step("health-post", "/health", body="{}"),
    Step("health-exclude", "/health?exclude=NOSPACE", method="GET"),
    Step("health-serializable", "/health?serializable=true", method="GET"),
    Step("unknown-path", "/nothing/here", method="GET"),
    Step("v3alpha", "/v3alpha/kv/range", body="{}"),
    Step("options", "/v3/kv/range", method="OPTIONS"),
    # -- gateway routing and JSON decoding
    Step("gw-unknown", "/v3/nope", body="{}"),
    Step("gw-get", "/v3/kv/range", method="GET"),
    Step("gw-auth-status-34", "/v3/maintenance/nope", body="{}"),
    Step("bad-json", "/v3/kv/range", body="{bad"),
    Step("bad-json-eof", "/v3/kv/range", body='{"key":'),
    Step("bad-json-colon", "/v3/kv/range", body='{"key" 1}'),
    Step("bad-json-comma", "/v3/kv/range", body='{"key":"YQ==" "x":1}'),
    Step("json-array", "/v3/kv/range", body="[]"),
    Step("json-string", "/v3/kv/range", body='"x"'),
    Step("bytes-number", "/v3/kv/range", body='{"key":5}'),
    Step("bytes-bad-base64", "/v3/kv/range", body='{"key":"!!"}'),
    Step("bytes-unpadded", "/v3/kv/range", body='{"key":"YQ"}'),
    Step("bytes-after-padding", "/v3/kv/range", body='{"key":"YQ==YQ=="}'),
    Step("bytes-newline", "/v3/kv/range", body='{"key":"YWJj\\nZA=="}'),
    Step("int-not-number", "/v3/kv/range", body=f'{{"key":"{A}","limit":"abc"}}'),
    Step("json-nan", "/v3/kv/range", body=f'{{"key":"{A}","limit":NaN}}'),
    Step("json-minus-infinity", "/v3/kv/range", body=f'{{"key":"{A}","limit":-Infinity}}'),
    Step("json-leading-zero", "/v3/kv/range", body=f'{{"key":"{A}","limit":01}}'),
    Step("json-control-char", "/v3/kv/range", body='{"key":"a\tb"}'),
    Step("int-exponent", "/v3/kv/range", body=f'{{"key":"{A}","limit":1e2}}'),
    Step("int-fraction", "/v3/kv/range", body=f'{{"key":"{A}","limit":1.5}}'),
    Step("int-too-big", "/v3/kv/range", body=f'{{"key":"{A}","limit":18446744073709551616}}'),
    Step("int-bool", "/v3/kv/range", body=f'{{"key":"{A}","limit":true}}'),
    Step("int-quoted-exponent", "/v3/kv/range", body=f'{{"key":"{A}","limit":"1e2"}}'),
    Step("int-quoted-space", "/v3/kv/range", body=f'{{"key":"{A}","limit":" 1"}}'),
    Step("int-quoted-trailing", "/v3/kv/range", body=f'{{"key":"{A}","limit":"1 x"}}'),
    Step("int-quoted-empty", "/v3/kv/range", body=f'{{"key":"{A}","limit":""}}'),
    Step("int-quoted-null", "/v3/kv/range", body=f'{{"key":"{A}","limit":"null"}}'),
    Step("enum-float", "/v3/kv/range", body=f'{{"key":"{A}","sort_order":1.0}}'),
    Step("enum-quoted-number", "/v3/kv/range", body=f'{{"key":"{A}","sort_order":"1"}}'),
    Step("enum-null", "/v3/kv/range", body=f'{{"key":"{A}","sort_order":null}}'),
    Step("bytes-array", "/v3/kv/range", body='{"key":[97,98]}'),
    Step("bytes-array-string", "/v3/kv/range", body='{"key":["YQ=="]}'),
    Step("bytes-array-big", "/v3/kv/range", body='{"key":[300]}'),
    Step("message-string", "/v3/kv/txn", body='{"success":["x"]}'),
    Step("repeated-object", "/v3/kv/txn", body='{"success":{}}'),
    Step("string-lone-surrogate", "/v3/auth/user/get", body='{"name":"\\ud800x"}'),
    Step("bool-string", "/v3/kv/range", body=f'{{"key":"{A}","serializable":"yes"}}'),
    Step("enum-unknown", "/v3/kv/range", body=f'{{"key":"{A}","sort_order":"BOGUS"}}'),
    Step("empty-body", "/v3/kv/range", body=""),
    Step("trailing-garbage", "/v3/kv/range", body="{}x"),
    Step("unknown-field", "/v3/kv/range", body='{"nokey":1}'),
    # -- KV
    Step("put", "/v3/kv/put", body=f'{{"key":"{FOO}","value":"{b64("bar")}"}}'),
    Step("put-prev", "/v3/kv/put", body=f'{{"key":"{FOO}","value":"{b64("baz")}","prev_kv":true}}'),
    Step("put-empty-key", "/v3/kv/put", body='{"key":""}'),
    Step("range", "/v3/kv/range", body=f'{{"key":"{FOO}"}}'),
    Step("range-v3beta", "/v3beta/kv/range", body=f'{{"key":"{FOO}"}}'),
    Step("range-missing", "/v3/kv/range", body=f'{{"key":"{b64("nope")}"}}'),
    Step("range-camel", "/v3/kv/range",
         body=f'{{"key":"{A}","range_end":"{b64("z")}","sortOrder":"DESCEND","sortTarget":2,"keysOnly":true}}'),
    Step("range-count", "/v3/kv/range", body=f'{{"key":"AA==","range_end":"AA==","count_only":true}}'),
    Step("range-limit-str", "/v3/kv/range", body=f'{{"key":"AA==","range_end":"AA==","limit":"1"}}'),
    Step("put-html", "/v3/kv/put", body=f'{{"key":"{A}","value":"{b64("<&>")}"}}'),
    Step("txn", "/v3/kv/txn", body=(
        f'{{"compare":[{{"key":"{A}","result":"EQUAL","target":"VALUE","value":"{b64("<&>")}"}}],'
        f'"success":[{{"request_range":{{"key":"{A}"}}}},{{"request_put":{{"key":"{B}","value":"{A}"}}}}],'
        f'"failure":[{{"request_delete_range":{{"key":"{A}"}}}}]}}')),
    Step("txn-fail", "/v3/kv/txn", body=(
        f'{{"compare":[{{"key":"{A}","target":"VERSION","result":"GREATER","version":"5"}}],'
        f'"failure":[{{"request_delete_range":{{"key":"{B}","prev_kv":true}}}},{{"request_txn":{{}}}}]}}')),
    Step("deleterange", "/v3/kv/deleterange", body=f'{{"key":"{A}","prev_kv":true}}'),
    Step("compaction", "/v3/kv/compaction", body='{"revision":2}'),
    Step("compaction-again", "/v3/kv/compaction", body='{"revision":2}'),
    Step("compaction-future", "/v3/kv/compaction", body='{"revision":1000}'),
    Step("range-compacted", "/v3/kv/range", body=f'{{"key":"{FOO}","revision":1}}'),
    # -- leases
    Step("lease-grant", "/v3/lease/grant", body='{"TTL":60,"ID":1234}', keep=_lease),
    Step("lease-grant-dup", "/v3/lease/grant", body='{"TTL":60,"ID":"1234"}'),
    Step("lease-put", "/v3/kv/put", body=f'{{"key":"{b64("l")}","value":"{A}","lease":"1234"}}'),
    Step("lease-put-unknown", "/v3/kv/put", body=f'{{"key":"{b64("l")}","value":"{A}","lease":99}}'),
    Step("lease-ttl", "/v3/lease/timetolive", body='{"ID":1234,"keys":true}', masked=("TTL",)),
    Step("lease-ttl-kv", "/v3/kv/lease/timetolive", body='{"ID":1234}', masked=("TTL",)),
    Step("lease-ttl-unknown", "/v3/lease/timetolive", body='{"ID":99}'),
    Step("lease-leases", "/v3/lease/leases", body="{}"),
    Step("lease-leases-kv", "/v3/kv/lease/leases", body="{}"),
    Step("lease-keepalive", "/v3/lease/keepalive", body='{"ID":1234}'),
    Step("lease-keepalive-two", "/v3/lease/keepalive", body='{"ID":1234} {"ID":"1234"}'),
    Step("lease-keepalive-unknown", "/v3/lease/keepalive", body='{"ID":4242}'),
    Step("lease-keepalive-empty", "/v3/lease/keepalive", body=""),
    Step("lease-keepalive-bad-first", "/v3/lease/keepalive", body='{"ID":"x"}'),
    Step("lease-keepalive-bad-later", "/v3/lease/keepalive", body='{"ID":4242} [1]'),
    Step("lease-revoke-unknown", "/v3/lease/revoke", body='{"ID":99}'),
    Step("lease-revoke-kv", "/v3/kv/lease/revoke", body='{"ID":1234}'),
    Step("lease-revoke-again", "/v3/lease/revoke", body='{"ID":1234}'),
    # -- cluster and maintenance
    Step("member-list", "/v3/cluster/member/list", body="{}", masked=("ID", "name", "peerURLs", "clientURLs"),
         keep=_member_id),
    Step("member-remove-unknown", "/v3/cluster/member/remove", body='{"ID":1}'),
    Step("member-update-unknown", "/v3/cluster/member/update", body='{"ID":1,"peerURLs":["http://127.0.0.1:1"]}'),
    Step("member-add-bad-url", "/v3/cluster/member/add", body='{"peerURLs":["::nope"]}'),
    Step("member-promote-unknown", "/v3/cluster/member/promote", body='{"ID":1}'),
    Step("status", "/v3/maintenance/status", body="{}", masked=STATUS_MASKED),
    Step("hash", "/v3/maintenance/hash", body="{}", masked=("hash",)),
    Step("defragment", "/v3/maintenance/defragment", body="{}"),
    Step("alarm-get", "/v3/maintenance/alarm", body="{}"),
    Step("alarm-activate", "/v3/maintenance/alarm",
         body=lambda memo: f'{{"action":"ACTIVATE","memberID":"{memo["member"]}","alarm":"NOSPACE"}}',
         masked=("memberID",)),
    Step("health-alarm", "/health", method="GET", until="503"),
    Step("health-alarm-excluded", "/health?exclude=NOSPACE", method="GET"),
    Step("put-nospace", "/v3/kv/put", body=f'{{"key":"{A}","value":"{A}"}}'),
    Step("alarm-deactivate", "/v3/maintenance/alarm",
         body=lambda memo: f'{{"action":"DEACTIVATE","memberID":"{memo["member"]}","alarm":"NOSPACE"}}',
         masked=("memberID",)),
    Step("health-after-alarm", "/health", method="GET", until="200"),
    Step("transfer-leadership-self", "/v3/maintenance/transfer-leadership",
         body=lambda memo: f'{{"targetID":"{memo["member"]}"}}'),
    # -- auth, set up through the gateway itself
    Step("auth-enable-no-root", "/v3/auth/enable", body="{}"),
    Step("user-add", "/v3/auth/user/add", body='{"name":"root","password":"pw"}'),
    Step("user-add-dup", "/v3/auth/user/add", body='{"name":"root","password":"pw"}'),
    Step("user-grant-root", "/v3/auth/user/grant", body='{"user":"root","role":"root"}'),
    Step("role-add", "/v3/auth/role/add", body='{"name":"reader"}'),
    Step("role-grant", "/v3/auth/role/grant",
         body=f'{{"name":"reader","perm":{{"permType":"READ","key":"{A}","range_end":"{b64("b")}"}}}}'),
    Step("role-get", "/v3/auth/role/get", body='{"role":"reader"}'),
    Step("role-list", "/v3/auth/role/list", body="{}"),
    Step("user-add-alice", "/v3/auth/user/add", body='{"name":"alice","password":"pw"}'),
    Step("user-grant-alice", "/v3/auth/user/grant", body='{"user":"alice","role":"reader"}'),
    Step("user-get", "/v3/auth/user/get", body='{"name":"alice"}'),
    Step("user-list", "/v3/auth/user/list", body="{}"),
    Step("auth-enable", "/v3/auth/enable", body="{}"),
    Step("authenticate-bad", "/v3/auth/authenticate", body='{"name":"root","password":"bad"}'),
    Step("authenticate", "/v3/auth/authenticate", body='{"name":"root","password":"pw"}', masked=("token",),
         keep=_token),
    Step("watch-no-token", "/v3/watch", body=f'{{"create_request":{{"key":"{A}"}}}}', first_line=True),
    Step("watch-bad-token", "/v3/watch", body=f'{{"create_request":{{"key":"{A}"}}}}', first_line=True,
         headers={"Authorization": "garbage"}),
    Step("keepalive-no-token", "/v3/lease/keepalive", body='{"ID":1}'),
    Step("snapshot-no-token", "/v3/maintenance/snapshot", body="{}"),
    Step("put-no-token", "/v3/kv/put", body=f'{{"key":"{A}","value":"{A}"}}'),
    Step("put-bad-token", "/v3/kv/put", body=f'{{"key":"{A}","value":"{A}"}}',
         headers={"Authorization": "garbage"}),
    Step("put-token", "/v3/kv/put", body=f'{{"key":"{A}","value":"{A}"}}',
         headers=lambda memo: {"Authorization": memo["token"]}),
    Step("put-metadata-token", "/v3/kv/put", body=f'{{"key":"{A}","value":"{B}"}}',
         headers=lambda memo: {"Grpc-Metadata-Token": memo["token"], "Authorization": "garbage"}),
    Step("range-token", "/v3/kv/range", body=f'{{"key":"{A}"}}',
         headers=lambda memo: {"Authorization": memo["token"]}),
    Step("user-list-no-token", "/v3/auth/user/list", body="{}"),
    Step("role-get-unknown", "/v3/auth/role/get", body='{"role":"nobody"}',
         headers=lambda memo: {"Authorization": memo["token"]}),
    Step("user-changepw", "/v3/auth/user/changepw", body='{"name":"alice","password":"pw2"}',
         headers=lambda memo: {"Authorization": memo["token"]}),
    Step("user-revoke", "/v3/auth/user/revoke", body='{"name":"alice","role":"reader"}',
         headers=lambda memo: {"Authorization": memo["token"]}),
    Step("role-revoke", "/v3/auth/role/revoke", body=f'{{"role":"reader","key":"{A}","range_end":"{B}"}}',
         headers=lambda memo: {"Authorization": memo["token"]}),
    Step("role-delete", "/v3/auth/role/delete", body='{"role":"reader"}',
         headers=lambda memo: {"Authorization": memo["token"]}),
    Step("user-delete", "/v3/auth/user/delete", body='{"name":"alice"}',
         headers=lambda memo: {"Authorization": memo["token"]}),
    Step("auth-disable", "/v3/auth/disable", body="{}",
         headers=lambda memo: {"Authorization": memo["token"]}),
    Step("put-after-auth", "/v3/kv/put", body=f'{{"key":"{A}","value":"{A}"}}'),
]


def run(port: int) -> dict[str, dict[str, Any]]:
    """Every step's record, by name, in order."""
    memo: dict = {}
    return {step.name: request(port, step, memo) for step in TRANSCRIPT}


def watch_transcript(port: int) -> list[Any]:
    """A watch through the gateway: created, two events as they happen, then the client leaves."""
    out: list[Any] = []
    key = b64("w")
    # What follows the first request and does not decode only ends the request side.
    stream = StreamReader(port, "/v3/watch", f'{{"create_request":{{"key":"{key}","prev_kv":true}}}} {{bad')
    try:
        out.append(stream.head())
        out.append(stream.line())
        memo: dict = {}
        request(port, Step("w1", "/v3/kv/put", f'{{"key":"{key}","value":"{A}"}}'), memo)
        out.append(stream.line())
        request(port, Step("w2", "/v3/kv/deleterange", f'{{"key":"{key}"}}'), memo)
        out.append(stream.line())
    finally:
        stream.close()
    # The member keeps serving after the client went away mid-stream.
    out.append(request(port, Step("after", "/v3/kv/put", f'{{"key":"{key}","value":"{B}"}}'), {}))
    return out


def run_in_thread(fn: Callable[[], Any], timeout: float) -> Any:
    """``fn()`` with a deadline: a hung server fails the test rather than hanging it."""
    box: list = []
    t = threading.Thread(target=lambda: box.append(fn()), daemon=True)
    t.start()
    t.join(timeout)
    if not box:
        raise TimeoutError(f"no answer within {timeout} s")
    return box[0]
