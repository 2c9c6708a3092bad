"""Position arithmetic, worked by hand."""

from __future__ import annotations

import pytest

from perp.position import Position, apply_fill, settle_funding

USD = 1_000_000
BASE = 1_000_000_000


def test_opening_and_adding_accumulate_the_cost_basis() -> None:
    # buy 1 at 100, then 1 at 110: base 2, basis -210
    p = apply_fill(Position(), BASE, -100 * USD).position
    result = apply_fill(p, BASE, -110 * USD)
    assert result.position == Position(2 * BASE, -210 * USD, 0, 0)
    assert result.realized_quote == 0


def test_partial_close_releases_a_proportional_basis() -> None:
    # long 2 with basis -210 (avg 105); sell 1 at 120: released -105, closing quote +120
    p = Position(2 * BASE, -210 * USD, 0, 0)
    result = apply_fill(p, -BASE, 120 * USD)
    assert result.realized_quote == 15 * USD
    assert result.position == Position(BASE, -105 * USD, 15 * USD, 0)


def test_full_close_releases_the_whole_basis() -> None:
    p = Position(BASE, -105 * USD, 15 * USD, 0)
    result = apply_fill(p, -BASE, 100 * USD)
    assert result.realized_quote == -5 * USD
    assert result.position == Position(0, 0, 10 * USD, 0)


def test_flip_realises_the_closed_part_and_opens_the_rest() -> None:
    # long 1 (basis -100); sell 3 at 90 (+270): closing third +90, released -100 -> -10;
    # the remaining 2 short open with basis +180
    result = apply_fill(Position(BASE, -100 * USD, 0, 0), -3 * BASE, 270 * USD)
    assert result.realized_quote == -10 * USD
    assert result.position == Position(-2 * BASE, 180 * USD, -10 * USD, 0)


def test_rounding_keeps_basis_plus_realised_exact() -> None:
    # long 3 units of 1e-9 with basis -10 units: closing 1 releases trunc(-10/3) = -3
    p = Position(3, -10, 0, 0)
    result = apply_fill(p, -1, 4)
    assert result.realized_quote == -3 + 4
    assert result.position.entry_quote == -7
    assert result.position.entry_quote + result.realized_quote == p.entry_quote + 4


def test_zero_fill_is_refused() -> None:
    with pytest.raises(ValueError, match="expected a non-zero fill"):
        apply_fill(Position(), 0, 0)


def test_funding_settlement_moves_the_snapshot() -> None:
    # long 1 base unit, index up 1e13 (0.01 % of 100): pays 0.01 USDC
    result = settle_funding(Position(BASE, -100 * USD, 0, 0), 10**13)
    assert result.payment_quote == 10_000
    assert result.position.funding_snapshot == 10**13
