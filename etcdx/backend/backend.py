"""The embedded storage engine: one LMDB environment with etcd's buckets.

Durability contract: the backend runs with ``sync=False, metasync=False``;
every acknowledged write is already durable in the WAL, and boot replays the
WAL from ``consistent_index()``. A committed write transaction is in the OS
page cache, so it survives a process crash (kill -9) intact: LMDB's
copy-on-write pages and double meta page mean an interrupted write leaves the
previous committed state. On power loss, transactions committed since the last
``sync()`` may be lost (the database rolls back to an older consistent state,
and the WAL replays the difference). LMDB promises that rollback only where
the filesystem preserves write order; elsewhere the file may be corrupt after
a power loss and the member must be rebuilt from a peer's snapshot. So the
server calls ``sync()`` periodically and always before it releases WAL
segments that the backend may still need.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from typing import BinaryIO, Callable, Iterator

import lmdb

from etcdx.backend import buckets
from etcdx.backend.txn import ReadTxn, WriteTxn

_DATA_FILE = "data.mdb"


class _SwapGuard:
    """Keeps the LMDB environment open while other threads use it.

    Long reads (hashes, snapshot copies) run on worker threads so the event
    loop that ticks raft keeps going; swapping the file in (defragment, a
    snapshot from the leader) closes the environment, which must not happen
    under them. Holders share; a swap waits for them to leave and holds new
    ones back until it is done.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._holders = 0
        self._swapping = False

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._holders += 1
        try:
            yield
        finally:
            with self._cond:
                self._holders -= 1
                self._cond.notify_all()

    def begin_swap(self) -> None:
        """Block until no thread holds the environment; until ``end_swap`` none can."""
        with self._cond:
            while self._swapping:
                self._cond.wait()
            self._swapping = True
            while self._holders:
                self._cond.wait()

    def end_swap(self) -> None:
        with self._cond:
            self._swapping = False
            self._cond.notify_all()

    @property
    def swapping(self) -> bool:
        return self._swapping


