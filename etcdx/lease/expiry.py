"""The primary's queue of lease deadlines: a heap with lazy deletion.

Renewing a lease pushes a new deadline instead of finding and moving the old
one; an entry counts only while it is the lease's current one, so superseded
entries are dropped when they surface. Pops are O(log n) and the heap holds
at most one entry per lease plus the renewals made within one TTL.
"""

from __future__ import annotations

import heapq


class ExpiryQueue:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int]] = []
        self._current: dict[int, float] = {}  # lease id -> its live deadline

    def __len__(self) -> int:
        return len(self._current)

    def schedule(self, lease_id: int, deadline: float) -> None:
        """Set (or move) the deadline of ``lease_id``."""
        self._current[lease_id] = deadline
        heapq.heappush(self._heap, (deadline, lease_id))

    def cancel(self, lease_id: int) -> None:
        self._current.pop(lease_id, None)

    def clear(self) -> None:
        self._heap.clear()
        self._current.clear()

    def pop_due(self, now: float, limit: int) -> list[int]:
        """Remove and return up to ``limit`` leases whose deadline is at or before ``now``, earliest first."""
        due: list[int] = []
        heap, current = self._heap, self._current
        while heap and len(due) < limit and heap[0][0] <= now:
            deadline, lease_id = heapq.heappop(heap)
            if current.get(lease_id) == deadline:
                del current[lease_id]
                due.append(lease_id)
        return due
