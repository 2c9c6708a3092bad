"""Signing: canonical message, verification, owner binding and the replay window."""

from __future__ import annotations

import pytest
from solders.keypair import Keypair

from exchange.api.auth import (
    OwnerRegistry,
    ReplayGuard,
    canonical_message,
    parse_timestamp_ms,
    signed_headers,
    verify_signature,
)
from exchange.api.errors import (
    BadSignature,
    MissingAuth,
    ReplayedNonce,
    StaleTimestamp,
    UnknownKey,
)

KEY = Keypair.from_seed(bytes([9]) * 32)


def test_canonical_message_is_the_documented_layout() -> None:
    msg = canonical_message("POST", "/v1/orders?x=1", b'{"a":1}', 1_700_000_000_000, "n-1")
    assert msg == b'perpdex-api-v1\n1700000000000\nn-1\nPOST\n/v1/orders?x=1\n{"a":1}'


@pytest.mark.parametrize(
    ("method", "path", "nonce"),
    [
        ("post", "/p", "n"),
        ("POST", "/p\n", "n"),
        ("POST", "/p", ""),
        ("POST", "/p", "a\nb"),
        ("POST", "/p", "x" * 65),
    ],
)
def test_canonical_message_refuses_ambiguous_parts(method: str, path: str, nonce: str) -> None:
    with pytest.raises(MissingAuth):
        canonical_message(method, path, b"", 1, nonce)


def test_signature_verifies_and_any_changed_part_fails() -> None:
    headers = signed_headers(KEY, "POST", "/v1/orders", b"{}", 5, "abc")
    good = canonical_message("POST", "/v1/orders", b"{}", 5, "abc")
    verify_signature(KEY.pubkey(), good, headers["X-PD-Signature"])
    for changed in (
        canonical_message("POST", "/v1/orders", b"{ }", 5, "abc"),
        canonical_message("POST", "/v1/order", b"{}", 5, "abc"),
        canonical_message("GET", "/v1/orders", b"{}", 5, "abc"),
        canonical_message("POST", "/v1/orders", b"{}", 6, "abc"),
        canonical_message("POST", "/v1/orders", b"{}", 5, "abd"),
    ):
        with pytest.raises(BadSignature):
            verify_signature(KEY.pubkey(), changed, headers["X-PD-Signature"])
    with pytest.raises(BadSignature):
        verify_signature(KEY.pubkey(), good, "not-base58-!")


def test_timestamp_header_parsing() -> None:
    assert parse_timestamp_ms("1700000000000") == 1_700_000_000_000
    for bad in (None, "", "-1", "1.5", "12a", "1" * 17):
        with pytest.raises(MissingAuth):
            parse_timestamp_ms(bad)


def test_owner_registry_binds_one_key_per_owner() -> None:
    other = Keypair.from_seed(bytes([8]) * 32)
    registry = OwnerRegistry(((str(KEY.pubkey()), 5),))
    assert registry.owner_of(str(KEY.pubkey())) == (KEY.pubkey(), 5, None)
    with pytest.raises(UnknownKey):
        registry.owner_of(str(other.pubkey()))
    with pytest.raises(MissingAuth):
        registry.owner_of("short")
    with pytest.raises(ValueError):
        registry.bind(str(other.pubkey()), 5)  # owner already bound
    with pytest.raises(ValueError):
        registry.bind(str(KEY.pubkey()), 6)  # key already bound


def test_replay_guard_window_and_nonces() -> None:
    guard = ReplayGuard(window_ms=1_000)
    guard.check("k", 10_000, "a", now_ms=10_500)
    with pytest.raises(ReplayedNonce):
        guard.check("k", 10_100, "a", now_ms=10_600)
    guard.check("other", 10_100, "a", now_ms=10_600)  # nonces are per key
    with pytest.raises(StaleTimestamp):
        guard.check("k", 8_999, "b", now_ms=10_000)
    with pytest.raises(StaleTimestamp):
        guard.check("k", 11_001, "c", now_ms=10_000)
    # once a nonce's timestamp leaves the window it is forgotten (and would be stale anyway)
    guard.check("k", 20_000, "d", now_ms=20_000)
    assert guard.remembered() == 1


def test_owner_registry_keys_limited_to_one_sub_account() -> None:
    keys = [str(Keypair.from_seed(bytes([n]) * 32).pubkey()) for n in range(20, 24)]
    registry = OwnerRegistry(((keys[0], 7, 0), (keys[1], 7, 1)))
    assert registry.owner_of(keys[1])[1:] == (7, 1)
    with pytest.raises(ValueError):
        registry.bind(keys[2], 7, 1)  # sub-account 1 already has its key
    with pytest.raises(ValueError):
        registry.bind(keys[2], 7)  # an all-sub-accounts key next to per-sub keys
    with pytest.raises(ValueError):
        registry.bind(keys[3], 8, 70_000)
    registry.bind(keys[2], 8)
    with pytest.raises(ValueError):
        registry.bind(keys[3], 8, 0)  # owner 8 already has an all-sub-accounts key
