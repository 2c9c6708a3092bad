"""Liquidation rules, properties: value conserved to the unit, the insurance fund never
negative, the target reached whenever the account is solvent, nothing at an invalid oracle,
and a total, deterministic ADL order."""

from __future__ import annotations

from hypothesis import event, given, settings
from hypothesis import strategies as st

from exchange.core.units import U64_MAX
from liquidation.rules import (
    AdlCandidate,
    Eligibility,
    Health,
    LiquidationConfig,
    LiquidationPlan,
    OracleReading,
    adl_queue,
    adl_score,
    apply_plan,
    plan_liquidation,
)
from perp.ledger import Ledger
from perp.math.margin import MarginSchedule, MarginTier
from perp.position import Position

USD = 1_000_000
BASE = 1_000_000_000
LOT = 10_000_000  # 0.01 unit
TIERED = MarginSchedule(
    tiers=(
        MarginTier(up_to_notional_quote=50_000 * USD, initial_ppm=50_000, maintenance_ppm=25_000),
        MarginTier(up_to_notional_quote=U64_MAX, initial_ppm=200_000, maintenance_ppm=100_000),
    )
)
LIQUIDATOR = 99

CONFIGS = st.builds(
    lambda fee, share, buffer: LiquidationConfig(
        liquidation_fee_ppm=fee, liquidator_share_ppm=share, buffer_ppm=buffer
    ),
    st.integers(0, 20_000),
    st.integers(0, 1_000_000),
    st.integers(0, 30_000),
)
POSITION = st.tuples(
    st.one_of(st.integers(-2_000, -1), st.integers(1, 2_000)),  # lots
    st.integers(1 * USD, 5_000 * USD),  # entry price
    st.integers(-5, 5),  # counterparties' entry offset, percent of entry
)
ACCOUNT = st.fixed_dictionaries(
    {
        "collateral": st.integers(-1_000 * USD, 20_000 * USD),
        "positions": st.dictionaries(st.integers(0, 2), POSITION, min_size=1, max_size=3),
        "moves": st.lists(st.integers(-600_000, 600_000), min_size=3, max_size=3),  # ppm
        "fund": st.integers(0, 5_000 * USD),
        "splits": st.lists(st.integers(1, 4), min_size=3, max_size=3),
    }
)


