"""The etcdx.testing pytest plugin: which servers its fixtures start, and that they are cleaned up."""

from __future__ import annotations

import pytest

USES_MEMBER = """
def test_uses_member(etcdx_member):
    pass
"""


def collected(pytester: pytest.Pytester, *args: str) -> list[str]:
    result = pytester.runpytest("-p", "etcdx.testing.plugin", "--collect-only", "-q", *args)
    return [line for line in result.outlines if "::" in line]


def test_the_default_kind_is_etcdx_and_both_runs_each_test_twice(pytester):
    pytester.makepyfile(USES_MEMBER)
    assert collected(pytester) == ["test_the_default_kind_is_etcdx_and_both_runs_each_test_twice.py::test_uses_member"]
    assert [line.split("::")[1] for line in collected(pytester, "--etcdx-kind=both")] == [
        "test_uses_member[etcdx]",
        "test_uses_member[etcd]",
    ]


def test_a_test_may_choose_its_kinds_itself(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.parametrize("etcdx_kind", ["etcd"])
        def test_only_etcd(etcdx_member):
            pass
        """
    )
    assert [line.split("::")[1] for line in collected(pytester, "--etcdx-kind=both")] == ["test_only_etcd[etcd]"]


def test_the_ini_setting_chooses_the_kind(pytester):
    pytester.makeini("[pytest]\netcdx_kind = etcd\n")
    pytester.makepyfile(
        """
        def test_kind(etcdx_kind):
            assert etcdx_kind == "etcd"
        """
    )
    pytester.runpytest("-p", "etcdx.testing.plugin").assert_outcomes(passed=1)


def test_members_are_stopped_after_the_test(pytester, etcdx_kind):
    pytester.makepyfile(
        """
        started = []

        def test_member(etcdx_member):
            with etcdx_member.client() as client:
                client.put("k", "v")
            started.append(etcdx_member)

        def test_after():
            (member,) = started
            assert not member.is_running()
        """
    )
    pytester.runpytest("-p", "etcdx.testing.plugin", f"--etcdx-kind={etcdx_kind}").assert_outcomes(passed=2)
