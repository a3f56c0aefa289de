"""Configuration as etcd 3.4 takes it: Go's flag syntax, ETCD_* variables, the YAML file, etcd's refusals.

Each class of flag has its tests: honoured, unsupported (refused unless at
etcd's default), unknown and abbreviated, bare booleans, variables and YAML.
Where etcd refuses too, ``test_refused_as_etcd_refuses`` runs the real etcd
3.4 on the same command line and checks that it prints the same text.
"""

from __future__ import annotations

import os
import pathlib
import subprocess

import pytest
from support import procs

from etcdx.server.config import (
    ConfigError,
    FlagError,
    HelpRequested,
    load,
    parse_retention,
)

# --------------------------------------------------------------------------- defaults and precedence


def test_defaults_are_etcds() -> None:
    cfg, want_version = load([], {})
    assert not want_version
    assert cfg.name == "default" and cfg.data_dir == "default.etcd"
    assert cfg.wal_path == os.path.join("default.etcd", "member", "wal")
    assert cfg.listen_client_urls == ["http://localhost:2379"]
    assert cfg.max_request_bytes == 1572864 and cfg.max_txn_ops == 128
    assert cfg.quota_bytes == 2 * 1024**3
    assert cfg.max_wals == 5 and cfg.max_snapshots == 5 and cfg.initial_election_tick_advance
    assert cfg.compaction_batch_limit == 1000 and cfg.warning_apply_duration == 0.1
    assert cfg.log_outputs == ["default"] and cfg.logger == "zap"
    assert cfg.initial_cluster_members() == {"default": ["http://localhost:2380"]}
    assert cfg.load_warnings == []


def test_a_variable_fills_what_no_flag_sets() -> None:
    cfg, _ = load(["--max-txn-ops", "7"], {"ETCD_NAME": "envname", "ETCD_FORCE_NEW_CLUSTER": "true"})
    assert cfg.max_txn_ops == 7
    assert cfg.name == "envname" and cfg.data_dir == "envname.etcd"
    assert cfg.force_new_cluster


def test_a_variable_for_a_flag_also_given_is_refused_as_etcd_refuses_it() -> None:
    with pytest.raises(ConfigError) as err:
        load(["--max-txn-ops", "7"], {"ETCD_MAX_TXN_OPS": "7"})
    assert str(err.value) == ('conflicting environment variable "ETCD_MAX_TXN_OPS" is shadowed by corresponding '
                              "command-line flag (either unset environment variable or disable flag)")


def test_unknown_variables_are_warned_about() -> None:
    cfg, _ = load([], {"ETCD_DATA": "x", "ETCD_UNSUPPORTED_ARCH": "arm", "ETCDCTL_API": "3"})
    assert cfg.load_warnings == ["unrecognized environment variable ETCD_DATA=x"]


# --------------------------------------------------------------------------- Go's flag syntax


@pytest.mark.parametrize("argv", [
    ["--force-new-cluster"], ["-force-new-cluster"], ["--force-new-cluster=true"], ["--force-new-cluster=1"],
    ["--force-new-cluster=T"], ["--force-new-cluster", "--name", "default"],
])
def test_a_boolean_alone_or_with_an_attached_value_is_true(argv: list[str]) -> None:
    assert load(argv, {})[0].force_new_cluster is True


@pytest.mark.parametrize("argv", [["--force-new-cluster=false"], ["--force-new-cluster=0"], ["-force-new-cluster=F"]])
def test_a_boolean_is_false_only_with_an_attached_value(argv: list[str]) -> None:
    assert load(argv, {})[0].force_new_cluster is False


@pytest.mark.parametrize("argv", [["--name=m1"], ["-name", "m1"], ["--name", "m1"], ["-name=m1"]])
def test_one_or_two_dashes_and_an_attached_or_separate_value(argv: list[str]) -> None:
    assert load(argv + ["--initial-cluster", "m1=http://localhost:2380"], {})[0].name == "m1"


def test_a_value_may_start_with_a_dash_and_the_last_flag_wins() -> None:
    cfg, _ = load(["--initial-cluster-token", "-tok", "--max-txn-ops", "3", "--max-txn-ops", "4"], {})
    assert (cfg.initial_cluster_token, cfg.max_txn_ops) == ("-tok", 4)


