"""Tokens: simple-token expiry on an injected clock, JWT with every method, etcd's option string."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from etcdx.auth import errors
from etcdx.auth.errors import TokenOptionsError
from etcdx.auth.tokens import (
    JWTTokens,
    NoTokens,
    SimpleTokens,
    parse_go_duration,
    parse_token_options,
)


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- simple ---------------------------------------------------------------------------

def test_simple_token_is_prefix_dot_index():
    tokens = SimpleTokens()
    tokens.enable()
    prefix = tokens.gen_prefix()
    assert len(prefix) == 16 and prefix.isascii() and prefix.isalpha()
    token = tokens.assign("u", 3, prefix=prefix, index=42)
    assert token == f"{prefix}.42"
    assert tokens.info(token, 7).username == "u"
    assert tokens.info(token, 7).revision == 7  # the store's revision at lookup, not at login


def test_simple_token_expires_after_ttl_without_use():
    clock = Clock()
    tokens = SimpleTokens(ttl=300, clock=clock)
    tokens.enable()
    token = tokens.assign("u", 1, prefix="abc", index=1)
    clock.now += 299.9
    assert tokens.info(token, 1) is not None  # use renews it
    clock.now += 299.9
    assert tokens.info(token, 1) is not None
    clock.now += 300.0
    assert tokens.info(token, 1) is None


def test_expired_simple_tokens_are_pruned_so_memory_stays_bounded():
    clock = Clock()
    tokens = SimpleTokens(ttl=10, clock=clock)
    tokens.enable()
    for i in range(1000):
        tokens.assign("u", 1, prefix="p", index=i)
    clock.now += 11
    tokens.assign("u", 1, prefix="p", index=5000)
    assert len(tokens) == 1


def test_renewed_token_outlives_older_ones_when_pruning():
    clock = Clock()
    tokens = SimpleTokens(ttl=10, clock=clock)
    tokens.enable()
    first = tokens.assign("u", 1, prefix="a", index=1)
    second = tokens.assign("u", 1, prefix="b", index=2)
    clock.now += 5
    assert tokens.info(first, 1)  # renewed: now expires after the second
    clock.now += 6
    assert tokens.prune() == 1
    assert tokens.info(first, 1) and tokens.info(second, 1) is None


def test_simple_tokens_of_a_user_are_dropped_and_disable_drops_all():
    tokens = SimpleTokens()
    tokens.enable()
    a = tokens.assign("a", 1, prefix="x", index=1)
    b = tokens.assign("b", 1, prefix="y", index=2)
    tokens.invalidate_user("a")
    assert tokens.info(a, 1) is None and tokens.info(b, 1) is not None
    tokens.disable()
    tokens.enable()
    assert tokens.info(b, 1) is None


def test_simple_token_index_for_the_apply_wait():
    tokens = SimpleTokens()
    assert tokens.required_index("AbC.123") == 123
    for bad in ["", "nodot", "a.b", "a.-1", "a.１２"]:
        assert tokens.required_index(bad) == 0


def test_unknown_simple_token_is_refused():
    tokens = SimpleTokens()
    tokens.enable()
    assert tokens.info("garbage", 1) is None
    assert tokens.info("x" * 100_000, 1) is None


# -- JWT ------------------------------------------------------------------------------

def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


_RSA = rsa_key()
_EC = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}


def key_for(method: str):
    if method.startswith(("RS", "PS")):
        return _RSA
    return ec.generate_private_key(_EC[method])


ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512"]


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.mark.parametrize("method", ASYMMETRIC)
def test_jwt_issued_by_one_member_is_verified_by_another_with_only_the_public_key(method):
    clock = Clock()
    priv = key_for(method)
    issuer = JWTTokens(method, private_key=priv, ttl=600, clock=clock)
    verifier = JWTTokens(method, public_key=priv.public_key(), clock=clock)
    token = issuer.assign("alice", 12)
    assert claims(token) == {"username": "alice", "revision": 12, "exp": int(clock.now) + 600}
    assert jwt.get_unverified_header(token)["alg"] == method
    info = verifier.info(token, revision=99)
    assert (info.username, info.revision) == ("alice", 12)  # the revision at login
    assert verifier.verify_only
    with pytest.raises(errors.AuthError) as caught:
        verifier.assign("alice", 12)
    assert caught.value.message == "auth: token signing attempted with verify-only key"


def test_jwt_expires():
    clock = Clock()
    tokens = JWTTokens("RS256", private_key=_RSA, ttl=60, clock=clock)
    token = tokens.assign("u", 1)
    clock.now += 59
    assert tokens.info(token, 1) is not None
    clock.now += 1
    assert tokens.info(token, 1) is None


def test_jwt_forged_or_foreign_tokens_are_refused():
    clock = Clock()
    tokens = JWTTokens("RS256", private_key=_RSA, clock=clock)
    other = JWTTokens("RS256", private_key=rsa_key(), clock=clock)
    good = tokens.assign("u", 1)
    assert tokens.info(other.assign("u", 1), 1) is None  # another key
    head, body, sig = good.split(".")
    forged_body = base64.urlsafe_b64encode(json.dumps(
        {"username": "root", "revision": 1, "exp": int(clock.now) + 300}).encode()).rstrip(b"=").decode()
    assert tokens.info(f"{head}.{forged_body}.{sig}", 1) is None
    assert tokens.info(jwt.encode({"username": "u", "revision": 1, "exp": int(clock.now) + 9},
                                  "s" * 32, algorithm="HS256"), 1) is None  # algorithm switch
    assert tokens.info(jwt.encode({"username": "u", "revision": 1, "exp": int(clock.now) + 9},
                                  None, algorithm="none"), 1) is None
    for bad_claims in [{"username": "u", "revision": 1}, {"username": 5, "revision": 1, "exp": 2e9},
                       {"username": "u", "revision": "1", "exp": 2e9}]:
        assert tokens.info(jwt.encode(bad_claims, _RSA, algorithm="RS256"), 1) is None
    assert tokens.info("not.a.token", 1) is None


def test_hmac_jwt_uses_the_private_key_file_as_secret():
    tokens = JWTTokens("HS256", private_key=b"0123456789abcdef0123456789abcdef", clock=Clock())
    assert tokens.info(tokens.assign("u", 3), 1).revision == 3


# -- the --auth-token option string ---------------------------------------------------

@pytest.fixture
def keyfiles(tmp_path):
    def write(name: str, key) -> str:
        priv = tmp_path / f"{name}.key"
        pub = tmp_path / f"{name}.pub"
        priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
        return str(priv), str(pub)
    return write


def test_options_simple_and_none():
    assert isinstance(parse_token_options("simple"), SimpleTokens)
    assert isinstance(parse_token_options(""), NoTokens)


def test_options_jwt_full(keyfiles):
    priv, pub = keyfiles("rsa", _RSA)
    clock = Clock()
    tokens = parse_token_options(f"jwt,pub-key={pub},priv-key={priv},sign-method=RS256,ttl=10m", clock=clock)
    assert isinstance(tokens, JWTTokens) and not tokens.verify_only
    assert claims(tokens.assign("u", 1))["exp"] == int(clock.now) + 600
    verifier = parse_token_options(f"jwt,pub-key={pub},sign-method=RS256", clock=clock)
    assert verifier.verify_only and verifier.info(tokens.assign("u", 1), 1).username == "u"


def test_options_jwt_default_ttl_is_five_minutes(keyfiles):
    priv, _ = keyfiles("ec", ec.generate_private_key(ec.SECP256R1()))
    clock = Clock()
    tokens = parse_token_options(f"jwt,priv-key={priv},sign-method=ES256", clock=clock)
    assert claims(tokens.assign("u", 1))["exp"] == int(clock.now) + 300


@pytest.mark.parametrize("option, message", [
    ("bogus", "auth: invalid auth options"),
    ("simple,ttl", "auth: invalid auth options"),
    ("jwt,sign-method=RS256,sign-method=RS256", "auth: invalid auth options"),
    ("jwt,a=b=c", "auth: invalid auth options"),
    ("jwt,sign-method=XX999,priv-key=PRIV", "auth: invalid auth options"),
    ("jwt,priv-key=PRIV", "auth: invalid auth options"),
    ("jwt,sign-method=RS256,priv-key=PRIV,ttl=10 minutes", "auth: invalid auth options"),
    ("jwt,sign-method=RS256,priv-key=/nonexistent", "auth: invalid auth options"),
    ("jwt,sign-method=RS256", "auth: missing key data"),
    ("jwt,sign-method=HS256", "auth: missing key data"),
    ("jwt,sign-method=RS256,priv-key=PRIV,pub-key=OTHERPUB", "auth: public and private keys don't match"),
])
def test_options_errors_are_etcds(keyfiles, option, message):
    priv, _ = keyfiles("rsa", _RSA)
    _, other_pub = keyfiles("other", rsa_key())
    with pytest.raises(TokenOptionsError, match=f"^{message}$"):
        parse_token_options(option.replace("OTHERPUB", other_pub).replace("PRIV", priv))


def test_options_refuse_a_key_of_the_wrong_kind(keyfiles):
    priv, _ = keyfiles("ec", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(TokenOptionsError):
        parse_token_options(f"jwt,sign-method=RS256,priv-key={priv}")
    with pytest.raises(TokenOptionsError):
        parse_token_options(f"jwt,sign-method=ES384,priv-key={priv}")


@pytest.mark.parametrize("text, seconds", [
    ("10m", 600), ("1h30m", 5400), ("1.5s", 1.5), ("300ms", 0.3), ("2us", 2e-6), ("5µs", 5e-6),
    ("0", 0), ("-1m", -60), ("1h0m0s", 3600), (".5h", 1800),
])
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "m", "1x", "1m 2s", "--1s", "1.2.3s"])
def test_bad_go_durations(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


def test_no_tokens_provider_refuses_logins():
    with pytest.raises(errors.AuthError):
        NoTokens().assign("u", 1, prefix="", index=1)


def test_remembered_jwt_still_expires_and_the_memory_is_bounded(monkeypatch):
    from etcdx.auth import tokens as tokens_module

    monkeypatch.setattr(tokens_module, "JWT_CACHE_SIZE", 8)
    clock = Clock()
    tokens = JWTTokens("ES256", private_key=ec.generate_private_key(ec.SECP256R1()), ttl=60, clock=clock)
    token = tokens.assign("u", 1)
    assert tokens.info(token, 1) is not None
    assert tokens.info(token, 1) is not None  # remembered
    clock.now += 60
    assert tokens.info(token, 1) is None
    for i in range(20):
        tokens.info(tokens.assign(f"u{i}", 1), 1)
    assert len(tokens._verified) == 8
