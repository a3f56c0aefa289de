"""Fixtures for cluster tests: `make_cluster(kind, size=3, proxied=False, ...)` returns a
started `etcdx.testing.cluster.Cluster` under the test's tmp_path, closed at teardown.

It is the `etcdx_factory` fixture of etcdx.testing's pytest plugin (the one
etcdx's users get) with this suite's defaults: the kind named per test, no
proxies unless asked for.
"""

from __future__ import annotations

import pytest

from etcdx.testing.cluster import Cluster
from etcdx.testing.plugin import Factory


@pytest.fixture
def make_cluster(etcdx_factory: Factory):
    def make(kind: str, size: int = 3, start: bool = True, proxied: bool = False, **kwargs) -> Cluster:
        return etcdx_factory.cluster(size, kind=kind, proxied=proxied, start=start, **kwargs)

    return make
