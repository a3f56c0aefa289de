"""The knobs of one raft node."""

from __future__ import annotations

import random
from dataclasses import dataclass

from etcdx.raft.errors import RaftError
from etcdx.raft.read_only import ReadOnlyOption
from etcdx.raft.storage import Storage
from etcdx.raft.types import NONE


@dataclass
class Config:
    """Timeouts are in ticks; the host decides how long a tick is.

    The election timeout is drawn from ``[election_tick, 2*election_tick)``
    with ``rand`` at every term change, so nodes rarely time out together.
    """

    id: int
    storage: Storage
    election_tick: int = 10
    heartbeat_tick: int = 1
    applied: int = 0  # last applied index when restarting
    max_size_per_msg: int = 1 << 20  # bytes of entry data per MsgApp (at least one entry is sent)
    max_inflight_msgs: int = 256  # appends in flight to one follower in REPLICATE state
    max_uncommitted_entries_size: int = 0  # bytes of data proposed but not committed; 0 = unlimited
    max_committed_size_per_ready: int = 0  # bytes of committed entry data per Ready (at least one entry); 0 = unlimited
    check_quorum: bool = True
    pre_vote: bool = True
    read_only_option: ReadOnlyOption = ReadOnlyOption.SAFE
    disable_proposal_forwarding: bool = False
    rand: random.Random | None = None  # None -> random.Random(id)

    def validate(self) -> None:
        if self.id == NONE:
            raise RaftError("cannot use 0 as id")
        if self.heartbeat_tick <= 0:
            raise RaftError("heartbeat tick must be greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise RaftError("election tick must be greater than heartbeat tick")
        if self.max_inflight_msgs <= 0:
            raise RaftError("max inflight messages must be greater than 0")
        if self.read_only_option == ReadOnlyOption.LEASE_BASED and not self.check_quorum:
            raise RaftError("check_quorum must be enabled when read_only_option is LEASE_BASED")
