"""The fault-injecting peer proxy: moved to `etcdx.testing.faultproxy`; this keeps the old import path."""

from etcdx.testing.faultproxy import ANY, FaultNetwork, FaultProxy, ProxyStats  # noqa: F401
