"""Golden integer vectors, each worked by hand (the working is in the comments)."""

from __future__ import annotations

import pytest

from exchange.core.units import U64_MAX
from perp.math.fees import FeeConfigError, FeeSchedule, fee_quote, fill_fees
from perp.math.funding import (
    SETTLEMENT_DENOMINATOR,
    FundingError,
    Settlement,
    average_premium,
    funding_rate,
    index_delta,
    premium_rate,
    settle,
    sweep_surplus,
)
from perp.math.margin import (
    MarginConfigError,
    MarginKind,
    MarginSchedule,
    MarginTier,
    notional_quote,
    requirement_quote,
    unrealized_pnl_quote,
    worst_case_base,
)
from perp.math.mark import impact_price, mark_price, update_ema_basis

USD = 1_000_000  # one quote unit (USDC) at QUOTE_PRECISION / one dollar of price
BASE = 1_000_000_000  # one whole base unit


# ------------------------------------------------------------------ funding
def test_premium_when_the_book_trades_above_the_index() -> None:
    # impact bid 101 > index 100: (1 - 0) / 100 = 1 % = 10,000,000 at 1e9
    assert premium_rate(101 * USD, 102 * USD, 100 * USD) == 10_000_000


def test_premium_when_the_book_trades_below_the_index() -> None:
    # impact ask 99.5 < index 100: (0 - 0.5) / 100 = -0.5 % = -5,000,000
    assert premium_rate(99 * USD, 99_500_000, 100 * USD) == -5_000_000


def test_premium_is_zero_when_the_index_is_inside_the_impact_spread() -> None:
    assert premium_rate(99_900_000, 100_100_000, 100 * USD) == 0


def test_premium_rounds_toward_zero_on_both_sides() -> None:
    # 1 unit over an index of 300.000000: 1e9 / 3e8 = 3.33 -> 3, and -3.33 -> -3
    assert premium_rate(300_000_001, 300_000_002, 300 * USD) == 3
    assert premium_rate(299_999_998, 299_999_999, 300 * USD) == -3


def test_premium_refuses_a_crossed_impact_pair_and_a_zero_index() -> None:
    with pytest.raises(FundingError, match="expected bid <= ask"):
        premium_rate(2, 1, 100)
    with pytest.raises(FundingError, match="index_price: expected > 0"):
        premium_rate(1, 2, 0)


def test_average_premium_rounds_toward_zero() -> None:
    assert average_premium([1, 2]) == 1  # 1.5 -> 1
    assert average_premium([-1, -2]) == -1  # -1.5 -> -1
    assert average_premium([]) == 0


def test_funding_rate_interest_term_and_cap() -> None:
    # P = 0: 0 + clamp(0.01 %, +-0.05 %) = 0.01 % = 100,000
    assert funding_rate(0, interest_rate=100_000, interest_band=500_000, cap_rate=4_000_000) == (
        100_000
    )
    # P = 0.1 %: 1,000,000 + clamp(100,000 - 1,000,000 = -900,000, +-500,000) = 500,000
    assert (
        funding_rate(1_000_000, interest_rate=100_000, interest_band=500_000, cap_rate=4_000_000)
        == 500_000
    )
    # capped at 0.04 %
    assert (
        funding_rate(1_000_000, interest_rate=100_000, interest_band=500_000, cap_rate=400_000)
        == 400_000
    )
    assert funding_rate(-9_000_000, interest_rate=0, interest_band=0, cap_rate=400_000) == (
        -400_000
    )


def test_settlement_of_one_base_unit_at_one_basis_point() -> None:
    # rate 0.01 % (100,000 at 1e9) x index 100.000000 = delta 1e13 per base unit;
    # 1 base unit long owes 1e9 x 1e13 / 1e18 = 10,000 quote units = 0.01 USDC.
    delta = index_delta(100_000, 100 * USD)
    assert delta == 10**13
    assert settle(BASE, 0, delta) == Settlement(10_000, 0)
    assert settle(-BASE, 0, delta) == Settlement(-10_000, 0)
    assert settle(BASE, delta, delta) == Settlement(0, 0)


