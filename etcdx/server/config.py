"""Member configuration with etcd's flag names, ``ETCD_*`` variables and YAML file.

Precedence is etcd's: with ``--config-file`` the file is the whole
configuration (flags and variables are ignored); otherwise a command-line flag
beats its ``ETCD_<FLAG>`` variable, which beats the default.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import yaml

from etcdx.auth import TokenOptionsError, parse_token_options, passwords
from etcdx.tls import TLSConfigError, TLSInfo

log = logging.getLogger("etcdx.config")

DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
MAX_QUOTA_WARN_BYTES = 8 * 1024 * 1024 * 1024


class ConfigError(ValueError):
    """The configuration cannot start a member; the message says which setting and why."""


def _bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    s = str(v).strip().lower()
    if s in ("1", "t", "true", "yes", "y", "on"):
        return True
    if s in ("0", "f", "false", "no", "n", "off", ""):
        return False
    raise ConfigError(f"invalid boolean value {v!r}")


def _urls(v: Any) -> list[str]:
    if isinstance(v, (list, tuple)):
        items = [str(x) for x in v]
    else:
        items = [s for s in str(v).split(",")]
    out = [s.strip() for s in items if s.strip()]
    for u in out:
        parts = urlsplit(u)
        if parts.scheme not in ("http", "https", "unix", "unixs") or not parts.netloc:
            raise ConfigError(f"invalid URL {u!r}: expected scheme://host:port")
    return out


def _csv(v: Any) -> list[str]:
    """A comma-separated flag value (or a YAML list) as its non-empty items."""
    items = v if isinstance(v, (list, tuple)) else str(v).split(",")
    return [str(s).strip() for s in items if str(s).strip()]


@dataclass(frozen=True)
class _Flag:
    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str


_FLAGS: list[_Flag] = [
    _Flag("name", "default", str, "Human-readable name for this member."),
    _Flag("data-dir", "", str, "Path to the data directory (default: ${name}.etcd)."),
    _Flag("listen-client-urls", ["http://localhost:2379"], _urls, "URLs to listen on for client traffic."),
    _Flag("advertise-client-urls", ["http://localhost:2379"], _urls, "Client URLs advertised to the cluster."),
    _Flag("listen-peer-urls", ["http://localhost:2380"], _urls, "URLs to listen on for peer traffic."),
    _Flag("initial-advertise-peer-urls", ["http://localhost:2380"], _urls, "Peer URLs advertised to the cluster."),
    _Flag("initial-cluster", "", str, "Initial cluster configuration, name=peerURL,... (default: ${name}=<advertise peer urls>)."),
    _Flag("initial-cluster-state", "new", str, "Initial cluster state ('new' or 'existing')."),
    _Flag("initial-cluster-token", "etcd-cluster", str, "Initial cluster token, mixed into the member and cluster ids."),
    _Flag("heartbeat-interval", 100, int, "Time (in milliseconds) of a heartbeat interval."),
    _Flag("election-timeout", 1000, int, "Time (in milliseconds) for an election to timeout."),
    _Flag("snapshot-count", 100000, int, "Number of committed transactions to trigger a snapshot."),
    _Flag("snapshot-catchup-entries", 5000, int, "Entries kept after a snapshot so slow followers can catch up without one."),
    _Flag("experimental-snapshot-catchup-entries", 0, int, "Old name of --snapshot-catchup-entries (used when set)."),
    _Flag("strict-reconfig-check", True, _bool, "Reject reconfiguration requests that would cause quorum loss."),
    _Flag("experimental-enable-lease-checkpoint", True, _bool, "Leader persists remaining lease TTLs so a new leader does not reset them."),
    _Flag("experimental-lease-checkpoint-interval", "5s", str, "How often the leader persists remaining lease TTLs."),
    _Flag("quota-backend-bytes", 0, int, "Raise an alarm when the backend size exceeds this (0 means the 2 GiB default)."),
    _Flag("max-request-bytes", 1572864, int, "Maximum client request size in bytes the server will accept."),
    _Flag("max-txn-ops", 128, int, "Maximum number of operations permitted in a transaction."),
    _Flag("auto-compaction-mode", "periodic", str, "'periodic' (retention is a duration) or 'revision'."),
    _Flag("auto-compaction-retention", "0", str, "Auto compaction retention: hours or a duration for periodic, a count for revision; 0 disables."),
    _Flag("log-level", "info", str, "debug, info, warn, error, panic or fatal."),
    _Flag("logger", "zap", str, "Accepted for compatibility; etcdx always writes structured JSON logs."),
    _Flag("log-outputs", ["stderr"], lambda v: [s.strip() for s in (v if isinstance(v, list) else str(v).split(",")) if s.strip()], "stderr, stdout or file paths."),
    _Flag("enable-grpc-gateway", True, _bool, "Serve the JSON gateway (/v3/...) on the client port."),
    _Flag("pre-vote", True, _bool, "Enable the raft pre-vote phase."),
    _Flag("force-new-cluster", False, _bool, "Force to create a new one-member cluster."),
    _Flag("experimental-watch-progress-notify-interval", "10m", str, "Interval of progress notifications to watchers that asked for them."),
    _Flag("api-workers", 2, int, "Number of API worker processes that serve the client URLs beside the member's core process "
          "(sharing the port with SO_REUSEPORT, serializable reads from the backend, the rest handed to the core); 0 serves clients from the core process alone."),
    # TLS (etcdx/tls): the client port's settings, the peer port's, then both ports'.
    _Flag("cert-file", "", str, "TLS certificate the client port serves (PEM)."),
    _Flag("key-file", "", str, "Private key of --cert-file (PEM, unencrypted)."),
    _Flag("client-cert-auth", False, _bool, "Require client certificates signed by --trusted-ca-file on the client port."),
    _Flag("trusted-ca-file", "", str, "CA bundle that client certificates are verified against."),
    _Flag("auto-tls", False, _bool, "Serve clients TLS with a generated self-signed certificate (kept in <data-dir>/fixtures/client)."),
    _Flag("client-crl-file", "", str, "Certificate revocation list (PEM or DER) checked against client certificates."),
    _Flag("client-cert-allowed-hostname", "", str, "Accept only client certificates valid for this host name or address."),
    _Flag("peer-cert-file", "", str, "TLS certificate for peer connections, served and presented as client certificate (PEM)."),
    _Flag("peer-key-file", "", str, "Private key of --peer-cert-file (PEM, unencrypted)."),
    _Flag("peer-client-cert-auth", False, _bool, "Require peer client certificates (etcdx requires them whenever --peer-trusted-ca-file is given)."),
    _Flag("peer-trusted-ca-file", "", str, "CA bundle that peers' certificates are verified against."),
    _Flag("peer-auto-tls", False, _bool, "Peer TLS with a generated self-signed certificate when no peer certificate is given (nothing is verified)."),
    _Flag("peer-cert-allowed-cn", "", str, "Accept only peer certificates with this common name."),
    _Flag("peer-cert-allowed-hostname", "", str, "Accept only peer certificates valid for this host name or address."),
    _Flag("peer-crl-file", "", str, "Certificate revocation list (PEM or DER) checked against peer certificates."),
    _Flag("cipher-suites", [], _csv, "Comma-separated TLS 1.2 cipher suites under Go's names for both ports (empty: OpenSSL's defaults)."),
    _Flag("tls-min-version", "TLS1.2", str, "Lowest TLS version accepted on both ports: TLS1.2 or TLS1.3."),
    _Flag("tls-max-version", "", str, "Highest TLS version offered on both ports: TLS1.2 or TLS1.3 (empty: the highest available)."),
    # Auth (etcdx/auth).
    _Flag("auth-token", "simple", str, "Auth token type: 'simple', or 'jwt,pub-key=PATH,priv-key=PATH,sign-method=RS256,ttl=5m'."),
    _Flag("auth-token-ttl", 300, int, "Seconds a simple token lives without use."),
    _Flag("bcrypt-cost", 10, int, "bcrypt cost of password hashes (4..31)."),
    # Client port: gRPC keepalive enforcement and limits, metrics.
    _Flag("max-concurrent-streams", 4294967295, int, "Maximum concurrent streams per client connection."),
    _Flag("grpc-keepalive-min-time", "5s", str, "Minimum interval a client should wait before pinging the server."),
    _Flag("grpc-keepalive-interval", "2h", str, "Frequency of server-to-client pings to check if a connection is alive (0 disables)."),
    _Flag("grpc-keepalive-timeout", "20s", str, "How long the server waits for a ping answer before closing the connection."),
    _Flag("metrics", "basic", str, "Set level of detail for exported metrics: 'basic' or 'extensive'."),
    _Flag("listen-metrics-urls", [], _csv, "Additional URLs to serve /metrics and /health on."),
    # Integrity.
    _Flag("experimental-initial-corrupt-check", False, _bool, "Compare this member's HashKV with its peers' before serving."),
    _Flag("experimental-corrupt-check-time", "0s", str, "Interval of the periodic corruption check between members (0s disables)."),
]
_BY_NAME = {f.name: f for f in _FLAGS}


@dataclass
class Config:
    name: str = "default"
    data_dir: str = ""
    listen_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    advertise_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    listen_peer_urls: list[str] = field(default_factory=lambda: ["http://localhost:2380"])
    initial_advertise_peer_urls: list[str] = field(default_factory=lambda: ["http://localhost:2380"])
    initial_cluster: str = ""
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "etcd-cluster"
    heartbeat_interval: int = 100
    election_timeout: int = 1000
    snapshot_count: int = 100000
    snapshot_catchup_entries: int = 5000
    experimental_snapshot_catchup_entries: int = 0
    strict_reconfig_check: bool = True
    experimental_enable_lease_checkpoint: bool = True
    experimental_lease_checkpoint_interval: str = "5s"
    quota_backend_bytes: int = 0
    max_request_bytes: int = 1572864
    max_txn_ops: int = 128
    auto_compaction_mode: str = "periodic"
    auto_compaction_retention: str = "0"
    log_level: str = "info"
    logger: str = "zap"
    log_outputs: list[str] = field(default_factory=lambda: ["stderr"])
    enable_grpc_gateway: bool = True
    pre_vote: bool = True
    force_new_cluster: bool = False
    experimental_watch_progress_notify_interval: str = "10m"
    api_workers: int = 2
    # TLS (etcdx/tls)
    cert_file: str = ""
    key_file: str = ""
    client_cert_auth: bool = False
    trusted_ca_file: str = ""
    auto_tls: bool = False
    client_crl_file: str = ""
    client_cert_allowed_hostname: str = ""
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_client_cert_auth: bool = False
    peer_trusted_ca_file: str = ""
    peer_auto_tls: bool = False
    peer_cert_allowed_cn: str = ""
    peer_cert_allowed_hostname: str = ""
    peer_crl_file: str = ""
    cipher_suites: list[str] = field(default_factory=list)
    tls_min_version: str = "TLS1.2"
    tls_max_version: str = ""
    auth_token: str = "simple"
    auth_token_ttl: int = 300
    bcrypt_cost: int = 10
    max_concurrent_streams: int = 4294967295
    grpc_keepalive_min_time: str = "5s"
    grpc_keepalive_interval: str = "2h"
    grpc_keepalive_timeout: str = "20s"
    metrics: str = "basic"
    listen_metrics_urls: list[str] = field(default_factory=list)
    experimental_initial_corrupt_check: bool = False
    experimental_corrupt_check_time: str = "0s"

    def client_tls_info(self) -> TLSInfo:
        """The client port's TLS settings (what the client front end serves with)."""
        return TLSInfo(
            "client", cert_file=self.cert_file, key_file=self.key_file, trusted_ca_file=self.trusted_ca_file,
            client_cert_auth=self.client_cert_auth, auto_tls=self.auto_tls,
            auto_tls_dir=os.path.join(self.data_dir, "fixtures", "client"),
            auto_tls_hosts=_hosts(self.listen_client_urls), crl_file=self.client_crl_file,
            allowed_hostname=self.client_cert_allowed_hostname, **self._tls_common())

    def peer_tls_info(self) -> TLSInfo:
        """The peer port's TLS settings, for the transport and a joining member's membership fetch.

        Mutual TLS whenever a CA is given: a member verifies the client certificate of
        every peer that connects, with or without --peer-client-cert-auth (etcd asks for
        the flag), so a member the cluster's CA did not sign is refused at the handshake.
        """
        self_signed = self.peer_auto_tls and not self.peer_cert_file and not self.peer_key_file
        return TLSInfo(
            "peer", cert_file=self.peer_cert_file, key_file=self.peer_key_file,
            trusted_ca_file=self.peer_trusted_ca_file,
            client_cert_auth=self.peer_client_cert_auth or (bool(self.peer_trusted_ca_file) and not self_signed),
            auto_tls=self.peer_auto_tls, auto_tls_dir=os.path.join(self.data_dir, "fixtures", "peer"),
            auto_tls_hosts=_hosts(self.listen_peer_urls), crl_file=self.peer_crl_file,
            allowed_cn=self.peer_cert_allowed_cn, allowed_hostname=self.peer_cert_allowed_hostname,
            **self._tls_common())

    def _tls_common(self) -> dict[str, Any]:
        return {"cipher_suites": tuple(self.cipher_suites), "min_version": self.tls_min_version,
                "max_version": self.tls_max_version}

    def _validate_tls(self) -> None:
        """Refuse TLS settings that contradict each other or the URLs (before anything is bound)."""
        for info, listen, advertised in ((self.client_tls_info(), self.listen_client_urls, self.advertise_client_urls),
                                         (self.peer_tls_info(), self.listen_peer_urls, self.initial_advertise_peer_urls)):
            try:
                info.validate()
            except TLSConfigError as err:
                raise ConfigError(str(err)) from None
            secure = [u for u in listen if urlsplit(u).scheme in ("https", "unixs")]
            if secure and not info.can_serve:
                if info.side == "client":
                    raise ConfigError(f"TLS key/cert (--cert-file, --key-file) must be provided for client url "
                                      f"{secure[0]} with HTTPS scheme")
                raise ConfigError(f"cannot listen on TLS for {urlsplit(secure[0]).netloc}: KeyFile and CertFile are not "
                                  "presented (--peer-cert-file, --peer-key-file or --peer-auto-tls)")
            if info.side == "client" and not secure and (info.cert_file or info.auto_tls):
                log.warning("client URLs are plain http: the client certificate settings are not used",
                            extra={"fields": {"listen-client-urls": listen}})
            if info.side == "peer" and not secure and info.cert_file:
                log.warning("peer listen URLs are plain http: the peer certificate is only presented to https peers",
                            extra={"fields": {"listen-peer-urls": listen}})

    @property
    def watch_progress_notify_interval(self) -> float:
        return parse_duration(self.experimental_watch_progress_notify_interval)

    @property
    def catchup_entries(self) -> int:
        return self.experimental_snapshot_catchup_entries or self.snapshot_catchup_entries

    @property
    def lease_checkpoint_interval(self) -> float:
        return parse_duration(self.experimental_lease_checkpoint_interval)

    @property
    def quota_bytes(self) -> int:
        return self.quota_backend_bytes if self.quota_backend_bytes > 0 else DEFAULT_QUOTA_BYTES

    def initial_cluster_members(self) -> dict[str, list[str]]:
        """``--initial-cluster`` as name → peer URLs (a name may repeat for several URLs)."""
        spec = self.initial_cluster or ",".join(f"{self.name}={u}" for u in self.initial_advertise_peer_urls)
        members: dict[str, list[str]] = {}
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            name, sep, url = item.partition("=")
            if not sep:
                raise ConfigError(f"invalid --initial-cluster entry {item!r}: expected name=url")
            members.setdefault(name.strip(), []).extend(_urls(url))
        return members

    def validate(self) -> None:
        if not self.data_dir:
            self.data_dir = f"{self.name}.etcd"
        if self.initial_cluster_state not in ("new", "existing"):
            raise ConfigError(f"invalid --initial-cluster-state {self.initial_cluster_state!r}: expected new or existing")
        if self.heartbeat_interval <= 0 or self.election_timeout < 5 * self.heartbeat_interval:
            raise ConfigError("--election-timeout must be at least 5 times --heartbeat-interval")
        if self.max_txn_ops <= 0:
            raise ConfigError("--max-txn-ops must be positive")
        if self.max_request_bytes <= 0:
            raise ConfigError("--max-request-bytes must be positive")
        if self.api_workers < 0:
            raise ConfigError("--api-workers must not be negative")
        if self.auto_compaction_mode not in ("periodic", "revision"):
            raise ConfigError(f"invalid --auto-compaction-mode {self.auto_compaction_mode!r}: expected periodic or revision")
        parse_retention(self.auto_compaction_mode, self.auto_compaction_retention)
        if parse_duration(self.experimental_watch_progress_notify_interval) <= 0:
            raise ConfigError("--experimental-watch-progress-notify-interval must be positive")
        if self.log_level.lower() not in ("debug", "info", "warn", "warning", "error", "dpanic", "panic", "fatal"):
            raise ConfigError(f"invalid --log-level {self.log_level!r}")
        if self.name not in self.initial_cluster_members():
            raise ConfigError(f"--initial-cluster has no entry for this member's --name {self.name!r}")
        if self.quota_backend_bytes > MAX_QUOTA_WARN_BYTES:
            log.warning("quota-backend-bytes %d exceeds the recommended maximum of 8 GiB", self.quota_backend_bytes)
        self._validate_tls()
        self._validate_auth()

    def _validate_auth(self) -> None:
        """A bad --auth-token refuses to start, with etcd's text; a bad --bcrypt-cost falls back, as in etcd."""
        try:
            parse_token_options(self.auth_token, simple_ttl=self.auth_token_ttl)
        except TokenOptionsError as err:
            raise ConfigError(str(err)) from None
        if passwords.effective_cost(self.bcrypt_cost) != self.bcrypt_cost:
            log.warning("using the default bcrypt cost instead of --bcrypt-cost", extra={"fields": {
                "bcrypt-cost": self.bcrypt_cost, "default": passwords.DEFAULT_COST}})


