"""The sweeper's storage, range guards and screen, with small hand-made accounts."""

from __future__ import annotations

import numpy as np
import pytest

from exchange.core.units import U64_MAX
from liquidation.errors import LiquidationInputError, ScreenRangeError
from liquidation.sweeper import (
    LiquidateIntent,
    Sweeper,
    SweeperMarket,
    _tier_lines,
    quote_to_units,
)
from perp.math.margin import MarginSchedule, MarginTier
from perp.position import Position

USD = 1_000_000
BASE = 1_000_000_000
FLAT = MarginSchedule(
    tiers=(MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=100_000, maintenance_ppm=50_000),)
)
TWO_TIERS = MarginSchedule(
    tiers=(
        MarginTier(up_to_notional_quote=1_000 * USD, initial_ppm=100_000, maintenance_ppm=50_000),
        MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=200_000, maintenance_ppm=100_000),
    )
)
MARKET = SweeperMarket(schedule=FLAT, max_position_base=10**6 * BASE, max_price=10**6 * USD)


def priced(sweeper: Sweeper, *prices: int, valid: bool = True) -> Sweeper:
    for market_id, price in enumerate(prices):
        sweeper.update_market(
            market_id, oracle_price=price, valid_for_liquidation=valid, cumulative_funding=0
        )
    return sweeper


def test_quote_to_units_rounds_down() -> None:
    # one unit is 2^40 / 10^9 = 1,099.51 quote units
    assert [quote_to_units(x) for x in (0, 1_099, 1_100, -1)] == [0, 0, 1, -1]
    assert quote_to_units(10**18) == 10**27 // 2**40


