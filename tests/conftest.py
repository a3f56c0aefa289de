"""Fixtures shared by all test layers: real etcd and etcdx member processes.

- `etcd_server` / `etcdx_server`: one fresh single-member server per test
  (function scope; data dir under the test's tmp_path). `etcd_server` skips
  when /usr/bin/etcd is missing; `etcdx_server` skips only while
  `etcdx.main` does not exist.
- `member_group`: a `MemberGroup` for tests that need custom flags, several
  members, or restarts on the same data dir; every member it made is stopped at
  teardown.
- the fixtures of `etcdx.testing.plugin` (`etcdx_member`, `etcdx_cluster`,
  `etcdx_factory`, `etcdx_kind`), the ones etcdx's users get. Loaded here for
  a checkout whose installed entry point may be missing or stale; pytest
  registers the module once either way. `pytester` runs the plugin's own tests.

See tests/support/procs.py for the `Member` API (start/stop/kill/restart, stubs,
log tail).
"""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from support import procs

pytest_plugins = ["etcdx.testing.plugin", "pytester"]


@pytest.fixture
def member_group(tmp_path: pathlib.Path):
    group = procs.MemberGroup(tmp_path / "members")
    try:
        yield group
    finally:
        group.close()


@pytest.fixture
def etcd_server(member_group: procs.MemberGroup) -> procs.Member:
    procs.require("etcd")
    return member_group.new("etcd")


@pytest.fixture
def etcdx_server(member_group: procs.MemberGroup) -> procs.Member:
    procs.require("etcdx")
    return member_group.new("etcdx")
