"""Client workloads: threads doing etcd KV, lease and watch calls, recorded into a `History`.

Each `Client` is bound to one member's endpoint (clients are spread over the
members) and has its own gRPC channel, so a killed or cut-off member fails
only its own clients. On 8 keys in two prefixes (so operations conflict) a
client does puts, linearizable and serializable gets, deletes,
compare-and-swap txns (compare the mod_revision or value it last saw, put on
success, read on failure), prefix ranges, and lease flows (grant with a
client-chosen id, put with the lease, one keep-alive, revoke, retried until
the member answers, so a lease never outlives its flow unexplained). Every
call has a short deadline; an error whose outcome is unknown records the
operation as indeterminate, and the client backs off briefly so a dead member
does not flood the history.

One `WatchClient` per member watches every key from revision 1 and, after any
error or cancel, watches again from the last revision it saw + 1; each stream
is one `etcdx.check.watch.Watcher` for `check_watches`. It also asks for a
progress notification every `PROGRESS_INTERVAL`, which promises that every event
up to its revision was delivered (the checker holds the server to it).
"""

from __future__ import annotations

import itertools
import queue
import random
import threading
from collections.abc import Iterator

import grpc

from etcdx.check.etcd_ops import (
    Compare,
    Delete,
    DeleteResult,
    Get,
    KeyValue,
    LeaseRevoke,
    Put,
    Range,
    RangeResult,
    Txn,
    TxnResult,
)
from etcdx.check.watch import Watcher, prefix_range_end
from etcdx.check.watch import WatchRequest as CheckedWatchRequest
from etcdx.pb import rpc_pb2, rpc_pb2_grpc

from .history import (
    History,
    SerializableRead,
    get_result,
    key_value,
    put_result,
    watch_response,
)

PREFIXES = ("a/", "b/")
KEYS = tuple(f"{p}{i}" for p in PREFIXES for i in range(4))
DEADLINE = 1.5  # seconds per call
ERROR_BACKOFF = 0.1
PROGRESS_INTERVAL = 0.2  # seconds between a watcher's progress requests
LEASE_TTL = 10  # long enough to outlive a fault plus a flow; every flow revokes its lease
REVOKE_ATTEMPTS = 8

# How often each operation is picked.
MIX = {
    "put": 20,
    "get": 18,
    "sget": 10,
    "delete": 6,
    "txn": 18,
    "range": 10,
    "lease": 6,
}

# Codes whose error says the request had no effect: a lease that does not
# exist (checked again when the put applies) or a malformed request. Everything
# else (UNAVAILABLE, DEADLINE_EXCEEDED, "leader changed", "not leader", ...)
# may have applied.
NO_EFFECT = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}

CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.use_local_subchannel_pool", 1),
]

WATCH_ALL = rpc_pb2.WatchCreateRequest(key=b"\0", range_end=b"\0")


def channel(endpoint: str) -> grpc.Channel:
    """A channel of its own (no shared subchannel) that reconnects quickly after a restart."""
    return grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)


