"""The flag table covers every etcd 3.4 flag, and Config has exactly the honoured ones."""

from __future__ import annotations

import dataclasses
import re
import subprocess

import pytest
from support import procs

from etcdx.server.config import Config
from etcdx.server.flagtable import FLAGS, RETIRED_FLAGS, Support, unsupported, usage

# `etcd --help` of Debian's etcd 3.4.23 lists these 80 flags ...
ETCD_34_HELP_FLAGS = """
advertise-client-urls auth-token auth-token-ttl auto-compaction-mode auto-compaction-retention auto-tls
backend-batch-interval backend-batch-limit bcrypt-cost cert-file cipher-suites client-cert-allowed-hostname
client-cert-auth client-crl-file cors data-dir debug discovery discovery-fallback discovery-proxy discovery-srv
discovery-srv-name election-timeout enable-pprof enable-v2 experimental-backend-bbolt-freelist-type
experimental-compaction-batch-limit experimental-corrupt-check-time experimental-enable-lease-checkpoint
experimental-enable-v2v3 experimental-initial-corrupt-check experimental-peer-skip-client-san-verification
experimental-warning-apply-duration experimental-watch-progress-notify-interval force-new-cluster
grpc-keepalive-interval grpc-keepalive-min-time grpc-keepalive-timeout heartbeat-interval host-whitelist
initial-advertise-peer-urls initial-cluster initial-cluster-state initial-cluster-token initial-election-tick-advance
key-file listen-client-urls listen-metrics-urls listen-peer-urls log-level log-outputs log-package-levels logger
max-concurrent-streams max-request-bytes max-snapshots max-txn-ops max-wals metrics name peer-auto-tls
peer-cert-allowed-cn peer-cert-allowed-hostname peer-cert-file peer-client-cert-auth peer-crl-file peer-key-file
peer-trusted-ca-file pre-vote proxy proxy-dial-timeout proxy-failure-wait proxy-read-timeout proxy-refresh-interval
proxy-write-timeout quota-backend-bytes snapshot-count strict-reconfig-check trusted-ca-file wal-dir
""".split()  # noqa: SIM905 (as etcd --help prints them)
# ... and takes these without listing them (found by giving each to etcd 3.4.23).
ETCD_34_HIDDEN_FLAGS = ["enable-grpc-gateway", "log-output", "unsafe-no-fsync",
                        "experimental-enable-lease-checkpoint-persist"]
# Names etcdx takes from etcd 3.5/3.6, and its own.
LATER_AND_OWN_FLAGS = ["snapshot-catchup-entries", "experimental-snapshot-catchup-entries",
                       "experimental-lease-checkpoint-interval", "tls-min-version", "tls-max-version", "api-workers"]


def test_every_etcd_34_flag_is_in_the_table_and_nothing_else():
    names = {f.name for f in FLAGS if f.support is not Support.RETIRED}
    assert len(ETCD_34_HELP_FLAGS) == 80
    assert names == set(ETCD_34_HELP_FLAGS) | set(ETCD_34_HIDDEN_FLAGS) | set(LATER_AND_OWN_FLAGS)
    assert {f.name for f in FLAGS if f.support is Support.RETIRED} == set(RETIRED_FLAGS)


@pytest.mark.etcd
def test_the_pinned_list_is_what_etcd_help_prints():
    procs.require("etcd")
    out = subprocess.run([procs.ETCD_BIN, "--help"], capture_output=True, text=True, timeout=30, check=False).stdout
    assert sorted(re.findall(r"^  --([a-z0-9-]+)", out, re.MULTILINE)) == sorted(ETCD_34_HELP_FLAGS)


def test_config_has_a_field_per_honoured_flag_with_its_default():
    fields = {f.name: f for f in dataclasses.fields(Config) if f.name != "load_warnings"}
    honoured = {f.attr: f for f in FLAGS if f.support is Support.HONOURED}
    assert set(fields) == set(honoured)
    defaults = Config()
    for attr, flag in honoured.items():
        assert getattr(defaults, attr) == flag.default, attr


def test_unsupported_flags_are_etcds_and_listed_for_the_start_line():
    listed = unsupported()
    assert "--discovery" in listed and "--enable-v2" in listed and "--proxy" in listed
    assert all(name[2:] in ETCD_34_HELP_FLAGS + ETCD_34_HIDDEN_FLAGS for name in listed)
    assert "--force-new-cluster" not in listed and "--wal-dir" not in listed


def test_help_shows_every_flag_but_the_retired_ones_and_marks_the_unsupported():
    text = usage()
    for f in FLAGS:
        assert (f"  --{f.name} '" in text) is (f.support is not Support.RETIRED), f.name
    assert "  --discovery ''\n    Discovery URL used to bootstrap the cluster. [not supported yet]" in text
    assert "[not supported: etcdx serves etcd's v3 API only]" in text
    assert "etcdx always writes zap's JSON lines" in text  # what --logger capnslog does
