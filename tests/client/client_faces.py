"""Run the same test body against both faces of the client.

`Blocking` drives an `AsyncClient` (and the watches, leases, locks and
elections it hands out) from synchronous code, by running each coroutine on
an event loop in a background thread. A test written against `Client`'s API
then exercises `AsyncClient` too: that both faces really have the same API
is part of what it checks.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from etcdx.client import aio

T = TypeVar("T")
_WRAPPED = (aio.AsyncClient, aio.Watch, aio.Lease, aio.Lock, aio.Election, aio.Observer)


class LoopThread:
    """An asyncio event loop running in a daemon thread until `close()`."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-loop", daemon=True)
        self._thread.start()

    def run(self, awaitable: Awaitable[T]) -> T:
        async def wrapper() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class Blocking:
    """A blocking view of an asyncio face object (see the module docstring)."""

    def __init__(self, target: Any, loop: LoopThread) -> None:
        self._target = target
        self._loop = loop

    def _wrap(self, value: Any) -> Any:
        return Blocking(value, self._loop) if isinstance(value, _WRAPPED) else value

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if not callable(attr):
            return self._wrap(attr)

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            if inspect.isawaitable(result):
                result = self._loop.run(result)
            return self._wrap(result)

        return call

    def __enter__(self) -> Any:
        return self._wrap(self._loop.run(self._target.__aenter__()))

    def __exit__(self, *exc: object) -> None:
        self._loop.run(self._target.__aexit__(*exc))

    def __iter__(self) -> Blocking:
        return self

    def __next__(self) -> Any:
        try:
            return self._wrap(self._loop.run(self._target.__anext__()))
        except StopAsyncIteration:
            raise StopIteration from None

    def __repr__(self) -> str:
        return f"Blocking({self._target!r})"
