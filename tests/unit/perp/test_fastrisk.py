"""The compiled pre-trade gate: each rejection code in order, exact maths at the bounds,
the Python fallback beyond them, and the bounds checks at the boundary."""

from __future__ import annotations

import pytest

from exchange.core.errors import RejectCode
from exchange.core.units import U64_MAX
from perp.fastrisk import (
    MAX_BASE,
    MAX_PRICE,
    MAX_QUOTE,
    FastRisk,
    FastRiskRangeError,
    mul_div_ceil_pow,
    mul_div_floor_pow,
)
from perp.margin_check import order_margin_shortfall
from perp.math.margin import MarginSchedule, MarginTier
from perp.risk_gate import MarketStatus, RiskLimits

USD = 1_000_000
BASE = 1_000_000_000
SECOND = 1_000_000_000
LIMITS = RiskLimits(
    max_orders_per_second=2,
    max_orders_per_minute=5,
    max_order_base=10 * BASE,
    max_position_base=20 * BASE,
    max_order_notional_quote=1_000 * USD,
    daily_loss_limit_quote=500 * USD,
    price_band_ppm=50_000,
)
SCHEDULE = MarginSchedule(
    tiers=(
        MarginTier(up_to_notional_quote=500 * USD, initial_ppm=100_000, maintenance_ppm=50_000),
        MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=200_000, maintenance_ppm=100_000),
    )
)


def make(limits: RiskLimits = LIMITS, status: MarketStatus = MarketStatus.ACTIVE) -> FastRisk:
    fast = FastRisk(accounts=2, markets=2)
    for m in range(2):
        fast.set_market(
            m,
            limits=limits,
            schedule=SCHEDULE,
            taker_fee_ppm=1_000,
            mark_price=100 * USD,
            oracle_price=100 * USD,
            status=status,
        )
    fast.set_collateral(0, 10_000 * USD)
    return fast


def test_a_plain_order_passes() -> None:
    fast = make()
    assert fast.check(0, 0, True, BASE, 100 * USD) == 0


@pytest.mark.parametrize(
    ("status", "post_only", "code"),
    [
        (MarketStatus.HALTED, True, RejectCode.MARKET_NOT_ACCEPTING),
        (MarketStatus.CANCEL_ONLY, True, RejectCode.MARKET_NOT_ACCEPTING),
        (MarketStatus.POST_ONLY, False, RejectCode.MARKET_NOT_ACCEPTING),
        (MarketStatus.POST_ONLY, True, 0),
        (MarketStatus.REDUCE_ONLY, True, RejectCode.MARKET_NOT_ACCEPTING),
    ],
)
def test_market_status(status: MarketStatus, post_only: bool, code: int) -> None:
    fast = make(status=status)
    assert fast.check(0, 0, True, BASE, 100 * USD, post_only=post_only) == code


def test_reduce_only_market_takes_a_reducing_order() -> None:
    fast = make(status=MarketStatus.REDUCE_ONLY)
    fast.set_position(0, 0, 3 * BASE, -300 * USD)
    assert fast.check(0, 0, False, 2 * BASE, 100 * USD) == 0
    assert fast.check(0, 0, False, 4 * BASE, 100 * USD) == RejectCode.MARKET_NOT_ACCEPTING


def test_rate_limits_per_second_then_per_minute() -> None:
    fast = make()
    codes = [fast.check(0, 0, True, BASE, 100 * USD, now_ns=0) for _ in range(3)]
    assert codes == [0, 0, RejectCode.RATE_LIMITED_PER_SECOND]
    assert fast.message(codes[2]) == "rate: expected <= 2 orders per second"
    later = [fast.check(0, 0, True, BASE, 100 * USD, now_ns=SECOND * (2 + i)) for i in range(3)]
    # the minute bucket (5) counted the refused request too: 3 + 2 = 5, then empty
    assert later == [0, 0, RejectCode.RATE_LIMITED_PER_MINUTE]
    assert fast.check(1, 0, True, BASE, 100 * USD, now_ns=0) != RejectCode.RATE_LIMITED_PER_SECOND


