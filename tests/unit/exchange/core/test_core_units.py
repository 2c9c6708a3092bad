"""Unit tests for exchange.core.units: precisions, range checks and named rounding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.core import units
from exchange.core.units import (
    BASE_PRECISION,
    I64_MAX,
    I64_MIN,
    PRICE_PRECISION,
    QUOTE_PRECISION,
    U64_MAX,
    UnitRangeError,
    check_i64,
    check_range,
    check_u64,
    div_ceil,
    div_floor,
    mul_div_ceil,
    mul_div_floor,
    quote_from_price_and_base,
    round_liability,
    round_payout,
)


def test_precisions_and_limits() -> None:
    assert PRICE_PRECISION == QUOTE_PRECISION == 10**6
    assert BASE_PRECISION == 10**9
    assert units.RATIO_PRECISION == 10**6
    assert units.FUNDING_RATE_PRECISION == 10**9
    assert (units.U8_MAX, units.U16_MAX, units.U32_MAX) == (255, 65535, 2**32 - 1)
    assert U64_MAX == 2**64 - 1
    assert (I64_MIN, I64_MAX) == (-(2**63), 2**63 - 1)
    assert units.NANOS_PER_SECOND == 10**9


def test_unit_range_error_is_a_value_error_with_code() -> None:
    assert issubclass(UnitRangeError, ValueError)
    assert UnitRangeError.code == "UNIT_RANGE"


@pytest.mark.parametrize("value", [0, 1, U64_MAX])
def test_check_u64_accepts_bounds(value: int) -> None:
    assert check_u64("x", value) == value


@pytest.mark.parametrize("value", [-1, U64_MAX + 1, True, 1.0, "1", None])
def test_check_u64_rejects(value: object) -> None:
    with pytest.raises(UnitRangeError, match=r"^amount: expected an int in 0\.\.\d+ \(u64\), got "):
        check_u64("amount", value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [I64_MIN, -1, 0, I64_MAX])
def test_check_i64_accepts_bounds(value: int) -> None:
    assert check_i64("x", value) == value


@pytest.mark.parametrize("value", [I64_MIN - 1, I64_MAX + 1, False, 0.0])
def test_check_i64_rejects(value: object) -> None:
    with pytest.raises(UnitRangeError, match=r"^pnl: expected an int in .* \(i64\), got "):
        check_i64("pnl", value)  # type: ignore[arg-type]


def test_check_range() -> None:
    assert check_range("r", 5, 5, 7) == 5
    assert check_range("r", 7, 5, 7) == 7
    for bad in (4, 8, True, 5.0):
        with pytest.raises(UnitRangeError, match=r"^r: expected an int in 5\.\.7, got "):
            check_range("r", bad, 5, 7)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "d", "floor", "ceil"),
    [
        (7, 2, 3, 4),
        (-7, 2, -4, -3),
        (6, 3, 2, 2),
        (-6, 3, -2, -2),
        (0, 5, 0, 0),
        (1, 10**9, 0, 1),
        (-1, 10**9, -1, 0),
    ],
)
def test_div_floor_and_ceil(n: int, d: int, floor: int, ceil: int) -> None:
    assert div_floor(n, d) == floor
    assert div_ceil(n, d) == ceil
    assert round_payout(n, d) == floor  # paid to a user: down
    assert round_liability(n, d) == ceil  # owed by a user: up


def test_mul_div_is_exact_for_big_ints() -> None:
    a, b, d = U64_MAX, U64_MAX, 3
    assert mul_div_floor(a, b, d) == (a * b) // d
    assert mul_div_ceil(a, b, d) == -((-(a * b)) // d)
    assert mul_div_floor(10, 3, 4) == 7
    assert mul_div_ceil(10, 3, 4) == 8
    assert mul_div_ceil(8, 3, 4) == 6 == mul_div_floor(8, 3, 4)


@settings(max_examples=200, derandomize=True, database=None)
@given(st.integers(-(10**30), 10**30), st.integers(1, 10**12))
def test_rounding_brackets_the_true_quotient(n: int, d: int) -> None:
    lo, hi = div_floor(n, d), div_ceil(n, d)
    assert lo * d <= n <= hi * d
    assert hi - lo == (0 if n % d == 0 else 1)
    assert round_liability(n, d) >= round_payout(n, d)


def test_quote_from_price_and_base() -> None:
    # 150.25 quote per base * 2 base = 300.5 quote
    assert quote_from_price_and_base(150_250_000, 2 * BASE_PRECISION) == 300_500_000
    assert quote_from_price_and_base(1, BASE_PRECISION) == 1
    assert quote_from_price_and_base(0, 5) == 0
    with pytest.raises(UnitRangeError, match=r"^quote: expected price\*base divisible by"):
        quote_from_price_and_base(1, 1)
