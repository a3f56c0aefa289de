"""A pytest plugin for running aetcd's own tests against one member at ``TEST_ETCD_HTTP_URL``.

aetcd's conftest already sends etcdctl there; some of its tests build
``aetcd.Client()`` with the default ``localhost:2379``. This points those
defaults at the same member instead (the tests themselves are unchanged).
"""

from __future__ import annotations

import os
import urllib.parse

import aetcd


def pytest_configure(config):
    url = urllib.parse.urlparse(os.environ["TEST_ETCD_HTTP_URL"])
    defaults = list(aetcd.Client.__init__.__defaults__)
    defaults[0], defaults[1] = url.hostname, url.port  # host, port
    aetcd.Client.__init__.__defaults__ = tuple(defaults)
