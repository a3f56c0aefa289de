"""etcdx: an etcd-compatible distributed key-value store in Python."""

__version__ = "0.1.0"
