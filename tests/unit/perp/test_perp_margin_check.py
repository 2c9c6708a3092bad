"""Account margin, worked by hand (schedule: 10 % initial / 5 % maintenance, flat)."""

from __future__ import annotations

from exchange.core.units import U64_MAX
from perp.margin_check import OpenOrders, margin_summary, order_margin_shortfall
from perp.math.margin import MarginSchedule, MarginTier
from perp.position import Position

USD = 1_000_000
BASE = 1_000_000_000
FLAT = MarginSchedule(
    tiers=(MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=100_000, maintenance_ppm=50_000),)
)
SCHEDULES = {0: FLAT, 1: FLAT}


def test_cross_margin_sums_markets_and_counts_unrealised_pnl() -> None:
    # long 1 @ 100 marked 110 (+10); short 2 @ 50 marked 40 (+20): equity 1,000 + 30
    positions = {0: Position(BASE, -100 * USD), 1: Position(-2 * BASE, 100 * USD)}
    summary = margin_summary(1_000 * USD, positions, {}, {0: 110 * USD, 1: 40 * USD}, SCHEDULES)
    # notional 110 + 80 = 190: initial 19, maintenance 9.5
    assert summary == (1_030 * USD, 19 * USD, 9_500_000)
    assert summary.free_collateral_quote == 1_011 * USD
    assert not summary.below_maintenance


def test_open_orders_count_at_their_worst_case_for_initial_only() -> None:
    # long 1; resting asks 3 -> worst |1 - 3| = 2 units at 100: initial 20; maintenance 5
    summary = margin_summary(
        100 * USD,
        {0: Position(BASE, -100 * USD)},
        {0: OpenOrders(0, 3 * BASE)},
        {0: 100 * USD},
        SCHEDULES,
    )
    assert (summary.initial_quote, summary.maintenance_quote) == (20 * USD, 5 * USD)


def test_below_maintenance() -> None:
    # long 10 @ 100 marked 95: equity 60 - 50 = 10 < maintenance 47.5
    summary = margin_summary(
        60 * USD, {0: Position(10 * BASE, -1_000 * USD)}, {}, {0: 95 * USD}, SCHEDULES
    )
    assert summary.equity_quote == 10 * USD
    assert summary.below_maintenance
    assert summary.free_collateral_quote == 0


def test_order_within_margin_passes_and_one_beyond_is_short_by_the_exact_amount() -> None:
    # empty account with 100: buying 9 @ 100 needs 90 initial + 0.45 fee (5 bps) -> passes
    kwargs = dict(market_id=0, is_bid=True, price=100 * USD, taker_fee_ppm=500)
    assert (
        order_margin_shortfall(
            100 * USD, {}, {}, {0: 100 * USD}, SCHEDULES, base=9 * BASE, **kwargs
        )
        == 0
    )
    # 10 @ 100: initial 100, equity 100 - fee 0.5 -> short 0.5
    assert (
        order_margin_shortfall(
            100 * USD, {}, {}, {0: 100 * USD}, SCHEDULES, base=10 * BASE, **kwargs
        )
        == 500_000
    )


def test_buying_above_mark_costs_the_gap() -> None:
    # buy 1 @ 110 with mark 100: initial 11 (notional at mark 100 -> 10; worst base 1 -> 10)
    # equity 20 - gap 10 - fee 0 = 10 >= 10 -> passes; with 19 it is short 1
    args = ({}, {}, {0: 100 * USD}, SCHEDULES)
    kwargs = dict(market_id=0, is_bid=True, base=BASE, price=110 * USD, taker_fee_ppm=0)
    assert order_margin_shortfall(20 * USD, *args, **kwargs) == 0
    assert order_margin_shortfall(19 * USD, *args, **kwargs) == 1 * USD
