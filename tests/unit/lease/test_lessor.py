"""The lessor's contract with the applier and the leader loop, on a real backend and an injected clock."""

from __future__ import annotations

import pytest

from etcdx.backend import Backend
from etcdx.lease import (
    MAX_LEASE_TTL,
    LeaseExistsError,
    LeaseNotFoundError,
    LeaseNotPrimaryError,
    LeaseTTLTooLargeError,
    Lessor,
)
from etcdx.lease.lessor import EXPIRED_RETRY_INTERVAL


@pytest.fixture
def backend(tmp_path):
    b = Backend(str(tmp_path / "db"), map_size=256 << 20)
    yield b
    b.close()


@pytest.fixture
def lessor(backend) -> Lessor:
    lessor = Lessor(backend)
    lessor.promote(now=0.0)
    return lessor


def grant(backend, lessor: Lessor, lease_id: int, ttl: int, now: float = 0.0):
    with backend.write() as txn:
        return lessor.grant(txn, lease_id, ttl, now)


def attach(backend, lessor: Lessor, lease_id: int, *keys: bytes) -> None:
    with backend.write() as txn:
        for key in keys:
            lessor.attach(txn, lease_id, key)


def revoke(backend, lessor: Lessor, lease_id: int) -> list[bytes]:
    with backend.write() as txn:
        return lessor.revoke(txn, lease_id)


def test_granted_lease_expires_after_its_ttl(backend, lessor):
    grant(backend, lessor, 1, 10, now=100.0)
    assert lessor.expired(109.9) == []
    assert lessor.expired(110.0) == [1]


def test_leases_expire_in_deadline_order_not_grant_order(backend, lessor):
    for lease_id, ttl in [(1, 30), (2, 10), (3, 20)]:
        grant(backend, lessor, lease_id, ttl)
    assert lessor.expired(100.0) == [2, 3, 1]


def test_expired_respects_the_limit_and_returns_the_rest_later(backend, lessor):
    for lease_id in range(1, 6):
        grant(backend, lessor, lease_id, 10 + lease_id)
    assert lessor.expired(100.0, limit=2) == [1, 2]
    assert lessor.expired(100.0, limit=10) == [3, 4, 5]


def test_an_expired_lease_is_reported_again_until_its_revoke_is_applied(backend, lessor):
    grant(backend, lessor, 1, 10)
    assert lessor.expired(10.0) == [1]
    assert lessor.expired(10.0 + EXPIRED_RETRY_INTERVAL - 0.1) == []
    assert lessor.expired(10.0 + EXPIRED_RETRY_INTERVAL) == [1]
    revoke(backend, lessor, 1)
    assert lessor.expired(1000.0) == []


def test_renew_restarts_the_full_ttl(backend, lessor):
    grant(backend, lessor, 1, 10)
    assert lessor.renew(1, now=8.0) == 10
    assert lessor.expired(17.9) == []
    assert lessor.expired(18.0) == [1]


def test_renew_of_an_expired_lease_awaiting_revoke_is_not_found(backend, lessor):
    grant(backend, lessor, 1, 10)
    with pytest.raises(LeaseNotFoundError):
        lessor.renew(1, now=10.0)
    with pytest.raises(LeaseNotFoundError):
        lessor.renew(99, now=0.0)


def test_renew_off_the_primary_is_refused(backend):
    lessor = Lessor(backend)
    grant(backend, lessor, 1, 10)
    with pytest.raises(LeaseNotPrimaryError):
        lessor.renew(1, now=0.0)


def test_ttl_below_the_minimum_is_raised_to_it(backend, lessor):
    assert grant(backend, lessor, 1, 1).ttl == 2
    assert grant(backend, lessor, 2, -5).ttl == 2
    assert Lessor(backend, min_ttl=5).lookup(1).ttl == 2  # stored TTLs are not re-clamped


