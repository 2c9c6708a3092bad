"""Fixed-point units: the one place that names every precision and rounding rule.

All money in perpdex is an ``int``. A field's unit is written in its name or docstring:

* ``*_price`` / ``tick_size``      quote units per 1 whole base unit, at ``PRICE_PRECISION``
* ``*_quote`` / ``notional``        quote units (USDC micro-units) at ``QUOTE_PRECISION``
* ``*_base`` / ``lot_size``         base units at ``BASE_PRECISION``
* ``*_ticks`` / ``*_lots``          integer multiples of a market's tick / lot
* ``*_ppm``                         parts per million at ``RATIO_PRECISION``
* ``*_rate``                        a rate at ``FUNDING_RATE_PRECISION`` (1e9 == 100 %)
* ``cumulative_funding``            quote x ``FUNDING_RATE_PRECISION`` per base unit
* ``*_ns``                          nanoseconds since the Unix epoch

Rounding is explicit and named for who it favours: amounts a user owes (fees,
liabilities, margin requirements) round up, amounts paid to a user round down.
"""

from __future__ import annotations

from typing import Final

PRICE_PRECISION: Final = 10**6  # 1.000000 quote per base unit
QUOTE_PRECISION: Final = 10**6  # USDC has 6 decimals
BASE_PRECISION: Final = 10**9  # base assets at 9 decimals (as SOL lamports)
RATIO_PRECISION: Final = 10**6  # ppm: 1_000_000 == 100 %
FUNDING_RATE_PRECISION: Final = 10**9  # funding / premium rates: 1_000_000_000 == 100 %
# Cumulative funding per whole base unit is kept as rate x price with no division:
# quote units x FUNDING_RATE_PRECISION per base unit. Money appears only at settlement.

# Quote = price * base / BASE_PRECISION holds only because price and quote share a precision.
assert PRICE_PRECISION == QUOTE_PRECISION

U8_MAX: Final = 2**8 - 1
U16_MAX: Final = 2**16 - 1
U32_MAX: Final = 2**32 - 1
U64_MAX: Final = 2**64 - 1
I64_MIN: Final = -(2**63)
I64_MAX: Final = 2**63 - 1

NANOS_PER_SECOND: Final = 1_000_000_000


class UnitRangeError(ValueError):
    """A value does not fit the fixed-width field it is about to cross into."""

    code = "UNIT_RANGE"


def check_u64(name: str, value: int) -> int:
    """Return ``value`` if it fits an on-chain ``u64`` field, else raise ``UnitRangeError``."""
    if type(value) is not int or not 0 <= value <= U64_MAX:
        raise UnitRangeError(f"{name}: expected an int in 0..{U64_MAX} (u64), got {value!r}")
    return value


def check_i64(name: str, value: int) -> int:
    """Return ``value`` if it fits an on-chain ``i64`` field, else raise ``UnitRangeError``."""
    if type(value) is not int or not I64_MIN <= value <= I64_MAX:
        raise UnitRangeError(
            f"{name}: expected an int in {I64_MIN}..{I64_MAX} (i64), got {value!r}"
        )
    return value


def check_range(name: str, value: int, lo: int, hi: int) -> int:
    """Return ``value`` if ``lo <= value <= hi`` (and it is a plain int), else raise."""
    if type(value) is not int or not lo <= value <= hi:
        raise UnitRangeError(f"{name}: expected an int in {lo}..{hi}, got {value!r}")
    return value


def div_floor(numerator: int, denominator: int) -> int:
    """Exact integer division rounded toward negative infinity."""
    return numerator // denominator


def div_ceil(numerator: int, denominator: int) -> int:
    """Exact integer division rounded toward positive infinity."""
    return -((-numerator) // denominator)


def mul_div_floor(a: int, b: int, denominator: int) -> int:
    """``floor(a * b / denominator)`` without an intermediate float."""
    return (a * b) // denominator


def mul_div_ceil(a: int, b: int, denominator: int) -> int:
    """``ceil(a * b / denominator)`` without an intermediate float."""
    return -((-(a * b)) // denominator)


def round_liability(numerator: int, denominator: int) -> int:
    """What a user owes (fee, liability, margin requirement): rounds against the user (up)."""
    return -((-numerator) // denominator)


def round_payout(numerator: int, denominator: int) -> int:
    """What a user is paid: rounds down, so the venue never pays out a unit it does not hold."""
    return numerator // denominator


def quote_from_price_and_base(price: int, base: int) -> int:
    """Exact quote amount for ``base`` units at ``price``; raises if it is not a whole unit.

    Markets are specified so that one tick times one lot is a whole number of quote units
    (see ``MarketSpec``), so every fill's notional is exact and needs no rounding.
    """
    product = price * base
    if product % BASE_PRECISION:
        raise UnitRangeError(
            f"quote: expected price*base divisible by {BASE_PRECISION}, got {price}*{base}"
        )
    return product // BASE_PRECISION
