"""Installed etcdx versions on this host, and how to run each.

The version the operator itself is runs as ``python -m etcdx.main`` with the
operator's own interpreter and package (so a checkout runs its own code).
Any other version is an *installation*: ``<versions-dir>/<version>/bin/etcdx``
and ``bin/etcdxutl`` (what a virtualenv or ``pip install --prefix`` of that
version provides). An installation counts only if its ``etcdx --version``
says the version its directory is named for, checked once per operator run:
a mislabelled directory must never be rolled onto a cluster.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import etcdx

log = logging.getLogger("etcdx.operator")

_OWN_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(etcdx.__file__)))
_MODULES = {"etcdx": "etcdx.main", "etcdxutl": "etcdx.ctl.etcdxutl"}


class Installations:
    def __init__(self, versions_dir: str | None = None) -> None:
        self.versions_dir = versions_dir
        self.own = etcdx.__version__
        self._checked: dict[str, bool] = {}

    def _bin(self, version: str, tool: str) -> str:
        return os.path.join(self.versions_dir or "", version, "bin", tool)

    def _reports(self, version: str) -> bool:
        if version not in self._checked:
            try:
                out = subprocess.run([self._bin(version, "etcdx"), "--version"], capture_output=True, text=True,
                                     timeout=30, env=self.env(version)).stdout
            except (OSError, subprocess.TimeoutExpired) as err:
                out = f"({err})"
            ok = f"etcdx Version: {version}" in out.splitlines()
            if not ok:
                log.warning("ignoring an installation that does not report its version",
                            extra={"fields": {"path": self._bin(version, "etcdx"), "output": out.strip()[:200]}})
            self._checked[version] = ok
        return self._checked[version]

    def versions(self) -> frozenset[str]:
        found = {self.own}
        if self.versions_dir and os.path.isdir(self.versions_dir):
            for name in os.listdir(self.versions_dir):
                if name != self.own and os.access(self._bin(name, "etcdx"), os.X_OK) and self._reports(name):
                    found.add(name)
        return frozenset(found)

    def command(self, version: str, tool: str = "etcdx") -> list[str]:
        if version == self.own:
            return [sys.executable, "-m", _MODULES[tool]]
        if version not in self.versions():
            raise LookupError(f"etcdx {version} is not installed under {self.versions_dir}")
        return [self._bin(version, tool)]

    def env(self, version: str) -> dict[str, str]:
        """The environment to run ``version`` in: the own version gets the operator's package first."""
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if version == self.own:
            env["PYTHONPATH"] = _OWN_ROOT
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env
