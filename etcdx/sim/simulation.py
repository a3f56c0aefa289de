"""A whole raft cluster in one process, driven by one seeded random generator.

Time is an integer clock; each node ticks every ``TICK`` units (give or take
one, so clocks drift). Everything that happens is an event on one queue — a
tick, a message arriving, a client acting, the nemesis injecting a fault — and
one step processes one event, after which the host loop drains the node's
``Ready`` with the safety monitor watching, in the order ``etcdx.raft.host``
plans for the server too (a leader sends appends before its own write; a
write takes time, during which the node keeps stepping input).
All choices come from ``random.Random(seed)`` and the queue breaks ties by
insertion order, so a seed replays exactly.

A run has a fault phase of ``steps`` steps, then heals the network, restarts
every crashed member, and requires a leader to commit a fresh write on every
live voter within ``liveness_ticks`` ticks; finally the client history is
checked for linearizability.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

from etcdx.check.kv_model import KvGet, KvModel, KvPut
from etcdx.check.linearizability import check_operations
from etcdx.raft import (
    ConfState,
    Entry,
    EntryType,
    MemoryStorage,
    Message,
    MessageType,
    ProposalDropped,
    RaftError,
    RawNode,
    Ready,
    StateType,
)
from etcdx.raft import host
from etcdx.raft.codec import decode_conf_change, decode_message, encode_message
from etcdx.sim.clock import ELECTION_TICK, TICK
from etcdx.sim.history import History
from etcdx.sim.invariants import (
    LINEARIZABILITY,
    LIVENESS,
    RAFT_PANIC,
    STATE_MACHINE_SAFETY,
    UNEXPECTED_ERROR,
    SafetyMonitor,
    Violation,
)
from etcdx.sim.kv import Put
from etcdx.sim.nemesis import Nemesis
from etcdx.sim.network import LinkFaults, Network
from etcdx.sim.node import CrashPoint, ReadWait, SimNode
from etcdx.sim.profiles import Profile
from etcdx.sim.trace import Trace

CLIENTS = 8
KEYS = ("a", "b", "c")
OP_TIMEOUT = 12 * TICK
RECONNECT = 0.3  # chance a client moves to another member after a response
KEEP_AFTER_COMPACT = 5
PROBE_KEY = "probe"
PROBE_RETRY = 5 * TICK
PRE_VOTE_SHARE = 0.7  # of seeds that run with pre-vote on

(
    _TICK,
    _DELIVER,
    _SNAP_STATUS,
    _UNREACHABLE,
    _CLIENT,
    _CALL,
    _OP_TIMEOUT,
    _NEMESIS,
    _REBOOT,
    _PERSISTED,
) = range(10)


@dataclass(slots=True)
class RunResult:
    seed: int
    nodes: int
    profile: str
    pre_vote: bool
    steps: int
    ticks: int
    operations: int
    commits: int
    elections: int
    violation: Violation | None
    trace: str
    linearizability_undecided: bool = False
    recovery_ticks: int = 0  # from healing to the probe applied on every voter

    @property
    def ok(self) -> bool:
        return self.violation is None


@dataclass(slots=True)
class _Client:
    id: int
    op_id: int | None = None
    node: int = 0
    input: KvPut | KvGet | None = None


@dataclass(slots=True)
class Options:
    """What a run does besides the profile; tests use the hooks to plant bugs and script."""

    steps: int = 4000
    # Raft's liveness is probabilistic: a candidate that cannot win keeps resetting the timer
    # of the voter that could (seen: 181 ticks with pre-vote off right after a joint change).
    liveness_ticks: int = 300
    trace_keep: int = 200
    digest: bool = False
    check_timeout: float = 10.0
    clients: int = CLIENTS
    # None: the seed decides.
    pre_vote: bool | None = None
    # Entry bytes per append; a tiny value sends one entry per message.
    max_msg_size: int = 1 << 20
    # Deliver messages through etcdx.raft.codec, as the real transport will (False: plain copies).
    wire_codec: bool = True
    on_raw_node: Callable[[RawNode], None] | None = field(default=None)
    # The host's order of work on a Ready (a test plants an ordering bug here).
    plan: Callable[[Ready, bool], list[host.Step]] = host.plan


class Simulation:
    """One seeded run: the cluster, its network, clients and nemesis, and the monitor watching."""

    def __init__(
        self, seed: int, nodes: int, profile: Profile, options: Options | None = None
    ) -> None:
        self.seed = seed
        self.size = nodes
        self.profile = profile
        self.options = options or Options()
        self.rng = random.Random(seed)
        self.net = Network(random.Random(self.rng.getrandbits(64)), profile.faults)
        # Pre-vote is on by default in etcd but can be turned off; without it elections
        # collide far more often, which is where vote-handling bugs show.
        self.pre_vote = self.rng.random() < PRE_VOTE_SHARE
        if self.options.pre_vote is not None:
            self.pre_vote = self.options.pre_vote
        self.trace = Trace(self.options.trace_keep, self.options.digest)
        self.monitor = SafetyMonitor()
        self.history = History()
        self.now = 0
        self.step_no = 0
        self.healing = False
        self._queue: list[tuple[int, int, int, object, object]] = []
        self._seq = 0
        self._next_op = 1
        self.nodes: dict[int, SimNode] = {}
        self._op_node: dict[int, int] = {}
        self.nemesis = Nemesis(self, nodes)
        self._probe: int | None = None
        self._probe_retry_at = 0
        self._undecided = False
        self.recovery_ticks = 0
        for nid in range(1, nodes + 1):
            disk = MemoryStorage()
            RawNode.bootstrap(disk, list(range(1, nodes + 1)))
            self.add_node(SimNode(nid, disk))
        self.record(
            "start",
            f"{nodes} nodes",
            f"profile={profile.name}",
            f"pre_vote={self.pre_vote}",
        )
        self.clients = [_Client(c) for c in range(self.options.clients)]
        for c in self.clients:
            self.push(self.rng.randint(1, 5 * TICK), _CLIENT, c, None)
        if self.nemesis.active():
            self.push(profile.nemesis_every * TICK, _NEMESIS, None, None)

    # ---- running -------------------------------------------------------------------------

    def run(self) -> RunResult:
        try:
            for _ in range(self.options.steps):
                self.step()
            self._heal_all()
            self._await_liveness()
            self._check_history()
            violation = None
        except Violation as v:
            violation = v
        except RaftError as e:
            violation = Violation(RAFT_PANIC, f"{type(e).__name__}: {e}")
        # Any other crash is a finding too, reported with its seed rather than ending the sweep.
        except Exception as e:  # noqa: BLE001
            where = "".join(traceback.format_exception(e)[-4:])
            violation = Violation(UNEXPECTED_ERROR, where)
        if violation is not None:
            self.record("VIOLATION", violation)
        return RunResult(
            self.seed,
            self.size,
            self.profile.name,
            self.pre_vote,
            self.step_no,
            self.now // TICK,
            len(self.history.operations),
            self.monitor.max_commit,
            len(self.monitor.leaders),
            violation,
            self.trace.render(),
            self._undecided,
            self.recovery_ticks,
        )

    def step(self) -> None:
        """Process the next event, then drain the affected node's Ready."""
        now, _, kind, a, b = heapq.heappop(self._queue)
        self.now = now
        self.step_no += 1
        if kind == _TICK:
            self._on_tick(a, b)
        elif kind == _DELIVER:
            self._on_deliver(a)
        elif kind == _SNAP_STATUS:
            self._on_snap_status(a, b)
        elif kind == _UNREACHABLE:
            self._on_unreachable(a)
        elif kind == _CLIENT:
            self._on_client(a)
        elif kind == _CALL:
            self._call(a, b)
        elif kind == _OP_TIMEOUT:
            self._on_op_timeout(a, b)
        elif kind == _REBOOT:
            if a.raw is None and not a.removed:
                self.restart_node(a)
        elif kind == _PERSISTED:
            self._on_persisted(a, b)
        else:
            self._on_nemesis()

    def push(self, delay: int, kind: int, a: object, b: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (self.now + delay, self._seq, kind, a, b))

    def record(self, kind: str, *fields: object) -> None:
        self.trace.record(self.step_no, self.now, kind, *fields)

    # ---- scripted scenarios -----------------------------------------------------------------

    def step_until(self, done: Callable[[], bool], max_steps: int = 20_000) -> None:
        """Step until ``done()`` holds; a scenario that does not get there fails loudly."""
        for _ in range(max_steps):
            if done():
                return
            self.step()
        raise AssertionError(
            f"condition not reached in {max_steps} steps:\n{self.trace.render(40)}"
        )

    def propose(self, node_id: int, data: bytes) -> None:
        node = self.nodes[node_id]
        assert node.raw is not None
        node.raw.propose(data)
        self.drain(node)

    def campaign(self, node_id: int) -> None:
        node = self.nodes[node_id]
        assert node.raw is not None
        node.raw.campaign()
        self.drain(node)

    def crash(self, node_id: int) -> None:
        self.crash_node(self.nodes[node_id], None)

    def restart(self, node_id: int) -> None:
        self.restart_node(self.nodes[node_id])

    # ---- nodes and the host loop ---------------------------------------------------------

    def add_node(self, node: SimNode) -> None:
        self.nodes[node.id] = node
        self._start(node)
        self.push(
            self.rng.randint(1, TICK), _TICK, node, TICK + self.rng.choice((-1, 0, 1))
        )

    def _start(self, node: SimNode) -> None:
        raw = node.start(
            self.rng, ELECTION_TICK, self.pre_vote, self.options.max_msg_size
        )
        if self.options.on_raw_node is not None:
            self.options.on_raw_node(raw)
        self.monitor.restored(node.id, node.kv.applied)

    def _on_tick(self, node: SimNode, period: int) -> None:
        if node.removed:
            return
        if (
            node.raw is not None
            and node.paused_until <= self.now
            and node.clock_stalled_until <= self.now
        ):
            self.record("tick", f"n{node.id}")
            node.raw.tick()
            self.drain(node)
        self.push(period, _TICK, node, period)

    def _on_deliver(self, m: Message) -> None:
        node = self.nodes.get(m.to)
        if node is None or node.raw is None or not self.net.connected(m.from_, m.to):
            self.record("lost", _show_msg(m))
            if m.type == MessageType.SNAP:
                self.push(1, _SNAP_STATUS, m, True)
            return
        if node.paused_until > self.now:
            self.push(self.resume_delay(node), _DELIVER, m, None)
            return
        self.record("deliver", _show_msg(m))
        node.raw.step(
            decode_message(encode_message(m)) if self.options.wire_codec else _copied(m)
        )
        self.drain(node)
        if m.type == MessageType.SNAP:
            self.push(1, _SNAP_STATUS, m, False)

    def _on_snap_status(self, m: Message, failed: bool) -> None:
        """The transport tells the sender how sending a snapshot went."""
        sender = self.nodes[m.from_]
        if sender.raw is None:
            return
        if sender.paused_until > self.now:
            self.push(self.resume_delay(sender), _SNAP_STATUS, m, failed)
            return
        sender.raw.report_snapshot(m.to, failed)
        self.drain(sender)

    def _on_unreachable(self, m: Message) -> None:
        """The transport tells the sender it could not reach the peer."""
        sender = self.nodes[m.from_]
        if sender.raw is None:
            return
        if sender.paused_until > self.now:
            self.push(self.resume_delay(sender), _UNREACHABLE, m, None)
            return
        sender.raw.report_unreachable(m.to)
        self.drain(sender)

    def _send(self, m: Message) -> None:
        delays = self.net.transmit(m.from_, m.to)
        if not delays:
            self.record("drop", _show_msg(m))
            if m.type == MessageType.SNAP:
                self.push(1, _SNAP_STATUS, m, True)
            elif not self.net.connected(m.from_, m.to):
                self.push(
                    1, _UNREACHABLE, m, None
                )  # a cut link fails loudly, as TCP would
            return
        if len(delays) > 1:
            self.record("duplicate", _show_msg(m))
        for d in delays:
            self.push(d, _DELIVER, m, None)

    def drain(self, node: SimNode) -> None:
        while node.raw is not None and node.writing is None and node.raw.has_ready():
            rd = node.raw.ready()
            if rd.hard_state is not None:
                node.term = rd.hard_state.term
            if rd.soft_state is not None:
                self._observe_role(node, rd.soft_state.raft_state, rd.soft_state.lead)
            self._run_steps(node, rd, self.options.plan(rd, node.raw.raft_state == StateType.LEADER))

    def _run_steps(self, node: SimNode, rd: Ready, steps: list[host.Step]) -> None:
        """Walk the host plan the server walks (etcdx.raft.host), with the node's armed
        crash point striking where it says. A write that takes time suspends the plan
        until its _PERSISTED event; the node keeps stepping input meanwhile."""
        raw = node.raw
        assert raw is not None
        crash_at = node.crash_at
        for i, step in enumerate(steps):
            kind = step.kind
            if kind is host.StepKind.PERSIST:
                if crash_at is CrashPoint.BEFORE_PERSIST:
                    return self.crash_node(node, crash_at)
                latency = self.rng.randint(0, self.profile.disk_latency) if self.profile.disk_latency else 0
                if latency:
                    node.writing = (rd, steps[i + 1:])
                    self.push(latency, _PERSISTED, node, node.writing)
                    return
                self._persist(node, rd)
            elif kind is host.StepKind.SEND:
                if crash_at is CrashPoint.BEFORE_SEND:
                    return self.crash_node(node, crash_at)
                msgs = step.messages
                cut = self.rng.randrange(len(msgs) + 1) if crash_at is CrashPoint.MID_SEND else -1
                for j, m in enumerate(msgs):
                    if j == cut:
                        return self.crash_node(node, crash_at)
                    if m.type == MessageType.VOTE_RESP and not m.reject:
                        self.monitor.vote_cast(m.from_, m.to, m.term)
                    self._send(m)
                if crash_at is CrashPoint.MID_SEND:
                    return self.crash_node(node, crash_at)
                if crash_at is CrashPoint.AFTER_VOTE and any(
                    m.type == MessageType.VOTE_RESP and not m.reject for m in msgs
                ):
                    return self.crash_node(node, crash_at)
            elif kind is host.StepKind.APPLY:
                if crash_at is CrashPoint.BEFORE_APPLY:
                    return self.crash_node(node, crash_at)
                if rd.snapshot is not None and not rd.snapshot.is_empty():
                    self._restore_snapshot(node, rd)
                for e in rd.committed_entries:
                    self.monitor.applying(node.id, e)
                    self._apply(node, e)
                    if node.raw is None:
                        return
            elif kind is host.StepKind.READ_STATES:
                for rs in rd.read_states:
                    op_id = int(rs.request_ctx)
                    if self._op_node.get(op_id) == node.id and self.history.is_open(op_id):
                        client = self._client_of(op_id)
                        assert client is not None and client.input is not None
                        node.reads.append(ReadWait(rs.index, op_id, client.input.key))
            else:
                self._serve_reads(node)
                if crash_at is CrashPoint.BEFORE_ADVANCE:
                    return self.crash_node(node, crash_at)
                raw.advance(rd)
                self._maybe_compact(node)

    def _persist(self, node: SimNode, rd: Ready) -> None:
        disk = node.disk
        if rd.snapshot is not None and not rd.snapshot.is_empty():
            disk.apply_snapshot(rd.snapshot)
        self.monitor.entries_persisting(node.id, disk, disk.hard_state.commit, rd.entries)
        if rd.entries:
            disk.append(rd.entries)
        if rd.hard_state is not None:
            old = disk.hard_state.commit
            if rd.hard_state.commit != old:
                self.monitor.commit_advanced(node.id, rd.hard_state.term, old, rd.hard_state.commit, disk)
            disk.set_hard_state(rd.hard_state)
            if rd.hard_state.vote == node.id:
                # A candidate's own vote counts once durable: it goes out with its requests.
                self.monitor.vote_cast(node.id, node.id, rd.hard_state.term)

    def _on_persisted(self, node: SimNode, writing: object) -> None:
        """A Ready's write reached the disk: the host resumes its plan (unless the process
        that started the write crashed meanwhile; then the write is lost with it)."""
        if node.writing is not writing or node.raw is None:
            return
        if node.paused_until > self.now:
            self.push(self.resume_delay(node), _PERSISTED, node, writing)
            return
        node.writing = None
        rd, rest = writing  # type: ignore[misc]
        self.record("persisted", f"n{node.id}")
        self._persist(node, rd)
        self._run_steps(node, rd, rest)
        if node.raw is not None:
            self.drain(node)

    def _observe_role(self, node: SimNode, role: StateType, lead: int) -> None:
        was_leader = node.role == StateType.LEADER
        if role != node.role or lead != node.lead:
            self.record(
                "role",
                f"n{node.id}",
                role.name.lower(),
                f"term={node.term}",
                f"lead={lead}",
            )
        node.role, node.lead = role, lead
        if role == StateType.LEADER and not was_leader:
            cs = node.conf_state
            self.monitor.leader_elected(
                node.id, node.term, node.disk, [cs.voters, cs.voters_outgoing]
            )
        elif role != StateType.LEADER and was_leader:
            self.monitor.stepped_down(node.id)

    def _restore_snapshot(self, node: SimNode, rd: Ready) -> None:
        snap = rd.snapshot
        assert snap is not None
        node.kv = type(node.kv).restore(snap.data)
        node.kv.applied = snap.metadata.index
        node.conf_state = snap.metadata.conf_state
        node.applied_since_snapshot = 0
        self.monitor.restored(node.id, snap.metadata.index)
        self.record("snapshot", f"n{node.id}", f"index={snap.metadata.index}")

    def _apply(self, node: SimNode, e: Entry) -> None:
        raw = node.raw
        assert raw is not None
        node.applied_since_snapshot += 1
        if e.type == EntryType.NORMAL:
            put = node.kv.apply(e.index, e.data)
            if put is not None and self._op_node.get(put.request_id) == node.id:
                self._complete(put.request_id, "ok")
            return
        node.kv.applied = e.index
        cc = decode_conf_change(e)
        before = node.conf_state
        node.conf_state = raw.apply_conf_change(cc)
        self.record(
            "conf", f"n{node.id}", f"index={e.index}", _show_conf(node.conf_state)
        )
        gone = set(before.voters + before.learners + before.voters_outgoing) - set(
            node.conf_state.voters
            + node.conf_state.learners
            + node.conf_state.voters_outgoing
        )
        for nid in sorted(gone):
            self._remove_member(nid)

    def _remove_member(self, nid: int) -> None:
        """A member whose removal committed is shut down for good, as etcd does."""
        node = self.nodes[nid]
        if node.removed:
            return
        self.record("removed", f"n{nid}")
        self._lose_process(node)
        node.removed = True

    def _serve_reads(self, node: SimNode) -> None:
        if not node.reads:
            return
        waiting = []
        for r in node.reads:
            if r.index <= node.kv.applied:
                if (
                    self.history.is_open(r.op_id)
                    and self._op_node.get(r.op_id) == node.id
                ):
                    self._complete(r.op_id, node.kv.get(r.key))
            else:
                waiting.append(r)
        node.reads = waiting

    def _maybe_compact(self, node: SimNode) -> None:
        every = self.profile.compact_every
        if not every or node.applied_since_snapshot < every:
            return
        index = node.kv.applied
        if index <= node.disk.first_index() + KEEP_AFTER_COMPACT:
            return
        node.disk.create_snapshot(index, node.conf_state, node.kv.snapshot())
        node.disk.compact(index - KEEP_AFTER_COMPACT)
        node.applied_since_snapshot = 0
        self.record("compact", f"n{node.id}", f"snapshot={index}")

    def crash_node(self, node: SimNode, point: CrashPoint | None) -> None:
        self.record("crash", f"n{node.id}", point.value if point else "between-steps")
        self._lose_process(node)
        if self.rng.random() < self.profile.reboot:
            self.push(self.rng.randint(0, TICK), _REBOOT, node, None)

    def _lose_process(self, node: SimNode) -> None:
        self.monitor.stepped_down(node.id)
        node.stop()
        for c in self.clients:
            if c.op_id is not None and self._op_node.get(c.op_id) == node.id:
                self._finish(c, failed=False)

    def restart_node(self, node: SimNode) -> None:
        self.record("restart", f"n{node.id}")
        self._start(node)

    # ---- clients ---------------------------------------------------------------------------

    def _client_of(self, op_id: int) -> _Client | None:
        for c in self.clients:
            if c.op_id == op_id:
                return c
        return None

    def _on_client(self, c: _Client) -> None:
        """Invoke the client's next operation on the member it is connected to."""
        if self.healing or c.op_id is not None:
            return
        node = self.nodes.get(c.node)
        if node is None or node.raw is None:
            live = [n for n in self.nodes.values() if n.raw is not None]
            if not live:
                self.push(self.rng.randint(1, 5 * TICK), _CLIENT, c, None)
                return
            node = self.rng.choice(live)
        op_id = self._next_op
        self._next_op += 1
        key = self.rng.choice(KEYS)
        op = KvPut(key, op_id) if self.rng.random() < 0.5 else KvGet(key)
        c.op_id, c.node, c.input = op_id, node.id, op
        self._op_node[op_id] = node.id
        self.history.invoke(op_id, c.id, op, self.now)
        self.record("invoke", f"c{c.id}", f"op{op_id}", f"n{node.id}", op)
        self.push(OP_TIMEOUT, _OP_TIMEOUT, c, op_id)
        self._call(c, op_id)

    def _call(self, c: _Client, op_id: int) -> None:
        """Hand the operation to the member; a paused member takes it when it resumes."""
        if c.op_id != op_id:
            return
        node = self.nodes[c.node]
        raw = node.raw
        if raw is None:
            return
        if node.paused_until > self.now:
            self.push(self.resume_delay(node), _CALL, c, op_id)
            return
        try:
            if isinstance(c.input, KvPut):
                raw.propose(Put(op_id, c.input.key, op_id).encode())
            else:
                raw.read_index(str(op_id).encode())
        except ProposalDropped:
            self.record("rejected", f"op{op_id}")
            self._finish(c, failed=True)
            return
        self.drain(node)

    def _on_op_timeout(self, c: _Client, op_id: int) -> None:
        if c.op_id == op_id:
            self.record("timeout", f"op{op_id}")
            self._finish(c, failed=False)

    def _complete(self, op_id: int, output: object) -> None:
        c = self._client_of(op_id)
        if c is None:
            return
        self.history.respond(op_id, output, self.now)
        self.record("respond", f"c{c.id}", f"op{op_id}", output)
        c.op_id = None
        if self.rng.random() < RECONNECT:
            c.node = 0
        self.push(self.rng.randint(1, 3 * TICK), _CLIENT, c, None)

    def _finish(self, c: _Client, *, failed: bool) -> None:
        """End the client's operation without a response: surely without effect, or unknown."""
        assert c.op_id is not None
        if failed:
            self.history.fail(c.op_id)
        else:
            self.history.lose(c.op_id)
        c.op_id = None
        c.node = 0  # reconnect to another member
        self.push(self.rng.randint(1, 3 * TICK), _CLIENT, c, None)

    def _on_nemesis(self) -> None:
        if self.healing:
            return
        self.nemesis.act()
        self.push(self.profile.nemesis_every * TICK, _NEMESIS, None, None)

    def resume_delay(self, node: SimNode) -> int:
        """When a paused member gets to a waiting input: soon after resuming, in no set order."""
        return node.paused_until - self.now + self.rng.randint(0, TICK)

    def leader(self) -> SimNode | None:
        leaders = [
            n
            for n in self.nodes.values()
            if n.raw is not None
            and n.role == StateType.LEADER
            and n.paused_until <= self.now
        ]
        return max(leaders, key=lambda n: n.term) if leaders else None

    # ---- the end of a run ------------------------------------------------------------------

    def _heal_all(self) -> None:
        """Stop every fault: links heal and turn reliable, crashed members restart."""
        self.healing = True
        self.record("heal-all")
        self.net.heal()
        self.net.faults = LinkFaults(
            delay=self.profile.faults.delay, jitter=self.profile.faults.jitter
        )
        for node in self.nodes.values():
            node.crash_at = None
            node.paused_until = min(node.paused_until, self.now)
            node.clock_stalled_until = min(node.clock_stalled_until, self.now)
            if node.raw is None and not node.removed:
                self.restart_node(node)

    def _await_liveness(self) -> None:
        """A leader must emerge and commit a fresh write on every live voter in time."""
        healed = self.now
        deadline = self.now + self.options.liveness_ticks * TICK
        next_probe = self.now
        while self.now < deadline:
            if self.now >= next_probe:
                next_probe = self.now + TICK
                if self._liveness_reached():
                    self.recovery_ticks = (self.now - healed) // TICK
                    self.record(
                        "live",
                        f"probe={self._probe}",
                        f"after {self.recovery_ticks} ticks",
                    )
                    return
            self.step()
        leader = self.leader()
        raise Violation(
            LIVENESS,
            f"no write committed on all voters within {self.options.liveness_ticks} ticks of healing "
            f"(leader: {leader.id if leader else None}, probe op {self._probe})",
        )

    def _liveness_reached(self) -> bool:
        """Whether the probe write is applied on every live voter; (re)proposes it meanwhile.

        The probe is proposed again every few ticks until the leader applies it, like a
        client retrying: a leader deposed right after taking it may lose the entry, and the
        request id makes a second copy harmless.
        """
        leader = self.leader()
        if leader is None or leader.raw is None:
            return False
        if self._probe is None:
            self._probe = self._next_op
            self._next_op += 1
        if self._probe not in leader.kv.seen:
            if self.now >= self._probe_retry_at:
                try:
                    leader.raw.propose(
                        Put(self._probe, PROBE_KEY, self._probe).encode()
                    )
                except ProposalDropped:
                    return False
                self._probe_retry_at = self.now + PROBE_RETRY
                self.record("probe", f"n{leader.id}", f"op{self._probe}")
                self.drain(leader)
            return False
        cs = leader.conf_state
        voters = set(cs.voters) | set(cs.voters_outgoing)
        if not all(
            self.nodes[v].raw is not None and self._probe in self.nodes[v].kv.seen
            for v in sorted(voters)
        ):
            return False
        if leader.kv.applied < self.monitor.max_commit:
            # The probe lands after every entry the leader holds, and it must hold all committed ones.
            raise Violation(
                STATE_MACHINE_SAFETY,
                f"leader {leader.id} applied the probe at {leader.kv.applied} "
                f"but index {self.monitor.max_commit} was committed before",
            )
        return True

    def _check_history(self) -> None:
        ops = self.history.close()
        result = check_operations(KvModel(), ops, timeout=self.options.check_timeout)
        if result.ok is None:
            self._undecided = True
        elif not result.ok:
            raise Violation(LINEARIZABILITY, result.explanation)


def _copied(m: Message) -> Message:
    """The receiver's own copy of a message, as a real transport would decode it (but cheaper).

    Without it a duplicated delivery would hand the same Entry objects to the core
    twice, and the leader stamps the term and index of proposed entries in place.
    """
    entries = (
        [Entry(e.term, e.index, e.type, e.data) for e in m.entries] if m.entries else []
    )
    return dataclasses.replace(m, entries=entries)


def _show_msg(m: Message) -> str:
    s = f"{m.type.name} n{m.from_}->n{m.to} t{m.term}"
    if m.type in (MessageType.APP, MessageType.APP_RESP):
        s += f" i{m.index} lt{m.log_term} c{m.commit} +{len(m.entries)}"
    if m.reject:
        s += " reject"
    return s


def _show_conf(cs: ConfState) -> str:
    s = f"voters={cs.voters}"
    if cs.learners:
        s += f" learners={cs.learners}"
    if cs.voters_outgoing:
        s += f" outgoing={cs.voters_outgoing}"
    return s
