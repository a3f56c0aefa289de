"""Fixtures for the client's tests: every test runs against real etcd and etcdx, through both faces.

- `etcdx_kind` is parametrized over etcd and etcdx here, so the plugin's
  `etcdx_member`, `etcdx_cluster` and `etcdx_factory` give each test both servers;
- `member` is one member of each kind shared by a module (tests that need a
  fresh store use `etcdx_member`); tests keep to their own keys (`prefix`);
- `connect(*endpoints, **options)` makes a client of the face under test:
  `Client`, or `AsyncClient` driven through `client_faces.Blocking`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from client_faces import Blocking, LoopThread

from etcdx.client import AsyncClient, Client
from etcdx.testing import procs
from etcdx.testing.procs import Member

KINDS = ["etcdx", "etcd"]
FACES = ["sync", "async"]


@pytest.fixture(params=KINDS)
def etcdx_kind(request: pytest.FixtureRequest) -> str:
    procs.require(request.param)
    return request.param


@pytest.fixture(scope="module", params=KINDS)
def member(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Member]:
    procs.require(request.param)
    m = Member(request.param, tmp_path_factory.mktemp(f"member-{request.param}"))
    try:
        m.start()
        yield m
    finally:
        m.close()


_prefixes = itertools.count()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix no other test in the module uses."""
    return f"/{request.node.originalname}/{next(_prefixes)}/"


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    loop = LoopThread()
    try:
        yield loop
    finally:
        loop.close()


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def connect(face: str, loop_thread: LoopThread) -> Iterator[Callable[..., Any]]:
    made: list[Any] = []

    def connect(*endpoints: str, **options: Any) -> Any:
        if face == "sync":
            client: Any = Client(list(endpoints), **options)
        else:

            async def make() -> AsyncClient:
                return AsyncClient(list(endpoints), **options)

            client = Blocking(loop_thread.run(make()), loop_thread)
        made.append(client)
        return client

    try:
        yield connect
    finally:
        for client in made:
            client.close()
