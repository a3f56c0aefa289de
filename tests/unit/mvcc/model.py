"""A plain in-memory model of etcd's MVCC semantics, to check KVStore against."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelKV:
    key: bytes
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    lease: int


def in_range(key: bytes, start: bytes, end: bytes) -> bool:
    if not end:
        return key == start
    if end == b"\x00":
        return key >= start
    return start <= key < end


@dataclass
class Model:
    """states[r] is the key space after revision r; like etcd's, a new store
    is at revision 1 and has compact revision -1."""

    states: list[dict[bytes, ModelKV]] = field(default_factory=lambda: [{}, {}])
    changes: list[int] = field(default_factory=lambda: [0, 0])  # changes per revision
    compact_revision: int = -1

    @property
    def revision(self) -> int:
        return len(self.states) - 1

    def txn(self, ops: list[tuple]) -> list[tuple]:
        """Apply ops ("put", k, v, lease) / ("delete", k, end); returns events
        as (type, key, mod_revision, the key's value before the txn or None)."""
        before = self.states[-1]
        cur = dict(before)
        rev = self.revision + 1
        events = []
        for op in ops:
            if op[0] == "put":
                _, k, v, lease = op
                prev = cur.get(k)
                cur[k] = ModelKV(k, v, prev.create_revision if prev else rev, rev,
                                 prev.version + 1 if prev else 1, lease)
                created = cur[k].create_revision == rev  # etcd gives create events no prev_kv
                events.append(("PUT", k, rev, None if created or k not in before else before[k].value))
            else:
                _, k, end = op
                for key in sorted(key for key in cur if in_range(key, k, end)):
                    cur.pop(key)
                    events.append(("DELETE", key, rev, before[key].value if key in before else None))
        if events:
            self.states.append(cur)
            self.changes.append(len(events))
        return events

    def range(self, start: bytes, end: bytes, at: int) -> list[ModelKV]:
        state = self.states[at]
        return [state[k] for k in sorted(state) if in_range(k, start, end)]
