"""The ``EtcdxCluster`` resource: its schema, its validation and the parsed spec.

One OpenAPI v3 schema (``SCHEMA``) serves both drivers: the Kubernetes CRD
carries it as ``openAPIV3Schema`` (the API server checks every object and
prunes unknown fields), and ``load``/``parse`` check a YAML document against
a strict copy of it (unknown fields are errors, so a typo such as ``sizee``
is reported instead of ignored) with ``jsonschema``, then add the checks a
schema cannot express. Every problem is reported at once, each as
``<path>: <what is wrong>``.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jsonschema
import yaml

API_GROUP = "etcdx.io"
API_VERSION = f"{API_GROUP}/v1alpha1"
KIND = "EtcdxCluster"
PLURAL = "etcdxclusters"

MAX_SIZE = 9
DURATION_PATTERN = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$"
VERSION_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.+-]+)?$"
# Member names are <cluster>-<ordinal>, also a pod's and a DNS label's: keep room for the ordinal.
NAME_PATTERN = r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$"

_HINTS = {
    DURATION_PATTERN: "a duration such as 30s, 5m, 1h or 1h30m",
    VERSION_PATTERN: "a version such as 0.1.0",
    NAME_PATTERN: "a lower-case DNS label of at most 40 characters (letters, digits, '-')",
    QUANTITY_PATTERN: "a Kubernetes quantity such as 500m, 2, 256Mi or 1Gi",
}

_QUANTITY = {"type": "string", "pattern": QUANTITY_PATTERN}
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string"}}

SPEC_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["size", "version"],
    "properties": {
        "size": {"type": "integer", "minimum": 1, "maximum": MAX_SIZE,
                 "description": "Number of voting members."},
        "version": {"type": "string", "pattern": VERSION_PATTERN,
                    "description": "The etcdx version every member runs; changing it rolls the members."},
        "tls": {
            "type": "object",
            "description": "TLS between members and on the client port, with certificates from the operator's CA.",
            "properties": {
                "peer": {"type": "boolean"},
                "client": {"type": "boolean"},
                "caCertFile": {"type": "string", "minLength": 1,
                               "description": "Local driver: issue certificates from this CA instead of a new one."},
                "caKeyFile": {"type": "string", "minLength": 1},
                "caSecretName": {"type": "string", "minLength": 1,
                                 "description": "Kubernetes: a Secret with ca.crt and ca.key to issue from."},
            },
        },
        "backup": {
            "type": "object",
            "required": ["interval", "retention", "destination"],
            "properties": {
                "interval": {"type": "string", "pattern": DURATION_PATTERN},
                "retention": {"type": "integer", "minimum": 1, "description": "Backups kept; older ones are deleted."},
                "destination": {"type": "string", "minLength": 1,
                                "description": "Directory the backups are written to."},
            },
        },
        "restore": {
            "type": "object",
            "required": ["from"],
            "properties": {
                "from": {"type": "string", "minLength": 1,
                         "description": "A snapshot file the new cluster is created from."},
            },
        },
        "member": {
            "type": "object",
            "description": "etcd settings every member gets.",
            "properties": {
                "heartbeatInterval": {"type": "integer", "minimum": 1, "description": "milliseconds"},
                "electionTimeout": {"type": "integer", "minimum": 5, "description": "milliseconds"},
                "snapshotCount": {"type": "integer", "minimum": 1},
                "quotaBackendBytes": {"type": "integer", "minimum": 0},
                "apiWorkers": {"type": "integer", "minimum": 0},
                "extraArgs": {"type": "array", "items": {"type": "string"}},
            },
        },
        "pod": {
            "type": "object",
            "description": "Where members run (Kubernetes: the pods' settings; the local driver ignores them).",
            "properties": {
                "image": {"type": "string", "minLength": 1,
                          "description": "Image repository; the tag is the version."},
                "resources": {
                    "type": "object",
                    "properties": {
                        "requests": {"type": "object", "additionalProperties": _QUANTITY},
                        "limits": {"type": "object", "additionalProperties": _QUANTITY},
                    },
                },
                "storage": _QUANTITY,
                "storageClassName": {"type": "string", "minLength": 1},
                "nodeSelector": _STRING_MAP,
                "labels": _STRING_MAP,
            },
        },
        "deletionPolicy": {"type": "string", "enum": ["Retain", "Delete"],
                           "description": "What happens to the members' data when the cluster is deleted."},
    },
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"type": "string", "enum": [API_VERSION]},
        "kind": {"type": "string", "enum": [KIND]},
        "metadata": {  # a Kubernetes object carries many more fields (uid, labels, ...): all allowed
            "type": "object",
            "required": ["name"],
            "properties": {"name": {"type": "string", "pattern": NAME_PATTERN},
                           "namespace": {"type": "string"}},
            "additionalProperties": True,
        },
        "status": {"type": "object", "additionalProperties": True},
        "spec": SPEC_SCHEMA,
    },
}


class SpecError(ValueError):
    """The document is not a valid ``EtcdxCluster``; ``problems`` lists every reason."""

    def __init__(self, problems: list[str], source: str = "") -> None:
        self.problems = problems
        prefix = f"{source}: " if source else ""
        super().__init__(prefix + "invalid EtcdxCluster:\n" + "\n".join(f"  {p}" for p in problems))


@dataclass(frozen=True)
class TLSPolicy:
    peer: bool = False
    client: bool = False
    ca_cert_file: str | None = None
    ca_key_file: str | None = None
    ca_secret_name: str | None = None

    @property
    def enabled(self) -> bool:
        return self.peer or self.client


@dataclass(frozen=True)
class BackupPolicy:
    interval: float  # seconds
    retention: int
    destination: str


@dataclass(frozen=True)
class MemberSettings:
    heartbeat_interval: int = 100
    election_timeout: int = 1000
    snapshot_count: int | None = None
    quota_backend_bytes: int | None = None
    api_workers: int | None = None
    extra_args: tuple[str, ...] = ()

    def flags(self) -> list[str]:
        """The member's command-line flags for these settings (etcd's names)."""
        out = ["--heartbeat-interval", str(self.heartbeat_interval), "--election-timeout", str(self.election_timeout)]
        if self.snapshot_count is not None:
            out += ["--snapshot-count", str(self.snapshot_count)]
        if self.quota_backend_bytes is not None:
            out += ["--quota-backend-bytes", str(self.quota_backend_bytes)]
        if self.api_workers is not None:
            out += ["--api-workers", str(self.api_workers)]
        return out + list(self.extra_args)


@dataclass(frozen=True)
class PodSettings:
    image: str = "etcdx"
    requests: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, str] = field(default_factory=dict)
    storage: str = "1Gi"
    storage_class_name: str | None = None
    node_selector: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterSpec:
    """A validated ``EtcdxCluster``: what the operator makes true."""

    name: str
    size: int
    version: str
    namespace: str | None = None
    tls: TLSPolicy = TLSPolicy()
    backup: BackupPolicy | None = None
    restore_from: str | None = None
    member: MemberSettings = MemberSettings()
    pod: PodSettings = PodSettings()
    deletion_policy: str = "Retain"

    @property
    def token(self) -> str:
        """The initial cluster token: the cluster's name, as etcd-operator does."""
        return self.name

    def member_name(self, ordinal: int) -> str:
        return f"{self.name}-{ordinal}"


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration (``1h30m``, ``45s``, ``250ms``)."""
    if not re.fullmatch(DURATION_PATTERN, text):
        raise ValueError(f"not a duration: {text!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, _, u in re.findall(r"([0-9]+(\.[0-9]+)?)(ms|s|m|h)", text))


def _strict(schema: Any) -> Any:
    """A copy of ``schema`` in which every object with properties rejects unknown ones."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


