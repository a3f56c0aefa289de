"""Every etcd flag etcdx knows, and what etcdx does with it.

One row per flag: its name (also its ``ETCD_*`` variable and YAML key), Go
type, etcdx's default, the help line, and its support:

- ``HONOURED``: the value takes effect (a ``Config`` field of the same name).
  A few defaults differ from etcd 3.4's; the help line says so.
- ``UNSUPPORTED``: etcd has the flag and etcdx does not do what it asks.
  Accepted only at etcd's default (or at a value etcdx's behaviour already
  matches, ``also_accepts``), refused at start otherwise, naming the flag;
  listed in one log line at start.
- ``RETIRED``: flags etcd itself dropped long ago and still accepts with a
  warning ("no longer supported - ignoring"); etcdx does the same.

``tests/unit/server/test_flagtable.py`` pins the table against the flags of
etcd 3.4's ``etcd --help`` and its hidden ones, so no etcd flag can be missing.
"""

from __future__ import annotations

import enum
import textwrap
from dataclasses import dataclass
from typing import Any

from etcdx.server.goflag import (
    BOOL,
    DURATION,
    INT,
    RETIRED,
    STRING,
    STRINGS,
    UINT,
    UINT32,
    URLS,
    URLS_OR_STAR,
    Kind,
    choice,
)


class Support(enum.Enum):
    HONOURED = "honoured"
    UNSUPPORTED = "unsupported"
    RETIRED = "retired"


@dataclass(frozen=True)
class Flag:
    name: str
    kind: Kind
    default: Any  # etcdx's default, as a parsed value
    help: str
    section: str
    support: Support = Support.HONOURED
    reason: str = ""  # UNSUPPORTED: why etcdx does not do what the flag asks (else: not yet)
    also_accepts: tuple = ()  # UNSUPPORTED: values besides the default that etcdx's behaviour matches
    show_default: str | None = None  # the default as the help shows it, when the value alone misleads

    @property
    def attr(self) -> str:
        return self.name.replace("-", "_")

    @property
    def env(self) -> str:
        return "ETCD_" + self.attr.upper()

    def refusal(self) -> str:
        return f"--{self.name} is not supported: {self.reason}" if self.reason else f"--{self.name} is not supported yet"


H, U = Support.HONOURED, Support.UNSUPPORTED
_L = ["http://localhost:2379"]
_P = ["http://localhost:2380"]
V2 = "etcdx serves etcd's v3 API only"
PROXY = "etcdx has no v2 proxy"

MEMBER, CLUSTER, SECURITY, AUTH, MONITOR, LOGGING, PROXIES, EXPERIMENTAL, UNSAFE, DEPRECATED, ETCDX = (
    "Member", "Clustering", "Security", "Auth", "Profiling and Monitoring", "Logging",
    "v2 Proxy (to be deprecated in v4)", "Experimental feature", "Unsafe feature", "TO BE DEPRECATED",
    "etcdx")


def _f(name: str, kind: Kind, default: Any, help: str, section: str, support: Support = H, **kw: Any) -> Flag:
    return Flag(name, kind, default, help, section, support, **kw)


