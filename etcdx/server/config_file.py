"""``--config-file``: etcd's YAML configuration file, read into flag values.

The keys are the flag names (``data-dir: /var/lib/etcd``); each port's TLS
settings sit in their own section (``client-transport-security``,
``peer-transport-security``) under etcd's key names. Values take YAML's types
or the flag's text: ``listen-client-urls`` as ``a,b`` or a list, durations as
etcd writes them (integer nanoseconds) or as ``5s``. A key etcdx does not
know draws a warning (etcd ignores it silently); a key it knows is checked
like the flag, unsupported ones included.
"""

from __future__ import annotations

from typing import Any

import yaml

from etcdx.server.flagtable import BY_NAME, Support
from etcdx.server.goflag import ConfigError

TLS_SECTIONS: dict[str, dict[str, str]] = {
    # section key -> flag
    "client-transport-security": {
        "cert-file": "cert-file", "key-file": "key-file", "client-cert-auth": "client-cert-auth",
        "trusted-ca-file": "trusted-ca-file", "auto-tls": "auto-tls", "crl-file": "client-crl-file",
        "allowed-hostname": "client-cert-allowed-hostname"},
    "peer-transport-security": {
        "cert-file": "peer-cert-file", "key-file": "peer-key-file", "client-cert-auth": "peer-client-cert-auth",
        "trusted-ca-file": "peer-trusted-ca-file", "auto-tls": "peer-auto-tls", "crl-file": "peer-crl-file",
        "allowed-cn": "peer-cert-allowed-cn", "allowed-hostname": "peer-cert-allowed-hostname",
        "skip-client-san-verification": "experimental-peer-skip-client-san-verification"},
}


def read(path: str) -> tuple[dict[str, Any], list[str]]:
    """The flag values the file sets (flag name -> parsed value), and warnings about it."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
    except OSError as err:
        raise ConfigError(f"cannot read the config file: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not YAML: {err}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a YAML mapping")
    values: dict[str, Any] = {}
    warnings: list[str] = []
    for key, value in doc.items():
        key = str(key)
        if key in TLS_SECTIONS:
            _read_tls_section(path, key, value, values, warnings)
            continue
        flag = BY_NAME.get(key)
        if flag is None or flag.support is Support.RETIRED or flag.section == "Usage":
            warnings.append(f"config file {path}: ignoring unknown key {key!r}")
            continue
        if value is not None:
            values[key] = _parse(path, key, flag.name, value)
    return values, warnings


def _read_tls_section(path: str, section: str, doc: Any, values: dict[str, Any], warnings: list[str]) -> None:
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: {section} must be a mapping")
    keys = TLS_SECTIONS[section]
    for key, value in doc.items():
        flag = keys.get(str(key))
        if flag is None:
            warnings.append(f"config file {path}: ignoring unknown key {key!r} in {section}")
            continue
        if value is None:
            continue
        if isinstance(value, list) and key in ("allowed-cn", "allowed-hostname"):
            if len(value) > 1:
                raise ConfigError(f"{path}: {section}.{key}: etcdx takes one value, not {len(value)}")
            value = value[0] if value else ""
        values[flag] = _parse(path, f"{section}.{key}", flag, value)


def _parse(path: str, where: str, flag: str, value: Any) -> Any:
    try:
        return BY_NAME[flag].kind.from_yaml(value)
    except ValueError as err:
        raise ConfigError(f"{path}: invalid value {value!r} for {where}: {err}") from None
