"""docs/client.md's examples run, against a fresh etcd and a fresh etcdx member.

Its ```python blocks run in order in one namespace, with ``endpoint`` set to
the member's address; the ```python test block is a pytest module using the
etcdx.testing fixtures, run with pytester.
"""

from __future__ import annotations

import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "client.md"
_BLOCK = re.compile(r"^```python( test)?\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(kind: str) -> list[tuple[int, str]]:
    """(line number, code) of the doc's blocks of one kind ("" for examples, "test" for pytest modules)."""
    text = DOC.read_text()
    found = []
    for m in _BLOCK.finditer(text):
        if (m.group(1) or "").strip() == kind:
            found.append((text.count("\n", 0, m.start(2)) + 1, m.group(2)))
    return found


def test_the_doc_has_examples_of_each_kind():
    assert len(blocks("")) >= 10 and len(blocks("test")) == 1


def test_the_examples_run(etcdx_member):
    namespace: dict = {"__name__": "docs_client", "endpoint": etcdx_member.endpoint}
    for line, code in blocks(""):
        exec(compile("\n" * (line - 1) + code, str(DOC), "exec"), namespace)


def test_the_fixture_example_runs(pytester: pytest.Pytester, etcdx_kind: str):
    ((_, code),) = blocks("test")
    pytester.makepyfile(test_example=code)
    result = pytester.runpytest("-p", "etcdx.testing.plugin", f"--etcdx-kind={etcdx_kind}")
    result.assert_outcomes(passed=1)
