"""--auth-token, --auth-token-ttl and --bcrypt-cost are checked at load, with etcd's texts."""

from __future__ import annotations

import pathlib

import pytest
from support.auth_setup import jwt_keys

from etcdx.server.config import ConfigError, load


@pytest.mark.parametrize("option, text", [
    ("foo", "auth: invalid auth options"),
    ("jwt,sign-method=RS256", "auth: missing key data"),
    ("jwt,sign-method=XX256,priv-key=/nonexistent", "auth: invalid auth options"),
    ("simple,ttl", "auth: invalid auth options"),
])
def test_a_bad_auth_token_refuses_to_start_with_etcds_text(option: str, text: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(["--auth-token", option], {})
    assert str(caught.value) == text


def test_jwt_and_simple_options_load(tmp_path: pathlib.Path) -> None:
    assert load(["--auth-token", jwt_keys(tmp_path, ttl="5m")], {})[0].auth_token.startswith("jwt,")
    cfg, _ = load(["--auth-token-ttl", "7"], {"ETCD_AUTH_TOKEN": "simple"})
    assert (cfg.auth_token, cfg.auth_token_ttl) == ("simple", 7)


def test_a_bcrypt_cost_out_of_range_falls_back_to_the_default_as_in_etcd(caplog) -> None:
    cfg, _ = load(["--bcrypt-cost", "100"], {})
    assert cfg.bcrypt_cost == 100  # the member hashes at the default cost (passwords.effective_cost)
    assert any("bcrypt" in r.getMessage() for r in caplog.records)
