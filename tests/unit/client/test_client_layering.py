"""The client is a library for other programs: it must not pull in the server or storage."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("etcdx.server", "etcdx.api", "etcdx.mvcc", "etcdx.backend", "etcdx.wal", "etcdx.raft", "etcdx.lease",
             "etcdx.transport", "etcdx.auth")  # fmt: skip


def test_importing_the_client_loads_nothing_of_the_server():
    code = (
        "import sys, etcdx.client, etcdx.client.aio\n"
        f"print('\\n'.join(m for m in sys.modules if m.startswith({FORBIDDEN!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
