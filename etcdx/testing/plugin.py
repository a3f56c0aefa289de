"""pytest fixtures that start real etcdx (or etcd) members for your tests.

Installed with etcdx as the ``pytest11`` entry point ``etcdx.testing.plugin``,
so the fixtures are there in any project that has etcdx installed:

    def test_failover(etcdx_cluster):
        with etcdx_cluster.client() as client:
            client.put("k", "v")
            etcdx_cluster.leader().kill()          # -9
            assert client.get("k").value == b"v"   # served by a survivor

Fixtures (each a fresh server per test, data and logs under the test's tmp dir):

- ``etcdx_member``: one member (`etcdx.testing.procs.Member`); ``.client()``,
  ``.kill()``, ``.pause()``/``.resume()``, ``.restart()``.
- ``etcdx_cluster``: three members (`etcdx.testing.cluster.Cluster`) behind
  fault-injecting proxies: ``.leader()``, ``.isolate(m)``/``.heal()``,
  ``.partition(a, b)``, ``.client()``, and each member's own methods.
- ``etcdx_factory``: more, with your flags: ``etcdx_factory.member(extra_args=[...])``,
  ``etcdx_factory.cluster(size=5)``; all stopped at teardown.
- ``etcdx_kind``: which server they start: "etcdx" unless ``--etcdx-kind=etcd``
  (the real etcd binary, ``$ETCDX_TESTING_ETCD`` or /usr/bin/etcd) or
  ``--etcdx-kind=both``, which runs every test using these fixtures against
  each. A test can also parametrize it: ``@pytest.mark.parametrize("etcdx_kind", ["etcd", "etcdx"])``.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from . import procs
from .cluster import Cluster
from .procs import Member

KINDS = ("etcdx", "etcd")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("etcdx", "etcdx.testing: etcd-compatible members for tests")
    group.addoption(
        "--etcdx-kind",
        choices=(*KINDS, "both"),
        default=None,
        help="server the etcdx_member/etcdx_cluster fixtures start: etcdx (default), etcd, or both",
    )
    parser.addini("etcdx_kind", "default for --etcdx-kind", default="etcdx")


def _configured_kind(config: pytest.Config) -> str:
    kind = config.getoption("--etcdx-kind") or config.getini("etcdx_kind") or "etcdx"
    if kind not in (*KINDS, "both"):
        raise pytest.UsageError(f"etcdx_kind = {kind!r}: expected etcdx, etcd or both")
    return kind


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "etcdx_kind" not in metafunc.fixturenames or _configured_kind(metafunc.config) != "both":
        return
    if any("etcdx_kind" in m.args[0] for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test chose its kinds itself
    metafunc.parametrize("etcdx_kind", KINDS, indirect=True)


@pytest.fixture
def etcdx_kind(request: pytest.FixtureRequest) -> str:
    """"etcdx" or "etcd": the server this test's members run."""
    kind = getattr(request, "param", None) or _configured_kind(request.config)
    return "etcdx" if kind == "both" else kind


class Factory:
    """Makes members and clusters under one directory and stops them all at `close()`."""

    def __init__(self, base_dir: pathlib.Path, kind: str) -> None:
        self.base_dir = base_dir
        self.kind = kind
        self._members: list[Member] = []
        self._clusters: list[Cluster] = []

    def member(
        self, *, kind: str | None = None, extra_args: Sequence[str] = (), start: bool = True, **options: Any
    ) -> Member:
        """A single-member cluster (``options``: `Member`'s, e.g. ``tls=``, ``env=``)."""
        kind = kind or self.kind
        procs.require(kind)
        name = f"m{len(self._members) + 1}"
        m = Member(kind, self.base_dir / f"member-{name}", name=name, extra_args=extra_args, **options)
        self._members.append(m)
        if start:
            m.start()
        return m

    def cluster(
        self,
        size: int = 3,
        *,
        kind: str | None = None,
        proxied: bool = True,
        start: bool = True,
        **options: Any,
    ) -> Cluster:
        """A cluster of ``size`` members, behind fault proxies unless ``proxied=False``."""
        kind = kind or self.kind
        procs.require(kind)
        c = Cluster(kind, self.base_dir / f"cluster{len(self._clusters) + 1}", size=size, proxied=proxied, **options)
        self._clusters.append(c)
        return c.start() if start else c

    def close(self) -> None:
        for m in self._members:
            m.close()
        for c in self._clusters:
            c.close()


@pytest.fixture
def etcdx_factory(etcdx_kind: str, tmp_path: pathlib.Path) -> Iterator[Factory]:
    factory = Factory(tmp_path / "etcdx", etcdx_kind)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def etcdx_member(etcdx_factory: Factory) -> Member:
    """A fresh single member, stopped after the test."""
    return etcdx_factory.member()


@pytest.fixture
def etcdx_cluster(etcdx_factory: Factory) -> Cluster:
    """A fresh 3-member cluster behind fault proxies, stopped after the test."""
    return etcdx_factory.cluster(3)
