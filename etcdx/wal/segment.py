"""Segment files: naming, creation that is atomic on disk, and directory durability.

A segment is ``<seq>-<first index>.wal`` (16 hex digits each): ``seq`` counts up
from 0 without gaps, and ``first index`` is the lowest index its first batch can
hold, so every entry of an older segment is below it (which is what lets
``release_to`` drop whole segments by name alone).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
from dataclasses import dataclass

from etcdx.wal.errors import WALLockedError

SUFFIX = ".wal"
_PARTIAL = ".wal.tmp"
_NAME = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.wal$")


@dataclass(frozen=True, order=True, slots=True)
class SegmentName:
    seq: int
    first_index: int

    @property
    def filename(self) -> str:
        return f"{self.seq:016x}-{self.first_index:016x}{SUFFIX}"

    @classmethod
    def parse(cls, filename: str) -> SegmentName | None:
        m = _NAME.match(filename)
        return cls(int(m.group(1), 16), int(m.group(2), 16)) if m else None


def list_segments(dirpath: str) -> list[SegmentName]:
    names = (SegmentName.parse(f) for f in os.listdir(dirpath))
    return sorted(n for n in names if n is not None)


def remove_partial(dirpath: str) -> None:
    """Delete segments whose creation a crash interrupted before their rename."""
    for f in os.listdir(dirpath):
        if f.endswith(_PARTIAL):
            os.unlink(os.path.join(dirpath, f))


def fsync_dir(dirpath: str) -> None:
    """Make creations, renames and deletions in ``dirpath`` durable."""
    fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def preallocate(fd: int, size: int) -> None:
    """Reserve the segment's blocks up front, so running out of disk shows at roll time.

    Where the filesystem cannot, the segment simply grows as it is written.
    """
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise


def create_segment(dirpath: str, name: SegmentName, head: bytes, size: int) -> int:
    """Create a segment holding ``head``, durably and all-or-nothing; return an fd on it.

    The file is written and synced under a temporary name and then renamed, so
    a crash never leaves a visible segment without its leading records.
    """
    path = os.path.join(dirpath, name.filename)
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        preallocate(fd, size)
        write_all(fd, head, 0)
        os.fsync(fd)
        os.rename(tmp, path)
        fsync_dir(dirpath)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_all(fd: int, buf: bytes, offset: int) -> None:
    """pwrite ``buf`` at ``offset``: one system call unless the kernel writes short."""
    done = os.pwrite(fd, buf, offset)
    while done < len(buf):
        done += os.pwrite(fd, memoryview(buf)[done:], offset + done)


def lock_dir(dirpath: str) -> int:
    """Take the directory's exclusive writer lock; return the fd that holds it.

    flock is released when the fd is closed or the process dies, so a member
    killed with -9 never leaves a stale lock behind.
    """
    fd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise WALLockedError(dirpath) from None
    return fd
