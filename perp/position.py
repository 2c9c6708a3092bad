"""Positions: how fills and funding change one account's position in one market.

Units: ``base`` at ``BASE_PRECISION`` (signed, long > 0); money at ``QUOTE_PRECISION``.

A position keeps only the cost basis of its open base, ``entry_quote`` (the signed quote it
cost: negative for a long). When a fill closes base, the matching share of the basis is
released and, together with the closing part of the fill's quote, realised into the account's
collateral. The shares are split with truncation toward zero and the remainders stay where
they were, so the identity ``entry_quote' + realised = entry_quote + quote_delta`` holds
exactly: no unit is created or lost. See ``docs/PROTOCOL.md`` section "Positions".
"""

from __future__ import annotations

from typing import NamedTuple

from perp.math.funding import settle


class Position(NamedTuple):
    base: int = 0  # BASE_PRECISION, signed
    entry_quote: int = 0  # QUOTE_PRECISION, signed cost basis of the open base
    realized_pnl: int = 0  # QUOTE_PRECISION, cumulative (a statistic: the cash is collateral)
    funding_snapshot: int = 0  # cumulative funding index at the last settlement
    # [0, SETTLEMENT_DENOMINATOR): funding paid beyond the exact amounts so far (a numerator);
    # it makes settlement path-independent (perp.math.funding) and goes to the market's
    # surplus when the position closes
    funding_carry_numerator: int = 0


class FillResult(NamedTuple):
    position: Position
    realized_quote: int  # moves into collateral (may be negative)


def _trunc_mul_div(a: int, b: int, d: int) -> int:
    """``trunc(a x b / d)`` toward zero, for ``d > 0``."""
    q = abs(a * b) // d
    return q if (a >= 0) == (b >= 0) else -q


def apply_fill(position: Position, base_delta: int, quote_delta: int) -> FillResult:
    """The position after a fill of ``base_delta`` (+ bought) for ``quote_delta`` (the signed
    quote flow: negative when paying). Funding must be settled before (``settle_funding``)."""
    if base_delta == 0:
        raise ValueError("base_delta: expected a non-zero fill, got 0")
    base, entry = position.base, position.entry_quote
    if base == 0 or (base > 0) == (base_delta > 0):  # opening or increasing
        return FillResult(
            position._replace(base=base + base_delta, entry_quote=entry + quote_delta), 0
        )
    closed = min(abs(base_delta), abs(base))
    released = _trunc_mul_div(entry, closed, abs(base))  # share of the basis now closed
    closing_quote = _trunc_mul_div(quote_delta, closed, abs(base_delta))
    realized = released + closing_quote
    new_entry = entry - released + (quote_delta - closing_quote)  # the rest opens the flip
    return FillResult(
        position._replace(
            base=base + base_delta,
            entry_quote=new_entry,
            realized_pnl=position.realized_pnl + realized,
        ),
        realized,
    )


class FundingResult(NamedTuple):
    position: Position
    payment_quote: int  # > 0 the account pays, < 0 it receives


def settle_funding(position: Position, cumulative_funding: int) -> FundingResult:
    """Settle funding from the position's snapshot to ``cumulative_funding`` (the market's
    index now, or the index a booked fact happened at) and move the snapshot there; the
    rounding stays in the position's carry."""
    s = settle(
        position.base,
        position.funding_snapshot,
        cumulative_funding,
        position.funding_carry_numerator,
    )
    return FundingResult(
        position._replace(
            funding_snapshot=cumulative_funding, funding_carry_numerator=s.carry_numerator
        ),
        s.payment_quote,
    )
