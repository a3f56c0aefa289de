"""Safety properties of ``decide`` over arbitrary observations (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from etcdx.operator import spec as specs
from etcdx.operator.model import (
    Health,
    Observation,
    Process,
    PromoteMember,
    RaftMember,
    RemoveMember,
    RestartMember,
    Slot,
    StartMember,
    TransferLeadership,
    UpgradeMember,
)
from etcdx.operator.reconcile import decide, join, quorum

NOW = 1000.0

member_state = st.tuples(
    st.booleans(),                                   # learner
    st.sampled_from(list(Process)),                  # process
    st.booleans(),                                   # has data
    st.booleans(),                                   # answers
    st.sampled_from(["0.1.0", "0.2.0"]),             # version
    st.integers(0, 4),                               # failed starts
)


@st.composite
def observations(draw):
    states = draw(st.lists(member_state, min_size=1, max_size=6))
    slots, members, health = [], [], {}
    leader_id = 1 if draw(st.booleans()) else 0
    for i, (learner, process, data, answers, version, failed) in enumerate(states):
        peer, client = f"http://p{i}", f"http://c{i}"
        slots.append(Slot(f"demo-{i}", peer, client, process, data, version, failed,
                          NOW - draw(st.sampled_from([0, 100])) if process is Process.RUNNING and not answers else None))
        members.append(RaftMember(i + 1, f"demo-{i}", (peer,), (client,), learner and i > 0))
        if answers and process is Process.RUNNING:
            health[client] = Health(i + 1, leader_id, 100, draw(st.sampled_from([10, 100])), 5, learner and i > 0)
    return Observation(now=NOW, bootstrapped=True, slots=tuple(slots), membership=tuple(members), health=health,
                       installed_versions=frozenset({"0.1.0", "0.2.0"}))


def spec_of(size: int, version: str) -> specs.ClusterSpec:
    return specs.ClusterSpec(name="demo", size=size, version=version)


@settings(max_examples=400, deadline=None)
@given(observations(), st.integers(1, 7), st.sampled_from(["0.1.0", "0.2.0"]))
def test_a_removal_always_leaves_a_quorum_of_answering_voters(obs, size, version):
    decision = decide(spec_of(size, version), obs)
    views = join(obs)
    action = decision.action
    assert decision.reason
    if isinstance(action, RemoveMember):
        target = next(v for v in views if v.id == action.id)
        if target.is_voter:
            rest = [v for v in views if v.is_voter and v is not target]
            assert sum(v.healthy for v in rest) >= quorum(len(rest))
    if isinstance(action, (UpgradeMember, TransferLeadership, PromoteMember)):
        voters = [v for v in views if v.is_voter]
        assert all(v.healthy for v in voters), "rolls and promotions only in a fully answering cluster"
    if isinstance(action, StartMember):
        target = next(v for v in views if v.name == action.name)
        assert not target.running
    if isinstance(action, RestartMember):
        assert next(v for v in views if v.name == action.name).running
