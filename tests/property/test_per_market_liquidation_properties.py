"""Per-market liquidation parameters, properties of ``liquidation.rules.plan_liquidation``:
with a config per market, every slice pays its own market's fee (capped at the equity left)
and share, the target is ``maintenance + ceil(sum(notional_m x buffer_m) / 10^6)``, a
partial slice is the smallest whole number of lots meeting it (checked with trial transfers
on copies), and a mapping of equal configs plans exactly what the single config plans."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.core.units import BASE_PRECISION, RATIO_PRECISION, U64_MAX
from liquidation import rules
from liquidation.rules import LiquidationConfig, LiquidationPlan, OracleReading, plan_liquidation
from perp.math.margin import MarginKind, MarginSchedule, MarginTier, requirement_quote
from perp.position import Position

USD = 1_000_000
LOT = BASE_PRECISION // 10


@st.composite
def market(draw: st.DrawFn) -> tuple[int, int, int, MarginSchedule, LiquidationConfig]:
    """(base, entry price, oracle price, schedule, config) of one held market."""
    maintenance = draw(st.integers(10_000, 150_000))
    schedule = MarginSchedule(
        tiers=(
            MarginTier(
                up_to_notional_quote=draw(st.integers(10_000, 10**7)) * USD,
                initial_ppm=2 * maintenance,
                maintenance_ppm=maintenance,
            ),
            MarginTier(
                up_to_notional_quote=U64_MAX,
                initial_ppm=4 * maintenance,
                maintenance_ppm=2 * maintenance,
            ),
        )
    )
    config = LiquidationConfig(
        liquidation_fee_ppm=draw(st.integers(0, min(maintenance - 1, 100_000))),
        liquidator_share_ppm=draw(st.integers(0, RATIO_PRECISION)),
        buffer_ppm=draw(st.integers(0, 100_000)),
    )
    base = draw(st.integers(1, 400)) * LOT * draw(st.sampled_from((1, -1)))
    entry = draw(st.integers(50, 5_000)) * USD
    oracle = entry * draw(st.integers(800, 1_200)) // 1_000
    return base, entry, oracle, schedule, config


CASE = st.tuples(
    st.lists(market(), min_size=1, max_size=3),
    st.integers(0, 1_000),  # collateral: per mille of the maintenance requirement at entry
)


def inputs(case: tuple) -> dict:
    markets, collateral_per_mille = case
    positions, oracles, schedules, configs = {}, {}, {}, {}
    maintenance = 0
    for m, (base, entry, oracle, schedule, config) in enumerate(markets):
        positions[m] = Position(base, -base * entry // BASE_PRECISION)
        oracles[m] = OracleReading(oracle, True)
        schedules[m], configs[m] = schedule, config
        notional = abs(base) * entry // BASE_PRECISION
        maintenance += requirement_quote(notional, schedule, MarginKind.MAINTENANCE)
    return {
        "account_id": 1,
        "collateral_quote": maintenance * collateral_per_mille // 1_000,
        "positions": positions,
        "open_order_markets": (),
        "oracles": oracles,
        "schedules": schedules,
        "lot_sizes": dict.fromkeys(positions, LOT),
        "config": configs,
        "insurance_fund_quote": 10**15,
        "adl_candidates": {},
    }


def margin_after(args: dict, transfers: list[tuple[int, int]]) -> tuple[int, int]:
    """(equity, target) after booking ``(market, close_base)`` slices on copies."""
    work = dict(args["positions"])
    prices = {m: r.price for m, r in args["oracles"].items()}
    collateral = args["collateral_quote"]
    for m, close in transfers:
        collateral, _ = rules._transfer(
            collateral, work, m, close, prices[m], prices, args["schedules"],
            args["config"][m], True,
        )  # fmt: skip
    buffers = {m: c.buffer_ppm for m, c in args["config"].items()}
    equity, _, target = rules._account_margin(collateral, work, prices, args["schedules"], buffers)
    return equity, target


@settings(derandomize=True, max_examples=300, deadline=None)
@given(CASE)
def test_each_market_pays_its_own_fee_and_share_and_slices_are_smallest(case: tuple) -> None:
    # Arrange
    args = inputs(case)
    # Act
    plan = plan_liquidation(**args)
    # Assert
    if not isinstance(plan, LiquidationPlan) or plan.bankrupt:
        return
    done: list[tuple[int, int]] = []
    for t in plan.transfers:
        config = args["config"][t.market_id]
        close = abs(t.base_delta)
        notional = -(-close * t.price // BASE_PRECISION)
        assert t.fee_quote <= -(-notional * config.liquidation_fee_ppm // RATIO_PRECISION)
        assert t.liquidator_fee_quote == (
            t.fee_quote * config.liquidator_share_ppm // RATIO_PRECISION
        )
        assert t.insurance_fee_quote == t.fee_quote - t.liquidator_fee_quote
        size = abs(args["positions"][t.market_id].base)
        equity, target = margin_after(args, [*done, (t.market_id, close)])
        if close < size:  # partial: meets the target, one lot fewer does not
            assert equity >= target
            if close > LOT:
                short = margin_after(args, [*done, (t.market_id, close - LOT)])
                assert short[0] < short[1]
        done.append((t.market_id, close))
    equity, target = margin_after(args, done)
    assert (plan.equity_after_quote, plan.target_after_quote) == (equity, target)


@settings(derandomize=True, max_examples=150, deadline=None)
@given(CASE)
def test_a_mapping_of_one_config_plans_what_the_single_config_plans(case: tuple) -> None:
    # Arrange: every market gets the first market's config
    args = inputs(case)
    single = args["config"][0]
    args["config"] = {
        m: single
        for m in args["positions"]
        if args["schedules"][m].tiers[0].maintenance_ppm > single.liquidation_fee_ppm
    }
    if len(args["config"]) != len(args["positions"]):
        return  # a market whose maintenance does not cover that fee
    # Act
    by_market = plan_liquidation(**args)
    args["config"] = single
    venue_wide = plan_liquidation(**args)
    # Assert
    assert by_market == venue_wide
