"""The story of a simulation run: what happened at each step, kept for the last N steps.

Records are tuples formatted only when shown, because a run records hundreds of
thousands of them and reads almost none. A running digest of every record can
be enabled to prove that two runs of one seed are identical.
"""

from __future__ import annotations

import hashlib
from collections import deque


class Trace:
    def __init__(self, keep: int = 200, digest: bool = False) -> None:
        self._records: deque[tuple] = deque(maxlen=keep)
        self._digest = hashlib.sha256() if digest else None

    def record(self, step: int, now: int, kind: str, *fields: object) -> None:
        rec = (step, now, kind, fields)
        self._records.append(rec)
        if self._digest is not None:
            self._digest.update(repr(rec).encode())

    def hexdigest(self) -> str:
        if self._digest is None:
            raise ValueError("trace digest was not enabled")
        return self._digest.hexdigest()

    def render(self, last: int | None = None) -> str:
        recs = list(self._records)
        if last is not None:
            recs = recs[-last:]
        return "\n".join(
            f"step {step:>6} t={now:>6} {kind:<10} {' '.join(str(f) for f in fields)}"
            for step, now, kind, fields in recs
        )
