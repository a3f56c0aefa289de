"""Streaming a backend snapshot to a peer on a connection of its own.

A snapshot can be gigabytes; on the raft stream it would hold up heartbeats
and appends for the whole transfer, so it gets a dedicated ``snapshot``
connection: one frame with the SNAP message, ``u64`` size, the file's bytes,
then the receiver's ``OK\\n`` once the file is durable under its final name.
Disk I/O runs in worker threads so the loop keeps serving raft traffic.
"""

from __future__ import annotations

import asyncio
import os

from etcdx.raft.codec import encode_message
from etcdx.raft.types import Message, MessageType

from .conn import Conn, read_frame
from .errors import TransportError
from .wire import OK_LINE, U64, decode_wire_message, frame

CHUNK = 1 << 20
ACK_TIMEOUT = 60.0
"""How long the sender waits for the receiver to fsync and rename a file it has fully received."""

PREPARE_TIMEOUT = 120.0
"""How long the receiver waits for the first bytes: the sender dials before it asks the server
for the snapshot file (no copy of the backend for an unreachable peer), and the copy takes time."""


def snapshot_db_path(snapshot_dir: str, index: int) -> str:
    """Where a received backend snapshot for raft index ``index`` lands."""
    return os.path.join(snapshot_dir, f"{index:016x}.snap.db")


async def send_snapshot(conn: Conn, msg: Message, path: str, io_timeout: float) -> int:
    """Send ``msg`` and the file at ``path``; return the bytes sent once the receiver acknowledged."""
    reader, writer = conn
    f = await asyncio.to_thread(open, path, "rb")
    try:
        size = os.fstat(f.fileno()).st_size
        head = frame(encode_message(msg)) + U64.pack(size)
        writer.write(head)
        remaining = size
        next_chunk = asyncio.ensure_future(asyncio.to_thread(f.read, min(CHUNK, remaining)))
        try:
            while remaining:
                chunk = await next_chunk
                if not chunk:
                    raise TransportError(f"snapshot file {path} shrank while being sent")
                remaining -= len(chunk)
                if remaining:  # read the next chunk while this one drains
                    next_chunk = asyncio.ensure_future(asyncio.to_thread(f.read, min(CHUNK, remaining)))
                writer.write(chunk)
                async with asyncio.timeout(io_timeout):
                    await writer.drain()
        finally:
            if not next_chunk.done():
                next_chunk.cancel()
                await asyncio.gather(next_chunk, return_exceptions=True)
    finally:
        f.close()
    async with asyncio.timeout(ACK_TIMEOUT):
        answer = await reader.readuntil(b"\n")
    if answer != OK_LINE:
        raise TransportError(f"snapshot rejected by peer: {answer[:120]!r}")
    return len(head) + size


async def receive_snapshot(conn: Conn, snapshot_dir: str, io_timeout: float,
                           receiving: set[int]) -> tuple[Message, int]:
    """Receive one snapshot, make it durable at ``snapshot_db_path``, acknowledge it.

    Returns the SNAP message (for the caller to deliver only now that the file
    exists) and the bytes received. ``receiving`` holds the indexes being
    received: a second sender of the same index (a new leader) is turned away
    rather than let two writers share one ``.part`` file.
    """
    reader, writer = conn
    async with asyncio.timeout(PREPARE_TIMEOUT):
        payload = await read_frame(reader)
    async with asyncio.timeout(io_timeout):
        (size,) = U64.unpack(await reader.readexactly(8))
    msg = decode_wire_message(payload)
    if msg.type != MessageType.SNAP or msg.snapshot is None:
        raise ValueError(f"snapshot connection carried a {msg.type.name} message")
    index = msg.snapshot.metadata.index
    if index in receiving:
        raise ValueError(f"a snapshot at index {index} is already being received")
    receiving.add(index)
    try:
        await _receive_file(reader, snapshot_db_path(snapshot_dir, index), size, io_timeout)
    finally:
        receiving.discard(index)
    writer.write(OK_LINE)
    async with asyncio.timeout(io_timeout):
        await writer.drain()
    return msg, len(payload) + 12 + size


async def _receive_file(reader: asyncio.StreamReader, path: str, size: int, io_timeout: float) -> None:
    """``size`` bytes from ``reader`` into ``path``: written to ``.part``, fsynced, renamed into place."""
    snapshot_dir = os.path.dirname(path) or "."
    part = path + ".part"
    await asyncio.to_thread(os.makedirs, snapshot_dir, exist_ok=True)
    f = await asyncio.to_thread(open, part, "wb")
    try:
        remaining = size
        while remaining:
            async with asyncio.timeout(io_timeout):
                chunk = await reader.readexactly(min(CHUNK, remaining))
            await asyncio.to_thread(f.write, chunk)
            remaining -= len(chunk)
        await asyncio.to_thread(_sync_and_close, f)
        await asyncio.to_thread(_publish, part, path)
    except BaseException:
        f.close()
        _remove(part)  # small and rare: not worth a thread hop on a failure path
        raise


def _sync_and_close(f) -> None:
    f.flush()
    os.fsync(f.fileno())
    f.close()


def _publish(part: str, path: str) -> None:
    os.replace(part, path)
    fd = os.open(os.path.dirname(path) or ".", os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself must survive a crash
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
