"""An etcd database (bbolt) loaded into a fresh etcdx backend.

The ``key`` bucket is copied byte for byte (so HashKV is the same number on
both sides) and etcdx's own structures are rebuilt from it as it streams by:
the key index (``index``, ``index_tree``) from every revision, then the
lease attachments (``lease_keys``) from each key's newest live revision.
Nothing per key is held in RAM; the writes go to LMDB in transactions of
bounded size, so memory stays flat however big the database is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from etcdx.backend import Backend, WriteTxn, buckets
from etcdx.bbolt import Bucket, Reader
from etcdx.lease import attachment
from etcdx.lease.lease import Lease, id_key
from etcdx.lease.lease import encode as encode_lease
from etcdx.mvcc import revision as rev
from etcdx.mvcc.key_index import KeyIndex
from etcdx.mvcc.meta import revisions
from etcdx.pb import kv_pb2
from etcdx.server.membership import save_member
from etcdx.snapshot import layout
from etcdx.snapshot.layout import LayoutError

BATCH_ENTRIES = 20_000
BATCH_BYTES = 32 << 20
"""A write transaction is committed after this many entries or bytes (LMDB keeps its dirty pages in RAM)."""

Progress = Callable[[int], None]
"""Called with the number of database bytes just processed (roughly: keys, values, element headers)."""


@dataclass
class Loaded:
    """What was loaded: the store's revision, compact revision and sizes."""

    revision: int
    compact_revision: int
    revisions: int
    leases: int
    auth_enabled: bool


def load(reader: Reader, backend: Backend, *, members: bool = True,
         progress: Progress | None = None) -> Loaded:
    """Load the etcd database in ``reader`` into ``backend``, which must be empty.

    ``members=False`` leaves out the members and removed members (a restore
    makes a new cluster and writes its own). Raises ``LayoutError`` (or the
    reader's ``CorruptDatabaseError``) for a file that is not an etcd
    database; the backend is then half-loaded and should be thrown away.
    """
    report = progress or (lambda n: None)
    root = reader.root()
    key_bucket, meta = root.bucket(layout.KEY), root.bucket(layout.META)
    if key_bucket is None or meta is None:
        raise LayoutError("not an etcd database: it has no key or meta bucket")
    with backend.read() as txn:
        if txn.get(buckets.META, buckets.META_CONSISTENT_INDEX) is not None or any(True for _ in txn.scan(buckets.KEY, b"")):
            raise ValueError(f"backend {backend.path} is not empty")
    count = _load_revisions(key_bucket, backend, report)
    _load_meta(meta, backend)
    leases = _load_leases(root.bucket(layout.LEASE), backend, report)
    if leases:
        _attach_lease_keys(backend)
    auth_enabled = _load_small_buckets(root, backend, members)
    with backend.read() as txn:
        current, compacted = revisions(txn)
    return Loaded(current, compacted, count, leases, auth_enabled)


def _batches(items, backend: Backend, put: Callable[[WriteTxn, object, bytes, bytes], int]) -> int:
    """Feed ``items`` to ``put(txn, state, key, value)`` in write transactions of bounded size.

    ``put`` returns the bytes it wrote; ``state`` is a per-transaction
    ``KeyIndex``. Returns how many items there were.
    """
    items = iter(items)
    count = 0
    while True:
        done = True
        with backend.write() as btx:
            index = KeyIndex(btx)
            entries = size = 0
            for key, value in items:
                size += put(btx, index, key, value)
                entries += 1
                if entries >= BATCH_ENTRIES or size >= BATCH_BYTES:
                    done = False
                    break
        count += entries
        if done:
            return count


