"""Errors the raft core and its storage raise.

They are exceptions rather than return codes because each one is off the hot
path: a dropped proposal, a read below the compaction point, a stale snapshot.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base class of every error raised by ``etcdx.raft``."""


class ProposalDropped(RaftError):
    """A proposal was not appended: no leader is known, a leader transfer is in
    progress, forwarding is disabled, this node was removed, or the
    uncommitted-size limit was reached. The caller may retry later."""


class CompactedError(RaftError):
    """The requested index precedes the first index kept in storage."""


class UnavailableError(RaftError):
    """The requested index is beyond the last index in storage."""


class SnapOutOfDateError(RaftError):
    """A snapshot older than (or as old as) the current one was offered."""


class StepLocalMessageError(RaftError):
    """A local-only message type (HUP, BEAT, ...) arrived through ``RawNode.step``."""


class ConfChangeError(RaftError):
    """A configuration change cannot be applied to the current configuration."""