@pytest.mark.parametrize(
    ("is_bid", "base", "price", "code", "message"),
    [
        (True, 11 * BASE, 100 * USD, 25, f"size: expected <= {10 * BASE}, got {11 * BASE}"),
        (
            True,
            BASE,
            106 * USD,
            26,
            f"price: expected within {95 * USD}..{105 * USD} (oracle +- 50000 ppm), "
            f"got {106 * USD}",
        ),
        (True, 10 * BASE + 1, 100 * USD + 1, 25, None),
        (True, 10 * BASE, 101 * USD, 27, f"notional: expected <= {1_000 * USD}, got {1010 * USD}"),
    ],
)
def test_static_checks(is_bid: bool, base: int, price: int, code: int, message: str | None) -> None:
    fast = make()
    assert fast.check(0, 0, is_bid, base, price) == code
    if message is not None:
        assert fast.message(code) == message


def test_position_limit_and_daily_loss_skip_reducing_orders() -> None:
    fast = make()
    fast.set_position(0, 0, 15 * BASE, -1_500 * USD)
    assert fast.check(0, 0, True, 6 * BASE, 100 * USD, now_ns=0) == RejectCode.POSITION_ABOVE_LIMIT
    assert (
        fast.message(28)
        == f"position: expected |position| <= {20 * BASE} with this and every open order on "
        f"its side filled, got {21 * BASE}"
    )
    fast.set_day_loss(0, 500 * USD)
    assert fast.check(0, 0, True, BASE, 100 * USD, now_ns=SECOND) == RejectCode.DAILY_LOSS_LIMIT
    assert fast.check(0, 0, False, BASE, 100 * USD, now_ns=2 * SECOND) == 0  # reduces


def test_margin_after_fill_counts_the_other_markets() -> None:
    fast = make()
    fast.set_collateral(0, 100 * USD)
    # 10 whole units at 100: notional 1,000 -> 500 x 10 % + 500 x 20 % = 150 > 100 + ...
    fast.set_position(0, 1, 9 * BASE, -900 * USD)
    code = fast.check(0, 0, True, BASE, 100 * USD)
    assert code == RejectCode.INSUFFICIENT_MARGIN
    expected = order_margin_shortfall(
        **fast.python_inputs(0),
        market_id=0,
        is_bid=True,
        base=BASE,
        price=100 * USD,
        taker_fee_ppm=1_000,
    )
    assert fast.message(code) == (
        f"margin: expected equity >= initial margin after the fill, short by {expected}"
    )


def test_exact_at_the_bounds_where_int64_products_overflow() -> None:
    # Arrange: |base| x price = 2**86, far beyond int64; the split products stay exact.
    schedule = MarginSchedule(
        tiers=(MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=1_000_000, maintenance_ppm=1),)
    )
    limits = RiskLimits(
        max_orders_per_second=10**9,
        max_orders_per_minute=10**7,
        max_order_base=U64_MAX,
        max_position_base=2**80,
        max_order_notional_quote=U64_MAX,
        daily_loss_limit_quote=0,
        price_band_ppm=999_999,
    )
    fast = FastRisk(accounts=1, markets=8)
    for m in range(8):
        fast.set_market(
            m,
            limits=limits,
            schedule=schedule,
            taker_fee_ppm=-7,
            mark_price=MAX_PRICE - m,
            oracle_price=MAX_PRICE,
        )
        fast.set_position(0, m, (-1) ** m * MAX_BASE, -((-1) ** m) * MAX_QUOTE)
        fast.set_open_orders(0, m, MAX_BASE, MAX_BASE)
    fast.set_collateral(0, -MAX_QUOTE)
    for is_bid, base, price in ((True, MAX_BASE, MAX_PRICE), (False, 3, MAX_PRICE - 12_345)):
        expected = order_margin_shortfall(
            **fast.python_inputs(0),
            market_id=5,
            is_bid=is_bid,
            base=base,
            price=price,
            taker_fee_ppm=-7,
        )
        assert expected > 2**60  # base x price ~ 2**86: a naive int64 product is wrong
        assert fast.margin_shortfall(0, 5, is_bid, base, price) == expected


