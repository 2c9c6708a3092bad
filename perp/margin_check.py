"""Account margin: equity against requirements, free collateral, and the pre-trade check.

Margin is cross within a sub-account: all its markets share its collateral. An isolated
position is a position held in a sub-account of its own (sub-accounts never share margin),
so one rule covers both. Units: money at ``QUOTE_PRECISION``, base at ``BASE_PRECISION``,
prices at ``PRICE_PRECISION``. See ``docs/PROTOCOL.md`` section "Account margin".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from exchange.core.units import BASE_PRECISION
from perp.math.fees import fee_quote
from perp.math.margin import (
    MarginKind,
    MarginSchedule,
    notional_quote,
    requirement_quote,
    unrealized_pnl_quote,
    worst_case_base,
)
from perp.position import Position


class OpenOrders(NamedTuple):
    bid_base: int = 0  # resting bids, BASE_PRECISION (>= 0)
    ask_base: int = 0  # resting asks


class MarginSummary(NamedTuple):
    equity_quote: int  # collateral + unrealised PnL at mark
    initial_quote: int  # initial requirement, open orders at their worst case
    maintenance_quote: int  # maintenance requirement of the positions alone

    @property
    def free_collateral_quote(self) -> int:
        """What may leave the account: equity above initial margin (never negative)."""
        return max(0, self.equity_quote - self.initial_quote)

    @property
    def below_maintenance(self) -> bool:
        return self.equity_quote < self.maintenance_quote


def margin_summary(
    collateral_quote: int,
    positions: Mapping[int, Position],
    open_orders: Mapping[int, OpenOrders],
    marks: Mapping[int, int],
    schedules: Mapping[int, MarginSchedule],
) -> MarginSummary:
    """Equity and requirements of one sub-account over all its markets (cross margin)."""
    equity = collateral_quote
    initial = maintenance = 0
    for market_id in positions.keys() | open_orders.keys():
        position = positions.get(market_id, Position())
        orders = open_orders.get(market_id, OpenOrders())
        if not position.base and not orders.bid_base and not orders.ask_base:
            continue
        mark = marks[market_id]
        schedule = schedules[market_id]
        equity += unrealized_pnl_quote(position.base, position.entry_quote, mark)
        worst = worst_case_base(position.base, orders.bid_base, orders.ask_base)
        initial += requirement_quote(notional_quote(worst, mark), schedule, MarginKind.INITIAL)
        maintenance += requirement_quote(
            notional_quote(position.base, mark), schedule, MarginKind.MAINTENANCE
        )
    return MarginSummary(equity, initial, maintenance)


def order_margin_shortfall(
    collateral_quote: int,
    positions: Mapping[int, Position],
    open_orders: Mapping[int, OpenOrders],
    marks: Mapping[int, int],
    schedules: Mapping[int, MarginSchedule],
    *,
    market_id: int,
    is_bid: bool,
    base: int,
    price: int,
    taker_fee_ppm: int,
) -> int:
    """Quote units the account would be short of initial margin if this order filled.

    0 means the order may go ahead. The order counts as resting (worst case with the others)
    and as filling at its own price: equity loses the adverse gap between that price and the
    mark and the taker fee (the most a fill can cost), so an order that passes cannot leave
    the account below initial margin.
    """
    if base <= 0 or price <= 0:
        raise ValueError(f"order: expected base > 0 and price > 0, got {base}, {price}")
    orders = dict(open_orders)
    current = orders.get(market_id, OpenOrders())
    orders[market_id] = (
        OpenOrders(current.bid_base + base, current.ask_base)
        if is_bid
        else OpenOrders(current.bid_base, current.ask_base + base)
    )
    summary = margin_summary(collateral_quote, positions, orders, marks, schedules)
    mark = marks[market_id]
    gap = (price - mark) if is_bid else (mark - price)  # > 0: filling here loses value
    adverse = -(-max(0, gap) * base // BASE_PRECISION)
    fee = fee_quote(notional_quote(base, price), taker_fee_ppm)
    return max(0, summary.initial_quote - (summary.equity_quote - adverse - fee))
