"""A small fake of etcd's client API on `etcdx.frontend`, for testing the front end with real peers.

`FakeEtcd` serves, with the real protobufs: KV Put/Range/DeleteRange (an
in-memory dict), Watch (bidi stream: create, cancel, events for later puts),
Maintenance Snapshot (server stream of `snapshot_size` bytes) and Status, plus
a `/test.Test/*` service of raw-bytes methods that exercise the front end's
edges (echo, hang until cancelled, errors, metadata, streams), and HTTP
handlers for `/health`, `/version`, `/echo` and `/big`.

`ServerThread` runs one on its own event loop in a background thread, so a
test drives it with blocking clients (grpcio, etcdctl, curl) from the test
thread. `python -m tests.support.fake_etcd URL` serves it in the foreground.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import ssl
import sys
import threading

from etcdx.frontend import FrontEnd, HttpRequest, HttpResponse, Router, RpcError, StatusCode
from etcdx.frontend.rpc import Call, Stream
from etcdx.pb import kv_pb2, rpc_pb2

CLUSTER_ID = 0x1234
MEMBER_ID = 0x5678


class FakeEtcd:
    def __init__(self, snapshot_size: int = 4 << 20) -> None:
        self.data: dict[bytes, kv_pb2.KeyValue] = {}
        self.revision = 1
        self.snapshot_size = snapshot_size
        self.watchers: list[tuple[bytes, bytes, int, asyncio.Queue]] = []
        self.cancelled: list[str] = []          # methods whose cancel callback ran
        self.hang_started = threading.Event()
        self.router = Router()
        r = self.router
        r.unary("/etcdserverpb.KV/Put", self.put)
        r.unary("/etcdserverpb.KV/Range", self.range)
        r.unary("/etcdserverpb.KV/DeleteRange", self.delete_range)
        r.stream("/etcdserverpb.Watch/Watch", self.watch)
        r.stream("/etcdserverpb.Maintenance/Snapshot", self.snapshot)
        r.unary("/etcdserverpb.Maintenance/Status", self.status)
        r.unary("/test.Test/Echo", lambda m, c: m)
        r.unary("/test.Test/Hang", self.hang)
        r.unary("/test.Test/Fail", self.fail)
        r.unary("/test.Test/Boom", self.boom)
        r.unary("/test.Test/Coro", self.coro)
        r.unary("/test.Test/Meta", self.meta)
        r.stream("/test.Test/Count", self.count)
        r.stream("/test.Test/Sum", self.sum)
        r.stream("/test.Test/HangStream", self.hang_stream)

    def header(self) -> rpc_pb2.ResponseHeader:
        return rpc_pb2.ResponseHeader(cluster_id=CLUSTER_ID, member_id=MEMBER_ID, revision=self.revision, raft_term=2)

    # -- KV --------------------------------------------------------------------------

    def put(self, message: bytes, call: Call) -> bytes:
        req = rpc_pb2.PutRequest.FromString(message)
        if not req.key:
            raise RpcError(StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
        self.revision += 1
        prev = self.data.get(req.key)
        kv = kv_pb2.KeyValue(key=req.key, value=req.value, mod_revision=self.revision,
                             create_revision=prev.create_revision if prev else self.revision,
                             version=prev.version + 1 if prev else 1)
        self.data[req.key] = kv
        for key, end, wid, queue in self.watchers:
            if _in_range(req.key, key, end):
                queue.put_nowait((wid, kv))
        resp = rpc_pb2.PutResponse(header=self.header())
        if req.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev)
        return resp.SerializeToString()

    def range(self, message: bytes, call: Call) -> bytes:
        req = rpc_pb2.RangeRequest.FromString(message)
        if not req.key:
            raise RpcError(StatusCode.INVALID_ARGUMENT, "etcdserver: key is not provided")
        kvs = [self.data[k] for k in sorted(self.data) if _in_range(k, req.key, req.range_end)]
        resp = rpc_pb2.RangeResponse(header=self.header(), count=len(kvs))
        if req.limit and len(kvs) > req.limit:
            kvs, resp.more = kvs[:req.limit], True
        resp.kvs.extend(kvs)
        return resp.SerializeToString()

    def delete_range(self, message: bytes, call: Call) -> bytes:
        req = rpc_pb2.DeleteRangeRequest.FromString(message)
        keys = [k for k in self.data if _in_range(k, req.key, req.range_end)]
        if keys:
            self.revision += 1
        for k in keys:
            del self.data[k]
        return rpc_pb2.DeleteRangeResponse(header=self.header(), deleted=len(keys)).SerializeToString()

    async def watch(self, stream: Stream, call: Call) -> None:
        queue: asyncio.Queue = asyncio.Queue()
        mine: list[tuple] = []
        next_id = 0

        async def pump() -> None:
            while True:
                wid, kv = await queue.get()
                ev = kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv)
                await stream.send(rpc_pb2.WatchResponse(header=self.header(), watch_id=wid,
                                                        events=[ev]).SerializeToString())

        async def receive() -> None:
            nonlocal next_id
            while (m := await stream.recv()) is not None:
                req = rpc_pb2.WatchRequest.FromString(m)
                if req.HasField("create_request"):
                    cr = req.create_request
                    entry = (cr.key, cr.range_end, next_id, queue)
                    mine.append(entry)
                    self.watchers.append(entry)
                    await stream.send(rpc_pb2.WatchResponse(header=self.header(), watch_id=next_id,
                                                            created=True).SerializeToString())
                    next_id += 1
                elif req.HasField("cancel_request"):
                    wid = req.cancel_request.watch_id
                    for entry in [e for e in mine if e[2] == wid]:
                        mine.remove(entry)
                        self.watchers.remove(entry)
                    await stream.send(rpc_pb2.WatchResponse(header=self.header(), watch_id=wid,
                                                            canceled=True).SerializeToString())

        try:
            async with asyncio.TaskGroup() as tg:
                pumping = tg.create_task(pump())
                await receive()
                pumping.cancel()
        finally:
            for entry in mine:
                self.watchers.remove(entry)

    async def snapshot(self, stream: Stream, call: Call) -> None:
        """``snapshot_size`` bytes (a multiple of 512, like a bolt file) and their SHA-256, as etcd sends."""
        await stream.recv()
        content = bytes(i % 251 for i in range(65536)) * (self.snapshot_size // 65536 + 1)
        content = content[:self.snapshot_size]
        data = memoryview(content + hashlib.sha256(content).digest())
        chunk = 64 << 10
        for pos in range(0, len(data), chunk):
            blob = bytes(data[pos:pos + chunk])
            await stream.send(rpc_pb2.SnapshotResponse(header=self.header(), remaining_bytes=len(data) - pos - len(blob),
                                                       blob=blob).SerializeToString())

    def status(self, message: bytes, call: Call) -> bytes:
        return rpc_pb2.StatusResponse(header=self.header(), version="3.4.23", dbSize=4096, leader=MEMBER_ID,
                                      raftIndex=self.revision, raftTerm=2).SerializeToString()

    # -- test service ----------------------------------------------------------------

    def hang(self, message: bytes, call: Call) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        call.add_cancel_callback(lambda: self.cancelled.append(call.method))
        self.hang_started.set()
        return fut

    def fail(self, message: bytes, call: Call) -> bytes:
        raise RpcError(int(message.split(b":", 1)[0]), message.split(b":", 1)[1].decode())

    def boom(self, message: bytes, call: Call) -> bytes:
        raise ValueError("boom")

    async def coro(self, message: bytes, call: Call) -> bytes:
        await asyncio.sleep(0)
        return message[::-1]

    def meta(self, message: bytes, call: Call) -> bytes:
        md = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in call.metadata.items()}
        return json.dumps({"metadata": md, "deadline": call.deadline is not None,
                           "peer_certificate": call.peer_certificate is not None}).encode()

    async def count(self, stream: Stream, call: Call) -> None:
        spec = json.loads(await stream.recv() or b"{}")
        for i in range(spec["n"]):
            await stream.send(i.to_bytes(4, "big") + b"x" * spec.get("size", 0))

    async def sum(self, stream: Stream, call: Call) -> None:
        total = 0
        while (m := await stream.recv()) is not None:
            total += int(m)
        await stream.send(str(total).encode())

    async def hang_stream(self, stream: Stream, call: Call) -> None:
        call.add_cancel_callback(lambda: self.cancelled.append(call.method))
        self.hang_started.set()
        await asyncio.get_running_loop().create_future()

    # -- HTTP ------------------------------------------------------------------------

    async def http(self, request: HttpRequest, response: HttpResponse) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/health":
            body = b'{"health":"true"}'
        elif path == "/version":
            body = b'{"etcdserver":"3.4.23","etcdcluster":"3.4.0"}'
        elif path == "/echo":
            body = request.body
        elif path == "/fail":
            raise RuntimeError("handler failure on purpose")
        elif path == "/silent":
            return
        elif path == "/big":               # chunked: no content-length
            response.start(200, [("content-type", "application/octet-stream")])
            for i in range(64):
                await response.write(bytes([i]) * 65536)
            await response.end()
            return
        else:
            body = b"404 page not found\n"
            response.start(404, [("content-type", "text/plain"), ("content-length", str(len(body)))])
            await response.write(body)
            await response.end()
            return
        response.start(200, [("content-type", "application/json"), ("content-length", str(len(body))),
                             ("x-http-version", request.http_version)])
        await response.write(body)
        await response.end()


def _in_range(k: bytes, key: bytes, end: bytes) -> bool:
    if not end:
        return k == key
    if end == b"\0":
        return k >= key
    return key <= k < end


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop, as in production, unless ETCDX_TEST_LOOP=asyncio asks for the standard loop."""
    if os.environ.get("ETCDX_TEST_LOOP") != "asyncio":
        try:
            import uvloop
            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