def build(account: dict) -> tuple[Ledger, dict[int, int], dict[int, list[AdlCandidate]]]:
    """Account 1 and, per market, 1..4 counterparties holding exactly the opposite base."""
    ledger = Ledger()
    ledger.collateral[1] = account["collateral"]
    ledger.insurance_fund_quote = account["fund"]
    prices: dict[int, int] = {}
    next_id = 10
    for market_id, (lots, entry_price, offset) in account["positions"].items():
        base = lots * LOT
        ledger.positions[(1, market_id)] = Position(base, -base * entry_price // BASE)
        prices[market_id] = max(1, entry_price * (1_000_000 + account["moves"][market_id]) // 10**6)
        parts = account["splits"][market_id]
        left = abs(lots)
        for i in range(parts):
            share = left if i == parts - 1 else left // (parts - i)
            left -= share
            if not share:
                continue
            cp_base = (-1 if base > 0 else 1) * share * LOT
            cp_entry_price = entry_price * (100 + offset * (i + 1)) // 100
            ledger.positions[(next_id, market_id)] = Position(
                cp_base, -cp_base * cp_entry_price // BASE
            )
            ledger.collateral[next_id] = 50_000 * USD
            next_id += 1
    candidates: dict[int, list[AdlCandidate]] = {}
    for (acct, market_id), pos in ledger.positions.items():
        if acct != 1:
            equity = ledger.equity(acct, prices)
            candidates.setdefault(market_id, []).append(
                AdlCandidate(acct, pos.base, pos.entry_quote, equity)
            )
    return ledger, prices, candidates


def run_plan(
    ledger: Ledger,
    prices: dict[int, int],
    candidates: dict[int, list[AdlCandidate]],
    config: LiquidationConfig,
    valid: bool = True,
) -> LiquidationPlan | Eligibility:
    positions = {m: p for (a, m), p in ledger.positions.items() if a == 1}
    return plan_liquidation(
        account_id=1,
        collateral_quote=ledger.collateral[1],
        positions=positions,
        open_order_markets=positions.keys(),
        oracles={m: OracleReading(p, valid) for m, p in prices.items()},
        schedules={m: TIERED for m in prices},
        lot_sizes={m: LOT for m in prices},
        config=config,
        insurance_fund_quote=ledger.insurance_fund_quote,
        adl_candidates=candidates,
    )


@settings(derandomize=True, max_examples=400, deadline=None)
@given(ACCOUNT, CONFIGS)
def test_liquidation_conserves_value_and_reaches_the_target(
    account: dict, config: LiquidationConfig
) -> None:
    # Arrange
    ledger, prices, candidates = build(account)
    gap_before = ledger.conservation_gap()
    # Act
    result = run_plan(ledger, prices, candidates, config)
    if not isinstance(result, LiquidationPlan):
        event("healthy")
        assert result.health == Health.HEALTHY
        assert result.equity_quote >= result.maintenance_quote
        return
    event("adl" if result.adl_fills else "bankrupt" if result.bankrupt else "partial")
    apply_plan(ledger, result, liquidator_account_id=LIQUIDATOR)
    # Assert: every unit accounted for, the fund never negative, the plan's view is the ledger's
    assert ledger.conservation_gap() == gap_before
    assert ledger.insurance_fund_quote >= 0
    assert ledger.collateral[1] == result.collateral_after_quote
    assert ledger.equity(1, prices) == result.equity_after_quote
    fees = sum(t.fee_quote for t in result.transfers)
    assert fees == sum(t.liquidator_fee_quote + t.insurance_fee_quote for t in result.transfers)
    for t in result.transfers:
        assert t.liquidator_fee_quote == t.fee_quote * config.liquidator_share_ppm // 10**6
    if result.bankrupt:
        assert not any(ledger.position(1, m).base for m in prices)
        if result.uncovered_quote:  # only a short whose bankruptcy price would go below 0
            assert result.collateral_after_quote == -result.uncovered_quote
            assert ledger.insurance_fund_quote == 0
        else:
            assert result.collateral_after_quote >= 0
    else:
        assert result.equity_after_quote >= result.target_after_quote


@settings(derandomize=True, max_examples=150, deadline=None)
@given(ACCOUNT, CONFIGS)
def test_never_liquidates_at_an_invalid_oracle(account: dict, config: LiquidationConfig) -> None:
    ledger, prices, candidates = build(account)
    result = run_plan(ledger, prices, candidates, config, valid=False)
    assert result == Eligibility(Health.ORACLE_INVALID, 0, 0, tuple(sorted(prices)))


CANDIDATE = st.builds(
    AdlCandidate,
    st.integers(0, 50),
    st.one_of(st.integers(-(10**12), -1), st.integers(1, 10**12)),
    st.integers(-(10**12), 10**12),
    st.integers(-(10**9), 10**10),
)


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    st.lists(CANDIDATE, max_size=20, unique_by=lambda c: c.account_id),
    st.integers(1, 10**11),
    st.sampled_from([1, -1]),
    st.randoms(use_true_random=False),
)
def test_adl_order_is_total_and_deterministic(
    pool: list[AdlCandidate], price: int, side: int, rng: object
) -> None:
    queue = adl_queue(pool, opposite_of_base=side, oracle_price=price)
    shuffled = list(pool)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    assert adl_queue(shuffled, opposite_of_base=side, oracle_price=price) == queue
    assert {c.account_id for c in queue} == {
        c.account_id for c in pool if (c.base > 0) != (side > 0)
    }
    keys = [
        (-adl_score(c.base, c.entry_quote, price, c.account_equity_quote), c.account_id)
        for c in queue
    ]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
