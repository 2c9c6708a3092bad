"""Unit tests for escape-hatch withdrawals booked as facts (BookOnChainWithdrawal ->
OnChainWithdrawalBooked): no free-collateral check, exactly once per (signature, index),
refusals that change nothing, the fold, the snapshot and the state hash."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.core.commands import BookOnChainWithdrawal, Deposit, check_command
from exchange.core.errors import InvariantViolation, RejectCode
from exchange.core.events import (
    NO_MARKET_ID,
    OnChainWithdrawalBooked,
    OrderRejected,
    decode_events,
    encode_events,
)
from exchange.core.units import I64_MIN
from perp.clearinghouse import Clearinghouse

S = 1_000_000_000
SIG = "4" * 88


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


def test_a_hatch_withdrawal_lowers_collateral_and_net_deposits_once() -> None:
    # Arrange / Act
    ch, journal = run([Deposit(7, 1, 5_000_000), BookOnChainWithdrawal(7, 1, 2_000_000, SIG)])
    # Assert
    assert journal[-1] == OnChainWithdrawalBooked(
        2, 2 * S, NO_MARKET_ID, 7, 1, 2_000_000, 3_000_000, SIG, 0
    )
    assert ch.account(7, 1).collateral_quote == 3_000_000
    assert ch.net_deposits_quote == 3_000_000
    assert ch.conservation_gap_quote() == 0
    assert ch.onchain_withdrawals == {f"{SIG}:0"}


def test_the_same_signature_and_index_is_refused_and_changes_nothing() -> None:
    # Arrange
    ch, _ = run([Deposit(7, 1, 5_000_000), BookOnChainWithdrawal(7, 1, 1, SIG)])
    before = ch.canonical()
    # Act
    [refused] = ch.execute(BookOnChainWithdrawal(7, 1, 1, SIG), 9 * S)
    # Assert
    assert type(refused) is OrderRejected
    assert refused.code == RejectCode.ONCHAIN_WITHDRAWAL_DUPLICATE
    assert f"got {SIG}:0" in refused.message
    after = ch.canonical()
    after["core"]["next_seq"] -= 1
    assert after == before
    # another withdrawal of the same transaction is its own fact
    [booked] = ch.execute(BookOnChainWithdrawal(7, 1, 1, SIG, 1), 10 * S)
    assert type(booked) is OnChainWithdrawalBooked and booked.collateral_quote == 4_999_998


def test_no_free_collateral_check_the_chain_decided() -> None:
    # Arrange: the engine holds less than the chain paid out (losses journaled, not settled)
    ch, journal = run([Deposit(7, 0, 1_000), BookOnChainWithdrawal(7, 0, 1_500, SIG)])
    # Assert: booked; the deficit stays on the account for the liquidation rules to see
    assert type(journal[-1]) is OnChainWithdrawalBooked
    assert ch.account(7, 0).collateral_quote == -500
    assert ch.conservation_gap_quote() == 0


@pytest.mark.parametrize(
    ("cmd", "code"),
    [
        (BookOnChainWithdrawal(7, 0, 0, SIG), RejectCode.NON_POSITIVE_AMOUNT),
        (BookOnChainWithdrawal(7, 0, 1, ""), RejectCode.MALFORMED_COMMAND),
        (BookOnChainWithdrawal(7, 0, 1, "x" * 129), RejectCode.MALFORMED_COMMAND),
    ],
)
def test_a_malformed_withdrawal_is_refused(cmd: BookOnChainWithdrawal, code: RejectCode) -> None:
    ch, _ = run([Deposit(7, 0, 1_000)])
    [refused] = ch.execute(cmd, 5 * S)
    assert type(refused) is OrderRejected and refused.code == code
    assert ch.account(7, 0).collateral_quote == 1_000 and not ch.onchain_withdrawals


def test_the_collateral_never_leaves_i64() -> None:
    ch = Clearinghouse()
    ch.accounts[7 * 2**16] = type(ch.account(7, 0))(collateral_quote=I64_MIN + 5)
    [refused] = ch.execute(BookOnChainWithdrawal(7, 0, 6, SIG), S)
    assert type(refused) is OrderRejected and refused.code == RejectCode.NON_POSITIVE_AMOUNT


def test_fold_snapshot_and_hash_agree_and_a_state_without_them_hashes_as_before() -> None:
    # Arrange
    plain, _ = run([Deposit(7, 0, 9_000)])
    ch, journal = run([Deposit(7, 0, 9_000), BookOnChainWithdrawal(7, 0, 4_000, SIG, 2)])
    # Act
    folded = fold(journal)
    restored = Clearinghouse.from_snapshot(ch.snapshot())
    # Assert
    assert folded.state_hash() == ch.state_hash() == restored.state_hash()
    assert restored.onchain_withdrawals == {f"{SIG}:2"}
    assert "onchain_withdrawals" not in plain.canonical()
    assert ch.canonical()["onchain_withdrawals"] == [f"{SIG}:2"]


def test_the_fold_refuses_a_booking_twice_or_off_the_state() -> None:
    _, journal = run([Deposit(7, 0, 9_000), BookOnChainWithdrawal(7, 0, 4_000, SIG)])
    with pytest.raises(InvariantViolation, match="on-chain withdrawal replay"):
        fold([*journal, journal[-1]._replace(seq=3, collateral_quote=1_000)])
    with pytest.raises(InvariantViolation, match="on-chain withdrawal replay"):
        fold([journal[0], journal[-1]._replace(collateral_quote=4_000)])
