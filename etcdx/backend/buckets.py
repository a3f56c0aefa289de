"""Bucket names: LMDB named databases, one per etcd bbolt bucket.

etcd's bucket names are kept so that tools and hashes that name buckets line
up; ``index_tree`` is etcdx's own (see ``etcdx.mvcc.key_index``).
"""

KEY = b"key"
INDEX = b"index"
INDEX_TREE = b"index_tree"
META = b"meta"
LEASE = b"lease"
LEASE_KEYS = b"lease_keys"
AUTH = b"auth"
AUTH_USERS = b"authUsers"
AUTH_ROLES = b"authRoles"
MEMBERS = b"members"
MEMBERS_REMOVED = b"members_removed"
ALARM = b"alarm"
CLUSTER = b"cluster"

ALL: tuple[bytes, ...] = (
    KEY, INDEX, INDEX_TREE, META, LEASE, LEASE_KEYS, AUTH, AUTH_USERS,
    AUTH_ROLES, MEMBERS, MEMBERS_REMOVED, ALARM, CLUSTER,
)

# Keys of the meta bucket written by the backend itself (etcd's names).
META_CONSISTENT_INDEX = b"consistent_index"
META_TERM = b"term"
