"""etcd3gw's own test suite, unchanged, against a real etcd 3.4 and against etcdx.

etcd3gw (OpenStack's client of etcd's JSON gateway) ships its tests inside its
wheel (``etcd3gw.tests``): unit tests with mocks, and functional tests that
talk to the server at ``TOOZ_TEST_HTTP_URL`` / ``localhost:$TOOZ_TEST_ETCD_PORT``
(they skip themselves when nothing answers there). They run here in a child
pytest (``--pyargs etcd3gw.tests``) pointed at a fresh member, and the set of
tests that passed must be exactly `EXPECTED`: what passes on etcd 3.4. A skip
therefore counts as a failure: on etcdx it would mean the gateway did not answer.

The version is pinned (`ETCD3GW_VERSION`; .ci/run installs it with oslotest,
the suite's one test-only dependency); the test skips when another version or
none is installed, so a stray upgrade cannot change the set silently.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from etcdx.testing.procs import Member, require

ETCD3GW_VERSION = "2.7.0"

# What etcd3gw 2.7.0's suite passes against etcd 3.4.23 (Debian), all 39 of its tests.
EXPECTED = {
    f"test_client.TestEtcd3Gateway.{name}"
    for name in (
        "test_client_api_path", "test_client_bad_request", "test_client_connection_error",
        "test_client_custom_session_with_pool_configuration", "test_client_exceptions_by_code",
        "test_client_ipv4", "test_client_ipv6", "test_client_status", "test_client_timed_out",
        "test_client_version_discovery", "test_client_version_discovery_fail",
        "test_client_version_discovery_v3alpha", "test_client_version_discovery_v3beta",
        "test_client_version_discovery_version_absent", "test_client_version_discovery_version_malformed",
        "test_client_with_timeout",
    )
} | {
    f"test_etcd3gw.TestEtcd3Gateway.{name}"
    for name in (
        "test_client_keys_with_metadata_and_no_value", "test_client_keys_with_metadata_and_value",
        "test_client_lease", "test_client_lease_with_keys", "test_client_lock_acquire_release",
        "test_client_locks", "test_client_members", "test_client_status", "test_client_with_keys_and_values",
        "test_create_fail", "test_create_success", "test_create_with_lease_success",
        "test_get_and_delete_prefix", "test_get_prefix_sort_order",
        "test_get_prefix_sort_order_explicit_sort_target_key",
        "test_get_prefix_sort_order_explicit_sort_target_rev", "test_replace_fail", "test_replace_success",
        "test_sequential_watch_prefix_once", "test_watch_huge_payload", "test_watch_key",
        "test_watch_prefix", "test_watch_unicode",
    )
}  # fmt: skip

SUITE_TIMEOUT = 120  # seconds for the whole child run; it takes ~25 s on etcd
TEST_TIMEOUT = 30  # per test in the child: a watch that never fires must not hang the run


def _require_suite() -> None:
    try:
        version = importlib.metadata.version("etcd3gw")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"etcd3gw not installed (pip install etcd3gw=={ETCD3GW_VERSION} oslotest)")
    if version != ETCD3GW_VERSION:
        pytest.skip(f"etcd3gw {version} installed; the expected results are for {ETCD3GW_VERSION}")
    try:
        importlib.metadata.version("oslotest")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("oslotest not installed (etcd3gw's tests need it)")


def _outcomes(junit: pathlib.Path) -> dict[str, str]:
    """test id (module.Class.name) -> passed / failed / error / skipped, from a JUnit XML report."""
    out: dict[str, str] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname', '').removeprefix('etcd3gw.tests.')}.{case.get('name')}"
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[name] = kinds[0] if kinds else "passed"
    return out


def run_suite(member: Member, workdir: pathlib.Path) -> tuple[dict[str, str], str]:
    """Run etcd3gw's tests against `member`; return their outcomes and the child's output."""
    junit = workdir / "etcd3gw-junit.xml"
    env = dict(os.environ)
    env.update(TOOZ_TEST_HTTP_URL=member.client_url, TOOZ_TEST_ETCD_PORT=str(member.client_port))
    env.pop("ETCD3GW_API_PATH", None)  # the suite tests api path discovery itself
    cmd = [
        sys.executable, "-m", "pytest", "--pyargs", "etcd3gw.tests", "-q", "-rfEs",
        "-p", "no:cacheprovider", "-p", "no:randomly", "-o", "addopts=",
        f"--timeout={TEST_TIMEOUT}", f"--junitxml={junit}", f"--rootdir={workdir}",
    ]  # fmt: skip
    child = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=SUITE_TIMEOUT)
    output = child.stdout + child.stderr
    if not junit.exists():
        pytest.fail(f"etcd3gw's suite did not run (exit {child.returncode}):\n{output[-4000:]}")
    return _outcomes(junit), output


@pytest.mark.parametrize(
    ("kind", "api_workers"),
    [
        pytest.param("etcd", None, marks=pytest.mark.slow, id="etcd"),
        pytest.param("etcdx", 0, id="etcdx"),
        pytest.param("etcdx", 2, marks=pytest.mark.slow, id="etcdx-api-workers-2"),
    ],
)
def test_etcd3gw_suite_passes(kind: str, api_workers: int | None, tmp_path: pathlib.Path) -> None:
    require(kind)
    _require_suite()
    extra = ["--api-workers", str(api_workers)] if api_workers is not None else []
    member = Member(kind, tmp_path / "member", extra_args=extra)
    try:
        member.start()
        outcomes, output = run_suite(member, tmp_path)
    finally:
        member.close()
    passed = {name for name, outcome in outcomes.items() if outcome == "passed"}
    not_passed = {name: outcomes.get(name, "missing") for name in sorted(EXPECTED - passed)}
    assert not not_passed, f"etcd3gw tests that pass on etcd but not on {kind}: {not_passed}\n{output[-6000:]}"
    assert passed == EXPECTED, f"tests outside the pinned set passed (new suite?): {sorted(passed - EXPECTED)}"