class Backend:
    """Named buckets in one LMDB environment at directory ``path``.

    Threads: transactions belong to the thread that began them. Code on
    another thread than the one that swaps the file in (``replace_with``)
    wraps its use of the backend in ``hold()``.
    """

    def __init__(self, path: str, *, map_size: int = 64 << 30, readonly: bool = False) -> None:
        self._path = path
        self._map_size = map_size
        self._readonly = readonly
        self._guard = _SwapGuard()
        self.on_commit: Callable[[float], None] | None = None  # each write txn's commit duration, in seconds
        if not readonly:
            self.recover_swap(path)
            os.makedirs(path, exist_ok=True)
        self._open()

    def _open(self) -> None:
        self._env = lmdb.open(
            self._path, map_size=self._map_size, max_dbs=len(buckets.ALL),
            readonly=self._readonly, sync=False, metasync=False, readahead=False,
            max_readers=1024, lock=True,
        )
        self._dbs = {name: self._env.open_db(name, create=not self._readonly)
                     for name in buckets.ALL}
        self._inode = os.stat(os.path.join(self._path, _DATA_FILE)).st_ino

    @property
    def path(self) -> str:
        return self._path

    def read(self) -> ReadTxn:
        return ReadTxn(self._env.begin(), self._dbs)

    def write(self) -> WriteTxn:
        """Begin the write transaction; blocks while another one is open."""
        return WriteTxn(self._env.begin(write=True), self._dbs, self.on_commit)

    def consistent_index(self) -> tuple[int, int]:
        """(index, term) of the last raft entry whose effects are stored; (0, 0) when new."""
        with self.read() as txn:
            index = txn.get(buckets.META, buckets.META_CONSISTENT_INDEX)
            term = txn.get(buckets.META, buckets.META_TERM)
        return (int.from_bytes(index, "big") if index else 0,
                int.from_bytes(term, "big") if term else 0)

    def size(self) -> int:
        """Bytes the database file occupies (etcd's dbSize)."""
        return os.path.getsize(os.path.join(self._path, _DATA_FILE))

    def size_in_use(self) -> int:
        """Bytes of pages holding live data (etcd's dbSizeInUse); the rest is free pages."""
        page_size = self._env.stat()["psize"]
        with self._env.begin() as txn:
            stats = [txn.stat(db) for db in self._dbs.values()]
        stats.append(self._env.stat())
        pages = sum(s["branch_pages"] + s["leaf_pages"] + s["overflow_pages"] for s in stats)
        return (pages + 2) * page_size  # + the two meta pages

    def hold(self) -> contextlib.AbstractContextManager[None]:
        """Keep the environment open for this thread's use (see ``_SwapGuard``)."""
        return self._guard.hold()

    def begin_swap(self) -> None:
        """Wait (blocking: call it off the event loop) until no thread holds the
        environment; ``replace_with`` may then run without waiting. Pair with ``end_swap``."""
        self._guard.begin_swap()

    def end_swap(self) -> None:
        self._guard.end_swap()

    def copy_compacted(self, dest_dir: str) -> str:
        """A consistent, compacted copy of the database (no free pages) in ``dest_dir``;
        the path of its data file. Safe on any thread."""
        with self.hold():
            self._env.copy(dest_dir, compact=True)
        return os.path.join(dest_dir, _DATA_FILE)

    def defragment(self) -> None:
        """Rewrite the database without free pages and swap it in.

        Writes committed during the copy would be lost: the caller holds them
        back. Other processes that opened the same path keep reading the old
        file until they call ``reopen_if_replaced``.
        """
        tmp = self.scratch_dir("defrag")
        try:
            self.replace_with(self.copy_compacted(tmp))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def replace_with(self, data_file: str) -> None:
        """Make the LMDB file ``data_file`` this backend's database (a snapshot from
        the leader, a defragmented copy) and reopen; ``data_file`` is moved.

        No transaction of this thread may be open; threads holding the
        environment are waited for, unless the caller already did (``begin_swap``).

        The new file goes into a fresh directory that is swapped in for the old
        one, never over the old ``data.mdb``: LMDB keeps the last transaction id
        in the lock file shared by every process with the environment open, and
        a foreign file read through a stale lock picks the wrong meta page.
        A crash between the two renames is finished by ``recover_swap``.
        """
        own = not self._guard.swapping
        if own:
            self._guard.begin_swap()
        try:
            self._swap(data_file)
        finally:
            if own:
                self._guard.end_swap()

    def _swap(self, data_file: str) -> None:
        new_dir = self._path + ".new"
        old_dir = self._path + ".old"
        shutil.rmtree(new_dir, ignore_errors=True)
        shutil.rmtree(old_dir, ignore_errors=True)
        os.makedirs(new_dir)
        os.replace(data_file, os.path.join(new_dir, _DATA_FILE))
        _fsync_dir(new_dir)
        self._env.close()
        os.replace(self._path, old_dir)
        os.replace(new_dir, self._path)
        _fsync_dir(os.path.dirname(os.path.abspath(self._path)))
        self._open()
        shutil.rmtree(old_dir, ignore_errors=True)

    @staticmethod
    def recover_swap(path: str) -> None:
        """Finish a ``replace_with`` interrupted by a crash; call before opening ``path``."""
        if not os.path.exists(path) and os.path.exists(os.path.join(path + ".new", _DATA_FILE)):
            os.replace(path + ".new", path)
        shutil.rmtree(path + ".new", ignore_errors=True)
        shutil.rmtree(path + ".old", ignore_errors=True)

    def snapshot(self, out: BinaryIO) -> None:
        """Write a consistent point-in-time copy of the database file to ``out``.

        The copy is compacted (no free pages) and opens as a ``Backend``
        directory's ``data.mdb``. Safe on any thread.
        """
        tmp = self.scratch_dir("snapshot")
        try:
            with open(self.copy_compacted(tmp), "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def scratch_dir(self, purpose: str) -> str:
        """A new directory beside the backend's (same filesystem, so renames are atomic)."""
        parent, name = os.path.split(os.path.abspath(self._path))
        return tempfile.mkdtemp(prefix=f"{name}.{purpose}.", dir=parent)

    def reopen_if_replaced(self) -> bool:
        """Reopen when another process swapped the database file (defragment or
        snapshot restore); True if it did. For read-only openers, which keep
        reading the old file otherwise; no transaction may be open."""
        if os.stat(os.path.join(self._path, _DATA_FILE)).st_ino == self._inode:
            return False
        self._env.close()
        self._open()
        return True

    def reader_check(self) -> int:
        """Free reader slots left by dead processes (a killed API worker), so their
        stale snapshots stop pinning old pages; returns how many were cleared."""
        return self._env.reader_check()

    def sync(self) -> None:
        """Flush committed transactions to stable storage (fsync)."""
        self._env.sync(True)

    def close(self) -> None:
        """Sync (unless read-only) and close; the backend is unusable afterwards."""
        if not self._readonly:
            self.sync()
        self._env.close()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