_VALIDATOR = jsonschema.Draft7Validator(_strict(SCHEMA))


def _where(path) -> str:
    parts = []
    for p in path:
        parts.append(f"[{p}]" if isinstance(p, int) else ("." if parts else "") + str(p))
    return "".join(parts) or "(document)"


def _explain(error: jsonschema.ValidationError) -> str:
    where = _where(error.absolute_path)
    v, value = error.validator, error.instance
    if v == "required":
        missing = re.search(r"'([^']+)' is a required property", error.message)
        return f"{where}: missing required field {missing.group(1) if missing else error.message!r}"
    if v == "additionalProperties":
        known = set(error.schema.get("properties", {}))
        unknown = sorted(k for k in value if k not in known) if isinstance(value, dict) else []
        return f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}" \
               f" (known: {', '.join(sorted(known))})"
    if v == "pattern":
        return f"{where}: {value!r} is not {_HINTS.get(error.validator_value, 'valid')}"
    if v == "type":
        return f"{where}: must be {'an' if error.validator_value in ('integer', 'object', 'array') else 'a'} " \
               f"{error.validator_value}, not {type(value).__name__} {value!r}"
    if v == "minimum":
        return f"{where}: must be at least {error.validator_value} (got {value!r})"
    if v == "maximum":
        return f"{where}: must be at most {error.validator_value} (got {value!r})"
    if v == "enum":
        return f"{where}: must be one of {', '.join(map(str, error.validator_value))} (got {value!r})"
    if v == "minLength":
        return f"{where}: must not be empty"
    return f"{where}: {error.message}"