def test_settlement_rounds_payers_up_receivers_down_and_the_surplus_sweeps_whole() -> None:
    # 1e-9 base unit each side, delta 1e13: exact amount 1e22/1e18... = 1e13 / 1e18 of a unit.
    payer = settle(1, 0, 10**13)
    receiver = settle(-1, 0, 10**13)
    assert payer == Settlement(1, SETTLEMENT_DENOMINATOR - 10**13)  # pays 1 unit (ceil)
    assert receiver == Settlement(0, 10**13)  # receives 0 (floor)
    swept, left = sweep_surplus(payer.carry_numerator + receiver.carry_numerator)
    assert (swept, left) == (1, 0)  # the unit the payer overpaid, once both carries are swept
    assert payer.payment_quote + receiver.payment_quote == swept


def test_a_carry_makes_later_settlements_pay_only_what_is_still_owed() -> None:
    # The payer above overpaid 1 - 1e-5 units; 99,999 more increments of 1e13 cost nothing
    # more (the carry absorbs them), the next one costs a unit: ceil(total / D) in all.
    payer = settle(1, 0, 10**13)
    later = settle(1, 10**13, 10**18, payer.carry_numerator)
    assert later == Settlement(0, 0)
    assert settle(1, 10**18, 10**18 + 1, later.carry_numerator) == Settlement(
        1, SETTLEMENT_DENOMINATOR - 1
    )
    assert settle(1, 0, 10**18) == Settlement(1, 0)  # once: the same total


# ------------------------------------------------------------------ margin
SCHEDULE = MarginSchedule(
    tiers=(
        MarginTier(up_to_notional_quote=100_000 * USD, initial_ppm=100_000, maintenance_ppm=50_000),
        MarginTier(
            up_to_notional_quote=1_000_000 * USD, initial_ppm=200_000, maintenance_ppm=100_000
        ),
        MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=500_000, maintenance_ppm=250_000),
    )
)


def test_requirement_inside_the_first_tier() -> None:
    # 50,000 x 10 % = 5,000 initial; x 5 % = 2,500 maintenance
    assert requirement_quote(50_000 * USD, SCHEDULE, MarginKind.INITIAL) == 5_000 * USD
    assert requirement_quote(50_000 * USD, SCHEDULE, MarginKind.MAINTENANCE) == 2_500 * USD


def test_requirement_across_two_tiers_charges_each_slice_at_its_ratio() -> None:
    # 150,000: 100,000 x 10 % + 50,000 x 20 % = 10,000 + 10,000 = 20,000
    assert requirement_quote(150_000 * USD, SCHEDULE, MarginKind.INITIAL) == 20_000 * USD
    # maintenance: 100,000 x 5 % + 50,000 x 10 % = 10,000
    assert requirement_quote(150_000 * USD, SCHEDULE, MarginKind.MAINTENANCE) == 10_000 * USD
    # 2,000,000: 10,000 + 900,000 x 20 % + 1,000,000 x 50 % = 10,000 + 180,000 + 500,000
    assert requirement_quote(2_000_000 * USD, SCHEDULE, MarginKind.INITIAL) == 690_000 * USD


def test_requirement_rounds_up() -> None:
    # 1 quote unit x 10 % = 0.1 -> 1
    assert requirement_quote(1, SCHEDULE, MarginKind.INITIAL) == 1
    assert requirement_quote(0, SCHEDULE, MarginKind.INITIAL) == 0


def test_first_tier_leverage() -> None:
    assert SCHEDULE.max_leverage_ppm == 10_000_000  # 10x


@pytest.mark.parametrize(
    ("tiers", "message"),
    [
        ((), "expected at least one tier"),
        (
            (MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=50, maintenance_ppm=50),),
            "maintenance_ppm < initial_ppm",
        ),
        (
            (
                MarginTier(up_to_notional_quote=10, initial_ppm=200, maintenance_ppm=100),
                MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=150, maintenance_ppm=100),
            ),
            "ratios no lower than the tier before",
        ),
        ((MarginTier(up_to_notional_quote=10, initial_ppm=200, maintenance_ppm=100),), "unbounded"),
        (
            (
                MarginTier(up_to_notional_quote=10, initial_ppm=200, maintenance_ppm=100),
                MarginTier(up_to_notional_quote=10, initial_ppm=200, maintenance_ppm=100),
            ),
            "expected > 10",
        ),
    ],
)
def test_schedule_bounds(tiers: tuple[MarginTier, ...], message: str) -> None:
    with pytest.raises(MarginConfigError, match=message):
        MarginSchedule(tiers=tiers)


