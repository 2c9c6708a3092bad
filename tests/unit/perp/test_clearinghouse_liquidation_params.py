"""Liquidation fee, liquidator share and buffer are each market's parameters: a liquidation
charges every slice its own market's fee and share and sizes to the per-market buffer; a
``SetRiskParams`` changes them within the program's bounds; replay, snapshot and the codec
agree."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from exchange.core.commands import (
    CreateMarket,
    Deposit,
    Liquidate,
    PlaceOrder,
    SetRiskParams,
    UpdateOraclePrice,
)
from exchange.core.errors import RejectCode
from exchange.core.events import (
    AccountLiquidated,
    LiquidationExecuted,
    OrderRejected,
    RiskParamsChanged,
    decode_events,
    encode_events,
)
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from liquidation.rules import LiquidationPlan, OracleReading, plan_liquidation
from perp.clearinghouse import Clearinghouse
from perp.params import PerpMarketParams
from perp.position import Position

TICK = 1_000_000
LOT = 1_000_000_000
USDC = 1_000_000
S = NANOS_PER_SECOND
TRADER, MAKER, KEEPER = 1, 3, 4
QUIET = PerpMarketParams(
    maker_fee_ppm=0,
    taker_fee_ppm=0,
    insurance_share_ppm=0,
    funding_interest_rate=0,
    funding_interest_band=0,
)
A = replace(
    QUIET, liquidation_fee_ppm=5_000, liquidator_share_ppm=200_000, liquidation_buffer_ppm=20_000
)
B = replace(
    QUIET, liquidation_fee_ppm=15_000, liquidator_share_ppm=800_000, liquidation_buffer_ppm=0
)


class Run:
    """A clearinghouse listing A-PERP (0) and B-PERP (1) with their own liquidation
    parameters; every step is folded through the codec and a snapshot."""

    def __init__(self) -> None:
        self.ch = Clearinghouse(
            default_params=QUIET,
            params_by_symbol={"A-PERP": A, "B-PERP": B},
        )
        self.journal: list[Any] = []
        self.ts = 1 * S

    def __call__(self, cmd: Any) -> list[Any]:
        events = self.ch.execute(cmd, self.ts)
        self.journal += events
        self.ch.check_invariants()
        folded = Clearinghouse()
        for e in decode_events(encode_events(self.journal)):
            folded.apply(e)
        assert folded.state_hash() == self.ch.state_hash()
        assert Clearinghouse.from_snapshot(self.ch.snapshot()).state_hash() == folded.state_hash()
        return events


def trader_long_both(lots_a: int = 10, lots_b: int = 8) -> Run:
    """TRADER (110 USDC) long in both markets at 100; MAKER short; KEEPER funded."""
    run = Run()
    run(CreateMarket(0, "A-PERP", TICK, LOT))
    run(CreateMarket(1, "B-PERP", TICK, LOT))
    for m in (0, 1):
        run(UpdateOraclePrice(m, 100 * TICK, 1_000, 10, 1, True))
    run(Deposit(TRADER, 0, 110 * USDC))
    run(Deposit(MAKER, 0, 100_000 * USDC))
    run(Deposit(KEEPER, 0, 100_000 * USDC))
    for m, lots in ((0, lots_a), (1, lots_b)):
        run(PlaceOrder(m, MAKER, 0, Side.ASK, 100 * TICK, lots * LOT))
        run(
            PlaceOrder(
                m, TRADER, 0, Side.BID, 100 * TICK, lots * LOT, time_in_force=TimeInForce.IOC
            )
        )
    return run


def fall_to(run: Run, price_ticks: int) -> None:
    run.ts += 1 * S
    for m in (0, 1):
        run(UpdateOraclePrice(m, price_ticks * TICK, 1_000, 20, run.ts // S, True))


def test_each_slice_pays_its_own_markets_fee_and_share_and_sizes_to_its_buffer() -> None:
    # Arrange: both positions under maintenance at 95
    run = trader_long_both()
    fall_to(run, 95)
    account = run.ch.account(TRADER, 0)
    positions = {m: Position(p.base, p.entry_quote) for m, p in account.positions.items()}
    expected = plan_liquidation(
        account_id=TRADER * 2**16,
        collateral_quote=account.collateral_quote,
        positions=positions,
        open_order_markets=(),
        oracles={m: OracleReading(95 * TICK, True) for m in (0, 1)},
        schedules={0: A.margin, 1: B.margin},
        lot_sizes={0: LOT, 1: LOT},
        config={0: A.liquidation, 1: B.liquidation},
        insurance_fund_quote=0,
        adl_candidates={},
    )
    assert isinstance(expected, LiquidationPlan)
    # Act
    events = run(Liquidate(KEEPER, 0, TRADER, 0))
    # Assert: the plan with each market's own parameters, to the unit
    slices = [e for e in events if type(e) is LiquidationExecuted]
    assert [(s.market_id, s.base_delta, s.fee_quote, s.liquidator_fee_quote) for s in slices] == [
        (t.market_id, t.base_delta, t.fee_quote, t.liquidator_fee_quote) for t in expected.transfers
    ]
    assert {s.market_id for s in slices} == {0, 1}
    for s in slices:
        params = A if s.market_id == 0 else B
        notional = -s.base_delta * s.price // LOT
        assert s.fee_quote == -(-notional * params.liquidation_fee_ppm // 10**6)
        assert s.liquidator_fee_quote == s.fee_quote * params.liquidator_share_ppm // 10**6
        assert s.insurance_fee_quote == s.fee_quote - s.liquidator_fee_quote
    [record] = [e for e in events if type(e) is AccountLiquidated]
    assert record.equity_after_quote == expected.equity_after_quote
    # A is closed whole; B's buffer is 0: the target is B's maintenance alone
    assert record.equity_after_quote >= record.maintenance_after_quote
    assert run.ch.account(TRADER, 0).positions.keys() == {1}


def test_a_risk_params_change_moves_the_liquidation_parameters_within_bounds() -> None:
    # Arrange
    run = trader_long_both()
    change = {"liquidation_fee_ppm": 20_000, "liquidator_share_ppm": 1_000_000}
    # Act: within bounds (fee below the first maintenance ratio 30,000), then beyond
    [changed] = run(SetRiskParams(0, json.dumps(change), 5))
    [refused] = run(SetRiskParams(0, json.dumps({"liquidation_fee_ppm": 30_000}), 6))
    [also_refused] = run(SetRiskParams(1, json.dumps({"liquidation_buffer_ppm": -1}), 7))
    # Assert
    assert type(changed) is RiskParamsChanged
    assert json.loads(changed.params_json)["liquidation_fee_ppm"] == 20_000
    assert run.ch.markets[0].params.liquidation.liquidator_share_ppm == 1_000_000
    for event, words in (
        (refused, "expected < margin_tiers[0] maintenance_ppm 30000, got 30000"),
        (also_refused, "liquidation_buffer_ppm: expected 0..100000, got -1"),
    ):
        assert type(event) is OrderRejected
        assert event.code == RejectCode.RISK_PARAMS_OUT_OF_BOUNDS
        assert words in event.message
    # ... and the next liquidation in market 0 uses the values in force
    fall_to(run, 95)
    events = run(Liquidate(KEEPER, 0, TRADER, 0, 0))
    [slice_a] = [e for e in events if type(e) is LiquidationExecuted]
    notional = -slice_a.base_delta * slice_a.price // LOT
    assert slice_a.fee_quote == -(-notional * 20_000 // 10**6)
    assert slice_a.liquidator_fee_quote == slice_a.fee_quote  # share 100 %
    assert slice_a.insurance_fee_quote == 0
