"""aetcd's own auth test (``test_auth`` from aetcd 1.0.0's suite), run against etcd and etcdx.

aetcd ships its own generated etcd protos, which cannot share a process with
etcdx.pb (see test_python_client.py), so its tests run in a child pytest, with
aetcd's conftest and its settings (``tests/support/aetcd_suite``: the files
are aetcd's, unchanged, plus a plugin that points ``aetcd.Client()``'s default
endpoint at the member under test). Needs aetcd and pytest-asyncio.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest
from support import procs

SUITE = pathlib.Path(__file__).resolve().parents[1] / "support" / "aetcd_suite"

pytestmark = [pytest.mark.etcd, pytest.mark.timeout(180)]


def run_aetcd_tests(member: procs.Member, *tests: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, TEST_ETCD_HTTP_URL=member.client_url, ETCDCTL_API="3",
               PYTHONPATH=os.pathsep.join(filter(None, [str(SUITE), os.environ.get("PYTHONPATH")])))
    env = {k: v for k, v in env.items() if not k.startswith("ETCDCTL_") or k == "ETCDCTL_API"}
    return subprocess.run(
        # etcdx's own pytest plugin would import etcdx.pb into the process: aetcd's protos clash with it
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:etcdx.testing.plugin",
         "-p", "aetcd_conftest",
         "-p", "endpoint_plugin", "-c", str(SUITE / "pytest.ini"), "--rootdir", str(SUITE),
         *(str(SUITE / t) for t in tests)],
        capture_output=True, text=True, env=env, cwd=SUITE, timeout=150, check=False)


def require_aetcd_suite() -> None:
    r = subprocess.run([sys.executable, "-c", "import aetcd, pytest_asyncio"], capture_output=True, check=False)
    if r.returncode != 0:
        pytest.skip("aetcd or pytest-asyncio not installed (pip install aetcd==1.0.0 pytest-asyncio)")
    procs.require("etcdctl")


@pytest.mark.parametrize("kind, args", [("etcd", []), ("etcdx", []), ("etcdx", ["--api-workers", "2"])],
                         ids=["etcd", "etcdx", "etcdx-workers"])
def test_aetcd_own_auth_test_passes(kind, args, member_group):
    require_aetcd_suite()
    procs.require(kind)
    member = member_group.new(kind, extra_args=args)
    r = run_aetcd_tests(member, "aetcd_test_auth.py")
    assert r.returncode == 0, f"{r.stdout[-3000:]}\n{r.stderr[-2000:]}\n--- member log ---\n{member.log_tail(30)}"
    assert "1 passed" in r.stdout
