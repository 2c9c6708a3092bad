"""The on-chain keeper's pure decisions: oracle readings under a Market's guards,
``chain_candidates`` (the program's checks, in its order) and ``KeeperPlan``'s on-chain
choices and API probing. (Agreement with the program itself: tests/integration/
test_keeper_onchain.py.)"""

from __future__ import annotations

import pytest

from exchange.core.units import BASE_PRECISION, U64_MAX
from exchange.core.units import NANOS_PER_SECOND as S
from liquidation.keeper import (
    ChainCandidate,
    ChainMarket,
    ChainPosition,
    ChainUser,
    KeeperPlan,
    chain_candidates,
    chain_limits,
    chain_oracle_readings,
)
from liquidation.rules import LiquidationConfig, OracleReading
from oracle_feeds.price import OraclePrice, OracleSource
from perp.math.funding import SETTLEMENT_DENOMINATOR
from perp.math.margin import MarginSchedule, MarginTier

USD = 1_000_000
NOW_SLOT, NOW_S = 1_000, 1_767_225_600
SIZE = 95 * BASE_PRECISION // 10  # 9.5 base
ENTRY = -950 * USD  # bought at 100
COLLATERAL = 99_572_500  # 100 USD less a 4.5 bp taker fee: maintenance met down to ~94.23


def market(index: int = 0, *, cumulative_funding: int = 0) -> ChainMarket:
    return ChainMarket(
        market_index=index,
        oracle=bytes([index + 1]) * 32,
        lot_size=BASE_PRECISION // 10,
        schedule=MarginSchedule(
            tiers=(
                MarginTier(
                    up_to_notional_quote=U64_MAX, initial_ppm=100_000, maintenance_ppm=50_000
                ),
            )
        ),
        liquidation=LiquidationConfig(
            liquidation_fee_ppm=25_000, liquidator_share_ppm=500_000, buffer_ppm=10_000
        ),
        cumulative_funding=cumulative_funding,
        oracle_limits=chain_limits(max_age_slots=50, max_age_seconds=60, max_confidence_ppm=20_000),
    )


def price(
    usd: float, *, slot: int = NOW_SLOT, publish_s: int = NOW_S, conf: int = 10_000,
    verified: bool = True,
) -> OraclePrice:  # fmt: skip
    return OraclePrice.from_raw(
        source=OracleSource.PYTH_PULL, mantissa=round(usd * USD), exponent=-6, confidence=conf,
        confidence_exponent=-6, slot=slot, publish_time_s=publish_s, status_ok=verified,
    )  # fmt: skip


def user(tag: int, collateral: int, *positions: ChainPosition) -> ChainUser:
    return ChainUser(bytes([tag]) * 32, bytes([100 + tag]) * 32, collateral, positions)


VICTIM = user(1, COLLATERAL, ChainPosition(0, SIZE, ENTRY, 0, 0))
KEEPER = user(2, 10_000 * USD)


def readings(usd: float, *indices: int) -> dict[int, OracleReading]:
    return {i: OracleReading(round(usd * USD), True) for i in indices or (0,)}


# ------------------------------------------------------------------ oracle readings


@pytest.mark.parametrize(
    ("reading", "valid"),
    [
        (price(94), True),
        (price(94, slot=NOW_SLOT - 50), True),  # exactly the age limit: the program accepts
        (price(94, slot=NOW_SLOT - 51), False),  # OracleStaleSlots
        (price(94, publish_s=NOW_S - 61), False),  # OracleStaleSeconds
        (price(94, conf=94 * 20_000 + 1), False),  # OracleConfidenceTooWide
        (price(94, verified=False), False),  # OracleNotVerified
    ],
)
def test_oracles_are_judged_with_the_markets_guards(reading: OraclePrice, valid: bool) -> None:
    # Act
    out = chain_oracle_readings({0: market()}, {0: reading}, now_slot=NOW_SLOT, now_unix_s=NOW_S)
    # Assert
    assert out == {0: OracleReading(94 * USD, valid)}


def test_an_oracle_that_did_not_parse_gives_no_reading() -> None:
    out = chain_oracle_readings({0: market()}, {0: None}, now_slot=NOW_SLOT, now_unix_s=NOW_S)
    assert out == {}


# ------------------------------------------------------------------ candidates


def test_below_maintenance_is_a_candidate_with_the_plans_fee_share() -> None:
    # Act
    screen = chain_candidates([VICTIM, KEEPER], {0: market()}, readings(94),
                              liquidator=KEEPER, insurance_fund_quote=0)  # fmt: skip
    # Assert
    [c] = screen.candidates
    assert (c.user, c.owner, c.market_indices, c.num_slices) == (
        VICTIM.address, VICTIM.owner, (0,), 1,
    )  # fmt: skip
    # equity 99.5725 - 9.5 x 6 = 42.5725; maintenance 5 % of 893 = 44.65 (as the program logged)
    assert (c.equity_quote, c.maintenance_quote) == (42_572_500, 44_650_000)
    assert c.liquidator_fee_quote == 3_995_000 and screen.skipped == {}


