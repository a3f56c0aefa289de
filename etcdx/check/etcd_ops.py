"""The operations of etcd's KV API as the checkers record them, and their rendering.

Inputs and outputs are small frozen dataclasses so histories stay cheap to
build and states built from them stay hashable. A revision the client never
learned is an ``Unknown`` with a lower bound.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

FRESH_STORE_REVISION = 1


@dataclass(frozen=True, slots=True)
class Unknown:
    """A revision not known yet, other than that it is above ``after``."""

    after: int

    def __repr__(self) -> str:
        return f">{self.after}"


Revision = int | Unknown


@dataclass(frozen=True, slots=True)
class KeyValue:
    value: Hashable
    create_revision: Revision
    mod_revision: Revision
    version: int
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: Hashable
    lease: int = 0


@dataclass(frozen=True, slots=True)
class Get:
    key: str


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class Range:
    """Read every key that starts with ``prefix``."""

    prefix: str


@dataclass(frozen=True, slots=True)
class Compare:
    """etcd's Compare on one key; ``target`` is value, version, create or mod."""

    key: str
    target: str
    result: str  # "=", "!=", "<" or ">"
    operand: Hashable


@dataclass(frozen=True, slots=True)
class Txn:
    """A single-key transaction: every branch op must be on ``compare.key``."""

    compare: Compare
    success: Put | Delete | Get | None
    failure: Put | Delete | Get | None = None


@dataclass(frozen=True, slots=True)
class LeaseRevoke:
    """Revoking a lease deletes the keys attached to it."""

    lease: int


@dataclass(frozen=True, slots=True)
class Change:
    """What one write did to one key; ``value`` None means the key was deleted."""

    key: str
    value: Hashable | None
    lease: int = 0


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int


@dataclass(frozen=True, slots=True)
class GetResult:
    kv: KeyValue | None
    revision: int


@dataclass(frozen=True, slots=True)
class DeleteResult:
    deleted: int
    revision: int


@dataclass(frozen=True, slots=True)
class RangeResult:
    kvs: Mapping[str, KeyValue]
    revision: int


@dataclass(frozen=True, slots=True)
class TxnResult:
    """``kv`` answers a Get branch, ``deleted`` a Delete branch."""

    succeeded: bool
    revision: int
    kv: KeyValue | None = None
    deleted: int = 0


def describe_etcd(input: Any, output: Any) -> str:
    """A one-line rendering of an operation in etcd terms."""
    if isinstance(input, Put):
        lease = f", lease={input.lease:x}" if input.lease else ""
        return f"put({input.key!r}, {input.value!r}{lease}) -> {describe_result(output)}"
    if isinstance(input, Get):
        return f"get({input.key!r}) -> {describe_result(output)}"
    if isinstance(input, Delete):
        return f"delete({input.key!r}) -> {describe_result(output)}"
    if isinstance(input, Range):
        return f"range({input.prefix!r}) -> {describe_result(output)}"
    if isinstance(input, Txn):
        c = input.compare
        return (
            f"txn(if {c.target}({c.key!r}) {c.result} {c.operand!r} then {input.success} "
            f"else {input.failure}) -> {describe_result(output)}"
        )
    if isinstance(input, LeaseRevoke):
        return f"lease revoke {input.lease:x}"
    return f"{input!r} -> {output!r}"


def describe_result(output: Any) -> str:
    if output is None:
        return "?"
    if isinstance(output, PutResult):
        return f"rev {output.revision}"
    if isinstance(output, GetResult):
        return f"{_kv(output.kv)} @ rev {output.revision}"
    if isinstance(output, DeleteResult):
        return f"deleted {output.deleted} @ rev {output.revision}"
    if isinstance(output, RangeResult):
        kvs = ", ".join(f"{k!r}: {_kv(v)}" for k, v in sorted(output.kvs.items()))
        return f"{{{kvs}}} @ rev {output.revision}"
    if isinstance(output, TxnResult):
        outcome = "succeeded" if output.succeeded else "failed"
        read = f" {_kv(output.kv)}" if output.kv is not None else ""
        deleted = f" deleted {output.deleted}" if output.deleted else ""
        return f"{outcome}{read}{deleted} @ rev {output.revision}"
    return repr(output)


def _kv(kv: KeyValue | None) -> str:
    if kv is None:
        return "absent"
    lease = f" lease {kv.lease:x}" if kv.lease else ""
    return (
        f"{kv.value!r} (create {kv.create_revision!r}, mod {kv.mod_revision!r}, "
        f"version {kv.version}{lease})"
    )

