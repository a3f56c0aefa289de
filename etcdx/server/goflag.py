"""etcd's command line as Go's ``flag`` package reads it, and the syntax of its values.

etcd parses its flags with Go's ``flag`` package, so that is what users and
scripts are used to, and what etcdx must accept and refuse:

- ``-name``, ``--name``, ``-name=value`` and ``--name value`` all work; there
  are no abbreviations (``--data`` is not ``--data-dir``) and no short flags.
- A boolean flag alone means true; its value must be attached
  (``--force-new-cluster=false``): ``--force-new-cluster false`` is the flag
  followed by the stray argument ``false``.
- Flag parsing stops at the first argument that is not a flag (or after
  ``--``); etcd then refuses what is left.
- Errors use the package's texts, which name a flag with one dash:
  ``flag provided but not defined: -data``.

The value parsers take the text of a flag or an ``ETCD_*`` variable and raise
``ValueError`` with the reason Go gives (``parse error``, ``value out of
range``, or the URL checks of etcd's ``types.NewURLs``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PARSE_ERROR = "parse error"
RANGE_ERROR = "value out of range"


class ConfigError(ValueError):
    """The configuration cannot start a member; the message says which setting and why."""


class FlagError(ConfigError):
    """A command line Go's flag package refuses (etcd exits with usage there)."""


class HelpRequested(Exception):
    """``-h``/``--help``: print the usage and exit successfully."""


# -- the command line -----------------------------------------------------------------

def split_args(argv: list[str], is_bool: Callable[[str], bool | None]) -> tuple[list[tuple[str, str | None]], list[str]]:
    """The flags of ``argv`` in order, as (name, value text or None for a bare boolean), and what follows them.

    ``is_bool(name)`` says whether ``name`` is a boolean flag, or None if it is
    not defined. Raises FlagError with Go's message, HelpRequested for an
    undefined ``-h``/``-help``.
    """
    out: list[tuple[str, str | None]] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if len(arg) < 2 or arg[0] != "-":
            break
        i += 1
        if arg == "--":
            break
        body = arg[2:] if arg[1] == "-" else arg[1:]
        if not body or body[0] in "-=":
            raise FlagError(f"bad flag syntax: {arg}")
        name, eq, value = body.partition("=")
        kind = is_bool(name)
        if kind is None:
            if name in ("h", "help"):
                raise HelpRequested()
            raise FlagError(f"flag provided but not defined: -{name}")
        if eq:
            out.append((name, value))
        elif kind:
            out.append((name, None))
        elif i < len(argv):
            out.append((name, argv[i]))
            i += 1
        else:
            raise FlagError(f"flag needs an argument: -{name}")
    return out, argv[i:]


# -- values -----------------------------------------------------------------------------

def parse_bool(text: str) -> bool:
    """Go's ``strconv.ParseBool``."""
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError(PARSE_ERROR)


_GO_INT = re.compile(r"[+-]?(0[xX](_?[0-9a-fA-F])+|0[bB](_?[01])+|0[oO]?(_?[0-7])+|[1-9](_?[0-9])*|0)")


def parse_int(text: str, *, bits: int = 64, signed: bool = True) -> int:
    """Go's ``strconv.ParseInt``/``ParseUint`` with base 0 (``0x10``, ``010`` octal, ``1_000``)."""
    if not _GO_INT.fullmatch(text) or (not signed and text[0] in "+-"):
        raise ValueError(PARSE_ERROR)
    sign, digits = (-1, text[1:]) if text[0] == "-" else (1, text.lstrip("+"))
    digits = digits.replace("_", "")
    if len(digits) > 1 and digits[0] == "0" and digits[1] in "0123456789":
        digits = "0o" + digits[1:]  # Go's leading-zero octal
    value = sign * int(digits, 0)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        raise ValueError(RANGE_ERROR)
    return value