def _hosts(urls: list[str]) -> tuple[str, ...]:
    """The host names of ``urls`` (what an auto TLS certificate is issued for)."""
    return tuple(dict.fromkeys(h for h in (urlsplit(u).hostname for u in urls) if h))


_TLS_SECTIONS: dict[str, dict[str, str]] = {
    # etcd's YAML keeps each port's TLS settings in a section: section key -> flag.
    "client-transport-security": {
        "cert-file": "cert-file", "key-file": "key-file", "client-cert-auth": "client-cert-auth",
        "trusted-ca-file": "trusted-ca-file", "auto-tls": "auto-tls", "crl-file": "client-crl-file",
        "allowed-hostname": "client-cert-allowed-hostname"},
    "peer-transport-security": {
        "cert-file": "peer-cert-file", "key-file": "peer-key-file", "client-cert-auth": "peer-client-cert-auth",
        "trusted-ca-file": "peer-trusted-ca-file", "auto-tls": "peer-auto-tls", "crl-file": "peer-crl-file",
        "allowed-cn": "peer-cert-allowed-cn", "allowed-hostname": "peer-cert-allowed-hostname"},
}


def _load_tls_section(cfg: Config, config_file: str, section: str, doc: Any) -> None:
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise ConfigError(f"{config_file}: {section} must be a mapping")
    keys = _TLS_SECTIONS[section]
    for key, value in doc.items():
        flag = keys.get(str(key))
        if flag is None:
            log.warning("config file %s: ignoring unknown or unsupported key %r in %s", config_file, key, section)
            continue
        if value is None:
            continue
        if isinstance(value, list) and key in ("allowed-cn", "allowed-hostname"):
            if len(value) > 1:
                raise ConfigError(f"{config_file}: {section}.{key}: etcdx takes one value, not {len(value)}")
            value = value[0] if value else ""
        try:
            setattr(cfg, _attr(flag), _BY_NAME[flag].parse(value))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{config_file}: invalid value {value!r} for {section}.{key}: {exc}") from exc


