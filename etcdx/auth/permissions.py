"""Key-range permissions: a role's grants merged per user into interval sets.

etcd grants READ, WRITE or READWRITE on a single key (empty ``range_end``), a
range ``[key, range_end)`` or every key from ``key`` on (``range_end`` is
``\\0``). A user may read (write) ``[key, range_end)`` when the union of the
ranges its roles grant for reading (writing) covers it; adjacent ranges join
(``[a, b)`` and ``[b, c)`` cover ``[a, c)``).

Corner cases follow etcd 3.4 (its "affine" byte intervals, where an empty
byte string sorts after every key), checked against a real etcd:
- a grant with an empty ``key``, or with ``range_end <= key`` (other than
  ``\\0``), is accepted and stored but covers no key;
- a request whose ``range_end`` is not after its ``key`` (an empty range) is
  permitted exactly when the single key ``key`` is.

Pure: no backend, no protobuf beyond reading ``authpb.Permission`` fields.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from etcdx.pb import auth_pb2

READ = auth_pb2.Permission.READ
WRITE = auth_pb2.Permission.WRITE
READWRITE = auth_pb2.Permission.READWRITE

Interval = tuple[bytes, bytes | None]
"""``[begin, end)`` over byte strings; ``end`` None is unbounded."""


def grant_interval(key: bytes, range_end: bytes) -> Interval | None:
    """The keys a grant covers, or None when it covers none (see module docstring)."""
    if not key:
        return None
    if not range_end:
        return key, key + b"\0"
    if range_end == b"\0":
        return key, None
    if range_end <= key:
        return None
    return key, range_end


class IntervalSet:
    """A union of intervals, kept as sorted, disjoint, non-touching intervals.

    ``covers`` is one binary search: at most one merged interval can start at
    or before the query's begin and reach its end.
    """

    __slots__ = ("_begins", "_ends")

    def __init__(self, intervals: Iterable[Interval] = ()) -> None:
        merged: list[list] = []
        for begin, end in sorted(intervals, key=lambda ivl: ivl[0]):
            if merged and (merged[-1][1] is None or merged[-1][1] >= begin):
                last = merged[-1]
                if last[1] is not None and (end is None or end > last[1]):
                    last[1] = end
                continue
            merged.append([begin, end])
        self._begins = [m[0] for m in merged]
        self._ends = [m[1] for m in merged]

    def intervals(self) -> list[Interval]:
        return list(zip(self._begins, self._ends))

    def covers(self, begin: bytes, end: bytes | None) -> bool:
        """Whether every key in ``[begin, end)`` is in the set (``end`` None: unbounded)."""
        i = bisect.bisect_right(self._begins, begin) - 1
        if i < 0:
            return False
        stop = self._ends[i]
        if stop is None:
            return True
        if end is None:
            return False
        return stop >= end

    def contains_key(self, key: bytes) -> bool:
        return self.covers(key, key + b"\0")

    def __bool__(self) -> bool:
        return bool(self._begins)

    def __repr__(self) -> str:
        return f"IntervalSet({self.intervals()!r})"


@dataclass(frozen=True, slots=True)
class UserPermissions:
    """What one user may do: merged read and write ranges, or everything (root role)."""

    is_root: bool
    read: IntervalSet
    write: IntervalSet

    @classmethod
    def merge(cls, roles: Iterable[str], grants: Iterable[auth_pb2.Permission]) -> UserPermissions:
        """Merge the grants of a user's roles; ``roles`` decides root, ``grants`` the ranges."""
        is_root = "root" in roles
        read: list[Interval] = []
        write: list[Interval] = []
        for perm in grants:
            ivl = grant_interval(perm.key, perm.range_end)
            if ivl is None:
                continue
            if perm.permType in (READ, READWRITE):
                read.append(ivl)
            if perm.permType in (WRITE, READWRITE):
                write.append(ivl)
        return cls(is_root, IntervalSet(read), IntervalSet(write))

    def allows(self, key: bytes, range_end: bytes, perm: int) -> bool:
        """Whether the user may ``perm`` (READ or WRITE; READWRITE means both) the request range.

        ``range_end`` as in a request: empty for one key, ``\\0`` for every key from ``key``.
        """
        if self.is_root:
            return True
        if perm == READWRITE:
            return self.allows(key, range_end, READ) and self.allows(key, range_end, WRITE)
        ranges = self.read if perm == READ else self.write
        return ranges.covers(*request_interval(key, range_end))


def request_interval(key: bytes, range_end: bytes) -> Interval:
    """The keys a request names, as the permission check sees them (see module docstring)."""
    if range_end == b"\0":
        return key, None
    if not range_end or range_end <= key:
        return key, key + b"\0"
    return key, range_end
