"""The errors of the TLS layer."""

from __future__ import annotations


class TLSConfigError(ValueError):
    """A TLS setting or file cannot be used; the message names the flag (never a key's contents)."""
