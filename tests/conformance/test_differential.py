"""Differential tests: the same random operation sequences against etcdx and a real etcd 3.4.

Each hypothesis example gets a *fresh* pair of single-member servers, so
revisions, compactions and leases start from the same state and every response
must be identical field by field (headers' cluster_id/member_id/raft_term
aside); errors must carry the same gRPC code and details string. After the
sequence, watchers replaying from revision 1 must hand out the same events.

Server pairs are started one example ahead (a spare pair boots while the
current example runs), so an example costs little more than its RPCs.

The same machinery run against two real etcd members (`test_harness_is_
deterministic_on_two_real_etcds`) checks that the harness itself compares only
deterministic things.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, Phase, event, given, reject, settings
from hypothesis import strategies as st
from hypothesis.control import current_build_context
from support import compare, procs

from etcdx.pb import rpc_pb2

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(300)]

# ≤ 12 keys: etcd 3.4 sorts ranges with Go's sort.Sort, which is insertion sort
# (hence stable) below 13 elements, so ties under sort_target order by key.
KEYS = [b"a", b"a/1", b"a/2", b"a\x00", b"ab", b"b", b"b/1", b"c"]
VALUES = [b"", b"v1", b"v2", b"zz"]
LEASE_IDS = [100, 200, 300]
MAX_REV = 45  # sequences are ≤ 40 ops on a fresh store, so this reaches past the head

RANGE_OPTS = {  # sort orders / targets by enum value
    "sort_order": [0, 1, 2],
    "sort_target": [0, 1, 2, 3, 4],
}


def prefix_end(key: bytes) -> bytes:
    k = bytearray(key)
    while k:
        if k[-1] < 0xFF:
            k[-1] += 1
            return bytes(k)
        k.pop()
    return b"\x00"


class Op:
    """One request in a sequence; `kind` picks the RPC."""

    def __init__(self, kind: str, req) -> None:
        self.kind = kind
        self.req = req

    def __repr__(self) -> str:
        return f"{self.kind}{compare.one_line(self.req)}"


def as_op(kind: str):
    """A named converter request -> Op, so hypothesis prints `put(...)` rather than a lambda."""

    def make(req) -> Op:
        return Op(kind, req)

    make.__name__ = make.__qualname__ = kind
    return make


# -- strategies --------------------------------------------------------------------

keys = st.sampled_from(KEYS)


def sometimes(one_in: int):
    """True about once in `one_in` draws (hypothesis favours the first element, False)."""
    return st.sampled_from([False] * (one_in - 1) + [True])


revisions = st.one_of(st.just(0), st.integers(0, MAX_REV))
small_revs = st.integers(0, 25)


@st.composite
def key_ranges(draw, allow_empty_key: bool = True, singles: int = 2):
    """(key, range_end): single key, prefix, from-key, all keys, explicit interval."""
    shape = draw(
        st.sampled_from(["single"] * singles + ["prefix", "fromkey", "all", "interval"])
    )
    key = draw(keys)
    if shape == "single":
        if allow_empty_key and draw(sometimes(25)):
            return b"", b""
        return key, b""
    if shape == "prefix":
        return key, prefix_end(key)
    if shape == "fromkey":
        return key, b"\x00"
    if shape == "all":
        return b"\x00", b"\x00"
    return key, draw(keys)


@st.composite
def range_requests(draw):
    key, end = draw(key_ranges(singles=1))
    req = rpc_pb2.RangeRequest(key=key, range_end=end)
    if draw(sometimes(2)):
        req.limit = draw(st.integers(0, 4))
    if draw(sometimes(4)):
        req.revision = draw(revisions)
    if draw(sometimes(2)):
        req.sort_order = draw(st.sampled_from(RANGE_OPTS["sort_order"]))
        req.sort_target = draw(st.sampled_from(RANGE_OPTS["sort_target"]))
    flag = draw(
        st.sampled_from(["", "", "", "keys_only", "count_only", "serializable"])
    )
    if flag:
        setattr(req, flag, True)
    if draw(sometimes(5)):
        req.min_mod_revision = draw(small_revs)
    if draw(sometimes(5)):
        req.max_mod_revision = draw(small_revs)
    if draw(sometimes(5)):
        req.min_create_revision = draw(small_revs)
    if draw(sometimes(5)):
        req.max_create_revision = draw(small_revs)
    return req


@st.composite
def put_requests(draw):
    req = rpc_pb2.PutRequest(key=draw(keys), value=draw(st.sampled_from(VALUES)))
    if draw(sometimes(3)):
        req.lease = draw(st.sampled_from(LEASE_IDS))
    req.prev_kv = draw(st.booleans())
    if draw(sometimes(6)):
        req.ignore_value = True
        if not draw(sometimes(4)):
            req.value = b""
    if draw(sometimes(6)):
        req.ignore_lease = True
        if not draw(sometimes(4)):
            req.lease = 0
    return req


@st.composite
def delete_requests(draw):
    key, end = draw(key_ranges(allow_empty_key=False, singles=10))
    return rpc_pb2.DeleteRangeRequest(
        key=key, range_end=end, prev_kv=draw(st.booleans())
    )


@st.composite
def compares(draw):
    key, end = draw(key_ranges(allow_empty_key=False))
    if not draw(sometimes(3)):
        end = b""  # mostly single-key compares
    c = rpc_pb2.Compare(
        key=key,
        range_end=end,
        result=draw(st.sampled_from([0, 1, 2, 3])),
        target=draw(st.sampled_from([0, 1, 2, 3, 4])),
    )
    if c.target == rpc_pb2.Compare.VERSION:
        c.version = draw(st.integers(0, 3))
    elif c.target == rpc_pb2.Compare.CREATE:
        c.create_revision = draw(small_revs)
    elif c.target == rpc_pb2.Compare.MOD:
        c.mod_revision = draw(small_revs)
    elif c.target == rpc_pb2.Compare.VALUE:
        c.value = draw(st.sampled_from(VALUES))
    else:
        c.lease = draw(st.sampled_from([0, *LEASE_IDS]))
    return c


def request_ops(depth: int):
    leaves = [
        st.builds(rpc_pb2.RequestOp, request_range=range_requests()),
        st.builds(rpc_pb2.RequestOp, request_put=put_requests()),
        st.builds(rpc_pb2.RequestOp, request_delete_range=delete_requests()),
    ]
    if depth > 0:
        leaves.append(st.builds(rpc_pb2.RequestOp, request_txn=txn_requests(depth - 1)))
    return st.one_of(*leaves)


def txn_requests(depth: int = 1):
    return st.builds(
        rpc_pb2.TxnRequest,
        compare=st.lists(compares(), max_size=3),
        success=st.lists(request_ops(depth), max_size=3),
        failure=st.lists(request_ops(depth), max_size=3),
    )


@st.composite
def colliding_txns(draw, depth: int = 2):
    """Txns whose one revision touches a key twice: puts beside deletes of ranges that
    cover them, in any order, nested too. Only from-key and all-keys deletes escape
    etcd's duplicate-key rule here (it compares a "\\0" range end as a tiny key), so
    a key can be created and deleted, or deleted and re-created, in one revision."""
    ops: list[rpc_pb2.RequestOp] = []
    for _ in range(draw(st.integers(2, 4))):
        kind = draw(st.sampled_from(["put", "put", "delete", "nested"] if depth else ["put", "put", "delete"]))
        if kind == "put":
            ops.append(rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
                key=draw(keys), value=draw(st.sampled_from(VALUES)), prev_kv=draw(st.booleans()))))
        elif kind == "delete":
            key = draw(st.sampled_from([b"\x00", *KEYS]))
            ops.append(rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(
                key=key, range_end=b"\x00", prev_kv=draw(st.booleans()))))
        else:
            ops.append(rpc_pb2.RequestOp(request_txn=draw(colliding_txns(depth - 1))))
    other = draw(st.lists(request_ops(0), max_size=2))
    then, otherwise = (ops, other) if draw(st.booleans()) else (other, ops)
    return rpc_pb2.TxnRequest(compare=draw(st.lists(compares(), max_size=2)),
                              success=then, failure=otherwise)


ops = st.one_of(
    colliding_txns().map(as_op("txn")),
    put_requests().map(as_op("put")),
    put_requests().map(as_op("put")),
    put_requests().map(as_op("put")),
    put_requests().map(as_op("put")),
    range_requests().map(as_op("range")),
    range_requests().map(as_op("range")),
    delete_requests().map(as_op("delete")),
    txn_requests().map(as_op("txn")),
    st.builds(
        rpc_pb2.CompactionRequest, revision=st.integers(0, 8), physical=st.booleans()
    ).map(as_op("compact")),
    st.builds(
        rpc_pb2.LeaseGrantRequest,
        ID=st.sampled_from(LEASE_IDS),
        TTL=st.sampled_from([600, 60, 600, 600, 9_000_000_001]),
    ).map(as_op("lease_grant")),
    st.builds(rpc_pb2.LeaseRevokeRequest, ID=st.sampled_from(LEASE_IDS)).map(
        as_op("lease_revoke")
    ),
    st.builds(
        rpc_pb2.LeaseTimeToLiveRequest,
        ID=st.sampled_from(LEASE_IDS),
        keys=st.booleans(),
    ).map(as_op("lease_ttl")),
    st.builds(rpc_pb2.LeaseKeepAliveRequest, ID=st.sampled_from(LEASE_IDS)).map(
        as_op("lease_keepalive")
    ),
    st.builds(rpc_pb2.LeaseLeasesRequest).map(as_op("lease_leases")),
)


# -- running ops -------------------------------------------------------------------


def _keepalive_once(member: procs.Member, req):
    call = member.lease.LeaseKeepAlive(iter([req]), timeout=5)
    try:
        return next(call)
    finally:
        call.cancel()


def run_op(member: procs.Member, op: Op) -> compare.Outcome:
    route = getattr(member, "route", None)
    if route is not None:  # a cluster picks the member that answers this op
        route(op)
    kv, lease = member.kv, member.lease
    t = 10
    rpc = {
        "put": lambda: kv.Put(op.req, timeout=t),
        "range": lambda: kv.Range(op.req, timeout=t),
        "delete": lambda: kv.DeleteRange(op.req, timeout=t),
        "txn": lambda: kv.Txn(op.req, timeout=t),
        "compact": lambda: kv.Compact(op.req, timeout=t),
        "lease_grant": lambda: lease.LeaseGrant(op.req, timeout=t),
        "lease_revoke": lambda: lease.LeaseRevoke(op.req, timeout=t),
        "lease_ttl": lambda: lease.LeaseTimeToLive(op.req, timeout=t),
        "lease_keepalive": lambda: _keepalive_once(member, op.req),
        "lease_leases": lambda: lease.LeaseLeases(op.req, timeout=t),
    }[op.kind]
    normalise = (
        compare.normalise_ttl if op.kind in ("lease_ttl", "lease_keepalive") else None
    )
    return compare.outcome_of(rpc, normalise)


def _crash_report(member: procs.Member) -> str:
    if member.is_running():
        return ""
    return f"\n{member} is not running; log tail:\n{member.log_tail()}"


def check_same_sequence(
    ref: procs.Member, cand: procs.Member, sequence: list[Op]
) -> None:
    """Send each op to both servers; the outcomes must be identical, then so must the
    events of a watcher that was live through the sequence, and watch replays."""
    live = {m: _open_live_watch(m) for m in (ref, cand)}
    for i, op in enumerate(sequence):
        a, b = run_op(ref, op), run_op(cand, op)
        event(
            f"{op.kind}: {a.details if a.code else 'ok'}"
        )  # --hypothesis-show-statistics
        if a != b:
            history = "\n".join(
                f"  {j:2d}: {o!r}" for j, o in enumerate(sequence[: i + 1])
            )
            raise AssertionError(
                f"step {i}: {op!r}\n  {ref.kind}: {a}\n  {cand.kind}: {b}\nsequence so far:\n{history}"
                + _crash_report(cand)
            )
    check_same_live_watch(live, ref, cand)
    check_same_watch_history(ref, cand)


LIVE_WATCH = {"key": b"\x00", "range_end": b"\x00", "prev_kv": True}


def _open_live_watch(member: procs.Member) -> tuple[compare.WatchSession, object]:
    """A watcher on every key with prev_kv, created before the sequence: it is synced
    when the writes happen, so it gets events from the server's live path (a replay
    from revision 1 exercises only the catch-up path)."""
    session = compare.WatchSession(member.watch, timeout=60)
    session.send(rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(**LIVE_WATCH)))
    responses = iter(session)
    first = next(responses)
    assert first.created, f"{member}: expected the created response, got {compare.one_line(first)}"
    return session, responses


def check_same_live_watch(live: dict, ref: procs.Member, cand: procs.Member) -> None:
    got = {}
    for m, (session, responses) in live.items():
        until = compare.current_revision(m.kv)
        events = []
        try:
            while until > 1 and (not events or events[-1].kv.mod_revision < until):
                events.extend(next(responses).events)
        finally:
            session.close()
        if compare.current_revision(m.kv) != until:
            raise AssertionError(f"{m}: the revision moved while the live watch was read")
        got[m] = [compare.one_line(e) for e in events]
    a, b = got[ref], got[cand]
    assert a == b, "live watch differs:\n" + compare.diff_lines(a, b, ref.kind, cand.kind)


WATCHES = [
    # everything, with prev_kv
    {"key": b"\x00", "range_end": b"\x00", "prev_kv": True},
    # a prefix, deletes filtered out
    {
        "key": b"a",
        "range_end": prefix_end(b"a"),
        "filters": [rpc_pb2.WatchCreateRequest.NODELETE],
    },
    # one key, puts filtered out
    {"key": b"b", "filters": [rpc_pb2.WatchCreateRequest.NOPUT], "prev_kv": True},
]


def _expected_last_revision(events, spec) -> int:
    """The revision of the last event `spec`'s watcher should see, from the unfiltered history."""
    key, end, filters = spec["key"], spec.get("range_end", b""), spec.get("filters", [])
    last = 0
    for ev in events:
        k = ev.kv.key
        inside = (k == key) if not end else (key <= k and (end == b"\x00" or k < end))
        if not inside:
            continue
        if ev.type == ev.PUT and rpc_pb2.WatchCreateRequest.NOPUT in filters:
            continue
        if ev.type == ev.DELETE and rpc_pb2.WatchCreateRequest.NODELETE in filters:
            continue
        last = ev.kv.mod_revision
    return last


