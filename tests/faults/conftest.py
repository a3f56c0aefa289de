"""Fixtures for cluster tests: `make_cluster(kind, size=3, proxied=False, ...)` returns a
started `support.cluster.Cluster` under the test's tmp_path, closed at teardown."""

from __future__ import annotations

import pytest
from support import procs
from support.cluster import Cluster


@pytest.fixture
def make_cluster(tmp_path):
    made: list[Cluster] = []

    def make(kind: str, size: int = 3, start: bool = True, **kwargs) -> Cluster:
        procs.require(kind)
        cluster = Cluster(kind, tmp_path / f"cluster{len(made) + 1}", size=size, **kwargs)
        made.append(cluster)
        return cluster.start() if start else cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.close()