def _load_revisions(key_bucket: Bucket, backend: Backend, report: Progress) -> int:
    def put(btx: WriteTxn, index: KeyIndex, key: bytes, value: bytes | None) -> int:
        if value is None:
            raise LayoutError(f"key bucket: {key!r} is a nested bucket")
        if len(key) not in (rev.REVISION_BYTES, rev.REVISION_BYTES + 1) or key[8:9] != b"_" or (
                len(key) > rev.REVISION_BYTES and key[-1:] != rev.TOMBSTONE_MARK):
            raise LayoutError(f"key bucket: {key.hex()} is not a revision")
        kv = kv_pb2.KeyValue()
        try:
            kv.ParseFromString(value)
        except DecodeError as err:
            raise LayoutError(f"key bucket: revision {key.hex()} holds no mvccpb.KeyValue: {err}") from None
        if not kv.key:
            raise LayoutError(f"key bucket: revision {key.hex()} has an empty key")
        r = rev.decode(key)
        btx.append(buckets.KEY, key, value)
        index.add(index.ref(kv.key, create=True), r.main, r.sub, r.tombstone)
        size = len(key) + len(value) + 16
        report(size)
        return size

    return _batches(key_bucket.items(), backend, put)


def _load_meta(meta: Bucket, backend: Backend) -> None:
    with backend.write() as btx:
        for name in layout.META_KEYS:
            value = meta.get(name)
            if value is None:
                continue
            want = 8 if name in (layout.META_CONSISTENT_INDEX, layout.META_TERM) else rev.REVISION_BYTES
            if len(value) != want:
                raise LayoutError(f"meta bucket: {name.decode()} has {len(value)} bytes, not {want}")
            btx.put(buckets.META, name, value)


def _load_leases(bucket: Bucket | None, backend: Backend, report: Progress) -> int:
    if bucket is None:
        return 0

    def put(btx: WriteTxn, _index: KeyIndex, key: bytes, value: bytes | None) -> int:
        if value is None:
            raise LayoutError(f"lease bucket: {key!r} is a nested bucket")
        lease = layout.lease_from_etcd(key, value)
        btx.put(buckets.LEASE, id_key(lease.ID), encode_lease(Lease(lease.ID, lease.TTL, lease.RemainingTTL)))
        report(len(key) + len(value) + 16)
        return len(key) + len(value)

    return _batches(bucket.items(), backend, put)


def _attach_lease_keys(backend: Backend) -> None:
    """Bind every key whose newest revision is live and names a lease to it.

    A key whose lease does not exist stays unbound, as etcd leaves it (it logs
    the failed attach when it restores such a store).
    """
    def attachments():
        with backend.read() as txn:
            index = KeyIndex(txn)
            values = txn.cursor(buckets.KEY)
            for _, entry in index.walk(b"", None):
                if entry.tombstone:
                    continue
                kv = kv_pb2.KeyValue.FromString(values.get(rev.encode(entry.main, entry.sub)))
                if kv.lease and txn.get(buckets.LEASE, id_key(kv.lease)) is not None:
                    yield attachment.row_key(kv.lease, kv.key)

    def put(btx: WriteTxn, _index: KeyIndex, row: bytes, value: bytes) -> int:
        btx.put(attachment.BUCKET, row, value)
        return len(row) + len(value)

    _batches(attachments(), backend, put)


def _load_small_buckets(root: Bucket, backend: Backend, members: bool) -> bool:
    """Alarms, membership, cluster version and auth; returns whether auth is enabled."""
    auth_enabled = False
    with backend.write() as btx:
        for name, target in ((layout.CLUSTER, buckets.CLUSTER), (layout.AUTH, buckets.AUTH),
                             (layout.AUTH_USERS, buckets.AUTH_USERS), (layout.AUTH_ROLES, buckets.AUTH_ROLES)):
            for key, value in _plain_items(root, name):
                btx.put(target, key, value)
                if name == layout.AUTH and key == layout.AUTH_ENABLED_KEY:
                    auth_enabled = value == b"\x01"
        for key, _ in _plain_items(root, layout.ALARM):
            btx.put(buckets.ALARM, layout.alarm_from_etcd(key), b"")
        if members:
            for key, value in _plain_items(root, layout.MEMBERS):
                save_member(btx, layout.member_from_etcd(key, value))
            for key, _ in _plain_items(root, layout.MEMBERS_REMOVED):
                btx.put(buckets.MEMBERS_REMOVED, layout.removed_from_etcd(key).to_bytes(8, "big"), layout.REMOVED)
    return auth_enabled


def _plain_items(root: Bucket, name: bytes):
    bucket = root.bucket(name)
    if bucket is None:
        return
    for key, value in bucket.items():
        if value is None:
            raise LayoutError(f"{name.decode()} bucket: {key!r} is a nested bucket")
        yield key, value