_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?([a-zµμ]+)")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration (``time.ParseDuration``): ``90s``, ``1h30m``, ``1.5h``, ``300ms``, ``0``."""
    s = text
    sign = -1.0 if s[:1] == "-" else 1.0
    if s[:1] in "+-":
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(PARSE_ERROR)
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None or (not m.group(1) and not m.group(2)) or m.group(3) not in _DURATION_UNITS:
            raise ValueError(PARSE_ERROR)
        number = float(f"{m.group(1) or '0'}.{m.group(2) or '0'}")
        total += number * _DURATION_UNITS[m.group(3)]
        pos = m.end()
    if total * 1e9 > (1 << 63) - 1:
        raise ValueError(PARSE_ERROR)
    return sign * total


def parse_urls(text: str) -> list[str]:
    """etcd's URL list flags: comma-separated ``scheme://host:port`` without a path (``types.NewURLs``)."""
    out = []
    for raw in text.split(","):
        u = raw.strip()
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https", "unix", "unixs"):
            raise ValueError(f"URL scheme must be http, https, unix, or unixs: {u}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if port is None:
            raise ValueError(f'URL address does not have the form "host:port": {u}')
        if parts.path:
            raise ValueError(f"URL must not contain a path: {u}")
        out.append(u)
    return out


def parse_strings(text: str) -> list[str]:
    """A comma-separated list (etcd's ``UniqueStringsValue``): its non-empty items, duplicates dropped."""
    return list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))


# -- kinds: one per Go type a flag has --------------------------------------------------

@dataclass(frozen=True)
class Kind:
    """How one type of flag value is read: from text (a flag, an ``ETCD_*`` variable) or from YAML."""

    name: str
    parse: Callable[[str], Any]
    is_bool: bool = False
    yaml: Callable[[Any], Any] | None = None  # None: YAML scalars are read as text

    def from_yaml(self, value: Any) -> Any:
        if self.yaml is not None:
            return self.yaml(value)
        if isinstance(value, bool):
            value = "true" if value else "false"
        if isinstance(value, (list, tuple)):
            value = ",".join(str(v) for v in value)
        return self.parse(str(value))


def _yaml_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else parse_bool(str(value))


def _yaml_duration(value: Any) -> str:
    """etcd's YAML holds a duration as integer nanoseconds (Go's JSON form); a duration text is taken too."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value}ns"
    return _duration_text(str(value))


def _duration_text(text: str) -> str:
    parse_duration(text)
    return text


def _choice(*allowed: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise ValueError("invalid value")
        return text
    return parse


def _uint32(text: str) -> int:
    """etcd's own uint32 flag value, whose errors quote strconv."""
    try:
        return parse_int(text, bits=32, signed=False)
    except ValueError as err:
        reason = "value out of range" if str(err) == RANGE_ERROR else "invalid syntax"
        raise ValueError(f'strconv.ParseUint: parsing "{text}": {reason}') from None


def _urls_or_star(text: str) -> list[str]:
    """``--cors``: URLs, with ``*`` (any origin) allowed."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    return list(dict.fromkeys(s if s == "*" else parse_urls(s)[0] for s in items))


STRING = Kind("string", str)
BOOL = Kind("bool", parse_bool, is_bool=True, yaml=_yaml_bool)
UINT = Kind("uint", lambda t: parse_int(t, signed=False))
UINT32 = Kind("uint32", _uint32)
INT = Kind("int", parse_int)
DURATION = Kind("duration", _duration_text, yaml=_yaml_duration)
URLS = Kind("urls", parse_urls)
URLS_OR_STAR = Kind("urls", _urls_or_star)
STRINGS = Kind("strings", parse_strings)
# etcd's retired flags: accepted like a boolean with any value, and ignored with a warning.
RETIRED = Kind("retired", str, is_bool=True)


def choice(*allowed: str) -> Kind:
    """A string flag that takes one of ``allowed`` (etcd's ``SelectiveStringValue``)."""
    return Kind("string", _choice(*allowed))


def same_value(kind: Kind, a: Any, b: Any) -> bool:
    """Whether two values of ``kind`` mean the same (``0s`` and ``0`` are one duration)."""
    if kind is DURATION:
        return math.isclose(parse_duration(a) if a else 0.0, parse_duration(b) if b else 0.0)
    return a == b
