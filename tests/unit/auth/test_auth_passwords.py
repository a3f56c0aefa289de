"""bcrypt as etcd uses it: Go's hash format, 72-byte passwords, the cost flag's fallback."""

from __future__ import annotations

from etcdx.auth import passwords


def test_hash_checks_and_is_go_format():
    hashed = passwords.hash_password("secret", 4)
    assert hashed.startswith(b"$2a$04$")
    assert passwords.check_password(hashed, "secret")
    assert not passwords.check_password(hashed, "Secret")


def test_only_the_first_72_bytes_count_as_in_etcd_34():
    hashed = passwords.hash_password("x" * 80, 4)  # etcd 3.4.23 accepts an 80-byte password
    assert passwords.check_password(hashed, "x" * 72)
    assert passwords.check_password(hashed, "x" * 72 + "anything")
    assert not passwords.check_password(hashed, "x" * 71)


def test_empty_or_malformed_hash_never_matches():
    assert not passwords.check_password(b"", "")
    assert not passwords.check_password(b"$2a$nonsense", "")


def test_out_of_range_cost_falls_back_to_default():
    assert passwords.effective_cost(3) == passwords.DEFAULT_COST == 10
    assert passwords.effective_cost(32) == 10
    assert passwords.effective_cost(4) == 4


def test_request_encoding_round_trips():
    hashed = passwords.hash_password("pw", 4)
    assert passwords.decode_from_request(passwords.encode_for_request(hashed)) == hashed
    assert passwords.decode_from_request("not base64!") is None
