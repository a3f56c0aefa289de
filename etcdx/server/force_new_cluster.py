"""``--force-new-cluster``: a member of a cluster that lost its quorum restarts alone.

As etcd does it: the member keeps its data, member id and cluster id; every
entry of its WAL after its last known commit index is discarded (nothing
acknowledged a client can be among them: an acknowledged write was committed
on a quorum, and this member may simply not have learned it); and the log
gets one committed entry per other member that removes it. Those removals are
written to the WAL and applied like any membership change, so raft's
configuration, the ``members`` bucket and ``members_removed`` all agree, and a
later restart without the flag stays a one-member cluster. Members can then
be added again with MemberAdd; the removed ones can never come back (their
ids are remembered as removed), as in etcd.

Pure: the boot path reads the WAL and backend, calls ``plan``, and persists
what it returns before the member starts.
"""

from __future__ import annotations

from dataclasses import dataclass

from etcdx.raft.codec import decode_conf_change, encode_conf_change
from etcdx.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
)


class ForceNewClusterError(ValueError):
    """This member cannot become a one-member cluster; the message says why."""


@dataclass
class Plan:
    """The log a member forced into a new cluster restarts with."""

    entries: list[Entry]  # the committed tail it keeps, then ``appended``
    appended: list[Entry]  # to write to the WAL after the commit index (they replace the discarded tail)
    hard_state: HardState  # commit covers ``appended``
    removed: list[int]  # the other members' ids
    discarded: int  # uncommitted entries dropped from the WAL's tail


def members_after(cs: ConfState, entries: list[Entry]) -> tuple[set[int], set[int]]:
    """Voters and learners once ``entries`` (committed, after the state ``cs``) are applied."""
    voters, learners = set(cs.voters) | set(cs.voters_outgoing), set(cs.learners) | set(cs.learners_next)
    for e in entries:
        if e.type not in (EntryType.CONF_CHANGE, EntryType.CONF_CHANGE_V2):
            continue
        cc = decode_conf_change(e)
        for kind, nid in ([(c.type, c.node_id) for c in cc.changes] if isinstance(cc, ConfChangeV2)
                          else [(cc.type, cc.node_id)]):
            if kind == ConfChangeType.ADD_NODE:
                learners.discard(nid)
                voters.add(nid)
            elif kind == ConfChangeType.ADD_LEARNER_NODE:
                voters.discard(nid)
                learners.add(nid)
            elif kind == ConfChangeType.REMOVE_NODE:
                voters.discard(nid)
                learners.discard(nid)
    return voters, learners


def plan(member_id: int, hs: HardState, cs: ConfState, tail: list[Entry]) -> Plan:
    """What to write so this member restarts as the only one.

    ``cs`` is the configuration as of the backend's applied index, ``tail``
    the WAL's entries after it, ``hs`` the WAL's hard state.
    """
    if cs.voters_outgoing:
        raise ForceNewClusterError("the membership is in the middle of a joint configuration change")
    committed = [e for e in tail if e.index <= hs.commit]
    voters, learners = members_after(cs, committed)
    if member_id in learners:
        raise ForceNewClusterError("this member is a learner: a one-member cluster needs a voter")
    if member_id not in voters:
        raise ForceNewClusterError("this member is not in the cluster's configuration (it was removed)")
    others = sorted((voters | learners) - {member_id})
    first = hs.commit + 1
    appended = [Entry(term=hs.term, index=first + i, type=EntryType.CONF_CHANGE,
                      data=encode_conf_change(ConfChange(type=ConfChangeType.REMOVE_NODE, node_id=nid)))
                for i, nid in enumerate(others)]
    discarded = len(tail) - len(committed)
    if discarded and not appended:
        # Already alone: an empty entry still has to overwrite the discarded tail in the WAL, or a
        # later restart would read it back and commit it.
        appended = [Entry(term=hs.term, index=first)]
    last = appended[-1].index if appended else hs.commit
    return Plan(committed + appended, appended, HardState(hs.term, hs.vote, last), others, discarded)