class Client(threading.Thread):
    """One client thread bound to one member; see the module docstring."""

    def __init__(
        self, client_id: int, member: str, endpoint: str, history: History, seed: int, stop: threading.Event
    ) -> None:
        super().__init__(name=f"client-{client_id}", daemon=True)
        self.client_id = client_id
        self.member = member
        self.endpoint = endpoint
        self.history = history
        self.rng = random.Random(seed)
        self.stop = stop
        self.error: BaseException | None = None
        self._values = itertools.count(1)
        self._leases = itertools.count(1)
        self._seen: dict[str, KeyValue | None] = {}
        self._channel = channel(endpoint)
        self.kv = rpc_pb2_grpc.KVStub(self._channel)
        self.lease = rpc_pb2_grpc.LeaseStub(self._channel)
        self._ops = list(MIX)
        self._weights = [MIX[o] for o in self._ops]

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                op = self.rng.choices(self._ops, self._weights)[0]
                if not getattr(self, "op_" + op)():
                    self.stop.wait(ERROR_BACKOFF)
        except BaseException as e:  # noqa: BLE001 - handed to the runner, which fails the run
            self.error = e
        finally:
            self._channel.close()

    # -- helpers --------------------------------------------------------------------------
    def _value(self) -> str:
        return f"c{self.client_id}.{next(self._values)}"

    def _failed(self, op_type: str, input, call: float, error: grpc.RpcError) -> bool:
        if error.code() in NO_EFFECT:
            self.history.count(op_type, "failed")
        else:
            self.history.record(op_type, self.client_id, input, call, None)
        return False

    # -- operations (each returns False after an error) ------------------------------------
    def op_put(self, lease: int = 0, key: str | None = None, op_type: str = "put") -> bool:
        key = key or self.rng.choice(KEYS)
        input = Put(key, self._value(), lease)
        call = self.history.now()
        try:
            resp = self.kv.Put(
                rpc_pb2.PutRequest(key=key.encode(), value=input.value.encode(), lease=lease), timeout=DEADLINE
            )
        except grpc.RpcError as e:
            return self._failed(op_type, input, call, e)
        self.history.record(op_type, self.client_id, input, call, put_result(resp))
        return True

    def op_get(self) -> bool:
        key = self.rng.choice(KEYS)
        call = self.history.now()
        try:
            resp = self.kv.Range(rpc_pb2.RangeRequest(key=key.encode()), timeout=DEADLINE)
        except grpc.RpcError as e:
            return self._failed("get", Get(key), call, e)
        result = get_result(resp)
        self._seen[key] = result.kv
        self.history.record("get", self.client_id, Get(key), call, result)
        return True

    def op_sget(self) -> bool:
        key = self.rng.choice(KEYS)
        call = self.history.now()
        try:
            resp = self.kv.Range(rpc_pb2.RangeRequest(key=key.encode(), serializable=True), timeout=DEADLINE)
        except grpc.RpcError:
            self.history.count("sget", "indeterminate")
            return False
        self.history.serializable.append(
            SerializableRead(self.client_id, self.member, key, call, self.history.now(), get_result(resp))
        )
        self.history.count("sget", "ok")
        return True

    def op_delete(self) -> bool:
        key = self.rng.choice(KEYS)
        call = self.history.now()
        try:
            resp = self.kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key.encode()), timeout=DEADLINE)
        except grpc.RpcError as e:
            return self._failed("delete", Delete(key), call, e)
        self._seen[key] = None
        self.history.record("delete", self.client_id, Delete(key), call, DeleteResult(resp.deleted, resp.header.revision))
        return True

    def op_txn(self) -> bool:
        """Compare-and-swap: if the key is as this client last saw it, put a new value; else read it."""
        key = self.rng.choice(KEYS)
        seen = self._seen.get(key)
        value = self._value()
        if seen is not None and self.rng.random() < 0.3:
            compare = Compare(key, "value", "=", seen.value)
            pb_compare = rpc_pb2.Compare(
                key=key.encode(), target=rpc_pb2.Compare.VALUE, result=rpc_pb2.Compare.EQUAL, value=seen.value.encode()
            )
        else:
            mod = 0 if seen is None else seen.mod_revision
            compare = Compare(key, "mod", "=", mod)
            pb_compare = rpc_pb2.Compare(
                key=key.encode(), target=rpc_pb2.Compare.MOD, result=rpc_pb2.Compare.EQUAL, mod_revision=mod
            )
        input = Txn(compare, Put(key, value), Get(key))
        request = rpc_pb2.TxnRequest(
            compare=[pb_compare],
            success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key.encode(), value=value.encode()))],
            failure=[rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key.encode()))],
        )
        call = self.history.now()
        try:
            resp = self.kv.Txn(request, timeout=DEADLINE)
        except grpc.RpcError as e:
            return self._failed("txn", input, call, e)
        kv = None
        if not resp.succeeded:
            kvs = resp.responses[0].response_range.kvs
            kv = key_value(kvs[0]) if kvs else None
            self._seen[key] = kv
        self.history.record("txn", self.client_id, input, call, TxnResult(resp.succeeded, resp.header.revision, kv))
        return True

    def op_range(self) -> bool:
        prefix = self.rng.choice(PREFIXES)
        call = self.history.now()
        try:
            resp = self.kv.Range(
                rpc_pb2.RangeRequest(key=prefix.encode(), range_end=prefix_range_end(prefix).encode()),
                timeout=DEADLINE,
            )
        except grpc.RpcError as e:
            return self._failed("range", Range(prefix), call, e)
        kvs = {kv.key.decode(): key_value(kv) for kv in resp.kvs}
        self.history.record("range", self.client_id, Range(prefix), call, RangeResult(kvs, resp.header.revision))
        return True

    def op_lease(self) -> bool:
        """Grant, put with the lease, keep it alive once, revoke (retried until answered)."""
        lease_id = ((self.client_id + 1) << 32) | next(self._leases)
        ok = True
        try:
            self.lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=LEASE_TTL, ID=lease_id), timeout=DEADLINE)
            self.history.count("lease_grant", "ok")
        except grpc.RpcError as e:
            self.history.count("lease_grant", "failed" if e.code() in NO_EFFECT else "indeterminate")
            ok = False
        if ok:
            ok = self.op_put(lease=lease_id, op_type="put_lease")
        if ok:
            ok = self._keep_alive(lease_id)
        return self._revoke(lease_id) and ok

    def _keep_alive(self, lease_id: int) -> bool:
        try:
            stream = self.lease.LeaseKeepAlive(iter([rpc_pb2.LeaseKeepAliveRequest(ID=lease_id)]), timeout=DEADLINE)
            resp = next(stream)
            stream.cancel()
        except (grpc.RpcError, StopIteration):
            self.history.count("keepalive", "indeterminate")
            return False
        self.history.count("keepalive", "ok" if resp.TTL > 0 else "expired")
        return True

    def _revoke(self, lease_id: int) -> bool:
        """Revoke until some attempt is answered; each attempt is one recorded operation."""
        for attempt in range(REVOKE_ATTEMPTS):
            call = self.history.now()
            try:
                resp = self.lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lease_id), timeout=DEADLINE)
                self.history.record("lease_revoke", self.client_id, LeaseRevoke(lease_id), call, resp.header.revision)
                return attempt == 0
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.NOT_FOUND:
                    # Gone already (never granted, or an earlier attempt took effect).
                    self.history.record("lease_revoke", self.client_id, LeaseRevoke(lease_id), call, "not found")
                    return attempt == 0
                self.history.record("lease_revoke", self.client_id, LeaseRevoke(lease_id), call, None)
                self.stop.wait(ERROR_BACKOFF * (attempt + 1))
        return False


