"""Member processes for tests: moved to `etcdx.testing.procs` (so users' tests get them too).

This module keeps the old import path working with the same names.
"""

from etcdx.pb import rpc_pb2, rpc_pb2_grpc  # noqa: F401  (tests reach the stubs through here)
from etcdx.testing.procs import (  # noqa: F401
    ETCD_BIN,
    ETCD_UNAVAILABLE,
    ETCDCTL_BIN,
    ETCDX_MODULE,
    ETCDX_UNAVAILABLE,
    REPO_ROOT,
    SETPRIV,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Member,
    MemberGroup,
    MemberStartError,
    candidate_kind,
    etcd_available,
    etcdctl_available,
    etcdx_available,
    fast_tmp_root,
    free_port,
    require,
    start_members,
)
