"""Build etcdx backends holding what a member holds: keys with history,
tombstones, leases with attached keys, compaction, alarms and members.

``Op``s are applied the way the applier applies requests (a put moves its
key's lease attachment, a delete or revoke detaches), so the lease_keys
bucket is what a running member would have.
"""

from __future__ import annotations

import random
from typing import NamedTuple

from hypothesis import strategies as st

from etcdx.backend import Backend, buckets
from etcdx.lease import Lessor
from etcdx.mvcc import KVStore
from etcdx.server.alarms import AlarmStore
from etcdx.server.membership import Member, save_member

LEASES = (0x1111, 0x2222, 0x7FFF_0000_0000_0001)


class Op(NamedTuple):
    kind: str  # put, delete, grant, revoke, compact
    key: bytes = b""
    value: bytes = b""
    lease: int = 0


# Keys share prefixes, include zero bytes, and a few are long enough for the
# key index's trie (over 448 bytes encoded).
_keys = st.one_of(st.sampled_from([b"a", b"a\x00", b"ab", b"b/1", b"b/2", b"\xff"]),
                  st.builds(lambda n: b"long/" + b"x" * n, st.sampled_from([500, 1000])),
                  st.binary(min_size=1, max_size=8))
_ops = st.one_of(
    st.builds(Op, st.just("put"), _keys, st.binary(max_size=40), st.sampled_from((0, 0) + LEASES)),
    st.builds(Op, st.just("delete"), _keys),
    st.builds(Op, st.just("grant"), lease=st.sampled_from(LEASES)),
    st.builds(Op, st.just("revoke"), lease=st.sampled_from(LEASES)),
    st.builds(Op, st.just("compact")),
)
op_lists = st.lists(_ops, max_size=40)


def random_ops(seed: int, n: int) -> list[Op]:
    rnd = random.Random(seed)
    keys = [b"k%03d" % i for i in range(50)] + [b"long/" + b"y" * 700]
    ops: list[Op] = [Op("grant", lease=lease) for lease in LEASES]
    for _ in range(n):
        r = rnd.random()
        if r < 0.7:
            ops.append(Op("put", rnd.choice(keys), rnd.randbytes(rnd.randrange(0, 60)),
                          rnd.choice((0, 0, 0) + LEASES)))
        elif r < 0.9:
            ops.append(Op("delete", rnd.choice(keys)))
        elif r < 0.95:
            ops.append(Op("compact"))
        elif r < 0.97:
            ops.append(Op("revoke", lease=rnd.choice(LEASES)))
        else:
            ops.append(Op("grant", lease=rnd.choice(LEASES)))
    return ops


def apply(backend: Backend, ops: list[Op], *, members: list[Member] = (), removed: list[int] = (),
          alarms: list[tuple[int, int]] = (), applied: tuple[int, int] = (7, 3)) -> None:
    """Apply ``ops`` (each its own revision when it changes anything), then
    record members, alarms and the consistent index."""
    kv = KVStore(backend)
    lessor = Lessor(backend, min_ttl=1)
    compact_to = 1
    for op in ops:
        with backend.write() as btx:
            w = kv.write(btx)
            if op.kind == "put":
                if op.lease and lessor.lookup(op.lease) is None:
                    continue
                prev = w.put(op.key, op.value, op.lease)
                if prev is not None and prev.lease and prev.lease != op.lease:
                    lessor.detach(btx, prev.lease, op.key)
                if op.lease and (prev is None or prev.lease != op.lease):
                    lessor.attach(btx, op.lease, op.key)
            elif op.kind == "delete":
                for prev in w.delete_range(op.key):
                    if prev.lease:
                        lessor.detach(btx, prev.lease, prev.key)
            elif op.kind == "grant":
                if lessor.lookup(op.lease) is None:
                    lessor.grant(btx, op.lease, 60, 0.0)
            elif op.kind == "revoke":
                if lessor.lookup(op.lease) is not None:
                    for key in lessor.revoke(btx, op.lease):
                        w.delete_range(key)
            elif op.kind == "compact":
                current = w.revision
                if current > compact_to:
                    compact_to = (compact_to + current + 1) // 2
                    kv.compact(compact_to, btx)
            w.end()
        while True:
            with backend.write() as btx:
                if kv.compact_step(btx, 7):
                    break
    with backend.write() as btx:
        for m in members:
            save_member(btx, m)
        for member_id in removed:
            btx.put(buckets.MEMBERS_REMOVED, member_id.to_bytes(8, "big"), b"removed")
        alarm_store = AlarmStore(backend)
        for member_id, alarm in alarms:
            alarm_store.activate(btx, member_id, alarm)
        btx.set_consistent_index(*applied)