class WatchClient(threading.Thread):
    """Watches every key on one member from revision 1, resuming after errors."""

    def __init__(self, member: str, endpoint: str, history: History, stop: threading.Event) -> None:
        super().__init__(name=f"watch-{member}", daemon=True)
        self.member = member
        self.endpoint = endpoint
        self.history = history
        self.stop = stop
        self.last_revision = 1  # every event up to here was delivered
        self.events = 0
        self.progress_notifications = 0
        self.error: BaseException | None = None
        self._call = None
        self._lock = threading.Lock()

    def run(self) -> None:
        try:
            self._watch_until_stopped()
        except BaseException as e:  # noqa: BLE001 - handed to the runner, which fails the run
            self.error = e

    def _watch_until_stopped(self) -> None:
        ch = channel(self.endpoint)
        stub = rpc_pb2_grpc.WatchStub(ch)
        try:
            for number in itertools.count():
                if self.stop.is_set():
                    return
                start = self.last_revision + 1
                watcher = Watcher(CheckedWatchRequest("\0", "\0", start_revision=start), name=f"{self.member}#{number}")
                self.history.watchers.append(watcher)
                create = rpc_pb2.WatchCreateRequest()
                create.CopyFrom(WATCH_ALL)
                create.start_revision = start
                requests: queue.Queue = queue.Queue()
                requests.put(rpc_pb2.WatchRequest(create_request=create))
                try:
                    call = stub.Watch(_until_closed(requests), metadata=(("hasleader", "true"),))
                    with self._lock:
                        self._call = call
                    if self.stop.is_set():
                        call.cancel()
                    for resp in call:
                        response = watch_response(resp)
                        watcher.responses.append(response)
                        if response.events:
                            self.events += len(response.events)
                            self.last_revision = max(self.last_revision, response.events[-1].mod_revision)
                        elif not (response.created or response.canceled):
                            self.progress_notifications += 1
                        if response.canceled:
                            break
                except grpc.RpcError:
                    pass
                finally:
                    requests.put(None)
                    with self._lock:
                        self._call = None
                self.stop.wait(ERROR_BACKOFF)
        finally:
            ch.close()

    def close(self) -> None:
        """Stop watching (the caller set ``stop``); returns once the thread ended."""
        with self._lock:
            if self._call is not None:
                self._call.cancel()
        self.join(5.0)


PROGRESS_REQUEST = rpc_pb2.WatchRequest(progress_request=rpc_pb2.WatchProgressRequest())


def _until_closed(requests: queue.Queue) -> Iterator[rpc_pb2.WatchRequest]:
    """The watch's request stream: the create request, then a progress request
    whenever nothing else was sent for PROGRESS_INTERVAL, until told to end."""
    while True:
        try:
            item = requests.get(timeout=PROGRESS_INTERVAL)
        except queue.Empty:
            item = PROGRESS_REQUEST
        if item is None:
            return
        yield item
