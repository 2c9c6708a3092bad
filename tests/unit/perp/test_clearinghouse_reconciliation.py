"""Unit tests for reconciliation incidents in the journal (RecordReconciliationMismatch ->
ReconciliationMismatchDetected, RecordReconciliationClean -> ReconciliationMismatchResolved):
per-market open-incident counts, refusals that change nothing, the fold, the snapshot and
the state hash."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.core.commands import (
    CreateMarket,
    Deposit,
    RecordReconciliationClean,
    RecordReconciliationMismatch,
    check_command,
)
from exchange.core.errors import InvariantViolation, RejectCode
from exchange.core.events import (
    NO_MARKET_ID,
    OrderRejected,
    ReconciliationMismatchDetected,
    ReconciliationMismatchResolved,
    decode_events,
    encode_events,
)
from exchange.core.units import BASE_PRECISION, PRICE_PRECISION
from perp.clearinghouse import Clearinghouse

S = 1_000_000_000
LISTING = [CreateMarket(3, "ETH-PERP", PRICE_PRECISION // 100, BASE_PRECISION // 10),
           Deposit(7, 0, 5_000_000)]  # fmt: skip


def mismatch(market_id: int = 3, field: str = "base", chain: int = 11) -> Any:
    """Engine 10, chain ``chain``; a market or exchange value has no account (-1, -1)."""
    owner, sub = (-1, -1) if field in ("open_interest_base", "fee_pool_quote") else (7, 0)
    return RecordReconciliationMismatch(market_id, owner, sub, field, 10, chain, 2, 500)


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


def test_mismatches_open_and_count_an_incident_per_market() -> None:
    # Arrange / Act
    ch, journal = run([*LISTING, mismatch(), mismatch(field="entry_quote"),
                       mismatch(NO_MARKET_ID, "fee_pool_quote")])  # fmt: skip
    # Assert
    detected = [e for e in journal if type(e) is ReconciliationMismatchDetected]
    assert detected[0] == ReconciliationMismatchDetected(
        detected[0].seq, 3 * S, 3, 7, 0, "base", 10, 11, 2, 500, 1
    )
    assert [(e.market_id, e.open_mismatches) for e in detected] == [
        (3, 1), (3, 2), (NO_MARKET_ID, 1)
    ]  # fmt: skip
    assert detected[2].account_owner_id == detected[2].account_sub_account_id == -1
    assert ch.reconciliation_incidents == {3: 2, NO_MARKET_ID: 1}


def test_a_clean_reconciliation_resolves_only_an_open_incident() -> None:
    # Arrange
    ch, _ = run([*LISTING, mismatch(), mismatch(field="entry_quote")])
    # Act
    resolved = ch.execute(RecordReconciliationClean(3, 4, 900), 9 * S)
    again = ch.execute(RecordReconciliationClean(3, 4, 901), 10 * S)
    never_open = ch.execute(RecordReconciliationClean(NO_MARKET_ID, 4, 901), 10 * S)
    # Assert
    assert resolved == [ReconciliationMismatchResolved(resolved[0].seq, 9 * S, 3, 2, 4, 900)]
    assert again == [] and never_open == [] and ch.reconciliation_incidents == {}
    reopened = ch.execute(mismatch(), 11 * S)
    assert reopened[0].open_mismatches == 1


@pytest.mark.parametrize(
    ("cmd", "code", "message"),
    [
        (mismatch(market_id=4), RejectCode.UNKNOWN_MARKET, "market_id: expected a listed"),
        (mismatch(field="Base"), RejectCode.MALFORMED_COMMAND, "field: expected 1..64"),
        (mismatch(field=""), RejectCode.MALFORMED_COMMAND, "field: expected 1..64"),
        (mismatch(chain=10), RejectCode.MALFORMED_COMMAND, "onchain_value: expected a value"),
        (mismatch()._replace(account_sub_account_id=-1), RejectCode.MALFORMED_COMMAND,
         "account: expected both ids"),
        (mismatch()._replace(settled_through_seq=99), RejectCode.MALFORMED_COMMAND,
         "settled_through_seq: expected 0..3, got 99"),
        (RecordReconciliationClean(4, 0, 1), RejectCode.UNKNOWN_MARKET, "market_id"),
        (RecordReconciliationClean(3, 4, 1), RejectCode.MALFORMED_COMMAND, "settled_through"),
    ],
)  # fmt: skip
def test_a_malformed_record_is_refused_and_changes_nothing(
    cmd: Any, code: RejectCode, message: str
) -> None:
    # Arrange
    ch, _ = run(LISTING)
    before = ch.state_hash()
    # Act
    [refused] = ch.execute(cmd, 5 * S)
    # Assert
    assert type(refused) is OrderRejected and refused.code == code
    assert refused.message.startswith(message)
    assert ch.reconciliation_incidents == {}
    assert ch.state_hash() != before  # only the sequence number moved
    ch.core.next_seq -= 1
    assert ch.state_hash() == before


def test_fold_snapshot_and_hash_agree_and_a_state_without_incidents_hashes_as_before() -> None:
    # Arrange
    plain, plain_journal = run(LISTING)
    commands = [*LISTING, mismatch(), mismatch(NO_MARKET_ID, "fee_pool_quote"),
                mismatch(field="entry_quote"), RecordReconciliationClean(NO_MARKET_ID, 4, 9)]  # fmt: skip
    ch, journal = run(commands)
    # Act
    folded = fold(journal)
    restored = Clearinghouse.from_snapshot(ch.snapshot())
    # Assert
    assert folded.state_hash() == ch.state_hash() == restored.state_hash()
    assert restored.reconciliation_incidents == {3: 2}
    assert ch.canonical()["reconciliation_incidents"] == [[3, 2]]
    assert "reconciliation_incidents" not in plain.canonical()
    # every incident closed: the canonical state has no trace of them
    closed, closed_journal = run([*commands, RecordReconciliationClean(3, 4, 9)])
    assert "reconciliation_incidents" not in closed.canonical()
    assert fold(closed_journal).state_hash() == closed.state_hash()
    assert fold(plain_journal).state_hash() == plain.state_hash()


def test_the_fold_refuses_records_that_disagree_with_the_state() -> None:
    _, journal = run([*LISTING, mismatch(), RecordReconciliationClean(3, 3, 9)])
    detected, resolved = journal[-2], journal[-1]
    with pytest.raises(InvariantViolation, match="reconciliation replay"):
        fold([*journal[:-2], detected._replace(open_mismatches=2)])
    with pytest.raises(InvariantViolation, match="reconciliation replay"):
        fold([*journal[:-1], resolved._replace(mismatches=3)])
    with pytest.raises(InvariantViolation, match="reconciliation replay"):
        fold([*journal[:-2], resolved._replace(seq=detected.seq)])