def test_ttl_above_the_maximum_is_refused(backend, lessor):
    assert grant(backend, lessor, 1, MAX_LEASE_TTL).ttl == MAX_LEASE_TTL
    with pytest.raises(LeaseTTLTooLargeError):
        grant(backend, lessor, 2, MAX_LEASE_TTL + 1)
    assert lessor.lookup(2) is None


def test_granting_an_existing_id_is_refused(backend, lessor):
    grant(backend, lessor, 1, 10)
    with pytest.raises(LeaseExistsError):
        grant(backend, lessor, 1, 20)
    assert lessor.lookup(1).ttl == 10


def test_lease_id_zero_means_no_lease_and_cannot_be_granted(backend, lessor):
    with pytest.raises(LeaseNotFoundError):
        grant(backend, lessor, 0, 10)


def test_revoke_returns_the_attached_keys_sorted_and_forgets_them(backend, lessor):
    grant(backend, lessor, 1, 10)
    grant(backend, lessor, 2, 10)
    attach(backend, lessor, 1, b"b", b"a", b"c\x00z")
    attach(backend, lessor, 2, b"other")
    assert revoke(backend, lessor, 1) == [b"a", b"b", b"c\x00z"]
    assert lessor.lookup(1) is None
    assert lessor.keys(1) == []
    assert lessor.keys(2) == [b"other"]
    with pytest.raises(LeaseNotFoundError):
        revoke(backend, lessor, 1)


def test_a_key_moved_to_another_lease_leaves_the_first(backend, lessor):
    grant(backend, lessor, 1, 10)
    grant(backend, lessor, 2, 10)
    attach(backend, lessor, 1, b"k")
    with backend.write() as txn:
        assert lessor.detach(txn, 1, b"k")
        lessor.attach(txn, 2, b"k")
    assert revoke(backend, lessor, 1) == []
    assert lessor.keys(2) == [b"k"]


def test_detach_of_an_unbound_key_or_gone_lease_is_harmless(backend, lessor):
    with backend.write() as txn:
        assert lessor.detach(txn, 7, b"k") is False


def test_attach_to_a_missing_lease_is_not_found(backend, lessor):
    with pytest.raises(LeaseNotFoundError):
        attach(backend, lessor, 5, b"k")


def test_keys_longer_than_lmdb_allows_attach_and_come_back_from_revoke(backend, lessor):
    grant(backend, lessor, 1, 10)
    long_keys = [b"x" * 5000, b"y" * 401, b"z" * 400]
    attach(backend, lessor, 1, *long_keys)
    assert lessor.keys(1) == sorted(long_keys)
    with backend.write() as txn:
        assert lessor.detach(txn, 1, b"x" * 5000)
    assert revoke(backend, lessor, 1) == [b"y" * 401, b"z" * 400]


def test_negative_and_extreme_ids_keep_their_keys_apart(backend, lessor):
    ids = [-1, -(2**63), 2**63 - 1, 1]
    for lease_id in ids:
        grant(backend, lessor, lease_id, 10)
        attach(backend, lessor, lease_id, b"key%d" % lease_id)
    for lease_id in ids:
        assert revoke(backend, lessor, lease_id) == [b"key%d" % lease_id]


def test_time_to_live_reports_remaining_granted_and_keys(backend, lessor):
    grant(backend, lessor, 1, 10, now=0.0)
    attach(backend, lessor, 1, b"a", b"b")
    assert lessor.time_to_live(1, now=2.5, keys=True) == (7, 10, [b"a", b"b"])
    assert lessor.time_to_live(1, now=2.5) == (7, 10, [])
    assert lessor.time_to_live(9, now=2.5, keys=True) == (-1, 0, [])


def test_leases_and_lookup_list_what_was_granted(backend, lessor):
    grant(backend, lessor, 2, 20)
    grant(backend, lessor, 1, 30)
    assert [lease.id for lease in lessor.leases()] == [2, 1]
    assert lessor.lookup(1).ttl == 30