def _replay(
    member: procs.Member, spec: dict, start: int, until: int | None
) -> compare.WatchReplay:
    create = rpc_pb2.WatchCreateRequest(start_revision=start, **spec)
    if until is None:
        until = compare.current_revision(member.kv)
    if until < max(start, 2):
        until = (
            0  # no event to wait for (revision 1 is the empty store): stop at "created"
        )
    replay = compare.replay_watch(member.watch, create, until)
    compare.allow_newer_etcd_watch_fields(replay)
    return replay


def check_same_watch_history(ref: procs.Member, cand: procs.Member) -> None:
    """Watchers replaying from revision 1 (or from the compaction point) hand out the same events."""
    histories = {}
    for m in (ref, cand):
        full = _replay(m, WATCHES[0], 1, None)
        start = 1
        if full.compact_revision:
            # revisions above the compaction point are immune to a compaction that
            # is still running in the background (etcd compacts the backend lazily)
            start = full.compact_revision + 1
            first = full
            full = _replay(m, WATCHES[0], start, None)
            full.control[:0] = first.control
        runs = [full]
        for spec in WATCHES[1:]:
            runs.append(
                _replay(m, spec, start, _expected_last_revision(full.events, spec))
            )
        if start > 1:
            # After a compaction etcd 3.4 attaches prev_kv only sometimes (the lookup at
            # mod_revision-1 races the compaction; seen flaky etcd-side), so prev_kv is
            # compared only on uncompacted histories.
            for r in runs:
                for ev in r.events:
                    ev.ClearField("prev_kv")
        histories[m] = [line for r in runs for line in ["-- watcher"] + r.lines()]
    a, b = histories[ref], histories[cand]
    assert a == b, "watch replay differs:\n" + compare.diff_lines(
        a, b, ref.kind, cand.kind
    )