def test_notional_and_pnl() -> None:
    # 1.5 base short at 100: notional 150
    assert notional_quote(-3 * BASE // 2, 100 * USD) == 150 * USD
    assert notional_quote(1, 1) == 1  # 1e-15 of a unit rounds up to 1
    # long 1 at 100 (entry quote -100), marked at 110: +10; the short mirror: -10
    assert unrealized_pnl_quote(BASE, -100 * USD, 110 * USD) == 10 * USD
    assert unrealized_pnl_quote(-BASE, 100 * USD, 110 * USD) == -10 * USD
    # rounding toward -infinity: +1e-15 -> 0, -1e-15 -> -1
    assert unrealized_pnl_quote(1, 0, 1) == 0
    assert unrealized_pnl_quote(-1, 0, 1) == -1


def test_worst_case_base_counts_the_worse_side_of_open_orders() -> None:
    assert worst_case_base(2, 3, 10) == 8  # all asks fill: 2 - 10 = -8
    assert worst_case_base(2, 30, 10) == 32  # all bids fill: 2 + 30


# ------------------------------------------------------------------ fees
def test_fee_rounds_up_and_rebate_rounds_down() -> None:
    assert fee_quote(1_000 * USD, 500) == 500_000  # 1,000 x 0.05 % = 0.5
    assert fee_quote(1, 500) == 1  # 0.0005 -> 1
    assert fee_quote(1_999, -500) == 0  # rebate 0.9995 -> 0
    assert fee_quote(10 * USD, -200) == -2_000  # rebate 10 x 0.02 % = 0.002


def test_fill_fee_split_is_exact() -> None:
    # maker -0.01 % (rebate 0.1), taker 0.05 % (0.5): net 0.4; insurance 20 % = 0.08
    fees = fill_fees(
        1_000 * USD, FeeSchedule(maker_ppm=-100, taker_ppm=500, insurance_share_ppm=200_000)
    )
    assert fees == (-100_000, 500_000, 80_000, 320_000)


def test_fee_schedule_bounds() -> None:
    with pytest.raises(FeeConfigError, match=r"maker_ppm: expected -500\.\."):
        FeeSchedule(maker_ppm=-600, taker_ppm=500, insurance_share_ppm=0)
    with pytest.raises(FeeConfigError, match="taker_ppm"):
        FeeSchedule(maker_ppm=0, taker_ppm=-1, insurance_share_ppm=0)


# ------------------------------------------------------------------ mark price
ASKS = [(100 * USD, BASE), (101 * USD, BASE)]


def test_impact_price_of_a_partial_last_level() -> None:
    # buying 150: 1 unit at 100, then 50 / 101 = 0.4950495 units at 101;
    # average 150 / 1.4950495 = 100.3311258... -> ask rounds up, bid down
    assert impact_price(ASKS, 150 * USD, is_bid=False) == 100_331_126
    assert impact_price(ASKS, 150 * USD, is_bid=True) == 100_331_125
    assert impact_price(ASKS, 100 * USD, is_bid=False) == 100 * USD  # exactly level one
    assert impact_price(ASKS, 1_000 * USD, is_bid=False) is None  # too thin


def test_ema_basis_steps() -> None:
    assert update_ema_basis(0, 1_000, 30, 60) == 500
    assert update_ema_basis(0, 1_000, 120, 60) == 1_000  # never overshoots
    assert update_ema_basis(0, -1_000, 1, 3) == -333  # toward zero


def test_mark_price_median_and_band() -> None:
    # oracle 100 + basis 0 clamped into impact [101, 102] -> 101; band 1 % allows 101
    assert mark_price(100 * USD, 0, 101 * USD, 102 * USD, 10_000) == 101 * USD
    # band 0.5 %: capped at 100.5
    assert mark_price(100 * USD, 0, 101 * USD, 102 * USD, 5_000) == 100_500_000
    # no book: oracle + basis 2 = 102, band 1 % -> 101
    assert mark_price(100 * USD, 2 * USD, None, None, 10_000) == 101 * USD
