"""Stopping the tasks the asyncio face owns."""

from __future__ import annotations

import asyncio


async def stop_task(task: asyncio.Task[object] | None) -> None:
    """Cancel ``task`` and wait for it; an exception it died of (other than the cancel) is raised here."""
    if task is None or task is asyncio.current_task():
        return
    task.cancel()
    await asyncio.wait([task])
    if not task.cancelled() and task.exception() is not None:
        raise task.exception()  # type: ignore[misc]
