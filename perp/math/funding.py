"""Funding: premium, rate, cumulative index, and exactly zero-sum settlement.

Units (``exchange.core.units``): prices at ``PRICE_PRECISION``; rates at
``FUNDING_RATE_PRECISION`` (1e9 == 100 % per funding interval); base at ``BASE_PRECISION``;
money at ``QUOTE_PRECISION``. The cumulative funding index per market is kept as the exact
sum of ``rate x index_price`` (unit: quote x FUNDING_RATE_PRECISION per whole base unit), so
nothing rounds until an account settles.

Settlement of ``base`` between two index values owes ``x = base x delta`` over
``SETTLEMENT_DENOMINATOR`` quote units, positive when the account pays (longs pay a positive
rate). Each position carries what its earlier settlements paid beyond the exact amounts, a
numerator ``carry`` in ``[0, SETTLEMENT_DENOMINATOR)``; a settlement pays
``ceil((x - carry) / D)`` (a payer's amount rounds up, a receiver's down) and keeps the new
carry. Hence the total a position has paid after any sequence of settlements is
``ceil(total exact owed / D)``: independent of where the settlements happened (the engine and
the clearing program settle at different points and still agree to the unit). A position's
carry goes to its market's surplus when the position closes; whole units of the surplus go to
the insurance fund (:func:`sweep_surplus`). Because every base unit long is a base unit short,
the exact amounts sum to zero, so paid == received + carries + swept, to the unit.
See ``docs/PROTOCOL.md`` section "Funding".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from exchange.core.units import BASE_PRECISION, FUNDING_RATE_PRECISION

#: Divides ``base x index_delta`` into quote units (QUOTE_PRECISION).
SETTLEMENT_DENOMINATOR = BASE_PRECISION * FUNDING_RATE_PRECISION


class FundingError(ValueError):
    """An input to the funding maths is outside its domain."""

    code = "FUNDING_INPUT"


def _div_toward_zero(numerator: int, denominator: int) -> int:
    q = abs(numerator) // abs(denominator)
    return q if (numerator >= 0) == (denominator > 0) else -q


def premium_rate(impact_bid: int, impact_ask: int, index_price: int) -> int:
    """Premium of the book over the index, at ``FUNDING_RATE_PRECISION``.

    ``P = (max(0, impact_bid - index) - max(0, index - impact_ask)) / index`` (the
    Binance / Hyperliquid form), rounded toward zero so neither side gains from rounding.
    Prices at ``PRICE_PRECISION``; ``index_price > 0`` and ``impact_bid <= impact_ask``.
    """
    if index_price <= 0:
        raise FundingError(f"index_price: expected > 0, got {index_price}")
    if impact_bid > impact_ask:
        raise FundingError(f"impact prices: expected bid <= ask, got {impact_bid} > {impact_ask}")
    numerator = max(0, impact_bid - index_price) - max(0, index_price - impact_ask)
    return _div_toward_zero(numerator * FUNDING_RATE_PRECISION, index_price)


def average_premium(samples: Sequence[int]) -> int:
    """Mean of the interval's premium samples, rounded toward zero (0 with no samples)."""
    if not samples:
        return 0
    return _div_toward_zero(sum(samples), len(samples))


def funding_rate(
    average_premium_rate: int, *, interest_rate: int, interest_band: int, cap_rate: int
) -> int:
    """Rate for one interval: ``P + clamp(r - P, -band, +band)``, then clamped to ``+-cap``.

    All at ``FUNDING_RATE_PRECISION``; integer additions and clamps only, so exact.
    """
    if interest_band < 0 or cap_rate < 0:
        raise FundingError(f"band and cap: expected >= 0, got band {interest_band}, cap {cap_rate}")
    rate = average_premium_rate + min(
        max(interest_rate - average_premium_rate, -interest_band), interest_band
    )
    return min(max(rate, -cap_rate), cap_rate)


def index_delta(rate: int, index_price: int) -> int:
    """Growth of the cumulative funding index for one interval: ``rate x index_price``.

    Unit: quote x FUNDING_RATE_PRECISION per whole base unit. Exact (no division).
    """
    if index_price <= 0:
        raise FundingError(f"index_price: expected > 0, got {index_price}")
    return rate * index_price


class Settlement(NamedTuple):
    payment_quote: int  # QUOTE_PRECISION; > 0 the account pays, < 0 it receives
    carry_numerator: int  # [0, D): paid beyond the exact amount so far (the position keeps it)


def settle(base: int, index_snapshot: int, index_now: int, carry_numerator: int = 0) -> Settlement:
    """Funding owed by a position of ``base`` (signed, BASE_PRECISION) since its snapshot,
    given the position's ``carry_numerator`` (what it already paid beyond the exact amounts).

    ``payment = ceil((base x (now - snapshot) - carry) / D)``: a payer's amount rounds up, a
    receiver's down; the new carry ``payment x D - (x - carry)`` is in ``[0, D)``.
    """
    if not 0 <= carry_numerator < SETTLEMENT_DENOMINATOR:
        raise FundingError(
            f"carry_numerator: expected 0..{SETTLEMENT_DENOMINATOR - 1}, got {carry_numerator}"
        )
    numerator = base * (index_now - index_snapshot) - carry_numerator
    payment = -(-numerator // SETTLEMENT_DENOMINATOR)  # ceil: pays up, receives down
    return Settlement(payment, payment * SETTLEMENT_DENOMINATOR - numerator)


def sweep_surplus(surplus_numerator: int) -> tuple[int, int]:
    """Split an accumulated rounding surplus into whole quote units for the insurance fund
    and the fraction (numerator) that stays behind for the next sweep."""
    if surplus_numerator < 0:
        raise FundingError(f"surplus: expected >= 0, got {surplus_numerator}")
    return divmod(surplus_numerator, SETTLEMENT_DENOMINATOR)
