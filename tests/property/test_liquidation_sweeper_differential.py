"""The sweeper's compiled screen equals its pure-Python screen, never misses an account the
exact maths finds liquidatable (a shadow ledger, not the sweeper's arrays, is the truth),
and ``sweep`` returns exactly the liquidatable accounts, over random incremental updates."""

from __future__ import annotations

import numpy as np
from hypothesis import event, given, settings
from hypothesis import strategies as st

from exchange.core.units import I64_MAX, U64_MAX
from liquidation.rules import Health, OracleReading, check_eligibility
from liquidation.sweeper import LiquidateIntent, Sweeper, SweeperMarket
from perp.math.margin import MarginSchedule, MarginTier
from perp.position import Position, settle_funding

USD = 1_000_000
BASE = 1_000_000_000
SCHEDULES = (
    MarginSchedule(
        tiers=(
            MarginTier(
                up_to_notional_quote=100_000 * USD, initial_ppm=50_000, maintenance_ppm=25_000
            ),
            MarginTier(
                up_to_notional_quote=2_000_000 * USD, initial_ppm=100_000, maintenance_ppm=50_000
            ),
            MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=300_000, maintenance_ppm=150_000),
        )
    ),
    MarginSchedule(
        tiers=(
            MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=200_000, maintenance_ppm=100_000),
        )
    ),
)
MARKETS = [
    SweeperMarket(
        schedule=SCHEDULES[0], max_position_base=21_000_000 * BASE, max_price=10**6 * USD
    ),
    SweeperMarket(schedule=SCHEDULES[1], max_position_base=10**8 * BASE, max_price=1_000 * USD),
    SweeperMarket(schedule=SCHEDULES[0], max_position_base=1_000 * BASE, max_price=10**5 * USD),
]
N_ACCOUNTS = 12

MARKET = st.integers(0, len(MARKETS) - 1)
ACCOUNT = st.integers(0, N_ACCOUNTS - 1)
BIG_BASE = st.integers(-(2**63), I64_MAX)
SMALL_BASE = st.integers(-(10**13), 10**13)
STEP = st.one_of(
    st.tuples(
        st.just("collateral"),
        ACCOUNT,
        st.one_of(st.integers(-(10**10), 10**12), st.integers(-(2**63), I64_MAX)),
    ),
    st.tuples(
        st.just("position"),
        ACCOUNT,
        MARKET,
        st.one_of(st.just(0), SMALL_BASE, BIG_BASE),
        st.one_of(st.integers(-(10**13), 10**13), st.integers(-(2**63), I64_MAX)),
        st.one_of(st.just(0), st.integers(-(10**20), 10**20)),
    ),
    st.tuples(
        st.just("market"),
        MARKET,
        st.one_of(st.integers(1, 10**11), st.integers(1, 2**62)),
        st.booleans(),
        st.one_of(st.just(0), st.integers(-(10**20), 10**20)),
    ),
    # small moves (ppm of the price; funding in price units x 1e9) keep the cheap test in play
    st.tuples(
        st.just("nudge"), MARKET, st.integers(-20_000, 20_000), st.integers(-(10**15), 10**15)
    ),
    st.tuples(st.just("screen")),
)


def exact_liquidatable(
    collateral: dict[int, int],
    positions: dict[tuple[int, int], Position],
    oracles: dict[int, tuple[int, bool, int]],
) -> list[LiquidateIntent]:
    intents = []
    for account in range(N_ACCOUNTS):
        cash = collateral.get(account, 0)
        held = {}
        for (acct, market_id), pos in positions.items():
            if acct == account and pos.base:
                settled = settle_funding(pos, oracles.get(market_id, (0, False, 0))[2])
                cash -= settled.payment_quote
                held[market_id] = settled.position
        readings = {m: OracleReading(p, v) for m, (p, v, _) in oracles.items()}
        result = check_eligibility(
            cash, held, readings, dict(enumerate(m.schedule for m in MARKETS))
        )
        if result.health == Health.LIQUIDATABLE:
            intents.append(LiquidateIntent(account, result.equity_quote, result.maintenance_quote))
    return intents


