"""Raised alarms (NOSPACE, CORRUPT), persisted in the backend's ``alarm`` bucket.

While NOSPACE is raised the member refuses writes that add data; the alarm
is raised and cleared through the log, so every member agrees.
"""

from __future__ import annotations

import struct

from etcdx.pb import rpc_pb2

BUCKET = b"alarm"
NOSPACE = rpc_pb2.NOSPACE
CORRUPT = rpc_pb2.CORRUPT


class AlarmStore:
    def __init__(self, backend) -> None:
        self._alarms: set[tuple[int, int]] = set()
        with backend.read() as rtx:
            for k, _ in rtx.scan(BUCKET, b""):
                self._alarms.add(struct.unpack(">QI", k))

    def activate(self, btx, member: int, alarm: int) -> bool:
        """Raise ``alarm`` for ``member``; False when it was already raised."""
        if (member, alarm) in self._alarms:
            return False
        self._alarms.add((member, alarm))
        btx.put(BUCKET, struct.pack(">QI", member, alarm), b"")
        return True

    def deactivate(self, btx, member: int, alarm: int) -> bool:
        if (member, alarm) not in self._alarms:
            return False
        self._alarms.discard((member, alarm))
        btx.delete(BUCKET, struct.pack(">QI", member, alarm))
        return True

    def get(self, alarm: int = rpc_pb2.NONE) -> list[tuple[int, int]]:
        return sorted(a for a in self._alarms if alarm == rpc_pb2.NONE or a[1] == alarm)

    def active(self, alarm: int) -> bool:
        return any(a == alarm for _, a in self._alarms)
