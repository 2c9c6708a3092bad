"""Invariants of the perp maths over random inputs (seeded: derandomized hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.core.units import U64_MAX
from perp.math.fees import FeeSchedule, fill_fees
from perp.math.funding import settle, sweep_surplus
from perp.math.margin import MarginKind, MarginSchedule, MarginTier, requirement_quote
from perp.math.mark import impact_price, mark_price

SETTINGS = settings(derandomize=True, max_examples=300, deadline=None)


@st.composite
def schedules(draw: st.DrawFn) -> MarginSchedule:
    n = draw(st.integers(1, 4))
    bounds = sorted(draw(st.sets(st.integers(1, 10**15), min_size=n - 1, max_size=n - 1)))
    bounds.append(U64_MAX)
    initial = sorted(draw(st.lists(st.integers(2, 1_000_000), min_size=n, max_size=n)))
    tiers = []
    maintenance_floor = 1
    for bound, im in zip(bounds, initial):
        mm = draw(st.integers(min(maintenance_floor, im - 1), im - 1))
        maintenance_floor = max(maintenance_floor, mm)
        tiers.append(
            MarginTier(
                up_to_notional_quote=bound,
                initial_ppm=im,
                maintenance_ppm=max(mm, maintenance_floor),
            )
        )
    return MarginSchedule(tiers=tuple(tiers))


@SETTINGS
@given(schedules(), st.integers(0, 10**16), st.integers(0, 10**16))
def test_margin_is_monotone_in_size_and_maintenance_below_initial(
    schedule: MarginSchedule, a: int, b: int
) -> None:
    small, large = sorted((a, b))
    for kind in MarginKind:
        assert requirement_quote(small, schedule, kind) <= requirement_quote(large, schedule, kind)
    assert requirement_quote(large, schedule, MarginKind.MAINTENANCE) <= requirement_quote(
        large, schedule, MarginKind.INITIAL
    )


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["trade", "tick", "touch"]),
            st.integers(0, 5),
            st.integers(0, 5),
            st.integers(-(10**12), 10**12),
        ),
        max_size=80,
    )
)
def test_funding_is_zero_sum_to_the_unit_with_lazy_settlement(
    steps: list[tuple[str, int, int, int]],
) -> None:
    # Six accounts; trades move base between two of them (so the total is always zero);
    # the index moves by arbitrary deltas; accounts settle lazily when touched.
    base = [0] * 6
    snapshot = [0] * 6
    carry = [0] * 6
    index = 0
    paid = received = surplus = 0

    def touch(i: int) -> None:
        nonlocal paid, received
        s = settle(base[i], snapshot[i], index, carry[i])
        if s.payment_quote > 0:
            paid += s.payment_quote
        else:
            received -= s.payment_quote
        carry[i] = s.carry_numerator
        snapshot[i] = index

    for kind, i, j, amount in steps:
        if kind == "tick":
            index += amount * 7_919  # any integer delta
        elif kind == "touch":
            touch(i)
        elif i != j:
            touch(i)
            touch(j)
            base[i] += amount
            base[j] -= amount
            for k in (i, j):  # a closed position's carry joins the market's surplus
                if base[k] == 0:
                    surplus, carry[k] = surplus + carry[k], 0
        assert sum(base) == 0
    for i in range(6):
        touch(i)
    swept, left = sweep_surplus(surplus + sum(carry))
    assert left == 0
    # every unit paid is received, held as a carry or swept to the insurance fund
    assert paid == received + swept


@SETTINGS
@given(
    st.integers(-(10**12), 10**12),
    st.lists(st.integers(-(10**22), 10**22), min_size=1, max_size=12),
    st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_settlement_with_carry_is_path_independent(
    base: int, deltas: list[int], settle_here: list[bool]
) -> None:
    # Settling at any subset of the index's intermediate values pays, in total, exactly what
    # one settlement at the end pays: ceil(exact total / D) (the engine settles at more points
    # than the clearing program, and both must agree to the unit).
    index, snapshot, carry, total = 0, 0, 0, 0
    for delta, here in zip(deltas, settle_here, strict=False):
        index += delta
        if here:
            s = settle(base, snapshot, index, carry)
            snapshot, carry, total = index, s.carry_numerator, total + s.payment_quote
    s = settle(base, snapshot, index, carry)
    total += s.payment_quote
    once = settle(base, 0, index)
    assert total == once.payment_quote
    assert s.carry_numerator == once.carry_numerator


@SETTINGS
@given(
    st.integers(0, 10**15),
    st.integers(0, 10_000),
    st.integers(-10_000, 10_000),
    st.integers(0, 1_000_000),
)
def test_fee_split_conserves_value(notional: int, taker: int, maker: int, share: int) -> None:
    maker = max(maker, -taker)
    fees = fill_fees(
        notional, FeeSchedule(maker_ppm=maker, taker_ppm=taker, insurance_share_ppm=share)
    )
    assert fees.maker_fee_quote + fees.taker_fee_quote == fees.insurance_quote + fees.venue_quote
    assert fees.insurance_quote >= 0 and fees.venue_quote >= 0


@SETTINGS
@given(
    st.integers(1, 10**12),
    st.integers(-(10**11), 10**11),
    st.one_of(st.none(), st.integers(1, 10**12)),
    st.integers(0, 10**12),
    st.integers(0, 999_999),
)
def test_mark_stays_inside_the_oracle_band(
    oracle: int, basis: int, bid: int | None, spread: int, band: int
) -> None:
    ask = None if bid is None else bid + spread
    mark = mark_price(oracle, basis, bid, ask, band)
    assert oracle * (1_000_000 - band) <= mark * 1_000_000 <= oracle * (1_000_000 + band)


@SETTINGS
@given(
    st.lists(st.tuples(st.integers(1, 10**9), st.integers(1, 10**12)), min_size=1, max_size=8),
    st.integers(1, 10**9),
)
def test_impact_price_lies_within_the_levels_it_walks(
    levels: list[tuple[int, int]], notional: int
) -> None:
    asks = sorted(levels)
    price = impact_price(asks, notional, is_bid=False)
    if price is not None:
        assert asks[0][0] <= price <= asks[-1][0]
