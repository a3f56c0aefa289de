"""A member's configuration: etcd's flags, ``ETCD_*`` variables and YAML file, checked as etcd checks them.

Where each setting comes from is etcd's rule: with ``--config-file`` the file
is the whole configuration (flags and variables are still checked, then
ignored); otherwise the command line and the ``ETCD_<FLAG>`` variables, and a
variable for a flag also given on the command line is refused, as etcd
refuses it. Which flags exist and what etcdx does with each is the table in
``flagtable``; how the command line is read is ``goflag`` (Go's flag
package); the YAML file is ``config_file``. This module builds the ``Config``
from them and checks it (etcd's messages where etcd refuses too).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from etcdx.server import config_file, goflag
from etcdx.server.flagtable import BY_NAME, COMMAND_FLAGS, FLAGS, Flag, Support
from etcdx.server.goflag import ConfigError, FlagError, HelpRequested
from etcdx.tls import TLSConfigError, TLSInfo

__all__ = ["Config", "ConfigError", "FlagError", "HelpRequested", "load", "parse_duration", "parse_retention"]

log = logging.getLogger("etcdx.config")

DEFAULT_QUOTA_BYTES = 2 * 1024 * 1024 * 1024
MAX_QUOTA_WARN_BYTES = 8 * 1024 * 1024 * 1024
MAX_ELECTION_MS = 50000
DEFAULT_COMPACTION_BATCH_LIMIT = 1000
DEFAULT_BCRYPT_COST = 10
LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "dpanic", "panic", "fatal")
# ETCD_* variables etcd reads itself, not as flags.
ENV_ONLY = ("ETCD_UNSUPPORTED_ARCH",)


@dataclass
class Config:
    """One field per honoured flag of ``flagtable.FLAGS`` (same name, etcdx's default)."""

    name: str = "default"
    data_dir: str = ""
    wal_dir: str = ""
    snapshot_count: int = 100000
    heartbeat_interval: int = 100
    election_timeout: int = 1000
    initial_election_tick_advance: bool = True
    listen_peer_urls: list[str] = field(default_factory=lambda: ["http://localhost:2380"])
    listen_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    max_snapshots: int = 5
    max_wals: int = 5
    quota_backend_bytes: int = 0
    max_txn_ops: int = 128
    max_request_bytes: int = 1572864
    max_concurrent_streams: int = 4294967295
    grpc_keepalive_min_time: str = "5s"
    grpc_keepalive_interval: str = "2h"
    grpc_keepalive_timeout: str = "20s"
    enable_grpc_gateway: bool = True
    initial_advertise_peer_urls: list[str] = field(default_factory=lambda: ["http://localhost:2380"])
    initial_cluster: str = ""
    initial_cluster_state: str = "new"
    initial_cluster_token: str = "etcd-cluster"
    advertise_client_urls: list[str] = field(default_factory=lambda: ["http://localhost:2379"])
    strict_reconfig_check: bool = True
    pre_vote: bool = True
    auto_compaction_retention: str = "0"
    auto_compaction_mode: str = "periodic"
    # TLS (etcdx/tls)
    cert_file: str = ""
    key_file: str = ""
    client_cert_auth: bool = False
    client_crl_file: str = ""
    client_cert_allowed_hostname: str = ""
    trusted_ca_file: str = ""
    auto_tls: bool = False
    peer_cert_file: str = ""
    peer_key_file: str = ""
    peer_client_cert_auth: bool = False
    peer_trusted_ca_file: str = ""
    peer_cert_allowed_cn: str = ""
    peer_cert_allowed_hostname: str = ""
    peer_auto_tls: bool = False
    peer_crl_file: str = ""
    cipher_suites: list[str] = field(default_factory=list)
    tls_min_version: str = "TLS1.2"
    tls_max_version: str = ""
    # The HTTP side of the client port, auth, metrics
    cors: list[str] = field(default_factory=lambda: ["*"])
    host_whitelist: list[str] = field(default_factory=lambda: ["*"])
    auth_token: str = "simple"
    bcrypt_cost: int = 10
    auth_token_ttl: int = 300
    metrics: str = "basic"
    listen_metrics_urls: list[str] = field(default_factory=list)
    # Logging
    logger: str = "zap"
    log_outputs: list[str] = field(default_factory=lambda: ["default"])
    log_output: list[str] = field(default_factory=list)
    log_level: str = "info"
    debug: bool = False
    # Experimental and unsafe
    experimental_initial_corrupt_check: bool = False
    experimental_corrupt_check_time: str = "0s"
    experimental_enable_lease_checkpoint: bool = True
    experimental_lease_checkpoint_interval: str = "5s"
    experimental_compaction_batch_limit: int = 1000
    experimental_watch_progress_notify_interval: str = "10m"
    experimental_warning_apply_duration: str = "100ms"
    experimental_snapshot_catchup_entries: int = 0
    snapshot_catchup_entries: int = 5000
    force_new_cluster: bool = False
    unsafe_no_fsync: bool = False
    api_workers: int = 0
    # What loading the configuration had to say (logged by the entry point once logging is set up).
    load_warnings: list[str] = field(default_factory=list, repr=False)

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

    # -- derived values ------------------------------------------------------------

    @property
    def wal_path(self) -> str:
        """Where the WAL lives: ``--wal-dir``, or ``<data-dir>/member/wal``."""
        return self.wal_dir or os.path.join(self.data_dir, "member", "wal")

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
    def warning_apply_duration(self) -> float:
        return parse_duration(self.experimental_warning_apply_duration)

    @property
    def compaction_batch_limit(self) -> int:
        return self.experimental_compaction_batch_limit or DEFAULT_COMPACTION_BATCH_LIMIT

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
            try:
                members.setdefault(name.strip(), []).extend(goflag.parse_urls(url))
            except ValueError as err:
                raise ConfigError(f"invalid --initial-cluster entry {item!r}: {err}") from None
        return members

    # -- checks ----------------------------------------------------------------------

    def validate(self) -> None:
        """Refuse what etcd refuses (with its text), and what etcdx cannot do with these values."""
        if not self.data_dir:
            self.data_dir = f"{self.name}.etcd"
        if self.heartbeat_interval <= 0:
            raise ConfigError(f"--heartbeat-interval must be >0 (set to {self.heartbeat_interval}ms)")
        if self.election_timeout < 5 * self.heartbeat_interval:
            raise ConfigError(f"--election-timeout[{self.election_timeout}ms] should be at least as 5 times as "
                              f"--heartbeat-interval[{self.heartbeat_interval}ms]")
        if self.election_timeout > MAX_ELECTION_MS:
            raise ConfigError(f"--election-timeout[{self.election_timeout}ms] is too long, and should be set less "
                              f"than {MAX_ELECTION_MS}ms")
        if self.max_txn_ops <= 0:
            raise ConfigError("--max-txn-ops must be positive")
        if self.max_request_bytes <= 0:
            raise ConfigError("--max-request-bytes must be positive")
        if self.auto_compaction_mode not in ("periodic", "revision"):
            raise ConfigError(f'unknown auto-compaction-mode "{self.auto_compaction_mode}"')
        parse_retention(self.auto_compaction_mode, self.auto_compaction_retention)
        if self.watch_progress_notify_interval <= 0:
            raise ConfigError("--experimental-watch-progress-notify-interval must be positive")
        if self.experimental_compaction_batch_limit < 0:
            raise ConfigError("--experimental-compaction-batch-limit must not be negative")
        self._validate_logging()
        if self.metrics not in ("basic", "extensive"):
            raise ConfigError(f"--metrics must be 'basic' or 'extensive', not {self.metrics!r}")
        if self.name not in self.initial_cluster_members():
            raise ConfigError(f'couldn\'t find local name "{self.name}" in the initial cluster configuration')
        if self.quota_backend_bytes > MAX_QUOTA_WARN_BYTES:
            self.load_warnings.append(f"quota-backend-bytes {self.quota_backend_bytes} exceeds the recommended "
                                      "maximum of 8 GiB")
        self._validate_auth()
        self._validate_tls()

    def _validate_logging(self) -> None:
        if self.logger not in ("zap", "capnslog"):
            raise ConfigError(f'unknown logger option "{self.logger}"')
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError(f'unknown level "{self.log_level}"')
        if len(self.log_outputs) > 1 and "default" in self.log_outputs:
            raise ConfigError('multi logoutput for "default" is not supported yet')

    def _validate_auth(self) -> None:
        if not 4 <= self.bcrypt_cost <= 31:
            # etcd starts anyway, with its default cost.
            self.load_warnings.append(f"Use default bcrypt-cost {DEFAULT_BCRYPT_COST} instead of the invalid value "
                                      f"{self.bcrypt_cost}")
            self.bcrypt_cost = DEFAULT_BCRYPT_COST
        from etcdx.auth.errors import (
            TokenOptionsError,  # jwt and cryptography: not for `etcdx --help`
        )
        from etcdx.auth.tokens import parse_token_options

        try:
            parse_token_options(self.auth_token, simple_ttl=float(self.auth_token_ttl))
        except TokenOptionsError as err:
            raise ConfigError(f"--auth-token {self.auth_token!r}: {err}") from None


def _hosts(urls: list[str]) -> tuple[str, ...]:
    """The host names of ``urls`` (what an auto TLS certificate is issued for)."""
    return tuple(dict.fromkeys(h for h in (urlsplit(u).hostname for u in urls) if h))


def parse_retention(mode: str, retention: str) -> float:
    """Seconds (periodic) or a revision count (revision); 0 disables auto compaction.

    A bare number means hours in periodic mode, as in etcd; a Go duration
    (``30m``, ``1h30m``) is taken too.
    """
    text = str(retention).strip()
    if mode == "revision":
        try:
            n = int(text)
        except ValueError:
            raise ConfigError(f"invalid --auto-compaction-retention {retention!r} for revision mode") from None
        if n < 0:
            raise ConfigError("--auto-compaction-retention must not be negative")
        return float(n)
    if text.isdigit():
        return float(text) * 3600.0
    try:
        seconds = goflag.parse_duration(text)
    except ValueError:
        raise ConfigError(f'error parsing CompactionRetention: time: invalid duration "{text}"') from None
    if seconds < 0:
        raise ConfigError("--auto-compaction-retention must not be negative")
    return seconds


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as ``90s``, ``10m``, ``1h30m`` or ``0``."""
    try:
        return goflag.parse_duration(str(text).strip())
    except ValueError:
        raise ConfigError(f"invalid duration {text!r}") from None


# -- loading ---------------------------------------------------------------------------

def load(argv: Sequence[str] | None = None, environ: dict[str, str] | None = None) -> tuple[Config, bool]:
    """Build the member's configuration; the flag tells whether ``--version`` was asked.

    Raises FlagError (a command line Go's flag package refuses), ConfigError
    (a value etcd or etcdx refuses) or HelpRequested.
    """
    env = dict(os.environ if environ is None else environ)
    warnings: list[str] = []
    given = _from_command_line(sys.argv[1:] if argv is None else list(argv))
    from_env = _from_environ(env, given, warnings)
    settings = {**from_env, **given}
    want_version = bool(settings.pop("version", False))
    path = settings.pop("config-file", "")
    if path:
        settings, file_warnings = config_file.read(path)
        warnings.append(f"loaded server configuration from {path!r}: other configuration command line flags "
                        "and environment variables are ignored")
        warnings += file_warnings
    elif "listen-client-urls" in settings and "advertise-client-urls" not in settings:
        raise ConfigError("--advertise-client-urls is required when --listen-client-urls is set explicitly")
    cfg = _build(settings, warnings)
    cfg.validate()
    return cfg, want_version


def _is_bool(name: str) -> bool | None:
    f = BY_NAME.get(name)
    return None if f is None else f.kind.is_bool


def _from_command_line(argv: list[str]) -> dict[str, Any]:
    pairs, rest = goflag.split_args(argv, _is_bool)
    if rest:
        if rest[0] in ("gateway", "grpc-proxy"):
            raise ConfigError(f"the {rest[0]} command of etcd is not supported")
        raise ConfigError(f"'{rest[0]}' is not a valid flag")
    given: dict[str, Any] = {}
    for name, text in pairs:
        f = BY_NAME[name]
        if text is None:
            given[name] = True
            continue
        try:
            given[name] = f.kind.parse(text)
        except ValueError as err:
            what = "invalid boolean value" if f.kind.is_bool else "invalid value"
            where = f"-{name}" if f.kind.is_bool else f"flag -{name}"
            raise FlagError(f"{what} {_quote(text)} for {where}: {err}") from None
    return given


def _from_environ(env: dict[str, str], given: dict[str, Any], warnings: list[str]) -> dict[str, Any]:
    """The flags set by ``ETCD_*`` variables; one that a flag also sets is refused, as etcd refuses it."""
    out: dict[str, Any] = {}
    for f in FLAGS + COMMAND_FLAGS:
        text = env.get(f.env)
        if text is None:
            continue
        if f.name in given:
            raise ConfigError(f'conflicting environment variable "{f.env}" is shadowed by corresponding '
                              "command-line flag (either unset environment variable or disable flag)")
        try:
            out[f.name] = f.kind.parse(text)
        except ValueError as err:
            raise ConfigError(f"invalid value {_quote(text)} for {f.env}: {err}") from None
    known = {f.env for f in FLAGS + COMMAND_FLAGS}
    for key in sorted(env):
        if key.startswith("ETCD_") and key not in known and key not in ENV_ONLY:
            warnings.append(f"unrecognized environment variable {key}={env[key]}")
    return out


def _build(settings: dict[str, Any], warnings: list[str]) -> Config:
    """A Config from flag values, refusing unsupported flags set to anything but etcd's default."""
    cfg = Config(load_warnings=warnings)
    for name, value in settings.items():
        f = BY_NAME[name]
        if f.support is Support.RETIRED:
            warnings.append(f'flag "-{name}" is no longer supported - ignoring.')
        elif f.support is Support.UNSUPPORTED:
            if not _accepted(f, value):
                raise ConfigError(f.refusal())
        else:
            setattr(cfg, f.attr, value)
    if cfg.debug:
        cfg.log_level = "debug"
    if cfg.log_output:
        warnings.append("--log-output is deprecated: use --log-outputs")
        if "log-outputs" not in settings:
            cfg.log_outputs = list(cfg.log_output)
    if cfg.logger == "capnslog":
        warnings.append("deprecated '--logger=capnslog' flag is set: etcdx writes zap's JSON log lines whatever "
                        "the logger")
    return cfg


def _accepted(f: Flag, value: Any) -> bool:
    return any(goflag.same_value(f.kind, value, ok) for ok in (f.default, *f.also_accepts))


def _quote(text: str) -> str:
    """Go's %q for the texts flags hold."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