def test_tier_lines_are_the_supporting_lines_of_the_brackets() -> None:
    # tier 2 line: 10 % x N - (10 % - 5 %) x 1,000 USD = 0.1 N - 50 USD
    (slope0, k0), (slope1, k1) = _tier_lines(TWO_TIERS)
    assert (slope0, k0) == (-(-50_000 * 2**20 // 10**6), 0)
    assert slope1 == -(-100_000 * 2**20 // 10**6)
    assert k1 == 50 * USD * 10**9 // 2**40


def test_a_position_crossing_maintenance_is_found_and_confirmed() -> None:
    # Arrange: long 10 @ 100 with 60 USD: at 94 equity 0 < 47; at 100 equity 60 >= 50
    sweeper = Sweeper(markets=[MARKET, MARKET])
    sweeper.set_collateral(0, 60 * USD)
    sweeper.set_position(0, 1, Position(10 * BASE, -1_000 * USD))
    sweeper.set_collateral(1, 1_000 * USD)
    # Act / Assert
    assert priced(sweeper, 50 * USD, 100 * USD).sweep() == []
    assert priced(sweeper, 50 * USD, 94 * USD).sweep() == [LiquidateIntent(0, 0, 47 * USD)]


def test_an_invalid_oracle_hides_the_account_from_the_screen() -> None:
    sweeper = Sweeper(markets=[MARKET])
    sweeper.set_collateral(0, 0)
    sweeper.set_position(0, 0, Position(10 * BASE, -1_000 * USD))
    priced(sweeper, 10 * USD, valid=False)
    assert sweeper.screen().tolist() == []
    assert sweeper.screen_python().tolist() == []
    assert sweeper.sweep() == []


def test_unsettled_funding_counts_in_the_screen_and_the_check() -> None:
    # Arrange: long 10 @ 100 with 60 USD at price 100 is healthy (60 >= 50) until it owes
    # 15 USD of funding: index +1.5 USD per unit = 1.5e6 x 1e9
    sweeper = Sweeper(markets=[MARKET])
    sweeper.set_collateral(0, 60 * USD)
    sweeper.set_position(0, 0, Position(10 * BASE, -1_000 * USD))
    sweeper.update_market(
        0, oracle_price=100 * USD, valid_for_liquidation=True, cumulative_funding=0
    )
    assert sweeper.sweep() == []
    # Act
    sweeper.update_market(
        0, oracle_price=100 * USD, valid_for_liquidation=True, cumulative_funding=15 * 10**14
    )
    # Assert
    assert sweeper.sweep() == [LiquidateIntent(0, 45 * USD, 50 * USD)]


def test_rows_grow_move_and_shrink_keeping_exact_values() -> None:
    sweeper = Sweeper(markets=[MARKET] * 4, row_capacity=1)
    sweeper.set_collateral(1, 5)
    for market_id in range(4):
        sweeper.set_position(
            1, market_id, Position(market_id + 1, -(market_id + 1), 0, 2**70 + market_id)
        )
    sweeper.set_position(0, 2, Position(-7, 7))
    sweeper.set_position(1, 1, Position())  # the hole takes the row's last slot
    assert sweeper.positions(1) == {
        0: Position(1, -1, 0, 2**70),
        3: Position(4, -4, 0, 2**70 + 3),
        2: Position(3, -3, 0, 2**70 + 2),
    }
    assert sweeper.positions(0) == {2: Position(-7, 7)}
    assert int(sweeper.row_cap[1]) == 4


def test_values_beyond_the_screen_make_the_account_exact_only() -> None:
    # Arrange: a position above the market's declared bound (2^28 x 2^B), and one whose
    # funding snapshot puts its constant beyond 2^57 screen units
    sweeper = Sweeper(markets=[MARKET])
    sweeper.set_position(0, 0, Position(2**62, -(2**62 // BASE)))  # bought at the price, 1e-6
    sweeper.set_collateral(0, 1_000 * USD)  # notional 4,612 USD: maintenance 231
    sweeper.set_position(1, 0, Position(BASE, -USD, 0, 10**36))
    sweeper.set_collateral(1, 0)  # it is owed funding back to index 0: healthy
    priced(sweeper, 1)
    # Assert: both are always candidates; the exact re-check clears them
    assert sweeper.screen().tolist() == [0, 1]
    assert sweeper.screen_python().tolist() == [0, 1]
    assert sweeper.sweep() == []
    sweeper.set_position(0, 0, Position())
    sweeper.set_position(1, 0, Position())
    assert sweeper.screen().tolist() == []


def test_a_price_beyond_the_screen_makes_the_market_exact_only() -> None:
    sweeper = Sweeper(markets=[MARKET])
    sweeper.set_collateral(0, 10**9 * USD)
    sweeper.set_position(0, 0, Position(BASE, -USD))
    priced(sweeper, 2**62)
    assert sweeper.screen().tolist() == [0]
    assert sweeper.sweep() == []


def test_bulk_load_equals_incremental_updates() -> None:
    # Arrange
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 4, 200)
    total = int(counts.sum())
    market = np.concatenate([rng.permutation(4)[:c] for c in counts]).astype(np.int64)
    base = rng.integers(-(10**13), 10**13, total)
    entry = rng.integers(-(10**12), 10**12, total)
    collateral = rng.integers(-(10**9), 10**11, 200)
    bulk = Sweeper(markets=[MARKET] * 4)
    one_by_one = Sweeper(markets=[MARKET] * 4)
    # Act
    bulk.bulk_load(
        collateral_quote=collateral,
        positions_per_account=counts,
        market_id=market,
        base=base,
        entry_quote=entry,
    )
    k = 0
    for account, count in enumerate(counts.tolist()):
        one_by_one.set_collateral(account, int(collateral[account]))
        for _ in range(count):
            one_by_one.set_position(account, int(market[k]), Position(int(base[k]), int(entry[k])))
            k += 1
    for sweeper in (bulk, one_by_one):
        priced(sweeper, 30 * USD, 7 * USD, 900 * USD, 2 * USD)
    # Assert
    assert np.array_equal(bulk.screen(), one_by_one.screen())
    assert bulk.sweep() == one_by_one.sweep()
    assert len(bulk.sweep()) > 0
    assert all(bulk.positions(a) == one_by_one.positions(a) for a in range(200))


def test_bad_inputs_are_refused_with_clear_errors() -> None:
    with pytest.raises(ScreenRangeError, match="max_position_base"):
        Sweeper(markets=[SweeperMarket(schedule=FLAT, max_position_base=2**70, max_price=2**40)])
    with pytest.raises(LiquidationInputError, match="markets"):
        Sweeper(markets=[MARKET] * 17)
    sweeper = Sweeper(markets=[MARKET])
    with pytest.raises(LiquidationInputError, match="market_id"):
        sweeper.set_position(0, 1, Position(1, -1))
    with pytest.raises(LiquidationInputError, match="i64"):
        sweeper.set_collateral(0, 2**63)
    with pytest.raises(LiquidationInputError, match="oracle_price"):
        sweeper.update_market(0, oracle_price=0, valid_for_liquidation=True, cumulative_funding=0)
