"""KVStore agrees with a plain model of etcd's MVCC over random histories."""

import shutil
import tempfile

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from etcdx.backend import Backend, buckets
from etcdx.mvcc import CompactedError, FutureRevisionError, KVStore
from etcdx.mvcc.key_index import CHUNK

from .model import Model

# Short keys, keys with zero bytes, and long keys that share prefixes longer
# than the index's chunk (so they live in its trie), around its boundaries.
BASES = [b"", b"a", b"\x00", b"\xff", b"p" * (CHUNK - 3), b"p" * 600, b"p" * 600 + b"\x00" * 300,
         b"q" * (3 * CHUNK + 5)]
keys = st.builds(lambda base, tail: base + tail, st.sampled_from(BASES),
                 st.binary(max_size=3).map(lambda b: bytes(c % 4 * 85 for c in b))
                 ).filter(bool)
range_ends = st.one_of(st.just(b""), st.just(b"\x00"), keys)
ops = st.lists(st.one_of(
    st.tuples(st.just("put"), keys, st.binary(max_size=4), st.integers(0, 2)),
    st.tuples(st.just("delete"), keys, range_ends),
), min_size=1, max_size=4)


def view(kv):
    return (kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease)


def model_view(m):
    return (m.key, m.value, m.create_revision, m.mod_revision, m.version, m.lease)


class KVStoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.backend = Backend(self.dir, map_size=1 << 28)
        self.store = KVStore(self.backend)
        self.model = Model()

    def teardown(self):
        self.backend.close()
        shutil.rmtree(self.dir)

    def _apply(self, txn, batch):
        w = self.store.write(txn)
        for op in batch:
            if op[0] == "put":
                w.put(op[1], op[2], op[3])
            else:
                w.delete_range(op[1], op[2])
        got = [(("PUT", "DELETE")[e.type], e.kv.key, e.kv.mod_revision,
                e.prev_kv.value if e.HasField("prev_kv") else None) for e in w.end()]
        assert got == self.model.txn(batch)

    @rule(batches=st.lists(ops, min_size=1, max_size=3))
    def write(self, batches):
        """Several etcd txns in one backend write transaction."""
        with self.backend.write() as txn:
            for batch in batches:
                self._apply(txn, batch)

    @rule(key=keys, end=range_ends, back=st.integers(0, 10), limit=st.integers(0, 3),
          count_only=st.booleans())
    def range(self, key, end, back, limit, count_only):
        at = max(self.model.revision - back, 0)
        if 0 < at < self.model.compact_revision:
            with pytest.raises(CompactedError):
                self.store.range(key, end, revision=at)
            return
        got = self.store.range(key, end, revision=at, limit=limit, count_only=count_only)
        want = self.model.range(key, end, at or self.model.revision)
        assert got.count == len(want)
        expected = [] if count_only else want[:limit] if limit else want
        assert [view(kv) for kv in got.kvs] == [model_view(m) for m in expected]
        assert got.revision == self.model.revision

    @rule(key=keys, end=range_ends)
    def range_inside_write_sees_own_changes(self, key, end):
        with self.backend.write() as txn:
            w = self.store.write(txn)
            w.put(key, b"mine")
            got = w.range(key, end)
            self.model.txn([("put", key, b"mine", 0)])
            assert w.revision == self.model.revision
            want = self.model.range(key, end, self.model.revision)
            assert [view(kv) for kv in got.kvs] == [model_view(m) for m in want]
            w.end()

    @rule()
    def future_revision_is_rejected(self):
        with pytest.raises(FutureRevisionError):
            self.store.range(b"a", revision=self.model.revision + 1)

    @precondition(lambda self: self.model.revision > self.model.compact_revision)
    @rule(data=st.data(), batch=st.integers(1, 3), steps=st.integers(0, 3))
    def compact(self, data, batch, steps):
        """Schedule a compaction and run only some of its steps."""
        at = data.draw(st.integers(self.model.compact_revision + 1, self.model.revision))
        with self.backend.write() as txn:
            self.store.compact(at, txn)
        self.model.compact_revision = at
        for _ in range(steps):
            with self.backend.write() as txn:
                self.store.compact_step(txn, batch)

    @rule()
    def finish_compaction_and_check_what_remains(self):
        done = False
        while not done:
            with self.backend.write() as txn:
                done = self.store.compact_step(txn, 2)
        c = max(self.model.compact_revision, 0)
        expected = len(self.model.states[c]) + sum(self.model.changes[c + 1:])
        with self.backend.read() as txn:
            stored = sum(1 for _ in txn.scan(buckets.KEY, b""))
            index = [*txn.scan(buckets.INDEX, b""), *txn.scan(buckets.INDEX_TREE, b"")]
            pointed = {v for _, v in index if len(v) == 16}
            nodes = {k[:16] for k, _ in txn.scan(buckets.INDEX_TREE, b"")}
        assert stored == expected
        assert sum(1 for _, v in index if len(v) == 1) == stored  # one entry per revision
        assert pointed == nodes  # no dangling trie pointer, no unreachable node

    @invariant()
    def revisions_agree(self):
        assert self.store.current_revision == self.model.revision
        assert self.store.compact_revision == self.model.compact_revision


KVStoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=25,
                                            deadline=None)
test_kvstore_matches_model = KVStoreMachine.TestCase
