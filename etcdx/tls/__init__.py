"""TLS as etcd has it: certificates from files or generated (auto TLS), verified or not, rotated live.

``TLSInfo`` (``info.py``) is one side's settings (the client port's or the
peer port's) under etcd's flag names; it validates them and builds server and
client ``ssl.SSLContext``s (``context.py``) that follow the certificate, key,
CA and CRL files as they are replaced (``reload.py``). ``suites.py`` maps
etcd's (Go's) TLS version and cipher suite names to OpenSSL's,
``selfcert.py`` makes auto TLS certificates, ``peercert.py`` checks a client
certificate's CN and host name after the handshake.

This package sits below ``etcdx/server`` and ``etcdx/transport``: it knows
files, ``ssl`` and ``cryptography``, not members or sockets.
"""

from .errors import TLSConfigError
from .info import TLSInfo

__all__ = ["TLSConfigError", "TLSInfo"]
