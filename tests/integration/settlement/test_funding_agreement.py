"""Funding settled at different points by the engine and the clearing program agrees to the
unit (docs/PROTOCOL.md, Funding: the carry makes settlement path-independent).

The engine settles an account's funding on more occasions than the program (an order that
raises its worst case settles it first; the program settles only at fills, withdrawals and
liquidations). In this market a funding payment is never a whole number of quote units, so
every extra settlement rounds; the engine (settled after each interval by an order) and the
chain (settled once, or at a later fill) must still hold the same collateral.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from exchange.core.commands import CancelAll, PlaceOrder
from exchange.core.events import FundingRateApplied, FundingSettled
from exchange.core.orders import Side
from exchange.core.units import BASE_PRECISION, NANOS_PER_SECOND, PRICE_PRECISION
from perp.math.funding import SETTLEMENT_DENOMINATOR
from settlement.reconciler import Reconciler, ReconcilerConfig
from settlement.stack import SettlementStack, StackMarket, crossing_flow

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USD = 1_000_000
HOUR_NS = 3600 * NANOS_PER_SECOND
# rate 12,500 (the default interest rate) x 100.123 x one lot of 0.001 = 1.2515375 units: inexact
MARKET = StackMarket(0, "BTC-PERP", PRICE_PRECISION // 1000, BASE_PRECISION // 1000, 100_123_000)
OWNERS = [(owner_id, 0) for owner_id in range(1, 6)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[SettlementStack]:
    deposits = [(o, s, 1_000_000 * USD) for o, s in OWNERS]
    async with SettlementStack(tmp_path / "engine", (MARKET,), deposits) as s:
        yield s


def touch_every_account(stack: SettlementStack) -> None:
    """An order that raises each account's worst case (the engine settles its funding
    before the margin check), then its cancellation: no fill, nothing for the chain."""
    far_bid = MARKET.index_price - 200 * MARKET.tick_size
    for owner_id, sub in OWNERS:
        stack.process([PlaceOrder(0, owner_id, sub, Side.BID, far_bid, 3 * MARKET.lot_size)])
        stack.process([CancelAll(0, owner_id, sub)])


async def test_engine_and_chain_agree_after_extra_engine_settlements(
    stack: SettlementStack,
) -> None:
    # Arrange: positions, then three funding intervals, the engine touching every account
    # after each one; a few fills in between and at the end (the program settles there)
    rng = random.Random(23)
    stack.process(crossing_flow(rng, (MARKET,), OWNERS, 30, max_lots=37, max_offset_ticks=20))
    for _ in range(3):
        stack.clock.advance(HOUR_NS)
        touch_every_account(stack)
        stack.process(crossing_flow(rng, (MARKET,), OWNERS, 2, max_lots=7, max_offset_ticks=5))
    stack.clock.advance(HOUR_NS)
    touch_every_account(stack)
    assert stack.engine is not None
    journal = list(stack.engine.journal.read())
    rates = [e for e in journal if type(e) is FundingRateApplied]
    touched = [e for e in journal if type(e) is FundingSettled and e.payment_quote]
    # the test means something: funding ran, and the engine's own settlements rounded
    assert len(rates) >= 3 and all(r.funding_rate for r in rates)
    assert len(touched) >= 3 * len(OWNERS) - 2
    assert any(
        (p.base * (r.cumulative_funding)) % SETTLEMENT_DENOMINATOR
        for r in rates
        for a in stack.engine.core.accounts.values()
        for p in a.positions.values()
    )
    service = stack.service()
    reconciler = Reconciler(
        program=stack.program(stack.operator),
        accounts=stack.accounts,
        config=ReconcilerConfig(market_ids=(0,), halt_on_mismatch=False),
    )
    # Act
    await service.settle_available()
    report = await reconciler.reconcile(stack.engine.core)
    # Assert: the same collateral (settled to the index on both sides) and positions
    assert report.mismatches == ()
    assert report.accounts_checked == len(OWNERS)
    program = stack.program(stack.operator)
    for key in OWNERS:
        user = await program.account["User"].fetch(stack.accounts.user(*key))
        mine = stack.engine.core.account(*key).positions.get(0)
        [slot] = [p for p in user.positions if p.in_use] or [None]
        assert (slot.base if slot else 0) == (mine.base if mine else 0)
