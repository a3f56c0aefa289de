"""Per-RPC counts: started by the route wrapper, handled by the Router's end hook, summed over processes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from etcdx.api.rpc_metrics import RpcCollector, RpcStats
from etcdx.frontend import Call, Router

PUT = "/etcdserverpb.KV/Put"


def _stats(timed: bool = False) -> tuple[RpcStats, Router]:
    router = Router()
    router.unary(PUT, lambda body, call: b"ok")
    router.stream("/etcdserverpb.Watch/Watch", lambda stream, call: None)
    stats = RpcStats(timed=timed)
    stats.instrument(router)
    return stats, router


def _calls(router: Router, codes: list[int]) -> None:
    """What the front end does per call: run the route's handler, then report how the call ended."""
    handler = router.routes[PUT][1]
    for code in codes:
        call = Call(PUT, {}, None, None, None, 1)
        assert handler(b"", call) == b"ok"
        router.on_call_end(call, code)


def _samples(*snapshots, timed: bool = False) -> dict[tuple[str, frozenset], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RpcCollector(lambda: snapshots, timed))
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def _put(**labels: str) -> frozenset:
    return frozenset({"grpc_method": "Put", "grpc_service": "etcdserverpb.KV", "grpc_type": "unary", **labels}.items())


def test_calls_are_counted_by_code_and_summed_over_processes():
    core, core_router = _stats()
    worker, worker_router = _stats()
    _calls(core_router, [0, 0, 5])
    _calls(worker_router, [0, 14])
    core_router.on_call_end(Call("/unknown.S/M", {}, None, None, None, 3), 12)  # not a route: ignored
    core_router.on_call_end(Call(PUT, {}, None, None, None, 5), 99)  # not a status code: ignored
    samples = _samples(core.snapshot(), worker.snapshot())
    assert samples[("grpc_server_started_total", _put())] == 5
    assert samples[("grpc_server_handled_total", _put(grpc_code="OK"))] == 3
    assert samples[("grpc_server_handled_total", _put(grpc_code="NotFound"))] == 1
    assert samples[("grpc_server_handled_total", _put(grpc_code="Unavailable"))] == 1
    assert samples[("grpc_server_handled_total", _put(grpc_code="Internal"))] == 0  # every code is listed
    assert samples[("grpc_server_msg_received_total", _put())] == 5
    assert samples[("grpc_server_msg_sent_total", _put())] == 3
    watch = frozenset({"grpc_method": "Watch", "grpc_service": "etcdserverpb.Watch",
                       "grpc_type": "bidi_stream"}.items())
    assert samples[("grpc_server_started_total", watch)] == 0
    assert not any(name.startswith("grpc_server_handling_seconds") for name, _ in samples)


def test_extensive_metrics_time_every_call():
    stats, router = _stats(timed=True)
    _calls(router, [0, 0, 2])
    samples = _samples(stats.snapshot(), timed=True)
    assert samples[("grpc_server_handling_seconds_count", _put())] == 3
    assert samples[("grpc_server_handling_seconds_bucket", _put(le="+Inf"))] == 3
    assert samples[("grpc_server_handling_seconds_bucket", _put(le="0.005"))] == 3  # no call took 5 ms here
    assert stats._started_at == {}  # nothing kept once a call ended