# -- server pairs --------------------------------------------------------------------


class PairFactory:
    """Fresh (reference etcd, candidate) pairs, one spare always booting in the background."""

    def __init__(
        self, candidate_kind: str, candidate_args: tuple[str, ...] = ()
    ) -> None:
        root = procs.fast_tmp_root() or pathlib.Path(tempfile.gettempdir())
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="etcdx-diff-", dir=root))
        self.candidate_kind = candidate_kind
        self.candidate_args = list(candidate_args)
        self.count = 0
        self.current: list[procs.Member] = []
        self.spare: list[procs.Member] | None = None

    def _spawn(self) -> list[procs.Member]:
        self.count += 1
        base = self.dir / f"pair{self.count}"
        pair = [
            procs.Member("etcd", base, name="ref"),
            procs.Member(
                self.candidate_kind, base, name="cand", extra_args=self.candidate_args
            ),
        ]
        for m in pair:
            m.start(wait=False)
        return pair

    def next_pair(self) -> tuple[procs.Member, procs.Member]:
        self._retire(self.current)
        pair = self.spare or self._spawn()
        self.spare = self._spawn()
        try:
            for m in pair:
                m.wait_ready()
        except procs.MemberStartError:
            # a port may have been taken while booting in the background: one retry on fresh ports
            self._retire(pair)
            pair = self.current = (
                self._spawn()
            )  # owned now: close() stops it whatever happens
            for m in pair:
                m.wait_ready()
        self.current = pair
        return pair[0], pair[1]

    def _retire(self, pair: list[procs.Member]) -> None:
        for m in pair:
            m.close()
        if pair:
            shutil.rmtree(pair[0].base_dir, ignore_errors=True)

    def close(self) -> None:
        self._retire(self.current)
        self._retire(self.spare or [])
        shutil.rmtree(self.dir, ignore_errors=True)


