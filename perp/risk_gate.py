"""The pre-trade risk gate: per-account limits checked before an order reaches the book.

Checks run cheapest first and stop at the first failure, which becomes an ``OrderRejected``
with its own ``RejectCode``: market status, rate limits (per second, per minute), order size,
price band around the oracle, order notional, position limit, daily loss limit, and margin
after the fill. Rate limits are token buckets kept as plain integers; time is an argument.
Units: base at ``BASE_PRECISION``, prices at ``PRICE_PRECISION``, money at
``QUOTE_PRECISION``, ratios in ppm. See ``docs/PROTOCOL.md`` section "Risk gate".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from exchange.core.errors import RejectCode
from exchange.core.units import NANOS_PER_SECOND, RATIO_PRECISION
from perp.math.margin import notional_quote


class MarketStatus(IntEnum):
    ACTIVE = 0
    POST_ONLY = 1  # only orders that rest (no taking)
    REDUCE_ONLY = 2  # only orders that shrink a position
    CANCEL_ONLY = 3  # no new orders
    HALTED = 4  # nothing, not even cancels, until reset


class RiskConfigError(ValueError):
    code = "RISK_CONFIG"


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskLimits:
    """Per-account limits of one market (0 disables a limit where noted)."""

    max_orders_per_second: int
    max_orders_per_minute: int
    max_order_base: int  # BASE_PRECISION
    max_position_base: int  # BASE_PRECISION, |position| after the fill
    max_order_notional_quote: int  # QUOTE_PRECISION
    daily_loss_limit_quote: int  # QUOTE_PRECISION; 0 disables
    price_band_ppm: int  # limit price within oracle x (1 +- band)

    def __post_init__(self) -> None:
        for name in (
            "max_orders_per_second",
            "max_orders_per_minute",
            "max_order_base",
            "max_position_base",
            "max_order_notional_quote",
        ):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise RiskConfigError(f"{name}: expected an int > 0, got {value!r}")
        if type(self.daily_loss_limit_quote) is not int or self.daily_loss_limit_quote < 0:
            raise RiskConfigError(
                f"daily_loss_limit_quote: expected an int >= 0, got {self.daily_loss_limit_quote!r}"
            )
        if type(self.price_band_ppm) is not int or not 0 < self.price_band_ppm < RATIO_PRECISION:
            raise RiskConfigError(
                f"price_band_ppm: expected 1..{RATIO_PRECISION - 1}, got {self.price_band_ppm!r}"
            )


class TokenBucket(NamedTuple):
    """A rate limit of ``limit`` per ``window_ns``, as integers: ``tokens`` is scaled by
    ``window_ns`` so refilling at ``limit / window_ns`` per ns needs no division."""

    tokens: int
    updated_ns: int


def take_token(
    bucket: TokenBucket | None, now_ns: int, limit: int, window_ns: int
) -> tuple[bool, TokenBucket]:
    """Spend one request from the bucket (starting full); returns (allowed, bucket after)."""
    capacity = limit * window_ns
    if bucket is None:
        tokens = capacity
    else:
        elapsed = max(0, now_ns - bucket.updated_ns)
        tokens = min(capacity, bucket.tokens + elapsed * limit)
    if tokens < window_ns:
        return False, TokenBucket(tokens, now_ns)
    return True, TokenBucket(tokens - window_ns, now_ns)


class AccountRiskState(NamedTuple):
    per_second: TokenBucket | None = None
    per_minute: TokenBucket | None = None


class GateResult(NamedTuple):
    code: RejectCode | None  # None: accepted
    message: str
    state: AccountRiskState  # the account's rate-limit state after this request


def spend_request_tokens(state: AccountRiskState, now_ns: int, limits: RiskLimits) -> GateResult:
    """Gate step 2 alone: one token from the per-second and the per-minute bucket. Every
    order request spends it, new orders and amends alike, accepted or refused later."""
    ok_s, per_second = take_token(
        state.per_second, now_ns, limits.max_orders_per_second, NANOS_PER_SECOND
    )
    ok_m, per_minute = take_token(
        state.per_minute, now_ns, limits.max_orders_per_minute, 60 * NANOS_PER_SECOND
    )
    state = AccountRiskState(per_second, per_minute)
    if not ok_s:
        return GateResult(
            RejectCode.RATE_LIMITED_PER_SECOND,
            f"rate: expected <= {limits.max_orders_per_second} orders per second",
            state,
        )
    if not ok_m:
        return GateResult(
            RejectCode.RATE_LIMITED_PER_MINUTE,
            f"rate: expected <= {limits.max_orders_per_minute} orders per minute",
            state,
        )
    return GateResult(None, "", state)


class OrderIntent(NamedTuple):
    is_bid: bool
    base: int  # BASE_PRECISION, > 0
    price: int  # PRICE_PRECISION: limit or protection price
    reduce_only: bool
    post_only: bool


def side_reach_base(
    order: OrderIntent, position_base: int, open_bid_base: int, open_ask_base: int
) -> tuple[int, bool]:
    """The signed position if this order and every open order of the account on its side
    filled (the worst case of its side), and whether that still only shrinks the position
    (``reduces``: against it, and all of that side together no larger than it)."""
    if order.is_bid:
        reach = position_base + open_bid_base + order.base
        return reach, position_base < 0 and reach <= 0
    reach = position_base - open_ask_base - order.base
    return reach, position_base > 0 and reach >= 0


def check_order(
    order: OrderIntent,
    *,
    now_ns: int,
    status: MarketStatus,
    limits: RiskLimits,
    state: AccountRiskState,
    position_base: int,
    open_bid_base: int,
    open_ask_base: int,
    oracle_price: int,
    day_loss_quote: int,
    margin_shortfall_quote: int,
) -> GateResult:
    """Run the gate for one order. ``open_bid_base`` / ``open_ask_base``: the account's open
    (resting and trigger-pending) orders in this market, this one excluded; position limit,
    REDUCE_ONLY status and the daily loss limit count them at their worst case.
    ``day_loss_quote`` is the account's loss since the start of the day (> 0 is a loss);
    ``margin_shortfall_quote`` comes from ``perp.margin_check.order_margin_shortfall`` (0
    when the order fits)."""
    reach, reduces = side_reach_base(order, position_base, open_bid_base, open_ask_base)
    # 1. market status (no state touched yet)
    if status == MarketStatus.HALTED or status == MarketStatus.CANCEL_ONLY:
        return GateResult(
            RejectCode.MARKET_NOT_ACCEPTING,
            f"market status: expected ACTIVE, got {status.name}",
            state,
        )
    if status == MarketStatus.POST_ONLY and not order.post_only:
        return GateResult(
            RejectCode.MARKET_NOT_ACCEPTING,
            "market status: expected a post-only order, market is POST_ONLY",
            state,
        )
    if status == MarketStatus.REDUCE_ONLY and not (order.reduce_only or reduces):
        return GateResult(
            RejectCode.MARKET_NOT_ACCEPTING,
            "market status: expected a reducing order, market is REDUCE_ONLY",
            state,
        )
    # 2. rate limits: every request that reaches here counts, accepted or not
    tokens = spend_request_tokens(state, now_ns, limits)
    if tokens.code is not None:
        return tokens
    return check_limits(
        order,
        limits=limits,
        state=tokens.state,
        reach_base=reach,
        reduces=reduces,
        oracle_price=oracle_price,
        day_loss_quote=day_loss_quote,
        margin_shortfall_quote=margin_shortfall_quote,
    )


def check_limits(
    order: OrderIntent,
    *,
    limits: RiskLimits,
    state: AccountRiskState,
    reach_base: int,
    reduces: bool,
    oracle_price: int,
    day_loss_quote: int,
    margin_shortfall_quote: int,
) -> GateResult:
    """Gate steps 3-8 (after status and rate limits): size, price band, notional, position,
    daily loss, margin. An amend runs these on its new size and price once it has passed
    its own status rules and spent its token. ``reach_base`` and ``reduces`` come from
    ``side_reach_base`` (an amend: with its old size out of the open orders)."""
    # 3. static size and price checks
    if order.base > limits.max_order_base:
        return GateResult(
            RejectCode.ORDER_SIZE_ABOVE_LIMIT,
            f"size: expected <= {limits.max_order_base}, got {order.base}",
            state,
        )
    band = oracle_price * limits.price_band_ppm // RATIO_PRECISION
    if not oracle_price - band <= order.price <= oracle_price + band:
        return GateResult(
            RejectCode.PRICE_OUTSIDE_BAND,
            f"price: expected within {oracle_price - band}..{oracle_price + band} "
            f"(oracle +- {limits.price_band_ppm} ppm), got {order.price}",
            state,
        )
    notional = notional_quote(order.base, order.price)
    if notional > limits.max_order_notional_quote:
        return GateResult(
            RejectCode.NOTIONAL_ABOVE_LIMIT,
            f"notional: expected <= {limits.max_order_notional_quote}, got {notional}",
            state,
        )
    # 4. position and loss: the side's worst case, open orders included
    extent = reach_base if order.is_bid else -reach_base  # <= 0 when it reduces
    if extent > limits.max_position_base:
        return GateResult(
            RejectCode.POSITION_ABOVE_LIMIT,
            f"position: expected |position| <= {limits.max_position_base} with this and "
            f"every open order on its side filled, got {extent}",
            state,
        )
    if (
        not reduces
        and limits.daily_loss_limit_quote
        and day_loss_quote >= limits.daily_loss_limit_quote
    ):
        return GateResult(
            RejectCode.DAILY_LOSS_LIMIT,
            f"daily loss: expected < {limits.daily_loss_limit_quote}, got "
            f"{day_loss_quote}; only reducing orders until the day resets",
            state,
        )
    # 5. margin after the fill (the most expensive input, computed by the caller)
    if margin_shortfall_quote > 0:
        return GateResult(
            RejectCode.INSUFFICIENT_MARGIN,
            f"margin: expected equity >= initial margin after the fill, short by "
            f"{margin_shortfall_quote}",
            state,
        )
    return GateResult(None, "", state)
