"""Properties of the clearinghouse over random order flow and oracle price paths:

* conservation: collateral + open cost basis + fee pool + insurance fund + funding pools
  == net deposits (+ insurance top-ups), to the unit, after every command;
* funding is zero-sum: once every account has settled, each market's funding pool is exactly
  zero (paid == received + swept to the insurance fund);
* replay: folding the journaled events from zero, or from a snapshot, gives the same hash.
"""

from __future__ import annotations

from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from exchange.core.commands import (
    AmendOrder,
    CancelAll,
    CreateMarket,
    Deposit,
    PlaceOrder,
    SetKillSwitch,
    SetMarketStatus,
    Tick,
    UpdateOraclePrice,
    Withdraw,
)
from exchange.core.events import FillSettled, FundingSettled, MarketStatusChanged
from exchange.core.orders import OrderType, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from perp.clearinghouse import Clearinghouse
from perp.math.funding import SETTLEMENT_DENOMINATOR
from perp.params import PerpMarketParams

TICK = 10_000  # 0.01
LOT = 10_000_000  # 0.01 base
USDC = 1_000_000
OWNERS = (1, 2, 3, 4, 5)
PARAMS = PerpMarketParams(
    maker_fee_ppm=-150,
    taker_fee_ppm=450,
    insurance_share_ppm=250_000,
    funding_sample_interval_ns=60 * NANOS_PER_SECOND,
    funding_interval_ns=600 * NANOS_PER_SECOND,
    funding_cap_rate=50_000_000,
    impact_notional_quote=50 * USDC,
    breaker_max_move_ppm=300_000,
)

STEP = st.one_of(
    st.tuples(
        st.just("trade"),  # a maker rests, another owner takes it (a fill unless refused)
        st.sampled_from(OWNERS),
        st.sampled_from(OWNERS),
        st.integers(0, 1),  # market
        st.integers(0, 1),  # maker side
        st.integers(-100, 100),  # price offset from the index, ticks
        st.integers(1, 600),  # maker lots
        st.integers(1, 600),  # taker lots
    ),
    st.tuples(
        st.just("place"),
        st.sampled_from(OWNERS),
        st.integers(0, 1),  # market
        st.integers(0, 1),  # side
        st.integers(-300, 300),  # price offset from the index, ticks
        st.integers(1, 400),  # lots
        st.sampled_from([TimeInForce.GTC, TimeInForce.IOC, TimeInForce.POST_ONLY_SLIDE]),
        st.booleans(),  # market order
    ),
    st.tuples(st.just("oracle"), st.integers(0, 1), st.integers(-400, 400)),  # move, ticks
    st.tuples(st.just("time"), st.integers(1, 900)),  # seconds forward, then a Tick
    st.tuples(st.just("withdraw"), st.sampled_from(OWNERS), st.integers(1, 3_000 * USDC)),
    st.tuples(st.just("deposit"), st.sampled_from(OWNERS), st.integers(1, 3_000 * USDC)),
    st.tuples(st.just("cancel_all"), st.sampled_from(OWNERS), st.integers(0, 1)),
    st.tuples(st.just("status"), st.integers(0, 1), st.integers(0, 4)),
    st.tuples(st.just("kill"), st.integers(0, 1), st.booleans(), st.booleans()),
    st.tuples(st.just("jump"), st.integers(0, 1), st.sampled_from([0, 50, 150])),  # % of index
    st.tuples(
        st.just("stop"),
        st.sampled_from(OWNERS),
        st.integers(0, 1),
        st.integers(0, 1),
        st.integers(1, 200),  # trigger distance, ticks
        st.integers(1, 300),  # lots
    ),
    st.tuples(
        st.just("amend"),
        st.sampled_from(OWNERS),
        st.integers(0, 1),
        st.integers(-50, 50),  # new price offset, ticks
        st.integers(1, 500),  # new lots
    ),
)


def _setup(ch: Clearinghouse, journal: list[Any], ts: int) -> dict[int, int]:
    index = {0: 100 * USDC, 1: 20 * USDC}
    for market_id, price in index.items():
        journal += ch.execute(CreateMarket(market_id, f"M{market_id}", TICK, LOT), ts)
        journal += ch.execute(UpdateOraclePrice(market_id, price, 0, 1, 1, True), ts)
    for owner in OWNERS:
        journal += ch.execute(Deposit(owner, 0, 5_000 * USDC), ts)
    return index