class ShrinkBudget:
    """Caps how many server pairs shrinking may use once a failure was found.

    Each example costs a fresh pair of servers; unbounded shrinking could take
    many minutes. Past the budget, non-final shrink attempts are rejected.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.failed = False
        self.after_failure = 0

    def check(self) -> None:
        if not self.failed:
            return
        self.after_failure += 1
        if self.after_failure > self.limit and not current_build_context().is_final:
            reject()


def _differential(
    factory: PairFactory, budget: ShrinkBudget, sequence: list[Op]
) -> None:
    budget.check()
    try:
        ref, cand = factory.next_pair()
    except procs.MemberStartError:
        budget.failed, budget.after_failure = (
            True,
            budget.limit,
        )  # shrinking cannot help
        raise
    try:
        check_same_sequence(ref, cand, sequence)
    except BaseException:
        budget.failed = True
        raise


EXAMPLES = int(os.environ.get("ETCDX_DIFF_EXAMPLES", "30"))
COMMON = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
    ],
    "phases": [Phase.explicit, Phase.generate, Phase.shrink],
}
sequences = st.lists(ops, min_size=15, max_size=40)
_BUDGETS = {
    "etcdx": ShrinkBudget(40),
    "workers": ShrinkBudget(20),
    "etcd": ShrinkBudget(10),
}


def _etcdx_factory(*args: str):
    procs.require("etcd")
    procs.require("etcdx")
    factory = PairFactory("etcdx", args)
    try:
        factory.next_pair()  # fail once, clearly, if etcdx cannot start at all
    except procs.MemberStartError as e:
        factory.close()
        pytest.fail(f"etcdx does not start:\n{e}", pytrace=False)
    return factory


@pytest.fixture(scope="module")
def etcdx_pairs():
    factory = _etcdx_factory()
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def etcdx_worker_pairs():
    """etcdx with two API worker processes (--api-workers 2), the other path to the same
    answers: serializable reads served by the workers from LMDB, everything else relayed
    to the core (the default serves clients from the core process alone)."""
    factory = _etcdx_factory("--api-workers", "2")
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def etcd_pairs():
    procs.require("etcd")
    factory = PairFactory("etcd")
    yield factory
    factory.close()


@settings(max_examples=EXAMPLES, **COMMON)
@given(sequence=sequences)
def test_etcdx_matches_etcd_on_random_sequences(etcdx_pairs, sequence):
    _differential(etcdx_pairs, _BUDGETS["etcdx"], sequence)


@settings(max_examples=max(3, EXAMPLES // 3), **COMMON)
@given(sequence=sequences)
def test_etcdx_with_workers_matches_etcd(etcdx_worker_pairs, sequence):
    _differential(etcdx_worker_pairs, _BUDGETS["workers"], sequence)


@settings(max_examples=max(3, EXAMPLES // 6), **COMMON)
@given(sequence=sequences)
def test_harness_is_deterministic_on_two_real_etcds(etcd_pairs, sequence):
    _differential(etcd_pairs, _BUDGETS["etcd"], sequence)


def test_short_lease_ttl_is_raised_to_the_minimum(etcdx_pairs):
    """A TTL below the minimum (1.5 × election timeout, rounded up) is granted as the minimum."""
    ref, cand = etcdx_pairs.next_pair()
    seq = [
        Op("lease_grant", rpc_pb2.LeaseGrantRequest(ID=7, TTL=1)),
        Op("lease_revoke", rpc_pb2.LeaseRevokeRequest(ID=7)),
        Op("lease_grant", rpc_pb2.LeaseGrantRequest(ID=8, TTL=-5)),
        Op("lease_revoke", rpc_pb2.LeaseRevokeRequest(ID=8)),
    ]
    for op in seq:
        a, b = run_op(ref, op), run_op(cand, op)
        assert a == b, f"{op!r}\n  etcd: {a}\n  etcdx: {b}"


def test_live_watch_sees_the_same_events(etcdx_pairs):
    """A watcher created before the writes (start_revision 0) sees them live, identically."""
    ref, cand = etcdx_pairs.next_pair()
    sessions = {}
    for m in (ref, cand):
        s = compare.WatchSession(m.watch, timeout=15)
        s.send(
            rpc_pb2.WatchRequest(
                create_request=rpc_pb2.WatchCreateRequest(
                    key=b"a", range_end=b"b", prev_kv=True
                )
            )
        )
        sessions[m] = (s, iter(s))
    created = {m: compare.one_line(next(it)) for m, (s, it) in sessions.items()}
    writes = [
        Op("put", rpc_pb2.PutRequest(key=b"a", value=b"1")),
        Op("put", rpc_pb2.PutRequest(key=b"a/1", value=b"2")),
        Op("put", rpc_pb2.PutRequest(key=b"c", value=b"out of range")),
        Op(
            "txn",
            rpc_pb2.TxnRequest(
                success=[
                    rpc_pb2.RequestOp(
                        request_put=rpc_pb2.PutRequest(key=b"a", value=b"3")
                    ),
                    rpc_pb2.RequestOp(
                        request_delete_range=rpc_pb2.DeleteRangeRequest(key=b"a/1")
                    ),
                ]
            ),
        ),
        Op("delete", rpc_pb2.DeleteRangeRequest(key=b"a", range_end=b"b")),
    ]
    for op in writes:
        assert run_op(ref, op) == run_op(cand, op)
    got = {}
    for m, (s, it) in sessions.items():
        events = []
        try:
            while not events or events[-1].kv.mod_revision < 6:
                resp = next(it)
                events.extend(resp.events)
        finally:
            s.close()
        got[m] = [compare.one_line(e) for e in events]
    assert created[ref] == created[cand] or _same_but_ids(created[ref], created[cand])
    assert got[ref] == got[cand], compare.diff_lines(got[ref], got[cand])


def _same_but_ids(a: str, b: str) -> bool:
    def strip(s: str) -> str:
        import re

        return re.sub(r"(cluster_id|member_id|raft_term): \d+", "", s)

    return strip(a) == strip(b)
