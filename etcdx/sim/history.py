"""What the simulated clients saw: invocations and responses on the simulated clock.

A put whose outcome is unknown (timed out, its member crashed) stays in the
history with an infinite return time: it may or may not have taken effect. A
read whose outcome is unknown changed nothing and is left out. The history is
checked against ``etcdx.check.kv_model.KvModel``.
"""

from __future__ import annotations

import math
from typing import Any

from etcdx.check.kv_model import KvGet, KvPut
from etcdx.check.linearizability import Operation


class History:
    def __init__(self) -> None:
        self._open: dict[int, Operation] = {}
        self.operations: list[Operation] = []

    def invoke(
        self, op_id: int, client_id: int, input: KvPut | KvGet, now: float
    ) -> None:
        self._open[op_id] = Operation(client_id, input, now, None, math.inf)

    def is_open(self, op_id: int) -> bool:
        return op_id in self._open

    def respond(self, op_id: int, output: Any, now: float) -> None:
        op = self._open.pop(op_id)
        op.output = output
        op.return_time = now
        self.operations.append(op)

    def fail(self, op_id: int) -> None:
        """The operation surely had no effect (rejected before it entered the log)."""
        del self._open[op_id]

    def lose(self, op_id: int) -> None:
        """The client gave up waiting: a put may still apply later; a read is dropped."""
        op = self._open.pop(op_id)
        if isinstance(op.input, KvPut):
            self.operations.append(op)

    def close(self) -> list[Operation]:
        """Every operation still open becomes indeterminate; returns the whole history."""
        for op_id in sorted(self._open):
            self.lose(op_id)
        return self.operations
