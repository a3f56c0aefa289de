"""Bugs planted into one RawNode's raft core, each breaking one safety property.

Each is an ``on_raw_node`` hook: it replaces a bound method of the node's
``Raft`` (or of the RawNode) with a faulty version, exactly where a real
implementation slip would sit; ``send_before_persisting`` is a faulty host
plan instead (``Options.plan``), the ordering slip a server could make.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from etcdx.raft import HardState, MessageType, RawNode, Ready, host


def _plant(obj: object, name: str, buggy: Callable) -> None:
    """Replace a method on one instance; fail loudly if the core renamed it."""
    assert callable(getattr(obj, name, None)), f"{type(obj).__name__}.{name} is gone"
    setattr(obj, name, buggy)


def count_stale_term_votes(node: RawNode) -> None:
    """A candidate counts a vote granted in an earlier term as a vote for its current one."""
    raft = node.raft
    step = raft.step

    def buggy_step(m):
        if m.type == MessageType.VOTE_RESP and not m.reject and 0 < m.term < raft.term:
            m = dataclasses.replace(m, term=raft.term)
        step(m)

    _plant(raft, "step", buggy_step)


def commit_previous_term_by_counting_replicas(node: RawNode) -> None:
    """The leader commits whatever a quorum holds, even entries of earlier terms (Raft figure 8)."""
    raft = node.raft

    def buggy_maybe_commit() -> bool:
        index = raft.trk.committed()
        if index > raft.log.committed:
            raft.log.commit_to(index)
            return True
        return False

    _plant(raft, "_maybe_commit", buggy_maybe_commit)


def read_index_without_quorum_round(node: RawNode) -> None:
    """The leader answers ReadIndex at once, without confirming it still leads."""
    raft = node.raft

    def buggy_read_index_as_leader(m) -> None:
        raft._respond_to_read_index(m, raft.log.committed)

    _plant(raft, "_read_index_as_leader", buggy_read_index_as_leader)


def skip_persisting_the_vote(node: RawNode) -> None:
    """The hard state handed to the host for persisting leaves out the vote just cast."""
    ready = node.ready

    def buggy_ready():
        rd = ready()
        if rd.hard_state is not None:
            rd.hard_state = HardState(
                term=rd.hard_state.term, commit=rd.hard_state.commit
            )
        return rd

    _plant(node, "ready", buggy_ready)


def accept_appends_without_matching_previous_entry(node: RawNode) -> None:
    """A follower appends entries without checking that its log matches at the previous index."""
    raft = node.raft
    handle_append = raft._handle_append

    def buggy_handle_append(m):
        log = raft.log
        if log.committed <= m.index <= log.last_index():
            m = dataclasses.replace(m, log_term=log.term(m.index))
        handle_append(m)

    _plant(raft, "_handle_append", buggy_handle_append)


def vote_twice_in_one_term(node: RawNode) -> None:
    """A node forgets whom it voted for in this term whenever another candidate asks."""
    raft = node.raft
    step = raft.step

    def buggy_step(m):
        if m.type == MessageType.VOTE and m.term == raft.term and raft.lead == 0:
            raft.vote = 0
        step(m)

    _plant(raft, "step", buggy_step)


def grant_votes_to_stale_logs(node: RawNode) -> None:
    """A voter skips the check that the candidate's log is at least as up to date as its own."""
    log = node.raft.log
    raft = node.raft
    step = raft.step

    def buggy_step(m):
        if m.type in (MessageType.VOTE, MessageType.PRE_VOTE):
            m = dataclasses.replace(m, index=log.last_index(), log_term=log.last_term())
        step(m)

    _plant(raft, "step", buggy_step)


def apply_one_entry_past_commit(node: RawNode) -> None:
    """An off-by-one hands the host the entry after the commit index for applying."""
    raft = node.raft
    ready = node.ready

    def buggy_ready():
        rd = ready()
        log = raft.log
        nxt = log.committed + 1
        if (
            rd.committed_entries
            and nxt <= log.last_index()
            and rd.committed_entries[-1].index == nxt - 1
        ):
            rd.committed_entries = [*rd.committed_entries, *log.slice(nxt, nxt + 1)]
            log.applying_to(nxt)
        return rd

    _plant(node, "ready", buggy_ready)


def send_before_persisting(rd: Ready, leader: bool) -> list[host.Step]:
    """A host that sends every message of a Ready before writing it, votes and append acks
    of followers included (a plan for ``Options.plan``, not a raft-core hook)."""
    steps = host.plan(rd, leader)
    msgs = [m for s in steps if s.kind is host.StepKind.SEND for m in s.messages]
    rest = [s for s in steps if s.kind is not host.StepKind.SEND]
    return ([host.Step(host.StepKind.SEND, msgs)] if msgs else []) + rest
