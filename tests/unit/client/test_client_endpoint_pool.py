"""Round-robin over healthy endpoints, with cool-downs after failures."""

from __future__ import annotations

import random

import pytest

from etcdx.client.endpoints import FIRST_COOLDOWN, MAX_COOLDOWN, Endpoint, EndpointPool, parse_endpoint


def pool(*endpoints: str) -> EndpointPool:
    p = EndpointPool(endpoints, random.Random(0))
    p._next = 0  # start at the first for readable expectations
    return p


def test_calls_rotate_over_every_endpoint():
    p = pool("a", "b", "c")
    assert [p.pick(0.0) for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]


def test_a_failed_endpoint_is_skipped_until_its_cooldown_ends():
    p = pool("a", "b", "c")
    p.failed("b", now=10.0)
    assert [p.pick(10.1) for _ in range(4)] == ["a", "c", "a", "c"]
    assert "b" in [p.pick(10.0 + FIRST_COOLDOWN) for _ in range(3)]


def test_cooldowns_double_up_to_a_cap_and_reset_on_success():
    p = pool("a", "b")
    for _ in range(10):
        p.failed("a", now=0.0)
    assert p.is_down("a", MAX_COOLDOWN - 0.01) and not p.is_down("a", MAX_COOLDOWN)
    p.succeeded("a")
    assert not p.is_down("a", 0.0)
    p.failed("a", now=0.0)
    assert not p.is_down("a", FIRST_COOLDOWN)


def test_with_every_endpoint_down_the_one_back_soonest_is_tried():
    p = pool("a", "b")
    p.failed("a", now=0.0)
    p.failed("a", now=0.0)
    p.failed("b", now=0.0)
    assert p.pick(0.1) == "b"


def test_avoided_endpoints_are_used_only_when_nothing_else_is_up():
    p = pool("a", "b")
    assert p.pick(0.0, avoid=["a"]) == "b"
    p.failed("b", now=0.0)
    assert p.pick(0.1, avoid=["a"]) == "a"


def test_a_random_start_spreads_clients():
    starts = {EndpointPool(["a", "b", "c"], random.Random(seed)).pick(0.0) for seed in range(20)}
    assert starts == {"a", "b", "c"}


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:2379", Endpoint("127.0.0.1:2379", False)),
        ("http://m1:2379", Endpoint("m1:2379", False)),
        ("https://m1:2379", Endpoint("m1:2379", True)),
        ("unix:///run/etcd.sock", Endpoint("unix:/run/etcd.sock", False)),
        ("unixs:/run/etcd.sock", Endpoint("unix:/run/etcd.sock", True)),
    ],
)
def test_parse_endpoint(text, parsed):
    assert parse_endpoint(text) == parsed


@pytest.mark.parametrize("text", ["", "ftp://m1:21", "http://"])
def test_bad_endpoints_are_refused(text):
    with pytest.raises(ValueError):
        parse_endpoint(text)
