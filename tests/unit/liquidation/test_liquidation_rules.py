"""Liquidation rules worked by hand (flat schedule 10 % initial / 5 % maintenance; fee 1 %,
half to the liquidator; buffer 2 %; lot 0.001 unit)."""

from __future__ import annotations

from fractions import Fraction

import pytest

from exchange.core.units import U64_MAX
from liquidation.errors import LiquidationConfigError, LiquidationInputError, PlanMismatch
from liquidation.rules import (
    AdlCandidate,
    AdlFill,
    Eligibility,
    Health,
    LiquidationConfig,
    LiquidationPlan,
    OracleReading,
    PositionTransfer,
    adl_queue,
    adl_ranks,
    adl_score,
    apply_plan,
    check_eligibility,
    drift_style_close_base,
    plan_liquidation,
)
from perp.ledger import Ledger
from perp.math.margin import MarginSchedule, MarginTier
from perp.position import Position

USD = 1_000_000
BASE = 1_000_000_000
LOT = 1_000_000  # 0.001 unit
FLAT = MarginSchedule(
    tiers=(MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=100_000, maintenance_ppm=50_000),)
)
CONFIG = LiquidationConfig(
    liquidation_fee_ppm=10_000, liquidator_share_ppm=500_000, buffer_ppm=20_000
)
LONG_10_AT_1000 = Position(10 * BASE, -10_000 * USD)


def plan(
    collateral: int,
    positions: dict[int, Position],
    prices: dict[int, int],
    *,
    valid: bool = True,
    fund: int = 0,
    adl: dict[int, list[AdlCandidate]] | None = None,
) -> LiquidationPlan | Eligibility:
    return plan_liquidation(
        account_id=1,
        collateral_quote=collateral,
        positions=positions,
        open_order_markets=[0, 0],
        oracles={m: OracleReading(p, valid) for m, p in prices.items()},
        schedules={m: FLAT for m in prices},
        lot_sizes={m: LOT for m in prices},
        config=CONFIG,
        insurance_fund_quote=fund,
        adl_candidates=adl or {},
    )


def test_healthy_at_maintenance_is_not_liquidated() -> None:
    # Arrange: equity 1,000 - 500 = 500 >= 5 % of 9,500 = 475
    # Act
    result = plan(1_000 * USD, {0: LONG_10_AT_1000}, {0: 950 * USD})
    # Assert
    assert result == Eligibility(Health.HEALTHY, 500 * USD, 475 * USD, ())


def test_never_liquidates_at_an_invalid_oracle() -> None:
    result = plan(1_000 * USD, {0: LONG_10_AT_1000}, {0: 500 * USD}, valid=False)
    assert result == Eligibility(Health.ORACLE_INVALID, 0, 0, (0,))


def test_a_missing_oracle_for_a_held_market_blocks_liquidation() -> None:
    positions = {0: LONG_10_AT_1000, 1: Position(BASE, -USD)}
    oracles = {0: OracleReading(500 * USD, True)}
    result = check_eligibility(1_000 * USD, positions, oracles, {0: FLAT, 1: FLAT})
    assert result.health == Health.ORACLE_INVALID
    assert result.invalid_markets == (1,)


def test_partial_liquidation_worked_by_hand() -> None:
    # Arrange: at 940 equity 1,000 - 600 = 400 < maintenance 470; target 470 + 2 % of 9,400
    # = 658, shortfall 258. Drift: 258 / (940 x (5 % + 2 % - 1 %)) = 4.5745 units -> 4,575 lots.
    # Closing 4.575 at 940: proceeds 4,300.5, basis released 4,575, realised -274.5; fee
    # 43.005 (21.5025 each); equity 356.995 >= target 7 % of 5,099.5 = 356.965.
    # 4,574 lots would leave 357.0044 < 357.0308.
    # Act
    result = plan(1_000 * USD, {0: LONG_10_AT_1000}, {0: 940 * USD})
    # Assert
    assert result == LiquidationPlan(
        account_id=1,
        cancel_orders_in_markets=(0,),
        transfers=(
            PositionTransfer(
                0, -4_575 * LOT, 4_300_500_000, 940 * USD, 43_005_000, 21_502_500, 21_502_500
            ),
        ),
        adl_fills=(),
        insurance_payment_quote=0,
        bad_debt_quote=0,
        uncovered_quote=0,
        equity_before_quote=400 * USD,
        maintenance_before_quote=470 * USD,
        collateral_after_quote=682_495_000,
        equity_after_quote=356_995_000,
        target_after_quote=356_965_000,
    )