@pytest.mark.parametrize("value,expected", [("0x10", 16), ("010", 8), ("1_000", 1000)])
def test_integers_take_gos_literals(value: str, expected: int) -> None:
    assert load(["--max-txn-ops", value], {})[0].max_txn_ops == expected


def test_help_and_version() -> None:
    for argv in (["-h"], ["--help"], ["-help"], ["--name", "x", "--help"]):
        with pytest.raises(HelpRequested):
            load(argv, {})
    assert load(["--version"], {})[1] is True
    assert load([], {"ETCD_VERSION": "true"})[1] is True


# --------------------------------------------------------------------------- refusals, compared with etcd 3.4

# (etcdx's argv and environment, the text both print). Each command line makes etcd 3.4 exit before it
# listens; PORTS (free loopback ports) are added where the case is not about the URLs.
REFUSED = [
    (["--data=x"], {}, "flag provided but not defined: -data"),  # an abbreviation of --data-dir
    (["--data-di", "x"], {}, "flag provided but not defined: -data-di"),
    (["--bogus"], {}, "flag provided but not defined: -bogus"),
    (["-name"], {}, "flag needs an argument: -name"),
    (["---name=x"], {}, "bad flag syntax: ---name=x"),
    (["-=x"], {}, "bad flag syntax: -=x"),
    (["--force-new-cluster", "false"], {}, "'false' is not a valid flag"),
    (["--name", "x", "stray"], {}, "'stray' is not a valid flag"),
    (["--force-new-cluster=maybe"], {}, 'invalid boolean value "maybe" for -force-new-cluster: parse error'),
    (["--heartbeat-interval=abc"], {}, 'invalid value "abc" for flag -heartbeat-interval: parse error'),
    (["--max-wals=-1"], {}, 'invalid value "-1" for flag -max-wals: parse error'),
    (["--snapshot-count=99999999999999999999"], {},
     'invalid value "99999999999999999999" for flag -snapshot-count: value out of range'),
    (["--max-concurrent-streams=4294967296"], {}, ('invalid value "4294967296" for flag -max-concurrent-streams: '
                                                    'strconv.ParseUint: parsing "4294967296": value out of range')),
    (["--quota-backend-bytes=1e3"], {}, 'invalid value "1e3" for flag -quota-backend-bytes: parse error'),
    (["--grpc-keepalive-min-time=5"], {}, 'invalid value "5" for flag -grpc-keepalive-min-time: parse error'),
    (["--initial-cluster-state=bogus"], {}, 'invalid value "bogus" for flag -initial-cluster-state: invalid value'),
    (["--discovery-fallback=bogus"], {}, 'invalid value "bogus" for flag -discovery-fallback: invalid value'),
    (["--listen-client-urls=localhost:2379"], {}, ('invalid value "localhost:2379" for flag -listen-client-urls: '
                                                    "URL scheme must be http, https, unix, or unixs: localhost:2379")),
    (["--listen-peer-urls=http://localhost"], {}, ('invalid value "http://localhost" for flag -listen-peer-urls: '
                                                    'URL address does not have the form "host:port": http://localhost')),
    (["--advertise-client-urls=http://localhost:1/x"], {}, ('invalid value "http://localhost:1/x" for flag '
                                                             "-advertise-client-urls: URL must not contain a path: "
                                                             "http://localhost:1/x")),
    (["--cors=a,b"], {}, 'invalid value "a,b" for flag -cors: URL scheme must be http, https, unix, or unixs: a'),
    ([], {"ETCD_HEARTBEAT_INTERVAL": "abc"}, 'invalid value "abc" for ETCD_HEARTBEAT_INTERVAL: parse error'),
    ([], {"ETCD_FORCE_NEW_CLUSTER": "yes"}, 'invalid value "yes" for ETCD_FORCE_NEW_CLUSTER: parse error'),
    (["--name=x"], {"ETCD_NAME": "y"}, ('conflicting environment variable "ETCD_NAME" is shadowed by corresponding '
                                        "command-line flag (either unset environment variable or disable flag)")),
    (["--election-timeout=400", "PORTS"], {},
     "--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]"),
    (["--election-timeout=60000", "--heartbeat-interval=1000", "PORTS"], {},
     "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
    (["--heartbeat-interval=0", "PORTS"], {}, "--heartbeat-interval must be >0 (set to 0ms)"),
    (["--listen-client-urls=http://127.0.0.1:{client}"], {},
     "--advertise-client-urls is required when --listen-client-urls is set explicitly"),
    ([], {"ETCD_LISTEN_CLIENT_URLS": "http://127.0.0.1:{client}"},
     "--advertise-client-urls is required when --listen-client-urls is set explicitly"),
    (["--logger=foo", "PORTS"], {}, 'unknown logger option "foo"'),
    (["--logger=zap", "--log-outputs=stderr,default", "PORTS"], {}, 'multi logoutput for "default" is not supported yet'),
    (["--auto-compaction-mode=weekly", "PORTS"], {}, 'unknown auto-compaction-mode "weekly"'),
    (["--auto-compaction-retention=soon", "PORTS"], {},
     'error parsing CompactionRetention: time: invalid duration "soon"'),
    (["--name=x", "--initial-cluster=other=http://127.0.0.1:{peer}", "PORTS"], {},
     'couldn\'t find local name "x" in the initial cluster configuration'),
]


def _expand(argv: list[str], client: int, peer: int) -> list[str]:
    ports = [f"--listen-client-urls=http://127.0.0.1:{client}", f"--advertise-client-urls=http://127.0.0.1:{client}",
             f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}"]
    out: list[str] = []
    for a in argv:
        if a == "PORTS":
            out += ports if any(x.startswith("--name") for x in argv) else ports + [
                f"--initial-cluster=default=http://127.0.0.1:{peer}"]
        else:
            out.append(a.format(client=client, peer=peer))
    return out


@pytest.mark.parametrize("argv,env,message", REFUSED)
def test_refused_with_etcds_text(argv: list[str], env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(_expand(argv, 23790, 23800), {k: v.format(client=23790) for k, v in env.items()})
    assert str(err.value) == message


@pytest.mark.etcd
@pytest.mark.parametrize("argv,env,message", REFUSED)
def test_etcd_34_refuses_the_same_with_the_same_text(tmp_path: pathlib.Path, argv: list[str], env: dict[str, str],
                                                      message: str) -> None:
    procs.require("etcd")
    client, peer = procs.free_port(), procs.free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
    environ.update({k: v.format(client=client) for k, v in env.items()})
    cmd = [procs.ETCD_BIN, f"--data-dir={tmp_path / 'd'}", *_expand(argv, client, peer)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, env=environ, cwd=tmp_path, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"etcd started with {cmd}")
    assert done.returncode != 0
    assert message in done.stderr, done.stderr[:500]


def test_a_bad_flag_is_a_flag_error_and_a_bad_setting_a_config_error() -> None:
    with pytest.raises(FlagError):
        load(["--data", "x"], {})
    with pytest.raises(ConfigError) as err:
        load(["--auto-compaction-mode", "weekly"], {})
    assert not isinstance(err.value, FlagError)


# --------------------------------------------------------------------------- unsupported and retired flags


@pytest.mark.parametrize("argv,message", [
    (["--discovery", "https://discovery.etcd.io/x"], "--discovery is not supported yet"),
    (["--discovery-srv=example.com"], "--discovery-srv is not supported yet"),
    (["--discovery-fallback=exit"], "--discovery-fallback is not supported yet"),
    (["--enable-v2"], "--enable-v2 is not supported: etcdx serves etcd's v3 API only"),
    (["--experimental-enable-v2v3=/v2/"], "--experimental-enable-v2v3 is not supported: etcdx serves etcd's v3 API only"),
    (["--proxy=on"], "--proxy is not supported: etcdx has no v2 proxy"),
    (["--proxy-refresh-interval=1000"], "--proxy-refresh-interval is not supported: etcdx has no v2 proxy"),
    (["--backend-batch-interval=10ms"], "--backend-batch-interval is not supported yet"),
    (["--backend-batch-limit=100"], "--backend-batch-limit is not supported yet"),
    (["--enable-pprof"], "--enable-pprof is not supported: etcdx is not a Go program"),
    (["--log-package-levels=etcdserver=DEBUG"], "--log-package-levels is not supported yet"),
    (["--experimental-backend-bbolt-freelist-type=map"],
     ("--experimental-backend-bbolt-freelist-type is not supported: etcdx's backend is LMDB, which has no bbolt "
      "freelist")),
])
def test_an_unsupported_flag_set_to_anything_but_etcds_default_is_refused_naming_it(argv, message) -> None:
    with pytest.raises(ConfigError) as err:
        load(argv, {})
    assert str(err.value) == message


@pytest.mark.parametrize("argv", [
    ["--discovery="], ["--discovery-fallback=proxy"], ["--enable-v2=false"], ["--proxy", "off"],
    ["--proxy-read-timeout=0"], ["--backend-batch-interval=0s"], ["--backend-batch-interval=0"],
    ["--backend-batch-limit=0"], ["--experimental-backend-bbolt-freelist-type=array"],
    ["--experimental-enable-lease-checkpoint-persist"],  # etcdx persists checkpoints: true is what it does
    ["--experimental-peer-skip-client-san-verification"],  # etcdx never checks client SANs on the peer port
])
def test_an_unsupported_flag_at_etcds_default_or_at_what_etcdx_does_is_accepted(argv: list[str]) -> None:
    cfg, _ = load(argv, {})
    assert cfg.load_warnings == []


def test_unsupported_flags_are_refused_from_variables_too() -> None:
    with pytest.raises(ConfigError) as err:
        load([], {"ETCD_DISCOVERY_SRV": "example.com"})
    assert str(err.value) == "--discovery-srv is not supported yet"


def test_retired_flags_are_ignored_with_etcds_warning() -> None:
    cfg, _ = load(["-v", "--config=/etc/etcd.conf"], {})
    assert cfg.load_warnings == ['flag "-v" is no longer supported - ignoring.',
                                 'flag "-config" is no longer supported - ignoring.']


# --------------------------------------------------------------------------- honoured flags


def test_cheap_etcd_flags_are_honoured(tmp_path: pathlib.Path) -> None:
    cfg, _ = load(["--data-dir", str(tmp_path / "d"), "--wal-dir", str(tmp_path / "w"), "--max-wals=0",
                   "--initial-election-tick-advance=false", "--experimental-compaction-batch-limit=50",
                   "--experimental-warning-apply-duration=1s", "--unsafe-no-fsync"], {})
    assert cfg.wal_path == str(tmp_path / "w")
    assert cfg.max_wals == 0 and not cfg.initial_election_tick_advance
    assert cfg.compaction_batch_limit == 50 and cfg.warning_apply_duration == 1.0 and cfg.unsafe_no_fsync
    assert load(["--experimental-compaction-batch-limit=0"], {})[0].compaction_batch_limit == 1000


def test_logging_flags() -> None:
    cfg, _ = load(["--debug"], {})
    assert cfg.log_level == "debug"
    cfg, _ = load(["--log-output", "stdout"], {})
    assert cfg.log_outputs == ["stdout"] and cfg.load_warnings == ["--log-output is deprecated: use --log-outputs"]
    cfg, _ = load(["--logger", "capnslog"], {})
    assert cfg.logger == "capnslog"
    assert cfg.load_warnings == [("deprecated '--logger=capnslog' flag is set: etcdx writes zap's JSON log lines "
                                  "whatever the logger")]
    assert load(["--log-outputs", "stderr,/tmp/x.log"], {})[0].log_outputs == ["stderr", "/tmp/x.log"]


def test_auth_flags_are_checked_as_etcd_checks_them() -> None:
    cfg, _ = load(["--bcrypt-cost", "3"], {})
    assert cfg.bcrypt_cost == 10  # etcd starts with its default cost
    assert cfg.load_warnings == ["Use default bcrypt-cost 10 instead of the invalid value 3"]
    with pytest.raises(ConfigError) as err:
        load(["--auth-token", "bogus"], {})
    assert str(err.value) == "--auth-token 'bogus': auth: invalid auth options"
    with pytest.raises(ConfigError):
        load(["--metrics", "everything"], {})
    assert load(["--metrics", "extensive", "--cors", "*,http://a.example:80"], {})[0].cors == [
        "*", "http://a.example:80"]


@pytest.mark.parametrize("argv", [
    ["--initial-cluster-state", "bogus"],
    ["--listen-client-urls", "localhost:2379", "--advertise-client-urls", "http://localhost:2379"],
    ["--auto-compaction-mode", "weekly"],
    ["--auto-compaction-retention", "soon"],
    ["--auto-compaction-mode", "revision", "--auto-compaction-retention", "1h"],
    ["--initial-cluster", "other=http://localhost:2380"],
    ["--initial-cluster", "default=localhost:2380"],
    ["--max-txn-ops", "many"],
    ["--max-txn-ops", "0"],
    ["--experimental-compaction-batch-limit", "-1"],
    ["--experimental-watch-progress-notify-interval", "0s"],
])
def test_invalid_settings_are_refused_with_a_message(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        load(argv, {})


def test_retention_units() -> None:
    assert parse_retention("periodic", "1") == 3600
    assert parse_retention("periodic", "30m") == 1800
    assert parse_retention("periodic", "1h30m") == 5400
    assert parse_retention("revision", "1000") == 1000
    assert parse_retention("periodic", "0") == 0


# --------------------------------------------------------------------------- the YAML file


def test_config_file_replaces_flags_and_environment(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "etcd.yaml"
    f.write_text(
        "name: fromfile\n"
        "data-dir: /tmp/x\n"
        "wal-dir: /tmp/x-wal\n"
        "listen-client-urls: http://127.0.0.1:23790,http://127.0.0.1:23791\n"
        "quota-backend-bytes: 1048576\n"
        "auto-compaction-mode: revision\n"
        "auto-compaction-retention: \"100\"\n"
        "force-new-cluster: true\n"
        "grpc-keepalive-min-time: 7000000000\n"  # etcd writes durations as nanoseconds
        "experimental-warning-apply-duration: 250ms\n"
        "log-outputs: [stderr]\n"
        "initial-cluster-state: existing\n"
        "discovery: ''\n"  # an unsupported key at etcd's default is fine
        "enable-v2: false\n"
    )
    cfg, _ = load(["--config-file", str(f), "--name", "ignored"], {"ETCD_MAX_TXN_OPS": "3"})
    assert cfg.name == "fromfile" and cfg.wal_path == "/tmp/x-wal"
    assert cfg.listen_client_urls == ["http://127.0.0.1:23790", "http://127.0.0.1:23791"]
    assert cfg.quota_bytes == 1048576 and cfg.max_txn_ops == 128 and cfg.force_new_cluster
    assert cfg.grpc_keepalive_min_time == "7000000000ns" and cfg.warning_apply_duration == 0.25
    assert cfg.log_outputs == ["stderr"] and cfg.initial_cluster_state == "existing"
    assert cfg.load_warnings[0].startswith(f"loaded server configuration from '{f}'")


@pytest.mark.parametrize("yaml_text,message", [
    ("enable-v2: true\n", "--enable-v2 is not supported: etcdx serves etcd's v3 API only"),
    ("discovery-srv: example.com\n", "--discovery-srv is not supported yet"),
    ("heartbeat-interval: fast\n", "invalid value 'fast' for heartbeat-interval: parse error"),
    ("initial-cluster-state: bogus\n", "invalid value 'bogus' for initial-cluster-state: invalid value"),
    ("force-new-cluster: maybe\n", "invalid value 'maybe' for force-new-cluster: parse error"),
    ("- a list\n", "expected a YAML mapping"),
])
def test_config_file_values_are_checked_like_flags(tmp_path: pathlib.Path, yaml_text: str, message: str) -> None:
    f = tmp_path / "etcd.yaml"
    f.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load(["--config-file", str(f)], {})
    assert message in str(err.value)


def test_config_file_unknown_keys_are_warned_about(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "etcd.yaml"
    f.write_text("name: m1\ninitial-cluster: m1=http://localhost:2380\nno-such-key: 1\nv: true\n")
    cfg, _ = load([], {"ETCD_CONFIG_FILE": str(f)})
    assert cfg.name == "m1"
    assert cfg.load_warnings[1:] == [f"config file {f}: ignoring unknown key 'no-such-key'",
                                     f"config file {f}: ignoring unknown key 'v'"]


def test_variables_are_still_checked_when_a_config_file_is_given(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "etcd.yaml"
    f.write_text("name: m1\ninitial-cluster: m1=http://localhost:2380\n")
    with pytest.raises(ConfigError):
        load(["--config-file", str(f)], {"ETCD_HEARTBEAT_INTERVAL": "abc"})
