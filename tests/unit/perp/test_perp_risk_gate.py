"""The pre-trade risk gate: every rejection code, in order, and the token buckets."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.core.errors import RejectCode
from perp.risk_gate import (
    AccountRiskState,
    MarketStatus,
    OrderIntent,
    RiskConfigError,
    RiskLimits,
    TokenBucket,
    check_order,
    take_token,
)

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
)  # 5 %


def gate(order: OrderIntent | None = None, **overrides: Any) -> Any:
    args: dict[str, Any] = dict(
        now_ns=0,
        status=MarketStatus.ACTIVE,
        limits=LIMITS,
        state=AccountRiskState(),
        position_base=0,
        open_bid_base=0,
        open_ask_base=0,
        oracle_price=100 * USD,
        day_loss_quote=0,
        margin_shortfall_quote=0,
    )
    args.update(overrides)
    return check_order(order or OrderIntent(True, BASE, 100 * USD, False, False), **args)


def test_a_plain_order_passes() -> None:
    assert gate().code is None


@pytest.mark.parametrize(
    ("order", "overrides", "code"),
    [
        (None, {"status": MarketStatus.HALTED}, RejectCode.MARKET_NOT_ACCEPTING),
        (None, {"status": MarketStatus.CANCEL_ONLY}, RejectCode.MARKET_NOT_ACCEPTING),
        (None, {"status": MarketStatus.POST_ONLY}, RejectCode.MARKET_NOT_ACCEPTING),
        (None, {"status": MarketStatus.REDUCE_ONLY}, RejectCode.MARKET_NOT_ACCEPTING),
        (
            OrderIntent(True, 11 * BASE, 100 * USD, False, False),
            {},
            RejectCode.ORDER_SIZE_ABOVE_LIMIT,
        ),
        (OrderIntent(True, BASE, 106 * USD, False, False), {}, RejectCode.PRICE_OUTSIDE_BAND),
        (OrderIntent(False, BASE, 94 * USD, False, False), {}, RejectCode.PRICE_OUTSIDE_BAND),
        # 10 units at 105 = 1,050 > 1,000
        (
            OrderIntent(True, 10 * BASE, 105 * USD, False, False),
            {},
            RejectCode.NOTIONAL_ABOVE_LIMIT,
        ),
        (None, {"position_base": 20 * BASE}, RejectCode.POSITION_ABOVE_LIMIT),
        (None, {"day_loss_quote": 500 * USD}, RejectCode.DAILY_LOSS_LIMIT),
        (None, {"margin_shortfall_quote": 1}, RejectCode.INSUFFICIENT_MARGIN),
    ],
)
def test_each_limit_has_its_own_code(
    order: OrderIntent | None, overrides: dict[str, Any], code: RejectCode
) -> None:
    result = gate(order, **overrides)
    assert result.code == code
    assert "expected" in result.message


def test_reducing_orders_pass_position_loss_and_reduce_only_status() -> None:
    selling_half = OrderIntent(False, BASE, 100 * USD, False, False)
    for overrides in (
        {"status": MarketStatus.REDUCE_ONLY},
        {"day_loss_quote": 10**9},
        {"position_base": 25 * BASE},
    ):
        assert gate(selling_half, **{"position_base": 2 * BASE, **overrides}).code is None


def test_post_only_market_accepts_post_only_orders() -> None:
    order = OrderIntent(True, BASE, 100 * USD, False, True)
    assert gate(order, status=MarketStatus.POST_ONLY).code is None


def test_rate_limits_per_second_then_per_minute() -> None:
    state = AccountRiskState()
    codes = []
    for now in (0, 0, 0, SECOND, SECOND, 2 * SECOND, 3 * SECOND):
        result = gate(now_ns=now, state=state)
        state = result.state
        codes.append(result.code)
    # 2 per second: the third at t=0 is refused (it still spends a minute token);
    # by t=2s five minute tokens are gone, so the sixth request onwards is refused.
    assert codes == [
        None,
        None,
        RejectCode.RATE_LIMITED_PER_SECOND,
        None,
        None,
        RejectCode.RATE_LIMITED_PER_MINUTE,
        RejectCode.RATE_LIMITED_PER_MINUTE,
    ]


def test_token_bucket_refills_exactly() -> None:
    ok, bucket = take_token(None, 0, 2, SECOND)  # starts full: 2 tokens
    ok2, bucket = take_token(bucket, 0, 2, SECOND)
    ok3, bucket = take_token(bucket, 0, 2, SECOND)
    assert (ok, ok2, ok3) == (True, True, False)
    ok4, bucket = take_token(bucket, SECOND // 2, 2, SECOND)  # half a second = one token
    assert ok4 and bucket == TokenBucket(0, SECOND // 2)


def test_limits_reject_nonsense() -> None:
    with pytest.raises(RiskConfigError, match="max_order_base: expected an int > 0"):
        RiskLimits(
            max_orders_per_second=1,
            max_orders_per_minute=1,
            max_order_base=0,
            max_position_base=1,
            max_order_notional_quote=1,
            daily_loss_limit_quote=0,
            price_band_ppm=1,
        )


def test_every_gate_code_is_exercised() -> None:
    from exchange.core.errors import RISK_GATE_CODES

    covered = {RejectCode.RATE_LIMITED_PER_SECOND, RejectCode.RATE_LIMITED_PER_MINUTE}
    covered |= {code for _, _, code in test_each_limit_has_its_own_code.pytestmark[0].args[1]}
    assert covered == RISK_GATE_CODES


# ---------------------------------------------------------------- open orders count
def test_the_position_limit_counts_the_open_orders_on_the_orders_side() -> None:
    # Arrange: limit 20; long 5 with 12 resting bids and 30 resting asks
    held = {"position_base": 5 * BASE, "open_bid_base": 12 * BASE, "open_ask_base": 30 * BASE}
    # Act / Assert: 5 + 12 + 3 = 20 fits, + 4 does not; asks reach 5 - 30 - 1 = -26 > 20
    assert gate(OrderIntent(True, 3 * BASE, 100 * USD, False, False), **held).code is None
    refused = gate(OrderIntent(True, 4 * BASE, 100 * USD, False, False), **held)
    assert refused.code == RejectCode.POSITION_ABOVE_LIMIT
    assert refused.message == (
        f"position: expected |position| <= {20 * BASE} with this and every open order on its "
        f"side filled, got {21 * BASE}"
    )
    ask = gate(OrderIntent(False, BASE, 100 * USD, False, False), **held)
    assert ask.code == RejectCode.POSITION_ABOVE_LIMIT and ask.message.endswith(str(26 * BASE))


def test_reduce_only_status_and_the_loss_limit_take_the_side_as_a_whole() -> None:
    # Arrange: long 5 with 4 resting asks: one more ask of 1 still only reduces, of 2 flips
    held = {"position_base": 5 * BASE, "open_ask_base": 4 * BASE}
    one, two = (OrderIntent(False, n * BASE, 100 * USD, False, False) for n in (1, 2))
    # Act / Assert
    assert gate(one, status=MarketStatus.REDUCE_ONLY, **held).code is None
    assert gate(two, status=MarketStatus.REDUCE_ONLY, **held).code == (
        RejectCode.MARKET_NOT_ACCEPTING
    )
    assert gate(one, day_loss_quote=500 * USD, **held).code is None
    assert gate(two, day_loss_quote=500 * USD, **held).code == RejectCode.DAILY_LOSS_LIMIT
    # a reduce-only order is left to the matching core, which caps it at the position
    flagged = OrderIntent(False, 2 * BASE, 100 * USD, True, False)
    assert gate(flagged, status=MarketStatus.REDUCE_ONLY, **held).code is None


def test_an_account_over_the_limit_may_still_reduce() -> None:
    # long 30 over a limit of 20 (after a parameter change): selling 10 passes, buying 1 not
    assert (
        gate(OrderIntent(False, 10 * BASE, 100 * USD, False, False), position_base=30 * BASE).code
        is None
    )
    assert gate(OrderIntent(True, BASE, 100 * USD, False, False), position_base=30 * BASE).code == (
        RejectCode.POSITION_ABOVE_LIMIT
    )
