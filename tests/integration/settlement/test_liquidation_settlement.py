"""Engine liquidations reach the chain: a real engine (SQLite journal) liquidates a sub-account
partially and deleverages a bankrupt one against ranked shorts; the settlement service posts
the fills, funding updates and ``settle_liquidation`` batches in journal order to the clearing
program on the embedded cluster; afterwards the reconciler finds no difference and the
insurance fund agrees to the unit. A second service resumes from the chain and posts nothing
again; the fills after the liquidations continue the markets' settled chains."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from exchange.core.commands import Liquidate, PlaceOrder, UpdateOraclePrice
from exchange.core.events import (
    FundingRateApplied,
    InsuranceFundPaidBadDebt,
    LiquidationExecuted,
    PositionDeleveraged,
)
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from perp.params import PerpMarketParams
from settlement.reconciler import Reconciler, ReconcilerConfig
from settlement.stack import SettlementStack, StackMarket

pytestmark = [pytest.mark.integration, pytest.mark.anyio]

USD = 1_000_000
TICK, LOT = 1_000_000, 1_000_000_000  # 1 USD, 1 base
MARKET = StackMarket(0, "T-PERP", TICK, LOT, 100 * USD)
TRADER, TRADER2, MAKER, KEEPER, SHORT2 = (1, 0), (2, 0), (3, 0), (4, 0), (6, 0)
PARAMS = PerpMarketParams(maker_fee_ppm=0, taker_fee_ppm=500, insurance_share_ppm=200_000)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[SettlementStack]:
    deposits = [(*TRADER, 100 * USD), (*TRADER2, 100 * USD), (*MAKER, 1_000_000 * USD),
                (*KEEPER, 1_000_000 * USD), (*SHORT2, 100 * USD)]  # fmt: skip
    async with SettlementStack(tmp_path / "engine", [MARKET], deposits, params=PARAMS) as s:
        yield s


def trade(stack: SettlementStack, maker: tuple[int, int], taker: tuple[int, int],
          taker_side: Side, lots: int, price: int) -> None:  # fmt: skip
    maker_side = Side.ASK if taker_side == Side.BID else Side.BID
    stack.process([
        PlaceOrder(0, *maker, maker_side, price * TICK, lots * LOT),
        PlaceOrder(0, *taker, taker_side, price * TICK, lots * LOT, time_in_force=TimeInForce.IOC),
    ])  # fmt: skip


def oracle(stack: SettlementStack, price: int) -> None:
    """A reading two minutes after the last (the breaker's window has passed)."""
    stack.clock.advance(120 * NANOS_PER_SECOND)
    stack.process_one(UpdateOraclePrice(0, price * TICK, TICK, 0, 0, True))


def of(events: list[Any], kind: type) -> list[Any]:
    return [e for e in events if type(e) is kind]


async def test_engine_liquidations_and_adl_settle_and_the_chain_equals_the_engine(
    stack: SettlementStack,
) -> None:
    # Arrange: two 10x longs against MAKER and a 4x short (SHORT2), a funding interval
    trade(stack, MAKER, TRADER2, Side.BID, 10, 100)
    trade(stack, MAKER, TRADER, Side.BID, 6, 100)
    trade(stack, SHORT2, TRADER, Side.BID, 4, 100)
    stack.clock.advance(3_600 * NANOS_PER_SECOND)
    oracle(stack, 100)
    service = stack.service()
    await service.settle_available()
    # Act: TRADER2 liquidated partially at 92; TRADER bankrupt at 80 beyond the fund (ADL)
    oracle(stack, 92)
    partial = stack.process_one(Liquidate(*KEEPER, *TRADER2))
    oracle(stack, 80)
    bankrupt = stack.process_one(Liquidate(*KEEPER, *TRADER))
    trade(stack, KEEPER, MAKER, Side.ASK, 3, 80)  # fills after the liquidations
    assert stack.engine is not None
    reconciler = Reconciler(
        program=stack.program(stack.operator),
        accounts=stack.accounts,
        config=ReconcilerConfig(market_ids=(0,), halt_on_mismatch=False),
    )
    unsettled = await reconciler.reconcile(stack.engine.core)
    await service.settle_available()
    # Assert: what the engine did
    assert of(partial, LiquidationExecuted) and not of(partial, InsuranceFundPaidBadDebt)
    adl = of(bankrupt, PositionDeleveraged)
    assert {(e.counterparty_owner_id, e.counterparty_sub_account_id) for e in adl} == {
        SHORT2,
        MAKER,
    }
    [paid] = of(bankrupt, InsuranceFundPaidBadDebt)
    assert paid.amount_quote > 0
    assert not unsettled.ok  # the chain did not know of them before
    assert any(type(e) is FundingRateApplied for e in stack.engine.journal.read())
    # ... reached the chain, in journal order, and the chain equals the engine
    # (nothing settles between the two liquidations: one batch carries both)
    assert service.metrics.liquidation_batches == 1
    assert service.metrics.liquidation_moves == len(of(partial, LiquidationExecuted)) + len(adl) + 1
    report = await reconciler.reconcile(stack.engine.core)
    assert report.ok, report.mismatches
    program = stack.program(stack.operator)
    exchange = await program.account["Exchange"].fetch(service.exchange)
    assert exchange.insurance_fund_quote == stack.engine.core.insurance_fund_quote
    assert exchange.last_liquidation_sequence == paid.seq
    # exactly once: a new service resumes from the chain and has nothing to post
    again = stack.service()
    assert await again.settle_available() == 0
    assert again.liquidation_sequence == paid.seq
