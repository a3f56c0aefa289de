"""Rate limiting for warnings that repeat while a peer stays down or misconfigured."""

from __future__ import annotations

import time


class Throttle:
    """Lets one event through per ``interval`` seconds and counts the ones it held back."""

    __slots__ = ("_next", "_suppressed", "interval")

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self._next = 0.0
        self._suppressed = 0

    def allow(self) -> int | None:
        """None if this event should stay quiet; else how many were held back since the last one let through."""
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return None
        self._next = now + self.interval
        held, self._suppressed = self._suppressed, 0
        return held
