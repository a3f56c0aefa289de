"""Member-to-member transport: raft messages, snapshots and calls between etcdx members.

Why it is shaped this way:

- **One stream per direction.** Each member dials each peer once and only
  writes its own raft messages on that connection; the peer's messages come
  back on the connection the peer dialled. This mirrors etcd's per-direction
  streams, keeps a link's failure and back-pressure local to one direction,
  and lets the fault-injecting test proxy cut, delay or drop one link
  (A→B but not B→A) by reading the handshake line.
- **Snapshots on their own connection.** A multi-megabyte backend snapshot on
  the raft stream would hold up heartbeats and appends behind it for the whole
  transfer and make the follower look dead; a separate ``snapshot``
  connection streams the file while the raft stream keeps flowing.
- **Calls pipelined on a third connection**, for lease keep-alives forwarded
  to the leader and membership discovery by a joining member (``fetch``).
- **TLS by URL scheme** (``security.py``): every connection to an ``https``
  peer URL is TLS (stream, snapshot, calls, ``fetch``), mutual when the peer
  settings verify client certificates; an ``https`` listener never answers in
  plaintext, and refuses untrusted, revoked or not-allowed certificates at or
  right after the handshake. The handshake line then travels inside TLS, so
  the fault-injecting test proxy cannot tell such links apart.

What the host (``etcdx.server``) may rely on:

- ``send()`` never blocks and never calls back before it returns; unreachable
  and snapshot reports come later from a loop callback or a transport task, so
  raft is not re-entered while a Ready is being handled. ``on_messages`` runs
  on the loop, once per received frame, and may itself call ``send()``.
- Per sender and receiver, stream messages arrive in ``send()`` order. On a
  failed connection the queued ones are dropped and ``on_unreachable`` fires;
  while the stream is down sends are dropped (and reported), and messages
  sent before the first connection attempt ends are queued. SNAP messages
  take their own connection and may overtake or trail stream messages.
- A received snapshot is durable at ``snapshot_db_path(snapshot_dir, index)``
  before its SNAP message reaches ``on_messages``.
"""

from .call import fetch
from .errors import RemoteError, TransportError
from .snapshot import snapshot_db_path
from .transport import Transport

__all__ = ["RemoteError", "Transport", "TransportError", "fetch", "snapshot_db_path"]
