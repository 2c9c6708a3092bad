"""The compiled gate (``perp.fastrisk``) against the Python gate + margin check: the same
code, the same message and the same rate-limit state for random states and order streams,
including values at the compiled bounds and orders beyond them (the exact fallback)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.core.units import U64_MAX
from perp.fastrisk import MAX_BASE, MAX_PRICE, MAX_QUOTE, FastRisk
from perp.margin_check import order_margin_shortfall
from perp.math.margin import MarginSchedule, MarginTier
from perp.risk_gate import MarketStatus, OrderIntent, RiskLimits, check_order

SETTINGS = settings(derandomize=True, max_examples=150, deadline=None)
SECOND = 1_000_000_000


@st.composite
def schedules(draw: st.DrawFn) -> MarginSchedule:
    n = draw(st.integers(1, 4))
    bounds = sorted(draw(st.sets(st.integers(1, 10**17), min_size=n - 1, max_size=n - 1)))
    bounds.append(U64_MAX)
    initial = sorted(draw(st.lists(st.integers(2, 1_000_000), min_size=n, max_size=n)))
    tiers, floor = [], 1
    for bound, im in zip(bounds, initial):
        mm = max(draw(st.integers(1, im - 1)), floor)
        mm = min(mm, im - 1)
        floor = mm
        tiers.append(MarginTier(up_to_notional_quote=bound, initial_ppm=im, maintenance_ppm=mm))
    return MarginSchedule(tiers=tuple(tiers))


def big(hi: int) -> st.SearchStrategy[int]:
    """Small values mostly, the bound itself sometimes."""
    return st.one_of(st.integers(0, 1_000), st.integers(0, hi), st.just(hi))


@st.composite
def limits(draw: st.DrawFn) -> RiskLimits:
    return RiskLimits(
        max_orders_per_second=draw(st.integers(1, 5)),
        max_orders_per_minute=draw(st.integers(1, 12)),
        max_order_base=draw(st.one_of(st.integers(1, MAX_BASE), st.just(U64_MAX))),
        max_position_base=draw(st.one_of(st.integers(1, MAX_BASE), st.just(2**70))),
        max_order_notional_quote=draw(st.one_of(st.integers(1, 2**60), st.just(U64_MAX))),
        daily_loss_limit_quote=draw(st.one_of(st.just(0), st.integers(1, MAX_QUOTE))),
        price_band_ppm=draw(st.integers(1, 999_999)),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    n_markets = draw(st.integers(1, 3))
    markets: list[dict[str, Any]] = []
    for _ in range(n_markets):
        markets.append(
            {
                "limits": draw(limits()),
                "schedule": draw(schedules()),
                "taker_fee_ppm": draw(st.integers(-1_000, 10_000)),
                "mark_price": draw(st.integers(1, MAX_PRICE)),
                "oracle_price": draw(st.integers(1, MAX_PRICE)),
                "status": draw(st.sampled_from(list(MarketStatus))),
            }
        )
    accounts = []
    for _ in range(2):
        positions = []
        for _ in range(n_markets):
            base = draw(st.integers(-MAX_BASE, MAX_BASE) | st.integers(-(10**10), 10**10))
            entry = draw(st.integers(-MAX_QUOTE, MAX_QUOTE))
            bid, ask = draw(big(MAX_BASE)), draw(big(MAX_BASE))
            positions.append((base, entry, bid, ask))
        accounts.append(
            {
                "collateral": draw(st.integers(-MAX_QUOTE, MAX_QUOTE)),
                "day_loss": draw(st.integers(-MAX_QUOTE, MAX_QUOTE)),
                "positions": positions,
            }
        )
    orders = []
    now = draw(st.integers(0, 10**12))
    for _ in range(draw(st.integers(1, 12))):
        now += draw(st.sampled_from([0, 1, 1_000, SECOND // 3, SECOND, 61 * SECOND]))
        market = draw(st.integers(0, n_markets - 1))
        oracle: int = markets[market]["oracle_price"]
        price = draw(
            st.one_of(
                st.integers(max(1, oracle - oracle // 4), oracle + oracle // 4),
                st.integers(1, MAX_PRICE),
                st.just(MAX_PRICE + draw(st.integers(1, 10**6))),  # beyond: exact fallback
            )
        )
        base = draw(st.one_of(big(MAX_BASE).filter(bool), st.just(MAX_BASE + 1)))
        orders.append(
            (
                draw(st.integers(0, 1)),
                market,
                OrderIntent(
                    draw(st.booleans()), base, price, draw(st.booleans()), draw(st.booleans())
                ),
                now,
            )
        )
    return {"markets": markets, "accounts": accounts, "orders": orders}


@SETTINGS
@given(scenarios())
def test_compiled_gate_equals_python_gate(sc: dict[str, Any]) -> None:
    # Arrange
    n_markets = len(sc["markets"])
    fast = FastRisk(accounts=2, markets=n_markets)
    for j, m in enumerate(sc["markets"]):
        fast.set_market(j, **m)
    for i, acc in enumerate(sc["accounts"]):
        fast.set_collateral(i, acc["collateral"])
        fast.set_day_loss(i, acc["day_loss"])
        for j, (base, entry, bid, ask) in enumerate(acc["positions"]):
            fast.set_position(i, j, base, entry)
            fast.set_open_orders(i, j, bid, ask)
    py_states = [fast.rate_state(0), fast.rate_state(1)]
    for account, market, order, now in sc["orders"]:
        inputs = fast.python_inputs(account)
        m = sc["markets"][market]
        # Act
        shortfall = order_margin_shortfall(
            **inputs,
            market_id=market,
            is_bid=order.is_bid,
            base=order.base,
            price=order.price,
            taker_fee_ppm=m["taker_fee_ppm"],
        )
        expected = check_order(
            order,
            now_ns=now,
            status=m["status"],
            limits=m["limits"],
            state=py_states[account],
            position_base=inputs["positions"][market].base,
            open_bid_base=inputs["open_orders"][market].bid_base,
            open_ask_base=inputs["open_orders"][market].ask_base,
            oracle_price=m["oracle_price"],
            day_loss_quote=sc["accounts"][account]["day_loss"],
            margin_shortfall_quote=shortfall,
        )
        py_states[account] = expected.state
        code = fast.check(
            account,
            market,
            order.is_bid,
            order.base,
            order.price,
            order.reduce_only,
            order.post_only,
            now,
        )
        # Assert
        assert code == (0 if expected.code is None else int(expected.code)), (order, expected)
        if code:
            assert fast.message(code) == expected.message
        assert fast.rate_state(account) == expected.state


@SETTINGS
@given(scenarios())
def test_compiled_shortfall_equals_python(sc: dict[str, Any]) -> None:
    n_markets = len(sc["markets"])
    fast = FastRisk(accounts=2, markets=n_markets)
    for j, m in enumerate(sc["markets"]):
        fast.set_market(j, **m)
    acc = sc["accounts"][0]
    fast.set_collateral(0, acc["collateral"])
    for j, (base, entry, bid, ask) in enumerate(acc["positions"]):
        fast.set_position(0, j, base, entry)
        fast.set_open_orders(0, j, bid, ask)
    for _account, market, order, _now in sc["orders"]:
        if order.base > MAX_BASE or order.price > MAX_PRICE:
            continue
        expected = order_margin_shortfall(
            **fast.python_inputs(0),
            market_id=market,
            is_bid=order.is_bid,
            base=order.base,
            price=order.price,
            taker_fee_ppm=sc["markets"][market]["taker_fee_ppm"],
        )
        assert fast.margin_shortfall(0, market, order.is_bid, order.base, order.price) == expected
