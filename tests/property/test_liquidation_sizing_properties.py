"""Liquidation sizing, properties: the closed-form sizing of ``liquidation.rules`` gives
exactly what the guided bisection with trial transfers gave (kept here as the reference),
for any lot, price, tier schedule, fee, buffer and other positions; and its closed form of
the account after a transfer agrees with booking the transfer on copies."""

from __future__ import annotations

from collections.abc import Mapping

from hypothesis import event, given, settings
from hypothesis import strategies as st

from exchange.core.units import U64_MAX
from liquidation import rules
from liquidation.rules import LiquidationConfig, drift_style_close_base
from perp.math.margin import MarginSchedule, MarginTier
from perp.position import Position

USD = 1_000_000


def reference_smallest_close(
    collateral: int,
    work: Mapping[int, Position],
    market_id: int,
    equity: int,
    target: int,
    prices: Mapping[int, int],
    schedules: Mapping[int, MarginSchedule],
    lot_sizes: Mapping[int, int],
    config: LiquidationConfig,
) -> int:
    """The search as it was before the closed form (commit 9932097), verbatim."""
    size = abs(work[market_id].base)
    lot = lot_sizes[market_id]
    max_lots = -(-size // lot)

    def meets(lots: int) -> bool:
        trial = dict(work)
        after, _ = rules._transfer(
            collateral, trial, market_id, min(lots * lot, size), prices[market_id],
            prices, schedules, config, True,
        )  # fmt: skip
        eq, _, tgt = rules._account_margin(after, trial, prices, schedules, config.buffer_ppm)
        return eq >= tgt

    estimate = drift_style_close_base(
        target - equity,
        prices[market_id],
        schedules[market_id].tiers[0].maintenance_ppm,
        config.buffer_ppm,
        config.liquidation_fee_ppm,
    )
    guess = min(max(1, -(-estimate // lot)), max_lots)
    if meets(guess):
        lo, hi = 1, guess
    elif guess < max_lots and meets(max_lots):
        lo, hi = guess + 1, max_lots
    else:
        return size
    while lo < hi:
        mid = (lo + hi) // 2
        if meets(mid):
            hi = mid
        else:
            lo = mid + 1
    return min(lo * lot, size)


@st.composite
def schedules(draw: st.DrawFn) -> MarginSchedule:
    count = draw(st.integers(1, 3))
    bounds = sorted(draw(st.sets(st.integers(1, 10**12), min_size=count - 1, max_size=count - 1)))
    ratios = st.one_of(st.integers(1, 300_000), st.integers(10_000, 100_000))
    maintenance = sorted(draw(st.lists(ratios, min_size=count, max_size=count)))
    tiers = []
    for i, mr in enumerate(maintenance):
        up_to = bounds[i] if i < count - 1 else U64_MAX
        tiers.append(
            MarginTier(up_to_notional_quote=up_to, initial_ppm=min(2 * mr, 1_000_000),
                       maintenance_ppm=mr)
        )  # fmt: skip
    return MarginSchedule(tiers=tuple(tiers))


@st.composite
def positions(draw: st.DrawFn) -> tuple[int, int, int, int, MarginSchedule]:
    """(base, entry price offset, oracle price, lot size, schedule): tiny lots and prices
    (sizes the closed form leaves to the bisection) as well as realistic ones."""
    lot = draw(st.one_of(st.integers(1, 1_000), st.integers(10**5, 10**11)))
    num_lots = draw(st.one_of(st.integers(1, 50), st.integers(1, 10**6)))
    base = num_lots * lot - draw(st.integers(0, lot - 1))
    sign = draw(st.sampled_from((1, -1)))
    price = draw(st.one_of(st.integers(1, 10**6), st.integers(10**6, 10**10)))
    offset = draw(st.integers(-price // 2, price // 2))
    return sign * base, offset, price, lot, draw(schedules())


CASE = st.fixed_dictionaries(
    {
        "positions": st.lists(positions(), min_size=1, max_size=3),
        # equity below the target by this much: quote units, or ppm of the notional
        "shortfall": st.one_of(
            st.tuples(st.just("quote"), st.integers(1, 1_000)),
            st.tuples(st.just("ppm"), st.integers(1, 200_000)),
        ),
        "fee": st.one_of(st.integers(0, 100_000), st.integers(0, 20_000)),
        "buffer": st.integers(0, 100_000),
    }
)


def setup(case: dict) -> tuple | None:
    """The arguments of ``_smallest_close`` for market 0 of an account ``shortfall`` below
    its target, or None when the configuration is one the planner refuses."""
    config = LiquidationConfig(
        liquidation_fee_ppm=case["fee"], liquidator_share_ppm=500_000, buffer_ppm=case["buffer"]
    )
    work, prices, scheds, lots = {}, {}, {}, {}
    for market_id, (base, offset, price, lot, schedule) in enumerate(case["positions"]):
        entry = -(base * max(1, price + offset)) // 10**9
        work[market_id] = Position(base, entry)
        prices[market_id], scheds[market_id], lots[market_id] = price, schedule, lot
        if schedule.tiers[0].maintenance_ppm + config.buffer_ppm <= config.liquidation_fee_ppm:
            return None  # LiquidationConfig.check_schedule refuses it
    equity, _, target = rules._account_margin(0, work, prices, scheds, config.buffer_ppm)
    kind, amount = case["shortfall"]
    if kind == "ppm":
        notional = sum(rules.notional_quote(p.base, prices[m]) for m, p in work.items())
        amount = max(1, notional * amount // 10**6)
    collateral = target - equity - amount
    equity += collateral
    return collateral, work, 0, equity, target, prices, scheds, lots, config


@settings(derandomize=True, max_examples=800, deadline=None)
@given(CASE)
def test_closed_form_sizing_equals_the_bisection_with_trial_transfers(case: dict) -> None:
    # Arrange
    args = setup(case)
    if args is None:
        event("fee above maintenance + buffer")
        return
    sizing = rules._CloseSizing(args[1], 0, args[3], args[5], args[6], args[8])
    event("closed form" if sizing.monotone(args[7][0]) else "bisection")

    # Act
    calls: list[int] = []
    meets = rules._CloseSizing.meets

    def counted(self: rules._CloseSizing, close_base: int) -> bool:
        calls.append(close_base)
        return meets(self, close_base)

    setattr(rules._CloseSizing, "meets", counted)  # noqa: B010 (count the exact checks)
    try:
        got = rules._smallest_close(*args)
    finally:
        setattr(rules._CloseSizing, "meets", meets)  # noqa: B010
    if sizing.monotone(args[7][0]):
        event(f"closed form checks {len(calls)}")

    # Assert
    expected = reference_smallest_close(*args)
    event("whole position" if expected == sizing.size else "partial")
    assert got == expected


@settings(derandomize=True, max_examples=300, deadline=None)
@given(CASE, st.integers(0, 10**6))
def test_closed_form_account_equals_a_trial_transfer(case: dict, where_ppm: int) -> None:
    # Arrange
    args = setup(case)
    if args is None:
        return
    collateral, work, market_id, equity, _, prices, scheds, _, config = args
    size = abs(work[market_id].base)
    close_base = max(1, size * where_ppm // 10**6)
    trial = dict(work)
    after, _ = rules._transfer(
        collateral, trial, market_id, close_base, prices[market_id], prices, scheds, config, True
    )
    eq, _, tgt = rules._account_margin(after, trial, prices, scheds, config.buffer_ppm)

    # Act
    got = rules._CloseSizing(work, market_id, equity, prices, scheds, config).meets(close_base)

    # Assert
    assert got == (eq >= tgt)