def test_beyond_the_bounds_the_exact_python_gate_decides() -> None:
    fast = make(
        limits=RiskLimits(
            max_orders_per_second=2,
            max_orders_per_minute=5,
            max_order_base=U64_MAX,
            max_position_base=U64_MAX,
            max_order_notional_quote=U64_MAX,
            daily_loss_limit_quote=0,
            price_band_ppm=50_000,
        )
    )
    code = fast.check(0, 0, True, 2**63, 100 * USD)  # base beyond int64: Python path
    assert code == RejectCode.INSUFFICIENT_MARGIN
    assert fast.message(code).startswith("margin: expected equity >= initial margin")
    assert fast.rate_state(0).per_second is not None  # the fallback spent the token too


@pytest.mark.parametrize(
    ("a", "b", "p"),
    [
        (2**48 - 1, 2**40, 10**9),
        (10**9 - 1, 10**9 - 1, 10**9),
        (2**60, 10**6, 10**6),
        (0, 5, 10**6),
    ],
)
def test_split_mul_div_is_exact(a: int, b: int, p: int) -> None:
    assert mul_div_floor_pow(a, b, p) == a * b // p
    assert mul_div_ceil_pow(a, b, p) == -(-a * b // p)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f: f.set_collateral(0, MAX_QUOTE + 1), "collateral_quote: expected an int in"),
        (lambda f: f.set_position(0, 0, MAX_BASE + 1, 0), "position base: expected an int in"),
        (lambda f: f.set_open_orders(0, 0, -1, 0), "resting bid base: expected an int in"),
        (lambda f: f.set_prices(0, mark_price=0, oracle_price=1), "mark_price: expected an int"),
    ],
)
def test_setters_refuse_values_beyond_the_bounds(call: object, message: str) -> None:
    fast = make()
    with pytest.raises(FastRiskRangeError, match=message):
        call(fast)  # type: ignore[operator]


def test_rate_limits_that_overflow_the_bucket_are_refused() -> None:
    fast = FastRisk(accounts=1, markets=1)
    with pytest.raises(FastRiskRangeError, match="max_orders_per_minute: expected limit x"):
        fast.set_market(
            0,
            limits=RiskLimits(
                max_orders_per_second=1,
                max_orders_per_minute=10**10,
                max_order_base=1,
                max_position_base=1,
                max_order_notional_quote=1,
                daily_loss_limit_quote=0,
                price_band_ppm=1,
            ),
            schedule=SCHEDULE,
            taker_fee_ppm=0,
            mark_price=1,
            oracle_price=1,
        )


def test_a_time_before_the_epoch_is_refused() -> None:
    fast = make()
    with pytest.raises(FastRiskRangeError, match="now_ns: expected an int in 0"):
        fast.check(0, 0, True, BASE, 100 * USD, now_ns=-1)


def test_the_position_limit_counts_the_open_orders_on_the_orders_side() -> None:
    # limit 20: 5 long + 12 resting bids + 3 fits, + 4 does not; as perp.risk_gate
    fast = make()
    fast.set_position(0, 0, 5 * BASE, -500 * USD)
    fast.set_open_orders(0, 0, 12 * BASE, 0)
    assert fast.check(0, 0, True, 4 * BASE, 100 * USD, now_ns=0) == RejectCode.POSITION_ABOVE_LIMIT
    assert fast.message(28).endswith(f"got {21 * BASE}")
    assert fast.check(0, 0, True, 3 * BASE, 100 * USD, now_ns=SECOND) == 0
