"""The front end against grpcio's Python client: unary and streaming calls, errors, limits,
cancellation, deadlines, metadata, compression and TLS, served by the fake etcd."""

from __future__ import annotations

import json
import threading
import time

import grpc
import pytest

from etcdx.pb import rpc_pb2, rpc_pb2_grpc
from support.fake_etcd import ServerThread
from support.frontend_certs import make_certs

BIG = 64 * 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG),
           ("grpc.enable_retries", 0)]


@pytest.fixture(scope="module")
def server():
    with ServerThread() as s:
        yield s


@pytest.fixture
def channel(server):
    ch = grpc.insecure_channel(server.endpoint, options=OPTIONS)
    yield ch
    ch.close()


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def test_put_then_range_through_etcd_protobufs(channel) -> None:
    kv = rpc_pb2_grpc.KVStub(channel)
    put = kv.Put(rpc_pb2.PutRequest(key=b"grpcio-k", value=b"v1"))
    got = kv.Range(rpc_pb2.RangeRequest(key=b"grpcio-k"))
    assert got.kvs[0].value == b"v1" and got.header.revision == put.header.revision


def test_handler_errors_reach_the_client_with_code_and_message(channel) -> None:
    kv = rpc_pb2_grpc.KVStub(channel)
    with pytest.raises(grpc.RpcError) as e:
        kv.Put(rpc_pb2.PutRequest())
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert e.value.details() == "etcdserver: key is not provided"


def test_non_ascii_error_messages_survive_percent_encoding(channel) -> None:
    with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary("/test.Test/Fail")("14:ünïcödé 100% \n done".encode())
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert e.value.details() == "ünïcödé 100% \n done"


def test_unexpected_handler_exception_is_internal(channel) -> None:
    with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary("/test.Test/Boom")(b"")
    assert e.value.code() == grpc.StatusCode.INTERNAL


def test_coroutine_handlers_run_as_tasks(channel) -> None:
    assert channel.unary_unary("/test.Test/Coro")(b"abc") == b"cba"


def test_unknown_methods_get_grpc_go_texts(channel) -> None:
    with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary("/etcdserverpb.KV/Nope")(b"")
    assert (e.value.code(), e.value.details()) == (grpc.StatusCode.UNIMPLEMENTED,
                                                   "unknown method Nope for service etcdserverpb.KV")
    with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary("/etcdserverpb.Nope/Put")(b"")
    assert e.value.details() == "unknown service etcdserverpb.Nope"


def test_four_megabyte_messages_both_ways(server) -> None:
    with ServerThread(max_receive_message_bytes=8 << 20) as big:
        ch = grpc.insecure_channel(big.endpoint, options=OPTIONS)
        payload = bytes(range(256)) * (4 * 4096)
        assert ch.unary_unary("/test.Test/Echo")(payload) == payload
        ch.close()


def test_request_over_the_receive_limit_is_resource_exhausted(channel) -> None:
    with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary("/test.Test/Echo")(b"x" * (3 * 1024 * 1024 + 3))
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert e.value.details() == "grpc: received message larger than max (3145731 vs. 2097152)"
    assert channel.unary_unary("/test.Test/Echo")(b"still fine") == b"still fine"


def test_response_over_the_send_limit_is_resource_exhausted() -> None:
    with ServerThread(max_send_message_bytes=1000) as s:
        ch = grpc.insecure_channel(s.endpoint, options=OPTIONS)
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Test/Echo")(b"y" * 1001)
        assert e.value.details() == "grpc: trying to send message larger than max (1001 vs. 1000)"
        ch.close()


def test_gzip_compressed_requests_are_decompressed(channel) -> None:
    payload = b"compress me " * 1000
    got = channel.unary_unary("/test.Test/Echo")(payload, compression=grpc.Compression.Gzip)
    assert got == payload


def test_gzip_can_be_refused_like_etcd_3_4() -> None:
    with ServerThread(accept_gzip=False) as s:
        ch = grpc.insecure_channel(s.endpoint, options=OPTIONS)
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary("/test.Test/Echo")(b"x", compression=grpc.Compression.Gzip)
        assert (e.value.code(), e.value.details()) == (
            grpc.StatusCode.UNIMPLEMENTED, 'grpc: Decompressor is not installed for grpc-encoding "gzip"')
        ch.close()


def test_metadata_and_binary_metadata_reach_the_handler(channel) -> None:
    reply = json.loads(channel.unary_unary("/test.Test/Meta")(
        b"", metadata=[("token", "secret-token"), ("trace-bin", b"\x00\xff\x10")], timeout=10))
    assert reply["metadata"]["token"] == "secret-token"
    assert reply["metadata"]["trace-bin"] == "00ff10"
    assert reply["deadline"] is True