@settings(derandomize=True, max_examples=300, deadline=None)
@given(st.lists(STEP, min_size=1, max_size=60))
def test_screen_is_identical_conservative_and_confirmed_exactly(steps: list[tuple]) -> None:
    # Arrange: the same updates go to the sweeper and to a shadow of plain dicts
    sweeper = Sweeper(markets=MARKETS, row_capacity=1)
    collateral: dict[int, int] = {}
    positions: dict[tuple[int, int], Position] = {}
    oracles: dict[int, tuple[int, bool, int]] = {}
    for account in range(N_ACCOUNTS):
        sweeper.set_collateral(account, 0)
    cheap_passes = 0
    # Act
    for step in steps:
        if step[0] == "collateral":
            _, account, amount = step
            sweeper.set_collateral(account, amount)
            collateral[account] = amount
        elif step[0] == "position":
            _, account, market_id, base, entry, snapshot = step
            position = Position(base, entry, 0, snapshot) if base else Position()
            sweeper.set_position(account, market_id, position)
            positions[(account, market_id)] = position
        elif step[0] == "market":
            _, market_id, price, valid, funding = step
            sweeper.update_market(
                market_id,
                oracle_price=price,
                valid_for_liquidation=valid,
                cumulative_funding=funding,
            )
            oracles[market_id] = (price, valid, funding)
        elif step[0] == "nudge" and step[1] in oracles:
            _, market_id, move_ppm, funding_move = step
            price, valid, funding = oracles[market_id]
            price = max(1, price + price * move_ppm // 10**6)
            funding += funding_move
            sweeper.update_market(
                market_id,
                oracle_price=price,
                valid_for_liquidation=valid,
                cumulative_funding=funding,
            )
            oracles[market_id] = (price, valid, funding)
        elif step[0] == "screen":  # the two-level screen equals the full one at every step
            assert np.array_equal(sweeper.screen(), sweeper.screen_full())
            cheap_passes += not sweeper.last_screen_rebased
    # Assert
    compiled = sweeper.screen()
    assert np.array_equal(compiled, sweeper.screen_full())
    assert np.array_equal(compiled, sweeper.screen_python())
    truth = exact_liquidatable(collateral, positions, oracles)
    assert {i.account_id for i in truth} <= set(compiled.tolist())
    event(
        f"liquidatable: {min(len(truth), 3)}+, extra candidates: {min(len(compiled) - len(truth), 3)}+"
    )
    event(f"exact-only accounts: {bool(sweeper.account_exact.any())}")
    event(f"exact-only markets: {bool((sweeper.market_state == 2).any())}")
    event(f"cheap-test passes: {min(cheap_passes, 3)}+")
    assert sweeper.sweep() == truth
    for (account, market_id), pos in positions.items():
        stored = sweeper.position(account, market_id)
        assert (stored.base, stored.entry_quote, stored.funding_snapshot) == (
            (pos.base, pos.entry_quote, pos.funding_snapshot) if pos.base else (0, 0, 0)
        )


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    st.dictionaries(
        MARKET,
        st.tuples(
            st.one_of(
                st.integers(-(10**13), -1), st.integers(1, 10**13), st.integers(-(2**56), 2**56)
            ),
            st.integers(-(10**15), 10**15),
            st.integers(-(10**20), 10**20),
        ),
        min_size=1,
        max_size=3,
    ),
    st.lists(
        st.tuples(st.integers(1, 10**12), st.integers(-(10**20), 10**20)), min_size=3, max_size=3
    ),
)
def test_one_unit_below_maintenance_is_always_a_candidate(
    held: dict[int, tuple[int, int, int]], prices: list[tuple[int, int]]
) -> None:
    # Arrange: collateral chosen so exact equity is maintenance - 1 (then maintenance)
    sweeper = Sweeper(markets=MARKETS)
    for market_id, (price, funding) in enumerate(prices):
        sweeper.update_market(
            market_id, oracle_price=price, valid_for_liquidation=True, cumulative_funding=funding
        )
    positions = {m: Position(base, entry, 0, snap) for m, (base, entry, snap) in held.items()}
    for market_id, position in positions.items():
        sweeper.set_position(0, market_id, position)
    oracles = {m: (p, True, f) for m, (p, f) in enumerate(prices)}
    shadow = {(0, m): p for m, p in positions.items()}
    zero = check_eligibility(
        -sum(settle_funding(p, prices[m][1]).payment_quote for m, p in positions.items()),
        {m: settle_funding(p, prices[m][1]).position for m, p in positions.items()},
        {m: OracleReading(p, True) for m, (p, _) in enumerate(prices)},
        dict(enumerate(m.schedule for m in MARKETS)),
    )
    collateral = zero.maintenance_quote - zero.equity_quote - 1
    if not -(2**63) <= collateral < I64_MAX:
        return
    # Act
    sweeper.set_collateral(0, collateral)
    below = sweeper.screen()
    below_truth = exact_liquidatable({0: collateral}, shadow, oracles)
    sweeper.set_collateral(0, collateral + 1)
    at = sweeper.sweep()
    # Assert
    assert below.tolist() == [0]
    assert [i.account_id for i in below_truth] == [0]
    assert below_truth[0].equity_quote == below_truth[0].maintenance_quote - 1
    assert at == []


