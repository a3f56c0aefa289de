"""The Raft state machine: one node's role, term, log and the messages it must send.

Pure: input arrives through ``step`` (messages) and ``tick`` (logical time);
output accumulates in ``msgs`` and ``read_states`` and in the log's unstable
part, which ``RawNode`` packs into a ``Ready``. Section numbers refer to the
Raft paper and Ongaro's thesis.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable

from etcdx.raft import confchange
from etcdx.raft.codec import conf_change_entry, decode_conf_change
from etcdx.raft.config import Config
from etcdx.raft.errors import CompactedError, ProposalDropped, RaftError, UnavailableError
from etcdx.raft.log import RaftLog
from etcdx.raft.progress import Progress, ProgressState
from etcdx.raft.quorum import VoteResult
from etcdx.raft.read_only import ReadOnly, ReadOnlyOption
from etcdx.raft.tracker import ProgressTracker, TrackerConfig
from etcdx.raft.types import (
    NONE,
    ConfChange,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Snapshot,
    SoftState,
    StateType,
)

MT = MessageType

CAMPAIGN_TRANSFER = b"CampaignTransfer"
"""Vote context of an election forced by leader transfer: it overrides the leader lease."""


class CampaignType(enum.Enum):
    PRE_ELECTION = 1
    ELECTION = 2
    TRANSFER = 3


_CONF_CHANGE_TYPES = (EntryType.CONF_CHANGE, EntryType.CONF_CHANGE_V2)


class Raft:
    """One node of a Raft group. Drive it through ``RawNode``."""

    def __init__(self, c: Config) -> None:
        c.validate()
        self.id = c.id
        self.log = RaftLog(c.storage, c.max_committed_size_per_ready or None)
        self.max_msg_size = c.max_size_per_msg
        self.max_uncommitted_size = c.max_uncommitted_entries_size
        self.trk = ProgressTracker(c.max_inflight_msgs)
        self.check_quorum = c.check_quorum
        self.pre_vote = c.pre_vote
        self.heartbeat_timeout = c.heartbeat_tick
        self.election_timeout = c.election_tick
        self.disable_proposal_forwarding = c.disable_proposal_forwarding
        self.rand = c.rand if c.rand is not None else random.Random(c.id)

        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.state = StateType.FOLLOWER
        self.is_learner = False
        self.msgs: list[Message] = []
        self.read_states: list[ReadState] = []
        self.lead_transferee = NONE
        # Index of the latest conf change the leader appended; a new one waits until it is applied.
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(c.read_only_option)
        # ReadIndex requests received before this leader committed an entry of its term.
        self.pending_read_index_messages: list[Message] = []
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = 0
        # Proposals were appended since the last broadcast; RawNode.ready() sends them in one go.
        self.append_pending = False
        self._step: Callable[[Message], None] = self._step_follower
        self._tick: Callable[[], None] = self._tick_election

        hs, cs = c.storage.initial_state()
        cfg, prs = confchange.restore(cs, self.log.last_index(), c.max_inflight_msgs)
        self._switch_to_config(cfg, prs)
        if not hs.is_empty():
            self._load_state(hs)
        if c.applied > self.log.applied:
            self.log.applied_to(c.applied)
        self.become_follower(self.term, NONE)

    # ----- state reported to the host

    def soft_state(self) -> SoftState:
        return SoftState(lead=self.lead, raft_state=self.state)

    def hard_state(self) -> HardState:
        return HardState(term=self.term, vote=self.vote, commit=self.log.committed)

    def _load_state(self, hs: HardState) -> None:
        if hs.commit > self.log.last_index():
            raise RaftError(f"hard state commit {hs.commit} is beyond the last index {self.log.last_index()}")
        # A snapshot persisted just before a crash may be newer than the hard state's commit;
        # everything a snapshot covers is committed, so keep the larger of the two.
        self.log.committed = max(self.log.committed, hs.commit)
        self.term = hs.term
        self.vote = hs.vote

    # ----- sending

    def _send(self, m: Message) -> None:
        if m.from_ == NONE:
            m.from_ = self.id
        t = m.type
        if t in (MT.VOTE, MT.VOTE_RESP, MT.PRE_VOTE, MT.PRE_VOTE_RESP):
            # Vote messages carry the term they are about, which for pre-votes is not ours.
            if m.term == 0:
                raise RaftError(f"term not set when sending {t.name}")
        elif t != MT.PROP and t != MT.READ_INDEX:
            # Proposals and read requests forwarded to the leader are local messages there: no term.
            m.term = self.term
        self.msgs.append(m)

    def _send_append(self, to: int, send_if_empty: bool = True) -> bool:
        """Send the entries ``to`` lacks (or a snapshot); False if nothing was sent."""
        pr = self.trk.progress[to]
        if pr.is_paused():
            return False
        log = self.log
        prev_index = pr.next - 1
        try:
            prev_term = log.term(prev_index)
            ents = log.entries(pr.next, self.max_msg_size)
        except (CompactedError, UnavailableError):
            return self._send_snapshot(to, pr)
        if not ents and not send_if_empty:
            return False
        pr.sent_append(ents[-1].index if ents else None)
        self._send(
            Message(type=MT.APP, to=to, index=prev_index, log_term=prev_term, entries=ents, commit=log.committed)
        )
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        # Only to a peer heard from recently: a snapshot is expensive to send to a dead node.
        if not pr.recent_active:
            return False
        snap = self.log.snapshot()
        if snap.is_empty():
            raise RaftError("need a non-empty snapshot")
        pr.become_snapshot(snap.metadata.index)
        self._send(Message(type=MT.SNAP, to=to, snapshot=snap))
        return True

    def _send_heartbeat(self, to: int, ctx: bytes) -> None:
        # Never tell a follower to commit beyond what it is known to have (it may lack those entries).
        commit = min(self.trk.progress[to].match, self.log.committed)
        self._send(Message(type=MT.HEARTBEAT, to=to, commit=commit, context=ctx))

    def bcast_append(self) -> None:
        for i in self.trk.sorted_ids():
            if i != self.id:
                self._send_append(i)

    def flush_appends(self) -> None:
        """Send the proposals appended since the last call, batched per follower."""
        if self.append_pending:
            self.append_pending = False
            if self.state == StateType.LEADER:
                for i in self.trk.sorted_ids():
                    if i != self.id:
                        self._send_append(i, send_if_empty=False)

    def _bcast_heartbeat(self) -> None:
        ctx = self.read_only.last_pending_request_ctx()
        if ctx:
            self.read_only.round_ctx = ctx
        for i in self.trk.sorted_ids():
            if i != self.id:
                self._send_heartbeat(i, ctx)

    # ----- leader helpers

    def _append_entry(self, es: list[Entry]) -> bool:
        """Append ``es`` (fresh entries, stamped here with term and index) to the leader's log."""
        li = self.log.last_index()
        term = self.term
        for i, e in enumerate(es, li + 1):
            e.term = term
            e.index = i
        if not self._increase_uncommitted_size(es):
            return False
        li = self.log.append(es)
        self.trk.progress[self.id].maybe_update(li)
        # Followers never acked beyond our previous last index, so our own append can move the
        # commit index only when we are the only voter.
        if self.trk.config.voters.ids() == {self.id}:
            self._maybe_commit()
        return True

    def _maybe_commit(self) -> bool:
        return self.log.maybe_commit(self.trk.committed(), self.term)

    def _increase_uncommitted_size(self, es: list[Entry]) -> bool:
        if self.max_uncommitted_size == 0:
            return True
        s = sum(len(e.data) for e in es)
        # Always admit a proposal when nothing is uncommitted, however large, so progress is possible.
        if self.uncommitted_size > 0 and s > 0 and self.uncommitted_size + s > self.max_uncommitted_size:
            return False
        self.uncommitted_size += s
        return True

    def reduce_uncommitted_size(self, committed: list[Entry]) -> None:
        if self.max_uncommitted_size == 0 or self.state != StateType.LEADER:
            return
        s = sum(len(e.data) for e in committed)
        self.uncommitted_size = max(0, self.uncommitted_size - s)

    def _committed_entry_in_current_term(self) -> bool:
        return self.log.zero_term_on_range_error(self.log.committed) == self.term

    # ----- role changes

    def _reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_election_timeout = self.election_timeout + self.rand.randrange(self.election_timeout)
        self.lead_transferee = NONE
        self.trk.reset_votes()
        last = self.log.last_index()
        max_inflight = self.trk.max_inflight
        for i, pr in self.trk.progress.items():
            npr = Progress(last + 1, max_inflight, pr.is_learner, match=last if i == self.id else 0)
            npr.recent_active = False
            self.trk.progress[i] = npr
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.read_only = ReadOnly(self.read_only.option)
        self.pending_read_index_messages = []
        self.append_pending = False

    def become_follower(self, term: int, lead: int) -> None:
        self._step = self._step_follower
        self._reset(term)
        self._tick = self._tick_election
        self.lead = lead
        self.state = StateType.FOLLOWER

    def become_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise RaftError("invalid transition [leader -> candidate]")
        self._step = self._step_candidate
        self._reset(self.term + 1)
        self._tick = self._tick_election
        self.vote = self.id
        self.state = StateType.CANDIDATE

    def become_pre_candidate(self) -> None:
        if self.state == StateType.LEADER:
            raise RaftError("invalid transition [leader -> pre-candidate]")
        # A pre-candidate changes neither term nor vote: a failed pre-election leaves no trace (thesis §9.6).
        self._step = self._step_candidate
        self.trk.reset_votes()
        self._tick = self._tick_election
        self.lead = NONE
        self.state = StateType.PRE_CANDIDATE

    def become_leader(self) -> None:
        if self.state == StateType.FOLLOWER:
            raise RaftError("invalid transition [follower -> leader]")
        self._step = self._step_leader
        self._reset(self.term)
        self._tick = self._tick_heartbeat
        self.lead = self.id
        self.state = StateType.LEADER
        pr = self.trk.progress[self.id]
        pr.become_replicate()
        pr.recent_active = True
        # Conservatively treat any conf change in the uncommitted tail as pending.
        self.pending_conf_index = self.log.last_index()
        # An entry of the new term lets earlier entries commit (§5.4.2) and unblocks ReadIndex.
        self._append_entry([Entry()])

    def _promotable(self) -> bool:
        pr = self.trk.progress.get(self.id)
        return pr is not None and not pr.is_learner and not self.log.has_pending_snapshot()

    def _hup(self, t: CampaignType) -> None:
        if self.state == StateType.LEADER or not self._promotable():
            return
        # A node must not campaign while it has committed but unapplied conf changes:
        # it does not yet know who the voters are.
        log = self.log
        if log.committed > log.applied:
            for e in log.slice(max(log.applied + 1, log.first_index()), log.committed + 1):
                if e.type in _CONF_CHANGE_TYPES:
                    return
        self._campaign(t)

    def _campaign(self, t: CampaignType) -> None:
        if t == CampaignType.PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg = MT.PRE_VOTE
            term = self.term + 1  # the term we would campaign in; ours stays unchanged
        else:
            self.become_candidate()
            vote_msg = MT.VOTE
            term = self.term
        if self._poll(self.id, True) == VoteResult.WON:
            # A single-voter config: we won already.
            if t == CampaignType.PRE_ELECTION:
                self._campaign(CampaignType.ELECTION)
            else:
                self.become_leader()
            return
        ctx = CAMPAIGN_TRANSFER if t == CampaignType.TRANSFER else b""
        last_index = self.log.last_index()
        last_term = self.log.last_term()
        for i in self.trk.voter_ids():
            if i == self.id:
                continue
            self._send(Message(type=vote_msg, to=i, term=term, log_term=last_term, index=last_index, context=ctx))

    def _poll(self, id: int, granted: bool) -> VoteResult:
        self.trk.record_vote(id, granted)
        return self.trk.tally_votes()[2]

    # ----- ticks

    def tick(self) -> None:
        self._tick()

    def _tick_election(self) -> None:
        self.election_elapsed += 1
        if self._promotable() and self.election_elapsed >= self.randomized_election_timeout:
            self.election_elapsed = 0
            self.step(Message(type=MT.HUP, from_=self.id))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                self.step(Message(type=MT.CHECK_QUORUM, from_=self.id))
            # A transfer that has not finished within an election timeout is abandoned.
            if self.state == StateType.LEADER and self.lead_transferee != NONE:
                self.abort_leader_transfer()
        if self.state != StateType.LEADER:
            return
        if self.heartbeat_elapsed >= self.heartbeat_timeout:
            self.heartbeat_elapsed = 0
            self.step(Message(type=MT.BEAT, from_=self.id))

    # ----- step

    def step(self, m: Message) -> None:
        """Handle one message; may raise ProposalDropped for a proposal that cannot be taken."""
        if m.term == 0:
            pass  # local message
        elif m.term > self.term:
            if m.type == MT.VOTE or m.type == MT.PRE_VOTE:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum and self.lead != NONE and self.election_elapsed < self.election_timeout
                )
                if not force and in_lease:
                    # We heard from a live leader within the minimum election timeout: the
                    # candidate is disruptive (e.g. just rejoined after a partition). Ignore it (§6 / §9.6).
                    return
            if m.type == MT.PRE_VOTE:
                pass  # a pre-vote never changes our term
            elif m.type == MT.PRE_VOTE_RESP and not m.reject:
                pass  # granted pre-votes carry the future term; our term moves when we win
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.from_)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.check_quorum or self.pre_vote) and m.type in (MT.HEARTBEAT, MT.APP):
                # A leader cut off by a partition may never see a higher-term vote (check-quorum makes us
                # ignore its peers' votes, pre-vote keeps their terms low), so tell it our term.
                self._send(Message(type=MT.APP_RESP, to=m.from_))
            elif m.type == MT.PRE_VOTE:
                self._send(Message(type=MT.PRE_VOTE_RESP, to=m.from_, term=self.term, reject=True))
            return

        t = m.type
        if t == MT.HUP:
            self._hup(CampaignType.PRE_ELECTION if self.pre_vote else CampaignType.ELECTION)
        elif t == MT.VOTE or t == MT.PRE_VOTE:
            can_vote = (
                self.vote == m.from_
                or (self.vote == NONE and self.lead == NONE)
                or (t == MT.PRE_VOTE and m.term > self.term)
            )
            resp_type = MT.VOTE_RESP if t == MT.VOTE else MT.PRE_VOTE_RESP
            if can_vote and self.log.is_up_to_date(m.index, m.log_term):
                # Granted pre-votes are answered in the candidate's future term so it does not drop them.
                self._send(Message(type=resp_type, to=m.from_, term=m.term))
                if t == MT.VOTE:
                    self.election_elapsed = 0
                    self.vote = m.from_
            else:
                self._send(Message(type=resp_type, to=m.from_, term=self.term, reject=True))
        else:
            self._step(m)

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.BEAT:
            self._bcast_heartbeat()
            return
        if t == MT.CHECK_QUORUM:
            if not self.trk.quorum_active():
                self.become_follower(self.term, NONE)
                return
            for i, pr in self.trk.progress.items():
                if i != self.id:
                    pr.recent_active = False
            return
        if t == MT.PROP:
            self._propose_as_leader(m)
            return
        if t == MT.READ_INDEX:
            self._read_index_as_leader(m)
            return

        pr = self.trk.progress.get(m.from_)
        if pr is None:
            return
        if t == MT.APP_RESP:
            self._handle_append_response(m, pr)
        elif t == MT.HEARTBEAT_RESP:
            self._handle_heartbeat_response(m, pr)
        elif t == MT.SNAP_STATUS:
            if pr.state != ProgressState.SNAPSHOT:
                return
            if m.reject:
                # Retry only after the next heartbeat response shows the peer is reachable.
                pr.pending_snapshot = 0
                pr.become_probe()
                pr.probe_sent = True
            else:
                pr.become_probe()
        elif t == MT.UNREACHABLE:
            # Sending failed: optimistic replication may have lost appends, so probe again.
            if pr.state == ProgressState.REPLICATE:
                pr.become_probe()
        elif t == MT.TRANSFER_LEADER:
            self._transfer_leader(m.from_, pr)

    def _propose_as_leader(self, m: Message) -> None:
        if not m.entries:
            raise RaftError("proposal without entries")
        if self.id not in self.trk.progress:
            raise ProposalDropped("this node was removed from the configuration")
        if self.lead_transferee != NONE:
            raise ProposalDropped("leadership transfer in progress")
        log = self.log
        if m.from_ == self.id:
            ents = m.entries  # made by our RawNode for this call alone
        else:
            # New Entry objects: a forwarded proposal may be delivered again (networks duplicate)
            # and entries are shared, immutable values once in the log.
            ents = [Entry(type=e.type, data=e.data) for e in m.entries]
        for i, e in enumerate(ents):
            if e.type not in _CONF_CHANGE_TYPES:
                continue
            cc = confchange.as_v2(decode_conf_change(e))
            already_pending = self.pending_conf_index > log.applied
            already_joint = self.trk.config.voters.is_joint()
            wants_leave = confchange.leaves_joint(cc)
            if already_pending or already_joint != wants_leave:
                # Only one conf change may be in flight; a refused one becomes an empty entry so
                # the proposal's index is still consumed and the host can see it was not applied.
                ents[i] = Entry()
            else:
                self.pending_conf_index = log.last_index() + i + 1
        if not self._append_entry(ents):
            raise ProposalDropped("too many uncommitted entries")
        self.append_pending = True

    def _handle_append_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                # The follower's log has term m.log_term at reject_hint: skip every entry of ours with a
                # larger term at or below it in one step (fast backtracking).
                next_probe = self.log.find_conflict_by_term(m.reject_hint, m.log_term)[0]
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._send_append(m.from_)
            return
        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.PROBE:
            pr.become_replicate()
        elif pr.state == ProgressState.SNAPSHOT:
            if pr.match + 1 >= self.log.first_index():
                # The snapshot (or an append) brought the follower up to where our log begins.
                pr.become_probe()
                pr.become_replicate()
        else:
            pr.inflights.free_le(m.index)
        if self._maybe_commit():
            self._release_pending_read_index_messages()
            self.bcast_append()
        elif old_paused:
            self._send_append(m.from_)
        # Keep the pipe full while the window allows and there is more to send.
        while self._send_append(m.from_, send_if_empty=False):
            pass
        if m.from_ == self.lead_transferee and pr.match == self.log.last_index():
            self._send_timeout_now(m.from_)

    def _handle_heartbeat_response(self, m: Message, pr: Progress) -> None:
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and pr.inflights.full():
            pr.inflights.free_first_one()
        if pr.match < self.log.last_index():
            self._send_append(m.from_)
        if self.read_only.option != ReadOnlyOption.SAFE or not m.context:
            return
        acks = self.read_only.recv_ack(m.from_, m.context)
        if acks is None or self.trk.config.voters.vote_result(acks) != VoteResult.WON:
            return
        for rs in self.read_only.advance(m.context):
            self._respond_to_read_index(rs.req, rs.index)
        if self.read_only.queue and self.read_only.round_ctx is None:
            # Requests that arrived during the finished round share the next one.
            self._bcast_heartbeat()

    def _transfer_leader(self, transferee: int, pr: Progress) -> None:
        if pr.is_learner:
            return
        if self.lead_transferee != NONE:
            if self.lead_transferee == transferee:
                return
            self.abort_leader_transfer()
        if transferee == self.id:
            return
        # The transfer must finish within one election timeout.
        self.election_elapsed = 0
        self.lead_transferee = transferee
        if pr.match == self.log.last_index():
            self._send_timeout_now(transferee)
        else:
            self._send_append(transferee)

    def _send_timeout_now(self, to: int) -> None:
        self._send(Message(type=MT.TIMEOUT_NOW, to=to))

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = NONE

    def _read_index_as_leader(self, m: Message) -> None:
        if self.trk.is_singleton():
            self._respond_to_read_index(m, self.log.committed)
            return
        if not self._committed_entry_in_current_term():
            # Our commit index may lag the previous leader's until an entry of our term commits (§6.4).
            self.pending_read_index_messages.append(m)
            return
        self._start_read_index(m)

    def _start_read_index(self, m: Message) -> None:
        if self.read_only.option == ReadOnlyOption.LEASE_BASED:
            self._respond_to_read_index(m, self.log.committed)
            return
        self.read_only.add_request(self.log.committed, m)
        self.read_only.recv_ack(self.id, m.entries[0].data)
        if self.read_only.round_ctx is None:
            self._bcast_heartbeat()

    def _release_pending_read_index_messages(self) -> None:
        if not self.pending_read_index_messages or not self._committed_entry_in_current_term():
            return
        pending, self.pending_read_index_messages = self.pending_read_index_messages, []
        for m in pending:
            self._start_read_index(m)

    def _respond_to_read_index(self, req: Message, index: int) -> None:
        if req.from_ == NONE or req.from_ == self.id:
            self.read_states.append(ReadState(index=index, request_ctx=req.entries[0].data))
        else:
            self._send(Message(type=MT.READ_INDEX_RESP, to=req.from_, index=index, entries=req.entries))

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        my_resp = MT.PRE_VOTE_RESP if self.state == StateType.PRE_CANDIDATE else MT.VOTE_RESP
        if t == MT.PROP:
            raise ProposalDropped("no leader")
        if t == MT.APP:
            self.become_follower(m.term, m.from_)
            self._handle_append(m)
        elif t == MT.HEARTBEAT:
            self.become_follower(m.term, m.from_)
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif t == my_resp:
            result = self._poll(m.from_, not m.reject)
            if result == VoteResult.WON:
                if self.state == StateType.PRE_CANDIDATE:
                    self._campaign(CampaignType.ELECTION)
                else:
                    self.become_leader()
                    self.bcast_append()
            elif result == VoteResult.LOST:
                # A pre-candidate's rejections carry terms no higher than ours: stay in our term.
                self.become_follower(self.term, NONE)

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.PROP:
            if self.lead == NONE:
                raise ProposalDropped("no leader")
            if self.disable_proposal_forwarding:
                raise ProposalDropped("proposal forwarding is disabled")
            self._forward_to_leader(m)
        elif t == MT.APP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_append(m)
        elif t == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_heartbeat(m)
        elif t == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.from_
            self._handle_snapshot(m)
        elif t == MT.TRANSFER_LEADER:
            if self.lead != NONE:
                self._forward_to_leader(m)
        elif t == MT.TIMEOUT_NOW:
            # The leader asked us to take over: campaign now, skipping pre-vote and the lease.
            self._hup(CampaignType.TRANSFER)
        elif t == MT.READ_INDEX:
            if self.lead != NONE:
                self._forward_to_leader(m)
        elif t == MT.READ_INDEX_RESP:
            if len(m.entries) == 1:
                self.read_states.append(ReadState(index=m.index, request_ctx=m.entries[0].data))

    def _forward_to_leader(self, m: Message) -> None:
        # A copy keeps the original's ``from_`` (e.g. a transfer's transferee) and leaves the
        # received message untouched in case the network delivers it again.
        self._send(Message(type=m.type, to=self.lead, from_=m.from_, entries=m.entries, context=m.context))

    # ----- follower handlers

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.committed:
            self._send(Message(type=MT.APP_RESP, to=m.from_, index=log.committed))
            return
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self._send(Message(type=MT.APP_RESP, to=m.from_, index=last_new))
            return
        # Tell the leader the largest index at or below m.index whose term is <= m.log_term: no entry of
        # the leader's above it can match, so it can skip a whole term per round trip.
        hint_index, hint_term = log.find_conflict_by_term(min(m.index, log.last_index()), m.log_term)
        self._send(
            Message(type=MT.APP_RESP, to=m.from_, index=m.index, reject=True, reject_hint=hint_index, log_term=hint_term)
        )

    def _handle_heartbeat(self, m: Message) -> None:
        self.log.commit_to(m.commit)
        self._send(Message(type=MT.HEARTBEAT_RESP, to=m.from_, context=m.context))

    def _handle_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None
        if self._restore(m.snapshot):
            self._send(Message(type=MT.APP_RESP, to=m.from_, index=self.log.last_index()))
        else:
            self._send(Message(type=MT.APP_RESP, to=m.from_, index=self.log.committed))

    def _restore(self, snap: Snapshot) -> bool:
        md = snap.metadata
        if md.index <= self.log.committed:
            return False
        if self.state != StateType.FOLLOWER:
            # Only a leader of this term sends snapshots, so we cannot be a candidate now; be defensive.
            self.become_follower(self.term + 1, NONE)
            return False
        # The snapshot's configuration may not include us yet: a member added after the snapshot
        # was taken learns of its own addition from the entries that follow it.
        cs = md.conf_state
        if self.log.match_term(md.index, md.term):
            # We already have the snapshot's last entry: just fast-forward the commit index.
            self.log.commit_to(md.index)
            return False
        self.log.restore(snap)
        self.trk.config = TrackerConfig()
        self.trk.progress = {}
        cfg, prs = confchange.restore(cs, self.log.last_index(), self.trk.max_inflight)
        self._switch_to_config(cfg, prs)
        return True

    # ----- membership

    def apply_conf_change(self, cc: ConfChange | ConfChangeV2) -> ConfState:
        changer = confchange.Changer(self.trk.config, self.trk.progress, self.log.last_index(), self.trk.max_inflight)
        cfg, prs = changer.apply(cc)
        return self._switch_to_config(cfg, prs)

    def _switch_to_config(self, cfg: TrackerConfig, prs: dict[int, Progress]) -> ConfState:
        self.trk.config = cfg
        self.trk.progress = prs
        cs = self.trk.conf_state()
        pr = prs.get(self.id)
        self.is_learner = pr is not None and pr.is_learner
        if self.state != StateType.LEADER:
            return cs
        if pr is None or self.is_learner:
            # Removed or demoted: pass on the commit index, then step down so the rest elect a leader.
            self.bcast_append()
            self.become_follower(self.term, NONE)
            return cs
        if self._maybe_commit():
            self.bcast_append()
        else:
            for i in self.trk.sorted_ids():
                if i != self.id:
                    self._send_append(i, send_if_empty=False)
        if self.lead_transferee != NONE and self.lead_transferee not in self.trk.config.voters:
            self.abort_leader_transfer()
        return cs

    def maybe_auto_leave_joint(self) -> None:
        """As leader, propose leaving a joint config marked auto-leave once its entry is applied."""
        if (
            self.state == StateType.LEADER
            and self.trk.config.auto_leave
            and self.log.applied >= self.pending_conf_index
        ):
            if self._append_entry([conf_change_entry(ConfChangeV2())]):
                self.pending_conf_index = self.log.last_index()
                self.append_pending = True