def validate(document: Any) -> list[str]:
    """Every problem with ``document`` as an ``EtcdxCluster``, or an empty list."""
    if not isinstance(document, dict):
        return [f"(document): must be a mapping (an EtcdxCluster object), not {type(document).__name__}"]
    errors = sorted(_VALIDATOR.iter_errors(document), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    problems = [_explain(e) for e in errors]
    if problems:
        return problems
    spec = document["spec"]
    member = spec.get("member", {})
    heartbeat, election = member.get("heartbeatInterval", 100), member.get("electionTimeout", 1000)
    if election < 5 * heartbeat:
        problems.append(f"spec.member.electionTimeout: must be at least 5 times heartbeatInterval "
                        f"({5 * heartbeat}), got {election}")
    tls = spec.get("tls", {})
    if ("caCertFile" in tls) != ("caKeyFile" in tls):
        problems.append("spec.tls: caCertFile and caKeyFile go together")
    if "caSecretName" in tls and "caCertFile" in tls:
        problems.append("spec.tls: give caSecretName (Kubernetes) or caCertFile/caKeyFile (local), not both")
    if (tls.get("caCertFile") or tls.get("caSecretName")) and not (tls.get("peer") or tls.get("client")):
        problems.append("spec.tls: a CA is given but neither peer nor client TLS is on")
    if "backup" in spec and parse_duration(spec["backup"]["interval"]) < 1:
        problems.append(f"spec.backup.interval: must be at least 1s (got {spec['backup']['interval']!r})")
    return problems


def parse(document: Any, base_dir: str | None = None, source: str = "") -> ClusterSpec:
    """A ``ClusterSpec`` from a decoded document; raises ``SpecError`` listing every problem.

    Relative file paths (backup destination, restore source, CA files) are
    taken relative to ``base_dir`` (the spec file's directory) when given.
    """
    problems = validate(document)
    if problems:
        raise SpecError(problems, source)
    doc = copy.deepcopy(document)
    spec, meta = doc["spec"], doc["metadata"]

    def path(p: str | None) -> str | None:
        if p is None or base_dir is None:
            return p
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(p)))

    tls = spec.get("tls", {})
    backup = spec.get("backup")
    member = spec.get("member", {})
    pod = spec.get("pod", {})
    resources = pod.get("resources", {})
    return ClusterSpec(
        name=meta["name"],
        namespace=meta.get("namespace"),
        size=spec["size"],
        version=spec["version"],
        tls=TLSPolicy(peer=tls.get("peer", False), client=tls.get("client", False),
                      ca_cert_file=path(tls.get("caCertFile")), ca_key_file=path(tls.get("caKeyFile")),
                      ca_secret_name=tls.get("caSecretName")),
        backup=BackupPolicy(parse_duration(backup["interval"]), backup["retention"], path(backup["destination"]))
        if backup else None,
        restore_from=path(spec["restore"]["from"]) if "restore" in spec else None,
        member=MemberSettings(
            heartbeat_interval=member.get("heartbeatInterval", 100),
            election_timeout=member.get("electionTimeout", 1000),
            snapshot_count=member.get("snapshotCount"),
            quota_backend_bytes=member.get("quotaBackendBytes"),
            api_workers=member.get("apiWorkers"),
            extra_args=tuple(member.get("extraArgs", ())),
        ),
        pod=PodSettings(
            image=pod.get("image", "etcdx"),
            requests=dict(resources.get("requests", {})),
            limits=dict(resources.get("limits", {})),
            storage=pod.get("storage", "1Gi"),
            storage_class_name=pod.get("storageClassName"),
            node_selector=dict(pod.get("nodeSelector", {})),
            labels=dict(pod.get("labels", {})),
        ),
        deletion_policy=spec.get("deletionPolicy", "Retain"),
    )


def load(path: str | os.PathLike) -> ClusterSpec:
    """Read, check and parse an ``EtcdxCluster`` YAML file."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            document = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise SpecError([f"not valid YAML: {err}"], source) from None
    return parse(document, base_dir=os.path.dirname(os.path.abspath(source)), source=source)