def test_healthy_accounts_and_the_liquidators_own_are_not_candidates() -> None:
    poor_self = user(2, 1 * USD, ChainPosition(0, SIZE, ENTRY, 0, 0))  # liquidatable, but itself
    screen = chain_candidates([VICTIM, poor_self], {0: market()}, readings(99),
                              liquidator=poor_self, insurance_fund_quote=0)  # fmt: skip
    assert screen.candidates == [] and screen.skipped == {}


def test_a_bankrupt_account_is_left_to_the_engine() -> None:
    screen = chain_candidates([VICTIM], {0: market()}, readings(50), liquidator=KEEPER,
                              insurance_fund_quote=10**12)  # fmt: skip
    assert screen.candidates == [] and screen.skipped == {"bankrupt": 1}


def test_never_at_an_invalid_oracle_of_any_market_either_user_holds() -> None:
    # Arrange: the victim's market is fine, but the keeper holds market 1 whose oracle is stale
    keeper = user(2, 10_000 * USD, ChainPosition(1, BASE_PRECISION, -90 * USD, 0, 0))
    oracles = {0: OracleReading(94 * USD, True), 1: OracleReading(90 * USD, False)}
    # Act
    screen = chain_candidates([VICTIM, keeper], {0: market(0), 1: market(1)}, oracles,
                              liquidator=keeper, insurance_fund_quote=0)  # fmt: skip
    # Assert
    assert screen.candidates == [] and screen.skipped == {"oracle_invalid": 1}
    assert screen.invalid_oracles == (1,)


def test_funding_is_settled_to_the_market_index_first() -> None:
    # Arrange: healthy at 94.5 as stored, but 4 USD of funding is owed since the snapshot
    index_move = 4 * USD * SETTLEMENT_DENOMINATOR // SIZE
    markets = {0: market(cumulative_funding=index_move)}
    # Act
    unsettled = chain_candidates([VICTIM], {0: market()}, readings(94.5), liquidator=KEEPER,
                                 insurance_fund_quote=0)  # fmt: skip
    settled = chain_candidates([VICTIM], markets, readings(94.5), liquidator=KEEPER,
                               insurance_fund_quote=0)  # fmt: skip
    # Assert
    assert unsettled.candidates == []
    [c] = settled.candidates
    assert c.equity_quote == COLLATERAL - 4 * USD + (SIZE * 94_500_000) // BASE_PRECISION + ENTRY


def test_a_liquidator_that_would_fall_below_initial_margin_does_not_try() -> None:
    poor = user(2, 1 * USD)
    screen = chain_candidates([VICTIM], {0: market()}, readings(94), liquidator=poor,
                              insurance_fund_quote=0)  # fmt: skip
    assert screen.candidates == [] and screen.skipped == {"liquidator_margin": 1}


def test_a_liquidator_without_a_free_position_slot_does_not_try() -> None:
    # Arrange: the keeper holds 8 other markets (every slot), tiny and well margined
    markets = {i: market(i) for i in range(9)}
    full = user(2, 10_000 * USD, *(ChainPosition(i, BASE_PRECISION // 10, -10 * USD, 0, 0)
                                   for i in range(1, 9)))  # fmt: skip
    # Act
    screen = chain_candidates([VICTIM], markets, readings(94, *range(9)), liquidator=full,
                              insurance_fund_quote=0)  # fmt: skip
    # Assert
    assert screen.candidates == [] and screen.skipped == {"liquidator_slots": 1}


def test_a_user_in_a_market_the_keeper_cannot_read_is_passed_over() -> None:
    stray = user(3, COLLATERAL, ChainPosition(7, SIZE, ENTRY, 0, 0))
    screen = chain_candidates([stray], {0: market()}, readings(94), liquidator=KEEPER,
                              insurance_fund_quote=0)  # fmt: skip
    assert screen.candidates == [] and screen.skipped == {"unknown_market": 1}


# ------------------------------------------------------------------ plan


def _chain(tag: int, equity: int, maintenance: int) -> ChainCandidate:
    return ChainCandidate(bytes([tag]) * 32, bytes([tag]) * 32, equity, maintenance, (0,), 1, 1)


def test_onchain_targets_largest_shortfall_first_not_retried_within_the_window() -> None:
    plan = KeeperPlan(max_per_round=2, retry_ns=S)
    found = [_chain(1, 95, 100), _chain(2, 50, 100), _chain(3, 80, 100)]

    first = plan.choose_onchain(found, 10 * S)
    inside = plan.choose_onchain(found, 10 * S + S // 2)
    after = plan.choose_onchain(found, 12 * S)

    assert [c.user[0] for c in first] == [2, 3]
    assert [c.user[0] for c in inside] == [1]
    assert [c.user[0] for c in after] == [2, 3]


def test_an_unreachable_api_is_probed_again_with_backoff() -> None:
    plan = KeeperPlan(backoff_min_ns=S // 10, backoff_max_ns=S)
    assert plan.api_due(0)

    delays = [plan.on_api_down(0) for _ in range(6)]
    due_early, due_later = plan.api_due(S - 1), plan.api_due(S)
    plan.on_api_up()

    assert delays == [S // 10, S // 5, 2 * S // 5, 4 * S // 5, S, S]
    assert (due_early, due_later, plan.api_due(0)) == (False, True, True)