def test_drift_sizing_formula_by_hand() -> None:
    # 258e6 x 1e6 x 1e9 / (940e6 x 60,000) = 4,574,468,085.1 -> rounded up
    assert drift_style_close_base(258 * USD, 940 * USD, 50_000, 20_000, 10_000) == 4_574_468_086
    assert drift_style_close_base(0, 940 * USD, 50_000, 20_000, 10_000) == 0


def test_short_is_bought_back_and_the_fee_rounds_against_the_account() -> None:
    # short 3 @ 100 (entry +300) at 140: pnl -120, equity 140 - 120 = 20 < maintenance 21
    positions = {0: Position(-3 * BASE, 300 * USD)}
    result = plan(140 * USD, positions, {0: 140 * USD})
    assert isinstance(result, LiquidationPlan)
    (transfer,) = result.transfers
    assert transfer.base_delta > 0 and transfer.base_delta % LOT == 0
    assert transfer.quote_delta == -((transfer.base_delta * 140 * USD + BASE - 1) // BASE)
    assert result.equity_after_quote >= result.target_after_quote


def test_bankrupt_account_is_covered_by_the_insurance_fund() -> None:
    # equity at 980: 100 - 200 = -100; the fund (150) pays 100; no fee to anybody
    result = plan(100 * USD, {0: LONG_10_AT_1000}, {0: 980 * USD}, fund=150 * USD)
    assert isinstance(result, LiquidationPlan)
    assert result.transfers == (PositionTransfer(0, -10 * BASE, 9_800 * USD, 980 * USD, 0, 0, 0),)
    assert (result.bad_debt_quote, result.insurance_payment_quote) == (100 * USD, 100 * USD)
    assert result.collateral_after_quote == 0 and result.uncovered_quote == 0


def test_beyond_the_fund_positions_are_deleveraged_in_rank_order() -> None:
    # Arrange: deficit 100, fund 40: 60 beyond -> bankruptcy price 980 + 60/10 = 986.
    # Shorts: #7 -4 @ 1,100 (pnl 480, equity 1,000): 480/4,400 x 3,920/1,000 = 0.4276
    #         #8 -8 @ 1,010 (pnl 240, equity 500):   240/8,080 x 7,840/500   = 0.4657 -> first
    adl = {
        0: [
            AdlCandidate(7, -4 * BASE, 4_400 * USD, 1_000 * USD),
            AdlCandidate(8, -8 * BASE, 8_080 * USD, 500 * USD),
            AdlCandidate(9, 5 * BASE, -5_000 * USD, 900 * USD),  # same side: never
            AdlCandidate(1, -1 * BASE, 1_000 * USD, 900 * USD),  # the bankrupt itself: never
        ]
    }
    # Act
    result = plan(100 * USD, {0: LONG_10_AT_1000}, {0: 980 * USD}, fund=40 * USD, adl=adl)
    # Assert: 8 x 986 + 2 x 986 = 9,860; collateral 100 - 140 = -40, the fund pays 40
    assert isinstance(result, LiquidationPlan)
    assert result.transfers == ()
    assert result.adl_fills == (
        AdlFill(0, 8, -8 * BASE, 7_888 * USD, 986 * USD),
        AdlFill(0, 7, -2 * BASE, 1_972 * USD, 986 * USD),
    )
    assert (result.insurance_payment_quote, result.collateral_after_quote) == (40 * USD, 0)
    assert result.uncovered_quote == 0


def test_negative_cash_without_positions_is_covered_as_far_as_the_fund_goes() -> None:
    result = plan(-100 * USD, {}, {0: 980 * USD}, fund=30 * USD)
    assert isinstance(result, LiquidationPlan)
    assert (result.transfers, result.adl_fills) == ((), ())
    assert (result.bad_debt_quote, result.insurance_payment_quote) == (100 * USD, 30 * USD)
    assert (result.uncovered_quote, result.collateral_after_quote) == (70 * USD, -70 * USD)


def test_adl_with_too_little_opposite_interest_fails_fast() -> None:
    adl = {0: [AdlCandidate(7, -4 * BASE, 4_400 * USD, 1_000 * USD)]}
    with pytest.raises(LiquidationInputError, match="short by 6000000000"):
        plan(100 * USD, {0: LONG_10_AT_1000}, {0: 980 * USD}, fund=0, adl=adl)


def test_adl_score_and_ranks() -> None:
    assert adl_score(-4 * BASE, 4_400 * USD, 980 * USD, 1_000 * USD) == Fraction(
        480 * 3_920, 4_400 * 1_000
    )
    assert adl_score(0, 0, 980 * USD, 1) == 0
    pool = [
        AdlCandidate(7, -4 * BASE, 4_400 * USD, 1_000 * USD),
        AdlCandidate(8, -8 * BASE, 8_080 * USD, 500 * USD),
        AdlCandidate(3, 2 * BASE, -1_000 * USD, 100 * USD),
        AdlCandidate(2, 2 * BASE, -1_000 * USD, 100 * USD),  # tie with #3: lower id first
    ]
    assert adl_ranks(pool, oracle_price=980 * USD) == {2: 1, 3: 2, 8: 1, 7: 2}
    queue = adl_queue(pool, opposite_of_base=-1, oracle_price=980 * USD)
    assert [c.account_id for c in queue] == [2, 3]
    with pytest.raises(LiquidationInputError, match="unique"):
        adl_queue([*pool, pool[0]], opposite_of_base=1, oracle_price=980 * USD)


def test_config_bounds_and_schedule_consistency() -> None:
    with pytest.raises(LiquidationConfigError, match="liquidation_fee_ppm"):
        LiquidationConfig(liquidation_fee_ppm=-1, liquidator_share_ppm=0, buffer_ppm=0)
    with pytest.raises(TypeError):
        LiquidationConfig(liquidation_fee_ppm=1, liquidator_share_ppm=0, buffer_ppm=0, extra=1)  # type: ignore[call-arg]
    greedy = LiquidationConfig(liquidation_fee_ppm=80_000, liquidator_share_ppm=0, buffer_ppm=0)
    with pytest.raises(LiquidationConfigError, match="maintenance_ppm"):
        greedy.check_schedule(0, FLAT)


def test_apply_plan_books_the_golden_partial_liquidation_exactly() -> None:
    # Arrange: a ledger where account 1 is long 10 @ 1,000 against account 2
    ledger = Ledger()
    ledger.deposit(1, 1_000 * USD)
    ledger.deposit(2, 100_000 * USD)
    ledger.deposit(5, 100_000 * USD)
    ledger.positions[(1, 0)] = LONG_10_AT_1000
    ledger.positions[(2, 0)] = Position(-10 * BASE, 10_000 * USD)
    result = plan(1_000 * USD, {0: LONG_10_AT_1000}, {0: 940 * USD})
    assert isinstance(result, LiquidationPlan)
    # Act
    apply_plan(ledger, result, liquidator_account_id=5)
    # Assert
    assert ledger.conservation_gap() == 0
    assert ledger.collateral[1] == result.collateral_after_quote
    assert ledger.collateral[5] == 100_000 * USD + 21_502_500
    assert ledger.insurance_fund_quote == 21_502_500
    assert ledger.position(5, 0).base == 4_575 * LOT
    assert ledger.equity(1, {0: 940 * USD}) == result.equity_after_quote


def test_apply_plan_refuses_a_stale_plan_and_changes_nothing() -> None:
    ledger = Ledger()
    ledger.deposit(1, 1_000 * USD)
    ledger.positions[(1, 0)] = Position(BASE, -1_000 * USD)  # smaller than the plan assumes
    result = plan(1_000 * USD, {0: LONG_10_AT_1000}, {0: 940 * USD})
    assert isinstance(result, LiquidationPlan)
    before = (dict(ledger.collateral), dict(ledger.positions), ledger.insurance_fund_quote)
    with pytest.raises(PlanMismatch, match="expected a position to reduce"):
        apply_plan(ledger, result, liquidator_account_id=5)
    assert before == (dict(ledger.collateral), dict(ledger.positions), ledger.insurance_fund_quote)