def parse_retention(mode: str, retention: str) -> float:
    """Seconds (periodic) or a revision count (revision); 0 disables auto compaction.

    A bare number means hours in periodic mode, as in etcd; durations such as
    ``30m``, ``1h30m`` or ``90s`` are accepted too.
    """
    text = str(retention).strip()
    if mode == "revision":
        try:
            n = int(text)
        except ValueError as exc:
            raise ConfigError(f"invalid --auto-compaction-retention {retention!r} for revision mode") from exc
        if n < 0:
            raise ConfigError("--auto-compaction-retention must not be negative")
        return float(n)
    try:
        return float(text) * 3600.0
    except ValueError:
        pass
    return parse_duration(text)


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration such as ``90s``, ``10m`` or ``1h30m``."""
    text = str(text).strip()
    if not re.fullmatch(r"(?:\d+(?:\.\d+)?(?:h|m|s|ms))+", text):
        raise ConfigError(f"invalid duration {text!r}")
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", text))


def _attr(flag: str) -> str:
    return flag.replace("-", "_")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="etcdx", description="An etcd-compatible key-value store member.")
    for f in _FLAGS:
        # A boolean flag alone means true, as with Go's flags (--client-cert-auth, --auto-tls).
        bare = {"nargs": "?", "const": "true"} if f.parse is _bool else {}
        p.add_argument(f"--{f.name}", dest=_attr(f.name), default=None, metavar="VALUE", help=f.help, **bare)
    p.add_argument("--config-file", default=None, help="Path to a YAML config file in etcd's format; flags and ETCD_* variables are then ignored.")
    p.add_argument("--version", action="store_true", help="Print the version and exit.")
    return p


def load(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> tuple[Config, bool]:
    """Build the member's configuration; the flag tells whether ``--version`` was asked."""
    env = dict(os.environ if environ is None else environ)
    args = _parser().parse_args(argv)
    cfg = Config()
    config_file = args.config_file or env.get("ETCD_CONFIG_FILE")
    if config_file:
        with open(config_file, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
        if not isinstance(doc, dict):
            raise ConfigError(f"{config_file}: expected a YAML mapping")
        for key, value in doc.items():
            if str(key) in _TLS_SECTIONS:
                _load_tls_section(cfg, config_file, str(key), value)
                continue
            flag = _BY_NAME.get(str(key))
            if flag is None:
                log.warning("config file %s: ignoring unknown or unsupported key %r", config_file, key)
                continue
            if value is None:
                continue
            setattr(cfg, _attr(flag.name), flag.parse(value))
    else:
        known = {"ETCD_" + _attr(f.name).upper() for f in _FLAGS} | {"ETCD_CONFIG_FILE"}
        for key in sorted(env):
            if key.startswith("ETCD_") and key not in known and key not in ("ETCD_UNSUPPORTED_ARCH",):
                log.warning("unrecognized environment variable %s=%s", key, env[key])
        for f in _FLAGS:
            raw = getattr(args, _attr(f.name))
            if raw is None:
                raw = env.get("ETCD_" + _attr(f.name).upper())
            if raw is not None:
                try:
                    setattr(cfg, _attr(f.name), f.parse(raw))
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"invalid value {raw!r} for --{f.name}: {exc}") from exc
    cfg.validate()
    return cfg, bool(args.version)
