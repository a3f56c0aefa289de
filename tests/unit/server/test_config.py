"""Configuration follows etcd: flag beats ETCD_* variable beats default; a config file replaces both."""

from __future__ import annotations

import pathlib

import pytest

from etcdx.server.config import ConfigError, load, parse_retention


def test_defaults_are_etcds() -> None:
    cfg, _ = load([], {})
    assert cfg.name == "default"
    assert cfg.data_dir == "default.etcd"
    assert cfg.listen_client_urls == ["http://localhost:2379"]
    assert cfg.max_request_bytes == 1572864
    assert cfg.max_txn_ops == 128
    assert cfg.quota_bytes == 2 * 1024**3
    assert cfg.initial_cluster_members() == {"default": ["http://localhost:2380"]}


def test_flag_beats_environment_which_beats_default() -> None:
    cfg, _ = load(["--max-txn-ops", "7"], {"ETCD_MAX_TXN_OPS": "5", "ETCD_NAME": "envname"})
    assert cfg.max_txn_ops == 7
    assert cfg.name == "envname"
    assert cfg.data_dir == "envname.etcd"


def test_config_file_replaces_flags_and_environment(tmp_path: pathlib.Path) -> None:
    f = tmp_path / "etcd.yaml"
    f.write_text(
        "name: fromfile\n"
        "data-dir: /tmp/x\n"
        "listen-client-urls: http://127.0.0.1:23790,http://127.0.0.1:23791\n"
        "quota-backend-bytes: 1048576\n"
        "auto-compaction-mode: revision\n"
        "auto-compaction-retention: \"100\"\n"
    )
    cfg, _ = load(["--config-file", str(f), "--name", "ignored"], {"ETCD_MAX_TXN_OPS": "3"})
    assert cfg.name == "fromfile"
    assert cfg.listen_client_urls == ["http://127.0.0.1:23790", "http://127.0.0.1:23791"]
    assert cfg.quota_bytes == 1048576
    assert cfg.max_txn_ops == 128


@pytest.mark.parametrize(
    "argv",
    [
        ["--initial-cluster-state", "bogus"],
        ["--listen-client-urls", "localhost:2379"],
        ["--auto-compaction-mode", "weekly"],
        ["--auto-compaction-retention", "soon"],
        ["--initial-cluster", "other=http://localhost:2380"],
        ["--max-txn-ops", "many"],
    ],
)
def test_invalid_settings_are_refused_with_a_message(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        load(argv, {})


def test_retention_units() -> None:
    assert parse_retention("periodic", "1") == 3600
    assert parse_retention("periodic", "30m") == 1800
    assert parse_retention("periodic", "1h30m") == 5400
    assert parse_retention("revision", "1000") == 1000
    assert parse_retention("periodic", "0") == 0