class ServerThread:
    """A FakeEtcd on a FrontEnd, on its own event loop in a daemon thread."""

    def __init__(self, fake: FakeEtcd | None = None, *, ssl_context: ssl.SSLContext | None = None,
                 url: str | None = None, reuse_port: bool = False, **frontend_kwargs) -> None:
        self.fake = fake or FakeEtcd()
        self.ssl_context = ssl_context
        self.reuse_port = reuse_port
        kwargs = {"max_receive_message_bytes": 2 * 1024 * 1024} | frontend_kwargs
        self.frontend = FrontEnd(self.fake.router, self.fake.http, **kwargs)
        self.url = url or ("https://127.0.0.1:0" if ssl_context else "http://127.0.0.1:0")
        self.loop = new_event_loop()
        self.address = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.address = self.loop.run_until_complete(self.frontend.listen(self.url, ssl=self.ssl_context,
                                                                                 reuse_port=self.reuse_port))
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_forever()

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the server's loop and return its result."""
        async def run():
            return fn(*args)
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self, grace: float = 1.0) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self.frontend.close(grace), self.loop).result(grace + 10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def serve(url: str) -> None:
    async def main() -> None:
        fake = FakeEtcd()
        fe = FrontEnd(fake.router, fake.http, max_receive_message_bytes=2 * 1024 * 1024)
        print("listening on", await fe.listen(url), flush=True)
        await asyncio.get_running_loop().create_future()
    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


if __name__ == "__main__":
    serve(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:2379")
