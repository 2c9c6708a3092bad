"""Reconciler against a real engine and the clearing program on the embedded cluster: agrees
after settlement; an injected difference (an on-chain User's bytes changed, or engine
collateral the chain never received) is a mismatch record, a metric, a journaled
``ReconciliationMismatchDetected`` (halting on or off) and, with halting on, a journaled halt
of the market(s) concerned after it; once the chain agrees again the next reconciliation
journals ``ReconciliationMismatchResolved``."""

from __future__ import annotations

import random
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from solders.account import Account

from exchange.core.commands import Deposit
from exchange.core.events import (
    NO_MARKET_ID,
    MarketStatusChanged,
    ReconciliationMismatchDetected,
    ReconciliationMismatchResolved,
)
from exchange.core.units import BASE_PRECISION, PRICE_PRECISION
from exchange.engine.sequencer import recover
from perp.risk_gate import MarketStatus
from settlement.errors import SettlementConfigError
from settlement.reconciler import Mismatch, Reconciler, ReconcilerConfig
from settlement.spec import ACCOUNTS, SPEC, Defined, offsets, size_of
from settlement.stack import SettlementStack, StackMarket, crossing_flow

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USD = 1_000_000
MARKETS = (
    StackMarket(0, "BTC-PERP", PRICE_PRECISION // 10, BASE_PRECISION // 100, 100_000 * USD),
    StackMarket(1, "ETH-PERP", PRICE_PRECISION // 100, BASE_PRECISION // 10, 4_000 * USD),
)
OWNERS = [(owner_id, 0) for owner_id in range(1, 5)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def settled(tmp_path: Path) -> AsyncIterator[SettlementStack]:
    deposits = [(o, s, 1_000_000 * USD) for o, s in OWNERS]
    async with SettlementStack(tmp_path / "engine", MARKETS, deposits) as stack:
        stack.process(crossing_flow(random.Random(17), MARKETS, OWNERS, 40))
        await stack.service().settle_available()
        yield stack


def reconciler(stack: SettlementStack, *, halt_on_mismatch: bool = True) -> Reconciler:
    return Reconciler(
        program=stack.program(stack.operator),
        accounts=stack.accounts,
        config=ReconcilerConfig(market_ids=(0, 1), halt_on_mismatch=halt_on_mismatch),
        submit=stack.process_one,
    )


def halts(stack: SettlementStack) -> list[int]:
    assert stack.engine is not None
    return [
        e.market_id
        for e in stack.engine.journal.read()
        if type(e) is MarketStatusChanged and e.new_status == MarketStatus.HALTED
    ]


def user_field_offset(field_name: str, slot: int = 0) -> int:
    """Byte offset of a User field (``positions[slot].base`` for ``"base"``)."""
    user = next(a for a in ACCOUNTS if a.name == "User")
    at = dict((f.name, off) for f, off in offsets(SPEC, user.fields, 8))
    if field_name == "collateral_quote":
        return at["collateral_quote"]
    position = next(t for t in SPEC.types if t.name == "Position")
    inner = dict((f.name, off) for f, off in offsets(SPEC, position.fields, 0))
    return at["positions"] + slot * size_of(SPEC, Defined("Position")) + inner[field_name]


async def test_reconciler_agrees_after_settlement(settled: SettlementStack) -> None:
    # Arrange
    rec = reconciler(settled)
    assert settled.engine is not None
    # Act
    report = await rec.reconcile(settled.engine.core)
    # Assert
    assert report.ok and report.accounts_checked == len(OWNERS) and report.halted_markets == ()
    assert rec.metrics.mismatches == 0 and halts(settled) == []


def shift_onchain_base(stack: SettlementStack, units: int) -> tuple[int, int, Account]:
    """Add ``units`` base units to the first position slot of owner 1's User; returns the
    slot's market, its base before and the account as it was (to put it back)."""
    user = stack.accounts.user(1, 0)
    account = stack.server.cluster.get_account(user)
    assert account is not None
    data = bytearray(account.data)
    at = user_field_offset("base")
    market_index = struct.unpack_from("<H", data, user_field_offset("market_index"))[0]
    assert data[user_field_offset("in_use")] == 1
    (base,) = struct.unpack_from("<q", data, at)
    struct.pack_into("<q", data, at, base + units)
    stack.server.cluster.set_account(
        user, Account(account.lamports, bytes(data), account.owner, False, 0)
    )
    return market_index, base, account


def restore(stack: SettlementStack, account: Account) -> None:
    stack.server.cluster.set_account(stack.accounts.user(1, 0), account)


def journaled(stack: SettlementStack, kind: type) -> list[Any]:
    assert stack.engine is not None
    return [e for e in stack.engine.journal.read() if type(e) is kind]


async def test_an_onchain_position_changed_by_one_unit_halts_its_market(
    settled: SettlementStack,
) -> None:
    # Arrange
    market_index, base, _ = shift_onchain_base(settled, 1)
    rec = reconciler(settled)
    assert settled.engine is not None
    # Act
    report = await rec.reconcile(settled.engine.core)
    # Assert: the position and the open interest of that market disagree (if the position was
    # long, the chain's open interest does not include the extra unit: it is the program's sum)
    fields = {(m.owner_id, m.market_id, m.field) for m in report.mismatches}
    assert (1, market_index, "base") in fields
    mismatch = next(m for m in report.mismatches if m.field == "base")
    assert mismatch == Mismatch(1, 0, market_index, "base", base, base + 1)
    assert report.halted_markets == (market_index,)
    assert rec.metrics.mismatches == len(report.mismatches) and rec.metrics.halts_sent == 1
    assert halts(settled) == [market_index]


@pytest.mark.parametrize("halt_on_mismatch", [False, True], ids=["report-only", "halting"])
async def test_a_mismatch_is_journaled_before_any_halt_and_resolved_once_fixed(
    settled: SettlementStack, halt_on_mismatch: bool
) -> None:
    # Arrange: one base unit more on-chain than in the engine
    assert settled.engine is not None
    market_index, base, original = shift_onchain_base(settled, 1)
    rec = reconciler(settled, halt_on_mismatch=halt_on_mismatch)
    seq_before = settled.engine.core.next_seq - 1
    settled.server.cluster.warp(5)  # a slot of its own for the comparison
    slot = settled.server.cluster.slot
    # Act: the difference found, found again unchanged, then the chain put back
    first = await rec.reconcile(settled.engine.core)
    again = await rec.reconcile(settled.engine.core)
    restore(settled, original)
    fixed = await rec.reconcile(settled.engine.core)
    # Assert: every mismatch journaled once, with the engine's sequence and the chain's slot
    detected = journaled(settled, ReconciliationMismatchDetected)
    assert len(detected) == len(first.recorded) == len(first.mismatches) >= 1
    assert {e.market_id for e in detected} == {market_index}
    base_event = next(e for e in detected if e.field == "base")
    assert base_event._replace(seq=0, ts_ns=0, chain_slot=0, open_mismatches=0) == (
        ReconciliationMismatchDetected(0, 0, market_index, 1, 0, "base", base, base + 1,
                                       seq_before, 0, 0)
    )  # fmt: skip
    assert base_event.chain_slot == first.chain_slot >= slot > 0
    assert [e.open_mismatches for e in detected] == list(range(1, len(detected) + 1))
    assert again.mismatches == first.mismatches and again.recorded == ()
    # halting: the halt comes after the records; report-only: no halt at all
    status = journaled(settled, MarketStatusChanged)
    if halt_on_mismatch:
        assert halts(settled) == [market_index] and rec.metrics.halts_sent == 2  # no-op again
        assert max(e.seq for e in detected) < min(e.seq for e in status)
    else:
        assert status == [] and first.halted_markets == ()
    # fixed: the incident closes, the engine holds none open, and the journal replays to it
    assert fixed.ok and fixed.resolved_markets == (market_index,)
    [resolved] = journaled(settled, ReconciliationMismatchResolved)
    assert (resolved.market_id, resolved.mismatches) == (market_index, len(detected))
    assert resolved.seq > max(e.seq for e in status + detected)
    assert settled.engine.core.reconciliation_incidents == {}
    assert rec.metrics.mismatches_recorded == len(detected) and rec.metrics.incidents_resolved == 1
    replayed, _ = recover(settled.engine.journal)
    assert replayed.state_hash() == settled.engine.core.state_hash()


async def test_engine_collateral_the_chain_never_received_halts_every_market(
    settled: SettlementStack,
) -> None:
    # Arrange: the engine credits a deposit that never happened on-chain
    settled.process([Deposit(2, 0, 7 * USD)])
    rec = reconciler(settled)
    assert settled.engine is not None
    # Act
    report = await rec.reconcile(settled.engine.core)
    # Assert
    assert [m for m in report.mismatches if m.field == "settled_collateral_quote"] == [
        Mismatch(
            2, 0, NO_MARKET_ID, "settled_collateral_quote",
            report.mismatches[0].onchain_value + 7 * USD, report.mismatches[0].onchain_value,
        )
    ]  # fmt: skip
    assert report.halted_markets == (0, 1) and sorted(halts(settled)) == [0, 1]
    [detected] = journaled(settled, ReconciliationMismatchDetected)
    assert (detected.market_id, detected.account_owner_id, detected.field) == (
        NO_MARKET_ID, 2, "settled_collateral_quote"
    )  # fmt: skip
    assert settled.engine.core.reconciliation_incidents == {NO_MARKET_ID: 1}


async def test_report_only_mode_and_config_checks(settled: SettlementStack) -> None:
    # Arrange
    settled.process([Deposit(3, 0, 1)])
    rec = Reconciler(
        program=settled.program(settled.operator),
        accounts=settled.accounts,
        config=ReconcilerConfig(market_ids=(0, 1), halt_on_mismatch=False),
    )
    assert settled.engine is not None
    # Act
    report = await rec.reconcile(settled.engine.core)
    # Assert
    assert len(report.mismatches) == 1 and report.halted_markets == () and halts(settled) == []
    with pytest.raises(SettlementConfigError, match="halt"):
        Reconciler(program=rec.program, accounts=settled.accounts,
                   config=ReconcilerConfig(market_ids=(0,)))  # fmt: skip
    with pytest.raises(SettlementConfigError, match="market_ids"):
        ReconcilerConfig(market_ids=(0, 0))
