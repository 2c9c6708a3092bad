"""Unit tests for exchange.core.market.MarketSpec."""

from __future__ import annotations

import dataclasses

import pytest

from exchange.core.errors import ConfigError
from exchange.core.market import (
    DEFAULT_MAX_PRICE_TICKS,
    DEFAULT_MAX_SIZE_LOTS,
    MAX_ORDER_LOTS,
    MAX_PRICE_TICKS,
    MarketSpec,
)
from exchange.core.units import BASE_PRECISION, U32_MAX, U64_MAX


def spec(**kw: object) -> MarketSpec:
    base: dict[str, object] = {
        "market_id": 1,
        "symbol": "SOL-PERP",
        "tick_size": 10_000,
        "lot_size": 10**7,
    }
    base.update(kw)
    return MarketSpec(**base)  # type: ignore[arg-type]


def test_defaults_and_derived_values() -> None:
    s = spec()
    assert (s.min_size_lots, s.max_size_lots) == (1, DEFAULT_MAX_SIZE_LOTS)
    assert spec(max_size_lots=0).max_size_lots == DEFAULT_MAX_SIZE_LOTS  # 0 = default
    assert s.max_price_ticks == DEFAULT_MAX_PRICE_TICKS
    assert s.max_open_orders_per_account == 256
    assert s.quote_per_tick_lot == 10_000 * 10**7 // BASE_PRECISION == 100
    assert MAX_PRICE_TICKS == U32_MAX
    assert MAX_ORDER_LOTS == 2**48


def test_spec_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec().tick_size = 1  # type: ignore[misc]


def test_price_and_size_conversions() -> None:
    s = spec()
    assert s.price_to_ticks(1_500_000) == 150
    assert s.price_to_ticks(1_500_001) is None
    assert s.base_to_lots(3 * 10**7) == 3
    assert s.base_to_lots(3 * 10**7 + 1) is None
    assert s.notional_quote(150, 3) == 150 * 3 * 100


def test_notional_is_exact_quote() -> None:
    s = spec(tick_size=1, lot_size=BASE_PRECISION)  # 1 micro-quote per whole base unit
    assert s.quote_per_tick_lot == 1
    assert s.notional_quote(7, 9) == 63


def test_extreme_but_valid_limits() -> None:
    s = spec(
        tick_size=1,
        lot_size=BASE_PRECISION,
        max_price_ticks=MAX_PRICE_TICKS,
        max_size_lots=U64_MAX // MAX_PRICE_TICKS,
        min_size_lots=1,
        max_open_orders_per_account=65535,
        market_id=65535,
        symbol="X" * 32,
    )
    assert s.market_id == 65535


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("market_id", -1, "market_id in 0..65535"),
        ("market_id", 65536, "market_id in 0..65535"),
        ("market_id", True, "market_id in 0..65535"),
        ("symbol", "", "symbol of 1..32 characters"),
        ("symbol", "X" * 33, "symbol of 1..32 characters"),
        ("symbol", 5, "symbol of 1..32 characters"),
        ("tick_size", 0, "tick_size > 0"),
        ("tick_size", U64_MAX + 1, "tick_size > 0"),
        ("tick_size", 1.5, "tick_size > 0"),
        ("lot_size", 0, "lot_size > 0"),
        ("lot_size", -(10**7), "lot_size > 0"),
        ("tick_size", 3, "tick_size*lot_size divisible by"),
        ("min_size_lots", 0, "min_size_lots >= 1"),
        ("max_size_lots", -1, "max_size_lots in min_size_lots.."),
        ("max_size_lots", MAX_ORDER_LOTS + 1, "max_size_lots in min_size_lots.."),
        ("max_price_ticks", 0, "max_price_ticks in 1.."),
        ("max_price_ticks", MAX_PRICE_TICKS + 1, "max_price_ticks in 1.."),
        ("max_open_orders_per_account", 0, "max_open_orders_per_account in 1..65535"),
        ("max_open_orders_per_account", 65536, "max_open_orders_per_account in 1..65535"),
    ],
)
def test_invalid_spec_raises_config_error(field: str, value: object, fragment: str) -> None:
    kw: dict[str, object] = {"max_size_lots": 1000, field: value}
    with pytest.raises(ConfigError) as info:
        spec(**kw)
    msg = str(info.value)
    assert msg.startswith("MarketSpec ")
    assert f"expected {fragment}" in msg
    assert ", got " in msg


def test_min_above_max_size_is_invalid() -> None:
    with pytest.raises(ConfigError, match="max_size_lots in min_size_lots"):
        spec(min_size_lots=10, max_size_lots=9)


def test_notional_overflow_is_invalid() -> None:
    with pytest.raises(ConfigError, match="notional within u64"):
        spec(
            tick_size=10**6,
            lot_size=10**9,
            max_price_ticks=MAX_PRICE_TICKS,
            max_size_lots=MAX_ORDER_LOTS,
        )


def test_default_max_size_is_lowered_so_the_largest_fill_fits_u64() -> None:
    # quote_per_tick_lot = 10**6 * 10**9 / 10**9 = 10**6; at 10**7 ticks the default 10**8
    # lots would be 10**21 quote units: more than u64, so the default is capped.
    s = spec(tick_size=10**6, lot_size=10**9)
    assert s.max_size_lots == U64_MAX // (10**6 * DEFAULT_MAX_PRICE_TICKS) < DEFAULT_MAX_SIZE_LOTS
    assert s.quote_per_tick_lot * s.max_price_ticks * s.max_size_lots <= U64_MAX


def test_explicit_max_size_is_kept() -> None:
    assert spec(max_size_lots=5).max_size_lots == 5


def test_invalid_max_price_ticks_is_named_in_the_error_with_default_size() -> None:
    with pytest.raises(ConfigError, match=r"expected max_price_ticks in 1\.\."):
        spec(max_price_ticks=0)