def test_deadline_expiry_answers_deadline_exceeded_and_cancels_the_handler(server, channel) -> None:
    before = server.fake.cancelled.count("/test.Test/Hang")
    with pytest.raises(grpc.RpcError) as e:
        channel.unary_unary("/test.Test/Hang")(b"", timeout=0.2)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    wait_for(lambda: server.fake.cancelled.count("/test.Test/Hang") == before + 1)


def test_client_cancellation_fires_the_cancel_callback(server, channel) -> None:
    before = server.fake.cancelled.count("/test.Test/Hang")
    server.fake.hang_started.clear()
    fut = channel.unary_unary("/test.Test/Hang").future(b"")
    assert server.fake.hang_started.wait(5)
    fut.cancel()
    wait_for(lambda: server.fake.cancelled.count("/test.Test/Hang") == before + 1)


def test_cancelling_a_stream_cancels_its_task(server, channel) -> None:
    before = server.fake.cancelled.count("/test.Test/HangStream")
    server.fake.hang_started.clear()
    call = channel.unary_stream("/test.Test/HangStream")(b"")
    assert server.fake.hang_started.wait(5)
    call.cancel()
    wait_for(lambda: server.fake.cancelled.count("/test.Test/HangStream") == before + 1)
    wait_for(lambda: server.call(lambda: not any(s.busy for s in server.frontend._sessions)))


def test_long_server_stream_beyond_the_flow_control_windows(channel) -> None:
    got = list(channel.unary_stream("/test.Test/Count")(json.dumps({"n": 3000, "size": 3000}).encode()))
    assert [int.from_bytes(m[:4], "big") for m in got] == list(range(3000))   # 9 MB, in order


def test_snapshot_stream_of_four_megabytes(channel) -> None:
    chunks = list(rpc_pb2_grpc.MaintenanceStub(channel).Snapshot(rpc_pb2.SnapshotRequest()))
    assert sum(len(c.blob) for c in chunks) == (4 << 20) + 32 and chunks[-1].remaining_bytes == 0


def test_client_streaming(channel) -> None:
    assert channel.stream_unary("/test.Test/Sum")(iter([str(i).encode() for i in range(100)])) == b"4950"


def test_watch_sees_puts_made_after_it_was_created(channel) -> None:
    requests: list = [rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b"w", range_end=b"x"))]
    more = threading.Event()

    def gen():
        yield requests[0]
        more.wait(10)

    responses = rpc_pb2_grpc.WatchStub(channel).Watch(gen())
    assert next(responses).created
    kv = rpc_pb2_grpc.KVStub(channel)
    for i in range(5):
        kv.Put(rpc_pb2.PutRequest(key=b"w%d" % i, value=b"v"))
    keys = [next(responses).events[0].kv.key for _ in range(5)]
    assert keys == [b"w%d" % i for i in range(5)]
    more.set()
    responses.cancel()


def test_many_concurrent_calls_on_one_channel(channel) -> None:
    futures = [channel.unary_unary("/test.Test/Echo").future(b"%d" % i) for i in range(500)]
    assert [f.result(10) for f in futures] == [b"%d" % i for i in range(500)]


def test_tls_with_alpn_h2_and_client_certificates(tmp_path) -> None:
    certs = make_certs(tmp_path / "certs")
    with ServerThread(ssl_context=certs.server_context(require_client_cert=True)) as s:
        creds = grpc.ssl_channel_credentials(certs.ca.read_bytes(), certs.client_key.read_bytes(),
                                             certs.client_cert.read_bytes())
        ch = grpc.secure_channel(f"127.0.0.1:{s.port}", creds, options=OPTIONS)
        kv = rpc_pb2_grpc.KVStub(ch)
        kv.Put(rpc_pb2.PutRequest(key=b"tls", value=b"yes"))
        assert kv.Range(rpc_pb2.RangeRequest(key=b"tls")).kvs[0].value == b"yes"
        assert json.loads(ch.unary_unary("/test.Test/Meta")(b""))["peer_certificate"] is True
        ch.close()


def test_graceful_close_lets_a_call_in_flight_finish() -> None:
    s = ServerThread().start()
    ch = grpc.insecure_channel(s.endpoint, options=OPTIONS)
    stream = ch.unary_stream("/test.Test/Count")(json.dumps({"n": 200, "size": 100_000}).encode())
    first = next(stream)
    closer = threading.Thread(target=s.stop, kwargs={"grace": 10.0})
    closer.start()
    rest = list(stream)
    closer.join(20)
    assert len(rest) + 1 == 200 and int.from_bytes(first[:4], "big") == 0
    ch.close()


def test_close_after_grace_cancels_calls_left_with_unavailable() -> None:
    s = ServerThread().start()
    ch = grpc.insecure_channel(s.endpoint, options=OPTIONS)
    s.fake.hang_started.clear()
    fut = ch.unary_unary("/test.Test/Hang").future(b"")
    assert s.fake.hang_started.wait(5)
    s.stop(grace=0.2)
    with pytest.raises(grpc.RpcError) as e:
        fut.result(10)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "/test.Test/Hang" in s.fake.cancelled
    ch.close()
