"""Unit tests for the account registry of perp.clearinghouse (RegisterAccount ->
AccountRegistered): deterministic assignment, uniqueness both ways, refusals that change
nothing, the fold, the snapshot and the state hash."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.core.commands import (
    FIRST_REGISTERED_OWNER_ID,
    Deposit,
    RegisterAccount,
    check_command,
    parse_command,
)
from exchange.core.errors import InvariantViolation, RejectCode
from exchange.core.events import (
    NO_MARKET_ID,
    AccountRegistered,
    OrderRejected,
    decode_events,
    encode_events,
)
from perp.clearinghouse import Clearinghouse

WALLET_A = "a1" * 32
WALLET_B = "0b" * 32
S = 1_000_000_000


def run(commands: list[Any]) -> tuple[Clearinghouse, list[Any]]:
    ch = Clearinghouse()
    journal: list[Any] = []
    for i, cmd in enumerate(commands):
        check_command(cmd)
        journal += ch.execute(cmd, (i + 1) * S)
    return ch, journal


def fold(journal: list[Any]) -> Clearinghouse:
    ch = Clearinghouse()
    for e in decode_events(encode_events(journal)):
        ch.apply(e)
    return ch


def test_first_registrations_get_consecutive_owners_at_sub_account_zero() -> None:
    # Act
    ch, journal = run([RegisterAccount(WALLET_A), RegisterAccount(WALLET_B)])
    # Assert
    assert journal == [
        AccountRegistered(1, S, NO_MARKET_ID, FIRST_REGISTERED_OWNER_ID, 0, WALLET_A),
        AccountRegistered(2, 2 * S, NO_MARKET_ID, FIRST_REGISTERED_OWNER_ID + 1, 0, WALLET_B),
    ]
    assert ch.registered_account(WALLET_A) == (FIRST_REGISTERED_OWNER_ID, 0)
    assert ch.registered_wallet(FIRST_REGISTERED_OWNER_ID + 1, 0) == WALLET_B
    assert ch.registered_account("cc" * 32) is None
    assert ch.registered_wallet(FIRST_REGISTERED_OWNER_ID + 2, 0) is None


def test_a_second_registration_of_a_wallet_is_refused_and_changes_nothing() -> None:
    # Arrange
    ch, _ = run([RegisterAccount(WALLET_A)])
    before = ch.canonical()
    # Act
    [refused] = ch.execute(RegisterAccount(WALLET_A), 5 * S)
    # Assert
    assert type(refused) is OrderRejected
    assert refused.code == RejectCode.ACCOUNT_ALREADY_REGISTERED
    assert (refused.owner_id, refused.sub_account_id) == (FIRST_REGISTERED_OWNER_ID, 0)
    assert "expected an unregistered wallet" in refused.message
    after = ch.canonical()
    after["core"]["next_seq"] -= 1
    assert after == before


@pytest.mark.parametrize("wallet", ["", "A1" * 32, "a1" * 31, "a1" * 33, "zz" * 32, " " + "a" * 63])
def test_a_malformed_wallet_is_refused(wallet: str) -> None:
    ch = Clearinghouse()
    [refused] = ch.execute(RegisterAccount(wallet), S)
    assert type(refused) is OrderRejected and refused.code == RejectCode.MALFORMED_COMMAND
    assert "expected 64 lower-case hex digits" in refused.message
    assert ch.registry == {}


def test_the_fold_snapshot_and_hash_keep_the_registry() -> None:
    # Arrange
    ch, journal = run(
        [RegisterAccount(WALLET_A), Deposit(FIRST_REGISTERED_OWNER_ID, 0, 5), RegisterAccount(WALLET_B),
         RegisterAccount(WALLET_A)]
    )  # fmt: skip
    # Act
    folded = fold(journal)
    restored = Clearinghouse.from_snapshot(ch.snapshot())
    # Assert
    assert folded.state_hash() == ch.state_hash() == restored.state_hash()
    assert restored.registry == ch.registry == folded.registry
    assert restored.registry_by_account == ch.registry_by_account
    # the next registration continues the sequence after a restore
    [e] = restored.execute(RegisterAccount("cc" * 32), 9 * S)
    assert e.owner_id == FIRST_REGISTERED_OWNER_ID + 2


def test_the_registry_is_in_the_hash_and_absent_while_empty() -> None:
    empty = Clearinghouse()
    assert "registry" not in empty.canonical()  # hashes of states before it existed hold
    ch, _ = run([RegisterAccount(WALLET_A)])
    other, _ = run([RegisterAccount(WALLET_B)])
    assert ch.canonical()["registry"] == [[FIRST_REGISTERED_OWNER_ID, 0, WALLET_A]]
    assert ch.state_hash() != other.state_hash()


@pytest.mark.parametrize(
    "bad",
    [
        AccountRegistered(1, S, NO_MARKET_ID, FIRST_REGISTERED_OWNER_ID + 1, 0, WALLET_A),
        AccountRegistered(1, S, NO_MARKET_ID, FIRST_REGISTERED_OWNER_ID, 1, WALLET_A),
        AccountRegistered(1, S, NO_MARKET_ID, FIRST_REGISTERED_OWNER_ID, 0, "xyz"),
    ],
)
def test_a_journaled_registration_off_the_rule_fails_the_fold(bad: AccountRegistered) -> None:
    with pytest.raises(InvariantViolation):
        Clearinghouse().apply(bad)


def test_a_duplicate_journaled_registration_fails_the_fold() -> None:
    _, journal = run([RegisterAccount(WALLET_A)])
    duplicate = AccountRegistered(
        2, 2 * S, NO_MARKET_ID, FIRST_REGISTERED_OWNER_ID + 1, 0, WALLET_A
    )
    with pytest.raises(InvariantViolation):
        fold([*journal, duplicate])


def test_register_account_parses_from_json() -> None:
    cmd = parse_command({"type": "register_account", "wallet_pubkey_hex": WALLET_A})
    assert cmd == RegisterAccount(WALLET_A)