@settings(derandomize=True, max_examples=250, deadline=None)
@given(st.lists(STEP, min_size=5, max_size=80))
def test_conservation_funding_zero_sum_and_replay(steps: list[tuple[Any, ...]]) -> None:
    ch = Clearinghouse(default_params=PARAMS)
    journal: list[Any] = []
    ts = NANOS_PER_SECOND
    index = _setup(ch, journal, ts)
    snapshot_at = len(steps) // 2
    snapshot: tuple[bytes, int] | None = None
    for i, step in enumerate(steps):
        ts += 1_000_000  # 1 ms between commands
        kind = step[0]
        if kind == "trade":
            _, maker, taker, market_id, side, offset, maker_lots, taker_lots = step
            price = max(TICK, (index[market_id] // TICK + offset) * TICK)
            journal += ch.execute(
                PlaceOrder(market_id, maker, 0, side, price, maker_lots * LOT), ts
            )
            cmd = PlaceOrder(
                market_id,
                taker,
                0,
                1 - side,
                price,
                taker_lots * LOT,
                time_in_force=TimeInForce.IOC,
            )
        elif kind == "place":
            _, owner, market_id, side, offset, lots, tif, market = step
            price = max(TICK, (index[market_id] // TICK + offset) * TICK)
            cmd: Any = PlaceOrder(
                market_id,
                owner,
                0,
                side,
                price,
                lots * LOT,
                order_type=OrderType.MARKET if market else OrderType.LIMIT,
                time_in_force=TimeInForce.IOC if market else tif,
            )
        elif kind == "oracle":
            _, market_id, move = step
            index[market_id] = max(100 * TICK, index[market_id] + move * TICK)
            cmd = UpdateOraclePrice(market_id, index[market_id], 0, i, i, True)
        elif kind == "time":
            ts += step[1] * NANOS_PER_SECOND
            cmd = Tick()
        elif kind == "withdraw":
            cmd = Withdraw(step[1], 0, step[2])
        elif kind == "deposit":
            cmd = Deposit(step[1], 0, step[2])
        elif kind == "cancel_all":
            cmd = CancelAll(step[2], step[1], 0)
        elif kind == "status":
            cmd = SetMarketStatus(step[1], step[2])
        elif kind == "kill":
            cmd = SetKillSwitch(step[1], step[2], all_markets=step[3])
        elif kind == "jump":  # a jump (breaker) or an invalid reading (price 0)
            _, market_id, percent = step
            index[market_id] = index[market_id] * (100 + percent) // 100 // TICK * TICK
            cmd = UpdateOraclePrice(market_id, index[market_id], 0, i, i, percent != 0)
        elif kind == "stop":
            _, owner, market_id, side, distance, lots = step
            trigger = index[market_id] + (distance if side == 0 else -distance) * TICK
            cmd = PlaceOrder(
                market_id,
                owner,
                0,
                side,
                max(TICK, trigger + (5 if side == 0 else -5) * TICK),
                lots * LOT,
                order_type=OrderType.STOP_MARKET,
                time_in_force=TimeInForce.IOC,
                trigger_price=max(TICK, trigger),
            )
        else:  # amend the owner's oldest live order in the market, if any
            _, owner, market_id, offset, lots = step
            live = ch.books[market_id].account_orders.get(owner * 65536, {})
            price = max(TICK, (index[market_id] // TICK + offset) * TICK)
            cmd = AmendOrder(market_id, owner, 0, min(live, default=1), price, lots * LOT)
        journal += ch.execute(cmd, ts)
        assert ch.conservation_gap_quote() == 0, f"after {cmd}"
        if i == snapshot_at:
            snapshot = (ch.snapshot(), len(journal))
    # Funding has run over at least one interval: settle everyone, then the pools are empty.
    ts += 700 * NANOS_PER_SECOND
    journal += ch.execute(Tick(), ts)
    for owner in OWNERS:
        journal += ch.execute(Withdraw(owner, 0, 1), ts)
    ch.check_invariants()  # includes: each pool == (open carries + surplus) / D exactly
    for market_id, market in ch.markets.items():
        carries = sum(
            a.positions[market_id].funding_carry_numerator
            for a in ch.accounts.values()
            if market_id in a.positions
        )
        assert market.funding_pool_quote * SETTLEMENT_DENOMINATOR == (
            carries + market.funding_surplus_numerator
        )
    paid = sum(e.payment_quote for e in journal if type(e) is FundingSettled) + sum(
        e.maker_funding_quote + e.taker_funding_quote for e in journal if type(e) is FillSettled
    )
    swept = sum(e.swept_quote for e in journal if type(e) is FundingSettled) + sum(
        e.funding_swept_quote for e in journal if type(e) is FillSettled
    )
    # what longs paid == what shorts received + the swept remainder + what the pools hold
    assert paid == swept + sum(m.funding_pool_quote for m in ch.markets.values())
    fills = sum(type(e) is FillSettled for e in journal)
    event(f"fills: {'none' if not fills else '1-9' if fills < 10 else '10+'}")
    event(f"funding settled: {any(type(e) is FundingSettled and e.payment_quote for e in journal)}")
    event(f"status changed: {any(type(e) is MarketStatusChanged for e in journal)}")
    # Replay from zero and from the mid-run snapshot.
    folded = Clearinghouse()
    for e in journal:
        folded.apply(e)
    assert folded.state_hash() == ch.state_hash()
    assert snapshot is not None
    blob, upto = snapshot
    resumed = Clearinghouse.from_snapshot(blob)
    for e in journal[upto:]:
        resumed.apply(e)
    assert resumed.state_hash() == ch.state_hash()
