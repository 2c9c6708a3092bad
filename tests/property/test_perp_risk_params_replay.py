"""Replay properties of market parameter changes and of rate-limit refusals.

* ``RiskParamsChanged`` is folded at its place in the journal: replaying a journal of random
  order flow interleaved with random parameter changes (accepted and refused) from zero, or
  from a snapshot taken between them, reproduces the live state hash;
* rate-limit buckets are admission state, not journaled: a replay never reads them, so a
  journal full of ``RATE_LIMITED_*`` refusals folds to the same hash, and the folded state
  has no buckets at all.
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from exchange.core.commands import (
    AmendOrder,
    CreateMarket,
    Deposit,
    PlaceOrder,
    SetRiskParams,
    Tick,
    UpdateOraclePrice,
)
from exchange.core.errors import GOVERNANCE_CODES, RejectCode
from exchange.core.events import OrderRejected, RiskParamsChanged
from exchange.core.orders import TimeInForce
from exchange.core.units import NANOS_PER_SECOND, U64_MAX
from perp.clearinghouse import Clearinghouse
from perp.params import PerpMarketParams

TICK = 10_000
LOT = 10_000_000
USDC = 1_000_000
OWNERS = (1, 2, 3, 4)
RATE_LIMITED = {RejectCode.RATE_LIMITED_PER_SECOND, RejectCode.RATE_LIMITED_PER_MINUTE}
PARAMS = PerpMarketParams(
    taker_fee_ppm=450,
    maker_fee_ppm=-100,
    max_orders_per_second=3,  # tight: random flow hits the buckets
    max_orders_per_minute=40,
    funding_sample_interval_ns=30 * NANOS_PER_SECOND,
    funding_interval_ns=300 * NANOS_PER_SECOND,
    margin_tiers=((50_000 * USDC, 100_000, 50_000), (U64_MAX, 200_000, 100_000)),
)

CHANGE = st.fixed_dictionaries(
    {},
    optional={
        "taker_fee_ppm": st.integers(0, 2_000),
        "maker_fee_ppm": st.integers(-300, 300),
        "max_position_base": st.integers(1, 4_000).map(lambda lots: lots * LOT),
        "max_orders_per_second": st.integers(1, 8),
        "funding_cap_rate": st.integers(0, 80_000_000),
        "price_band_ppm": st.integers(1, 100_000),
        # first-tier ratios around the current ones: some falls pass, some are too fast
        "margin_tiers": st.tuples(st.integers(60_000, 300_000), st.integers(30, 95)).map(
            lambda t: [[50_000 * USDC, t[0], t[0] * t[1] // 100], [U64_MAX, 400_000, 200_000]]
        ),
    },
)

STEP = st.one_of(
    st.tuples(
        st.just("place"),
        st.sampled_from(OWNERS),
        st.integers(0, 1),  # side
        st.integers(-20, 20),  # ticks from the index
        st.integers(1, 300),  # lots
        st.booleans(),  # IOC
    ),
    st.tuples(st.just("amend"), st.sampled_from(OWNERS), st.integers(-20, 20), st.integers(1, 300)),
    st.tuples(st.just("oracle"), st.integers(-50, 50)),
    st.tuples(st.just("time"), st.integers(0, 120)),  # seconds forward, then a Tick
    st.tuples(st.just("params"), CHANGE),
)


def _listed(ts: int) -> tuple[Clearinghouse, list[Any]]:
    ch = Clearinghouse(default_params=PARAMS)
    journal = ch.execute(CreateMarket(0, "P-PERP", TICK, LOT), ts)
    journal += ch.execute(UpdateOraclePrice(0, 100 * USDC, 0, 1, 1, True), ts)
    for owner in OWNERS:
        journal += ch.execute(Deposit(owner, 0, 20_000 * USDC), ts)
    return ch, journal


def _fold(journal: list[Any]) -> Clearinghouse:
    folded = Clearinghouse()
    for e in journal:
        folded.apply(e)
    return folded


@settings(derandomize=True, max_examples=120, deadline=None)
@given(st.lists(STEP, min_size=5, max_size=60))
def test_parameter_changes_replay_to_the_same_hash(steps: list[tuple[Any, ...]]) -> None:
    # Arrange
    ts = NANOS_PER_SECOND
    ch, journal = _listed(ts)
    index = 100 * USDC
    snapshot: tuple[bytes, int] | None = None
    # Act
    for i, step in enumerate(steps):
        ts += 50_000_000  # 50 ms between commands
        kind = step[0]
        cmd: Any
        if kind == "place":
            _, owner, side, offset, lots, ioc = step
            tif = TimeInForce.IOC if ioc else TimeInForce.GTC
            price = index + offset * TICK
            cmd = PlaceOrder(0, owner, 0, side, price, lots * LOT, time_in_force=tif)
        elif kind == "amend":
            _, owner, offset, lots = step
            live = ch.books[0].account_orders.get(owner * 65536, {})
            cmd = AmendOrder(0, owner, 0, min(live, default=1), index + offset * TICK, lots * LOT)
        elif kind == "oracle":
            index += step[1] * TICK
            cmd = UpdateOraclePrice(0, index, 0, i + 2, i + 2, True)
        elif kind == "time":
            ts += step[1] * NANOS_PER_SECOND
            cmd = Tick()
        else:
            cmd = SetRiskParams(0, json.dumps(step[1]), proposal_id=i)
        journal += ch.execute(cmd, ts)
        ch.check_invariants()
        if kind == "params" and snapshot is None:
            snapshot = (ch.snapshot(), len(journal))
    # Assert: from zero, and from the snapshot right after the first change
    assert _fold(journal).state_hash() == ch.state_hash()
    if snapshot is not None:
        blob, upto = snapshot
        resumed = Clearinghouse.from_snapshot(blob)
        for e in journal[upto:]:
            resumed.apply(e)
        assert resumed.state_hash() == ch.state_hash()
    changes = sum(type(e) is RiskParamsChanged for e in journal)
    refused = sum(type(e) is OrderRejected and e.code in GOVERNANCE_CODES for e in journal)
    event(
        f"changes applied: {'0' if not changes else '1+'}; refused: {'0' if not refused else '1+'}"
    )


def test_a_journal_of_rate_limit_refusals_replays_without_the_buckets() -> None:
    # Arrange: a seeded burst of orders and amends, several per millisecond
    rng = random.Random(8)
    ts = NANOS_PER_SECOND
    ch, journal = _listed(ts)
    for _ in range(400):
        ts += rng.choice((1_000_000, 1_000_000, 400_000_000))
        owner = rng.choice(OWNERS)
        live = ch.books[0].account_orders.get(owner * 65536, {})
        price = 100 * USDC + rng.randint(-10, 10) * TICK
        if live and rng.random() < 0.4:
            cmd: Any = AmendOrder(0, owner, 0, min(live), price, rng.randint(1, 50) * LOT)
        else:
            cmd = PlaceOrder(0, owner, 0, rng.randint(0, 1), price, rng.randint(1, 50) * LOT)
        journal += ch.execute(cmd, ts)
    limited = [e for e in journal if type(e) is OrderRejected and e.code in RATE_LIMITED]
    assert len(limited) > 50  # the flow really was rate-limited
    # Act
    folded = _fold(journal)
    # Assert: same hash; the fold built no buckets, and the live buckets are not in the hash
    assert folded.state_hash() == ch.state_hash()
    assert not folded._rate_state and ch._rate_state
    ch._rate_state.clear()
    assert ch.state_hash() == folded.state_hash()