def test_leases_keys_and_checkpoints_survive_a_restart(backend, lessor, tmp_path):
    grant(backend, lessor, 1, 100)
    grant(backend, lessor, 2, 50)
    attach(backend, lessor, 1, b"k1", b"k2")
    with backend.write() as txn:
        lessor.checkpoint(txn, 1, 40, now=60.0)
    revoke(backend, lessor, 2)
    reopened = Lessor(backend)
    assert [(lease.id, lease.ttl, lease.remaining_ttl) for lease in reopened.leases()] == [(1, 100, 40)]
    assert reopened.keys(1) == [b"k1", b"k2"]
    assert reopened.expired(10**9) == []  # not primary: nothing expires
    reopened.promote(now=1000.0)
    assert reopened.expired(1039.9) == []
    assert reopened.expired(1040.0) == [1]


def test_an_aborted_apply_txn_persists_nothing(backend, lessor):
    with pytest.raises(RuntimeError):
        with backend.write() as txn:
            lessor.grant(txn, 1, 10, 0.0)
            raise RuntimeError("apply failed")
    assert Lessor(backend).lookup(1) is None


def test_followers_do_not_expire_leases_until_promoted(backend):
    follower = Lessor(backend)
    grant(backend, follower, 1, 10, now=0.0)
    assert follower.expired(1000.0) == []
    assert follower.time_to_live(1, now=1000.0) == (10, 10, [])
    follower.promote(now=1000.0, extend=2.0)
    assert follower.expired(1011.9) == []
    assert follower.expired(1012.0) == [1]


def test_a_new_leader_restarts_every_ttl_as_etcd_does(backend, lessor):
    grant(backend, lessor, 1, 10, now=0.0)
    lessor.demote()
    assert lessor.expired(100.0) == []
    lessor.promote(now=100.0)
    assert lessor.expired(109.9) == []
    assert lessor.expired(110.0) == [1]


def test_a_checkpoint_is_what_a_new_leader_counts_down_from(backend, lessor):
    grant(backend, lessor, 1, 3600, now=0.0)
    with backend.write() as txn:
        lessor.checkpoint(txn, 1, 60, now=3540.0)
    lessor.demote()
    lessor.promote(now=5000.0)
    assert lessor.time_to_live(1, now=5000.0)[0] == 60


def test_renew_drops_a_checkpointed_remaining_ttl(backend, lessor):
    grant(backend, lessor, 1, 3600, now=0.0)
    with backend.write() as txn:
        lessor.checkpoint(txn, 1, 60, now=0.0)
    assert lessor.renew(1, now=10.0) == 3600
    assert lessor.time_to_live(1, now=10.0)[0] == 3600


def test_many_leases_expire_in_order_quickly(backend, lessor):
    n = 100_000
    with backend.write() as txn:
        for i in range(n):
            lessor.grant(txn, i + 1, 10 + (i * 7919) % n, now=0.0)
    assert lessor.expired(9.9, limit=n) == []
    seen: list[int] = []
    while batch := lessor.expired(float(n + 10), limit=1000):
        seen += batch
    deadlines = [lessor.lookup(i).expiry for i in seen]
    assert sorted(seen) == list(range(1, n + 1))
    assert deadlines == sorted(deadlines)


def test_promote_spreads_a_pile_of_simultaneous_expiries(backend):
    n = 3000
    follower = Lessor(backend)
    with backend.write() as txn:
        for i in range(n):
            follower.grant(txn, i + 1, 10, now=0.0)
    follower.promote(now=0.0)
    per_second: dict[int, int] = {}
    for lease in follower.leases():
        per_second[int(lease.expiry)] = per_second.get(int(lease.expiry), 0) + 1
    assert min(lease.expiry for lease in follower.leases()) == 10.0
    assert max(per_second.values()) <= 750
    assert sum(per_second.values()) == n
