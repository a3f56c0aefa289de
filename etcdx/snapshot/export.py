"""etcdx's backend as etcd's: a bbolt database with etcd's buckets and layout.

The export reads one LMDB read transaction, so it is a point-in-time copy
however long it takes, and streams the big buckets (``key``, ``lease``) in
key order straight into the bbolt writer: memory stays bounded whatever the
store's size. The small buckets (members, alarms, meta) are converted and
sorted in memory, since their keys sort differently in etcd's form.

The result is what ``etcdctl snapshot save`` stores (once the stream's
SHA-256 trailer is appended; see ``stream``) and what ``etcdctl snapshot
restore`` and ``etcdxutl snapshot restore`` read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import BinaryIO

from etcdx.backend import Backend, ReadTxn, buckets
from etcdx.bbolt import Writer
from etcdx.lease.lease import decode as decode_lease
from etcdx.server.membership import Member
from etcdx.snapshot import layout

Items = Iterable[tuple[bytes, bytes]]


def export_backend(backend: Backend, out: BinaryIO, *, cluster_version: str) -> int:
    """Write ``backend`` (as of now) to ``out`` as an etcd database; returns its size."""
    with backend.read() as txn:
        return export(txn, out, cluster_version=cluster_version)


def export(txn: ReadTxn, out: BinaryIO, *, cluster_version: str) -> int:
    """Write the store as ``txn`` sees it to ``out`` (an empty seekable file).

    ``cluster_version`` goes into the ``cluster`` bucket unless the backend
    records one.
    """
    writer = Writer(out)
    contents = {
        layout.ALARM: sorted((layout.alarm_to_etcd(k), b"") for k, _ in txn.scan(buckets.ALARM, b"")),
        layout.AUTH: _with_default(txn.scan(buckets.AUTH, b""), layout.AUTH_REVISION_KEY,
                                   layout.INITIAL_AUTH_REVISION),
        layout.AUTH_ROLES: txn.scan(buckets.AUTH_ROLES, b""),
        layout.AUTH_USERS: txn.scan(buckets.AUTH_USERS, b""),
        layout.CLUSTER: _with_default(txn.scan(buckets.CLUSTER, b""), layout.CLUSTER_VERSION_KEY,
                                      cluster_version.encode()),
        layout.KEY: txn.scan(buckets.KEY, b""),
        layout.LEASE: _leases(txn),
        layout.MEMBERS: sorted((layout.member_key(m.id), layout.member_to_etcd(m))
                               for m in (Member.decode(v) for _, v in txn.scan(buckets.MEMBERS, b""))),
        layout.MEMBERS_REMOVED: sorted((layout.member_key(int.from_bytes(k, "big")), layout.REMOVED)
                                       for k, _ in txn.scan(buckets.MEMBERS_REMOVED, b"")),
        layout.META: [(k, v) for k in sorted(layout.META_KEYS)
                      if (v := txn.get(buckets.META, k)) is not None],
    }
    for name in layout.BUCKETS:
        with writer.bucket(name) as bucket:
            for key, value in contents[name]:
                bucket.put(key, value)
    return writer.close()


def _leases(txn: ReadTxn) -> Iterator[tuple[bytes, bytes]]:
    # etcdx's lease keys are etcd's (the id, 8 bytes big-endian), so the order carries over.
    for key, value in txn.scan(buckets.LEASE, b""):
        lease = decode_lease(value)
        yield key, layout.lease_to_etcd(lease.id, lease.ttl, lease.remaining_ttl)


def _with_default(items: Items, key: bytes, value: bytes) -> list[tuple[bytes, bytes]]:
    """A small bucket's items, with ``key`` added when missing."""
    out = dict(items)
    out.setdefault(key, value)
    return sorted(out.items())