@settings(derandomize=True, max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(ACCOUNT, MARKET, SMALL_BASE, st.integers(-(10**13), 10**13)),
        min_size=1,
        max_size=30,
    ),
    st.lists(st.integers(0, 10**11), min_size=N_ACCOUNTS, max_size=N_ACCOUNTS),
    st.lists(
        st.one_of(
            st.tuples(
                st.just("nudge"), MARKET, st.integers(-5_000, 5_000), st.integers(-(10**14), 10**14)
            ),
            st.tuples(st.just("collateral"), ACCOUNT, st.integers(-(10**10), 10**11)),
        ),
        min_size=10,
        max_size=40,
    ),
)
def test_the_cheap_test_never_changes_the_candidates(
    held: list[tuple[int, int, int, int]], cash: list[int], moves: list[tuple]
) -> None:
    # Arrange: accounts near their limits, one rebase
    sweeper = Sweeper(markets=MARKETS)
    prices = [60_000 * USD, 150 * USD, 3 * USD]
    for market_id, price in enumerate(prices):
        sweeper.update_market(
            market_id, oracle_price=price, valid_for_liquidation=True, cumulative_funding=0
        )
    for account, amount in enumerate(cash):
        sweeper.set_collateral(account, amount)
    for account, market_id, base, entry in held:
        sweeper.set_position(account, market_id, Position(base, entry))
    sweeper.screen()
    funding = [0, 0, 0]
    cheap = skipped = 0
    # Act / Assert: after every move, the two-level screen equals the full screen
    for move in moves:
        if move[0] == "nudge":
            _, market_id, move_ppm, funding_move = move
            prices[market_id] = max(1, prices[market_id] + prices[market_id] * move_ppm // 10**6)
            funding[market_id] += funding_move
            sweeper.update_market(
                market_id,
                oracle_price=prices[market_id],
                valid_for_liquidation=True,
                cumulative_funding=funding[market_id],
            )
        else:
            sweeper.set_collateral(move[1], move[2])
        assert np.array_equal(sweeper.screen(), sweeper.screen_full())
        if not sweeper.last_screen_rebased:
            cheap += 1
            skipped += sweeper.n_accounts - sweeper.last_screen_checked
    assert np.array_equal(sweeper.screen(), sweeper.screen_python())
    event(f"cheap-test passes: {min(cheap // 10, 3) * 10}+")
    event(f"accounts cleared by the cheap test: {min(skipped // 50, 3) * 50}+")