FLAGS: list[Flag] = [
    _f("name", STRING, "default", "Human-readable name for this member.", MEMBER),
    _f("data-dir", STRING, "", "Path to the data directory.", MEMBER, show_default="${name}.etcd"),
    _f("wal-dir", STRING, "", "Path to the dedicated wal directory (default: <data-dir>/member/wal).", MEMBER),
    _f("snapshot-count", UINT, 100000, "Number of committed transactions to trigger a snapshot to disk.", MEMBER),
    _f("heartbeat-interval", UINT, 100, "Time (in milliseconds) of a heartbeat interval.", MEMBER),
    _f("election-timeout", UINT, 1000, "Time (in milliseconds) for an election to timeout.", MEMBER),
    _f("initial-election-tick-advance", BOOL, True,
       "Whether to fast-forward initial election ticks on boot for faster election.", MEMBER),
    _f("listen-peer-urls", URLS, _P, "List of URLs to listen on for peer traffic.", MEMBER),
    _f("listen-client-urls", URLS, _L, "List of URLs to listen on for client traffic.", MEMBER),
    _f("max-snapshots", UINT, 5, "Maximum number of snapshot files to retain (0 is unlimited). etcdx keeps no "
       "snapshot files (the backend is the snapshot), so it never holds more than this.", MEMBER),
    _f("max-wals", UINT, 5, "Maximum number of wal files to retain (0 is unlimited). etcdx deletes a WAL file "
       "as soon as a snapshot covers it; with 0 it keeps them all (and reads them all on restart).", MEMBER),
    _f("quota-backend-bytes", INT, 0, "Raise alarms when backend size exceeds the given quota "
       "(0 defaults to low space quota).", MEMBER),
    _f("backend-batch-interval", DURATION, "", "BackendBatchInterval is the maximum time before commit the "
       "backend transaction.", MEMBER, U),
    _f("backend-batch-limit", INT, 0, "BackendBatchLimit is the maximum operations before commit the backend "
       "transaction.", MEMBER, U),
    _f("max-txn-ops", UINT, 128, "Maximum number of operations permitted in a transaction.", MEMBER),
    _f("max-request-bytes", UINT, 1572864, "Maximum client request size in bytes the server will accept.", MEMBER),
    _f("max-concurrent-streams", UINT32, 4294967295, "Maximum concurrent streams that each client can open at a "
       "time.", MEMBER, show_default="math.MaxUint32"),
    _f("grpc-keepalive-min-time", DURATION, "5s", "Minimum duration interval that a client should wait before "
       "pinging server.", MEMBER),
    _f("grpc-keepalive-interval", DURATION, "2h", "Frequency duration of server-to-client ping to check if a "
       "connection is alive (0 to disable).", MEMBER),
    _f("grpc-keepalive-timeout", DURATION, "20s", "Additional duration of wait before closing a non-responsive "
       "connection (0 to disable).", MEMBER),
    _f("enable-grpc-gateway", BOOL, True, "Serve the JSON gateway (/v3/...) on the client port.", MEMBER),

    _f("initial-advertise-peer-urls", URLS, _P, "List of this member's peer URLs to advertise to the rest of "
       "the cluster.", CLUSTER),
    _f("initial-cluster", STRING, "", "Initial cluster configuration for bootstrapping.", CLUSTER,
       show_default="default=http://localhost:2380"),
    _f("initial-cluster-state", choice("new", "existing"), "new", "Initial cluster state ('new' or "
       "'existing').", CLUSTER),
    _f("initial-cluster-token", STRING, "etcd-cluster", "Initial cluster token for the etcd cluster during "
       "bootstrap.", CLUSTER),
    _f("advertise-client-urls", URLS, _L, "List of this member's client URLs to advertise to the public.", CLUSTER),
    _f("discovery", STRING, "", "Discovery URL used to bootstrap the cluster.", CLUSTER, U),
    _f("discovery-fallback", choice("exit", "proxy"), "proxy", "Expected behavior ('exit' or 'proxy') when "
       "discovery services fails.", CLUSTER, U),
    _f("discovery-proxy", STRING, "", "HTTP proxy to use for traffic to discovery service.", CLUSTER, U),
    _f("discovery-srv", STRING, "", "DNS srv domain used to bootstrap the cluster.", CLUSTER, U),
    _f("discovery-srv-name", STRING, "", "Suffix to the dns srv name queried when bootstrapping.", CLUSTER, U),
    _f("strict-reconfig-check", BOOL, True, "Reject reconfiguration requests that would cause quorum loss.",
       CLUSTER),
    _f("pre-vote", BOOL, True, "Enable to run an additional Raft election phase (etcd 3.4's default is false).",
       CLUSTER),
    _f("auto-compaction-retention", STRING, "0", "Auto compaction retention length. 0 means disable auto "
       "compaction.", CLUSTER),
    _f("auto-compaction-mode", STRING, "periodic", "Interpret 'auto-compaction-retention' one of: "
       "periodic|revision. 'periodic' for duration based retention, defaulting to hours if no time unit is "
       "provided (e.g. '5m'). 'revision' for revision number based retention.", CLUSTER),
    _f("enable-v2", BOOL, False, "Accept etcd V2 client requests.", CLUSTER, U, reason=V2),

    _f("cert-file", STRING, "", "Path to the client server TLS cert file.", SECURITY),
    _f("key-file", STRING, "", "Path to the client server TLS key file.", SECURITY),
    _f("client-cert-auth", BOOL, False, "Enable client cert authentication.", SECURITY),
    _f("client-crl-file", STRING, "", "Path to the client certificate revocation list file.", SECURITY),
    _f("client-cert-allowed-hostname", STRING, "", "Allowed TLS hostname for client cert authentication.",
       SECURITY),
    _f("trusted-ca-file", STRING, "", "Path to the client server TLS trusted CA cert file.", SECURITY),
    _f("auto-tls", BOOL, False, "Client TLS using generated certificates (kept in <data-dir>/fixtures/client).",
       SECURITY),
    _f("peer-cert-file", STRING, "", "Path to the peer server TLS cert file.", SECURITY),
    _f("peer-key-file", STRING, "", "Path to the peer server TLS key file.", SECURITY),
    _f("peer-client-cert-auth", BOOL, False, "Enable peer client cert authentication (etcdx verifies peers' "
       "client certificates whenever --peer-trusted-ca-file is given).", SECURITY),
    _f("peer-trusted-ca-file", STRING, "", "Path to the peer server TLS trusted CA file.", SECURITY),
    _f("peer-cert-allowed-cn", STRING, "", "Required CN for client certs connecting to the peer endpoint.",
       SECURITY),
    _f("peer-cert-allowed-hostname", STRING, "", "Allowed TLS hostname for inter peer authentication.", SECURITY),
    _f("peer-auto-tls", BOOL, False, "Peer TLS using self-generated certificates if --peer-key-file and "
       "--peer-cert-file are not provided.", SECURITY),
    _f("peer-crl-file", STRING, "", "Path to the peer certificate revocation list file.", SECURITY),
    _f("cipher-suites", STRINGS, [], "Comma-separated list of supported TLS cipher suites between client/server "
       "and peers, Go's names (empty: OpenSSL's defaults).", SECURITY),
    _f("tls-min-version", STRING, "TLS1.2", "Minimum TLS version on both ports: TLS1.2 or TLS1.3 (etcd 3.5).",
       SECURITY),
    _f("tls-max-version", STRING, "", "Maximum TLS version on both ports: TLS1.2 or TLS1.3 (empty: the highest "
       "available; etcd 3.5).", SECURITY),
    _f("cors", URLS_OR_STAR, ["*"], "Comma-separated whitelist of origins for CORS, or cross-origin resource "
       "sharing, (empty or * means allow all).", SECURITY),
    _f("host-whitelist", STRINGS, ["*"], "Acceptable hostnames from HTTP client requests, if server is not "
       "secure (empty or * means allow all).", SECURITY),

    _f("auth-token", STRING, "simple", "Specify a v3 authentication token type and its options ('simple' or "
       "'jwt').", AUTH),
    _f("bcrypt-cost", UINT, 10, "Specify the cost / strength of the bcrypt algorithm for hashing auth "
       "passwords. Valid values are between 4 and 31.", AUTH),
    _f("auth-token-ttl", UINT, 300, "Time (in seconds) of the auth-token-ttl.", AUTH),

    _f("enable-pprof", BOOL, False, "Enable runtime profiling data via HTTP server.", MONITOR, U,
       reason="etcdx is not a Go program"),
    _f("metrics", STRING, "basic", "Set level of detail for exported metrics, specify 'extensive' to include "
       "histogram metrics.", MONITOR),
    _f("listen-metrics-urls", URLS, [], "List of URLs to listen on for the metrics and health endpoints.",
       MONITOR),

    _f("logger", STRING, "zap", "Specify 'zap' for structured logging or 'capnslog'. etcdx always writes zap's "
       "JSON lines: 'capnslog' (deprecated in etcd 3.4, gone in 3.5) is accepted with a warning and changes "
       "nothing.", LOGGING),
    _f("log-outputs", STRINGS, ["default"], "Specify 'stdout' or 'stderr' ('default' is stderr), or list of "
       "comma separated output targets (files).", LOGGING),
    _f("log-output", STRINGS, [], "Deprecated: use '--log-outputs' (used only when that is not given).",
       LOGGING, show_default="default"),
    _f("log-level", STRING, "info", "Configures log level. Only supports debug, info, warn, error, panic, or "
       "fatal.", LOGGING),

    _f("proxy", choice("off", "readonly", "on"), "off", "Proxy mode setting ('off', 'readonly' or 'on').",
       PROXIES, U, reason=PROXY),
    _f("proxy-failure-wait", UINT, 5000, "Time (in milliseconds) an endpoint will be held in a failed state.",
       PROXIES, U, reason=PROXY),
    _f("proxy-refresh-interval", UINT, 30000, "Time (in milliseconds) of the endpoints refresh interval.",
       PROXIES, U, reason=PROXY),
    _f("proxy-dial-timeout", UINT, 1000, "Time (in milliseconds) for a dial to timeout.", PROXIES, U, reason=PROXY),
    _f("proxy-write-timeout", UINT, 5000, "Time (in milliseconds) for a write to timeout.", PROXIES, U,
       reason=PROXY),
    _f("proxy-read-timeout", UINT, 0, "Time (in milliseconds) for a read to timeout.", PROXIES, U, reason=PROXY),

    _f("experimental-initial-corrupt-check", BOOL, False, "Enable to check data corruption before serving any "
       "client/peer traffic.", EXPERIMENTAL),
    _f("experimental-corrupt-check-time", DURATION, "0s", "Duration of time between cluster corruption check "
       "passes.", EXPERIMENTAL),
    _f("experimental-enable-v2v3", STRING, "", "Serve v2 requests through the v3 backend under a given prefix.",
       EXPERIMENTAL, U, reason=V2),
    _f("experimental-backend-bbolt-freelist-type", STRING, "array", "The type of freelist that boltdb backend "
       "uses (array and map are supported types).", EXPERIMENTAL, U,
       reason="etcdx's backend is LMDB, which has no bbolt freelist"),
    _f("experimental-enable-lease-checkpoint", BOOL, True, "Enable the primary lessor to persist lease "
       "remainingTTL to prevent indefinite auto-renewal of long lived leases (etcd 3.4's default is false).",
       EXPERIMENTAL),
    _f("experimental-enable-lease-checkpoint-persist", BOOL, False, "Enable persisting remainingTTL to prevent "
       "indefinite auto-renewal of long lived leases.", EXPERIMENTAL, U, also_accepts=(True,),
       reason="etcdx always persists lease checkpoints, as etcd 3.6 (true is what it does)"),
    _f("experimental-lease-checkpoint-interval", DURATION, "5s", "How often the leader checkpoints lease "
       "remaining TTLs (etcd 3.5).", EXPERIMENTAL),
    _f("experimental-compaction-batch-limit", INT, 1000, "Sets the maximum revisions deleted in each compaction "
       "batch (0: 1000).", EXPERIMENTAL),
    _f("experimental-peer-skip-client-san-verification", BOOL, False, "Skip verification of SAN field in client "
       "certificate for peer connections.", EXPERIMENTAL, U, also_accepts=(True,),
       reason="etcdx never checks a peer's client certificate SANs against its address, only the allowed CN "
       "and hostname (true is what it does)"),
    _f("experimental-watch-progress-notify-interval", DURATION, "10m", "Duration of periodical watch progress "
       "notification.", EXPERIMENTAL),
    _f("experimental-warning-apply-duration", DURATION, "100ms", "Warning is generated if a batch of committed "
       "requests takes more than this duration to apply.", EXPERIMENTAL),
    _f("experimental-snapshot-catchup-entries", UINT, 0, "Old name of --snapshot-catchup-entries (used when "
       "set; etcd 3.5).", EXPERIMENTAL),
    _f("snapshot-catchup-entries", UINT, 5000, "Entries kept after a snapshot so slow followers can catch up "
       "without one (etcd 3.6).", EXPERIMENTAL),

    _f("force-new-cluster", BOOL, False, "Force to create a new one-member cluster: a member of a cluster "
       "that lost its quorum restarts alone with its data, its member and cluster ids; uncommitted entries of "
       "its WAL are discarded. Remove the flag once the cluster is back.", UNSAFE),
    _f("unsafe-no-fsync", BOOL, False, "Disables fsync of WAL appends, unsafe, will cause data loss.", UNSAFE),

    _f("debug", BOOL, False, "Enable debug-level logging. Use '--log-level=debug' instead.", DEPRECATED),
    _f("log-package-levels", STRING, "", "Specify a particular log level for each etcd package (capnslog "
       "only).", DEPRECATED, U),

    _f("api-workers", UINT, 0, "Number of API worker processes that serve the client URLs beside the member's "
       "core process (sharing the port with SO_REUSEPORT, serializable reads from the backend, the rest handed "
       "to the core); 0 serves clients from the core process alone.", ETCDX),
]

# etcd's flags from its 0.4 days: accepted, warned about, ignored (etcd 3.4 does the same).
RETIRED_FLAGS = ("cluster-active-size", "cluster-remove-delay", "cluster-sync-interval", "config", "force",
                 "max-result-buffer", "max-retry-attempts", "peer-heartbeat-interval", "peer-election-timeout",
                 "retry-interval", "snapshot", "v", "vv")
FLAGS += [Flag(name, RETIRED, None, "", "", Support.RETIRED) for name in RETIRED_FLAGS]

# Flags about the command, not the member (no Config field, no YAML key).
COMMAND_FLAGS = [
    Flag("config-file", STRING, "", "Path to the server configuration file. Note that if a configuration file is "
         "provided, other command line flags and environment variables will be ignored.", "Usage"),
    Flag("version", BOOL, False, "Print the version and exit.", "Usage"),
]

BY_NAME: dict[str, Flag] = {f.name: f for f in FLAGS + COMMAND_FLAGS}


def unsupported() -> list[str]:
    """The etcd flags etcdx does not support yet (for the log line at start)."""
    return [f"--{f.name}" for f in FLAGS if f.support is Support.UNSUPPORTED]


def usage() -> str:
    """``etcdx --help``: etcd's sections and wording, with what etcdx does differently."""
    lines = ["Usage:", "", "  etcdx [flags]", "    Start an etcd-compatible member.", "",
             "  etcdx --version", "    Show the version of etcdx.", "",
             "  etcdx -h | --help", "    Show the help information about etcdx.", "",
             "  etcdx --config-file", _wrap(BY_NAME["config-file"].help), "",
             "Flags are written as Go's flag package takes them: --name value, --name=value, and --flag alone for",
             "a boolean. Every flag is also read from ETCD_<NAME> (upper case, '-' as '_') and is a key of the",
             "--config-file YAML. Flags marked [not supported] are accepted only at their etcd default value."]
    sections: dict[str, list[Flag]] = {}
    for f in FLAGS:
        if f.support is not Support.RETIRED:
            sections.setdefault(f.section, []).append(f)
    for section, flags in sections.items():
        lines += ["", f"{section}:"]
        for f in flags:
            lines.append(f"  --{f.name} '{_shown_default(f)}'")
            note = ""
            if f.support is Support.UNSUPPORTED:
                note = f" [not supported: {f.reason}]" if f.reason else " [not supported yet]"
            lines.append(_wrap(f.help + note))
    return "\n".join(lines) + "\n"


def _shown_default(f: Flag) -> str:
    if f.show_default is not None:
        return f.show_default
    if isinstance(f.default, bool):
        return "true" if f.default else "false"
    if isinstance(f.default, list):
        return ",".join(f.default)
    return str(f.default)


def _wrap(text: str) -> str:
    return "\n".join(textwrap.wrap(text, width=110, initial_indent="    ", subsequent_indent="    "))
