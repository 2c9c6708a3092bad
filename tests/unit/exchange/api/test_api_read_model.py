"""The read model against the reference core: L2 deltas rebuild the book exactly."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from exchange.api.read_model import ReadModel
from exchange.core.commands import (
    AmendOrder,
    CancelOrder,
    CreateMarket,
    Deposit,
    PlaceOrder,
    UpdateOraclePrice,
)
from exchange.core.errors import InvariantViolation
from exchange.core.events import Event, OrderAccepted, OrderCanceled
from exchange.core.orders import OrderType, TimeInForce
from exchange.core.state import ExchangeCore
from perp.clearinghouse import Clearinghouse

TICK, LOT = 1_000_000, 1_000_000_000


def apply_delta(book: dict[str, dict[int, int]], delta: object) -> None:
    for name in ("bids", "asks"):
        for price, lots in getattr(delta, name):
            if lots:
                book[name][price] = lots
            else:
                book[name].pop(price, None)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_deltas_rebuild_every_book_exactly_and_seq_has_no_gaps(seed: int) -> None:
    # Arrange: the engine's core and a mirror read model folded from its events
    rng = random.Random(seed)
    engine = ExchangeCore()
    model = ReadModel(ExchangeCore())
    ts = 1
    markets = (1, 2)
    events = []
    for m in markets:
        engine.execute(CreateMarket(m, f"M{m}", TICK, LOT), ts, events)
    model.apply(events)
    client = {m: {"bids": {}, "asks": {}} for m in markets}
    last_seq = dict.fromkeys(markets, 0)
    live: list[tuple[int, int, int]] = []  # (market, order id, owner)
    # Act: a seeded flow of places (some crossing, IOC, post-only), cancels and amends
    for _ in range(600):
        ts += 1
        out: list = []
        r = rng.random()
        if r < 0.6 or not live:
            m = rng.choice(markets)
            tif = rng.choice(
                [TimeInForce.GTC, TimeInForce.GTC, TimeInForce.IOC, TimeInForce.POST_ONLY]
            )
            cmd = PlaceOrder(
                m,
                rng.randint(1, 4),
                0,
                rng.randint(0, 1),
                rng.randint(90, 110) * TICK,
                rng.randint(1, 6) * LOT,
                time_in_force=int(tif),
            )
            engine.execute(cmd, ts, out)
            live += [(m, e.order_id, e.owner_id) for e in out if type(e) is OrderAccepted]
        elif r < 0.85:
            m, oid, owner = live.pop(rng.randrange(len(live)))
            engine.execute(CancelOrder(m, owner, 0, oid), ts, out)
        else:
            m, oid, owner = rng.choice(live)
            engine.execute(
                AmendOrder(m, owner, 0, oid, rng.randint(90, 110) * TICK, rng.randint(1, 6) * LOT),
                ts,
                out,
            )
        update = model.apply(out)
        for delta in update.book_deltas:
            assert delta.book_seq == last_seq[delta.market_id] + 1
            last_seq[delta.market_id] = delta.book_seq
            apply_delta(client[delta.market_id], delta)
        # Assert: after every command the client's book is the engine's book
        for m in markets:
            book = engine.books[m]
            assert sorted(client[m]["bids"].items(), reverse=True) == book.depth(0, 10**9)
            assert sorted(client[m]["asks"].items()) == book.depth(1, 10**9)
    assert model.core.state_hash() == engine.state_hash()
    assert sum(len(model.trades[m]) for m in markets) > 0


def test_snapshot_equals_core_depth_and_open_orders_are_per_owner() -> None:
    engine = ExchangeCore()
    out: list = []
    engine.execute(CreateMarket(1, "M", TICK, LOT), 1, out)
    engine.execute(PlaceOrder(1, 7, 0, 0, 100 * TICK, 2 * LOT), 2, out)
    engine.execute(PlaceOrder(1, 8, 1, 1, 101 * TICK, 3 * LOT, client_order_id=4), 3, out)
    model = ReadModel(ExchangeCore())
    model.apply(out)
    snap = model.book(1, 10)
    assert snap is not None and snap.bids == ((100, 2),) and snap.asks == ((101, 3),)
    assert [o["owner_id"] for o in model.open_orders(8)] == [8]
    assert model.open_orders(8, sub_account_id=0) == []
    assert model.book(99, 10) is None
    assert [(sub, type(e).__name__) for sub, e in model.owner_history[7]] == [
        (0, "OrderAccepted"),
        (0, "OrderRested"),
    ]
    assert [sub for sub, _ in model.owner_history[8]] == [1, 1]


def test_out_of_order_batch_fails_fast() -> None:
    engine = ExchangeCore()
    out: list = []
    engine.execute(CreateMarket(1, "M", TICK, LOT), 1, out)
    engine.execute(PlaceOrder(1, 7, 0, 0, 100 * TICK, 2 * LOT), 2, out)
    model = ReadModel(ExchangeCore())
    with pytest.raises(InvariantViolation):
        model.apply(out[1:])


def clearinghouse_stream(seed: int, steps: int) -> list[list[Event]]:
    """A seeded clearinghouse flow as per-command event batches: resting and crossing
    limits, IOC remainders, post-only refusals, market orders, stops, cancels, amends."""
    rng = random.Random(seed)
    ch = Clearinghouse()
    ts = 10**18
    batches: list[list[Event]] = []

    def run(cmd: Any) -> list[Event]:
        out: list[Event] = []
        ch.execute(cmd, ts, out)
        batches.append(out)
        return out

    usdc = 1_000_000
    for m in (1, 2):
        run(CreateMarket(m, f"M{m}", TICK, LOT))
        run(UpdateOraclePrice(m, 100 * TICK, 0, 1, ts // 10**9, True))
    for owner in range(1, 5):
        run(Deposit(owner, 0, 10**6 * usdc))
    for _ in range(steps):
        ts += 1_000_000
        m, owner, side = rng.choice((1, 2)), rng.randint(1, 4), rng.randint(0, 1)
        price, size = rng.randint(95, 105) * TICK, rng.randint(1, 5) * LOT
        resting = [(mid, o) for mid, b in ch.core.books.items() for o in b.orders.values()]
        r = rng.random()
        if r < 0.55 or not resting:
            kind = rng.choice(("GTC", "GTC", "IOC", "IOC", "POST_ONLY", "MARKET", "STOP"))
            if kind == "MARKET":
                cmd = PlaceOrder(m, owner, 0, side, price, size, int(OrderType.MARKET), 1)
            elif kind == "STOP":
                trigger = (110 if side == 0 else 90) * TICK
                cmd = PlaceOrder(
                    m, owner, 0, side, price, size, int(OrderType.STOP_MARKET), 1, 0, trigger
                )
            else:
                cmd = PlaceOrder(m, owner, 0, side, price, size, 0, int(TimeInForce[kind]))
            run(cmd)
        elif r < 0.8:
            mid, o = rng.choice(resting)
            run(CancelOrder(mid, o.owner_id, 0, o.order_id))
        elif r < 0.95:
            mid, o = rng.choice(resting)
            run(AmendOrder(mid, o.owner_id, 0, o.order_id, price, size))
        else:  # the index moves a little (a large move would halt the market)
            run(UpdateOraclePrice(m, rng.randint(99, 101) * TICK, 0, 2, ts // 10**9, True))
    return batches


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_transient_order_shortcut_folds_like_the_core(seed: int) -> None:
    # Arrange: a clearinghouse stream cut into random group commits; one model takes the
    # shortcut for accepted-then-canceled orders, the other folds every event in the core
    batches = clearinghouse_stream(seed, 1_500)
    rng = random.Random(seed)
    groups: list[list[Event]] = []
    while batches:
        n = rng.randint(1, 8)
        groups.append([e for b in batches[:n] for e in b])
        del batches[:n]
    fast = ReadModel(Clearinghouse())
    full = ReadModel(Clearinghouse())
    full._transient_ok = False
    pairs = sum(
        type(a) is OrderAccepted and type(b) is OrderCanceled and a.order_id == b.order_id
        for g in groups
        for a, b in itertools.pairwise(g)
    )

    # Act / Assert: the same update for every group, the same state after each
    for group in groups:
        assert fast.apply(group) == full.apply(group)
        assert fast.last_seq == full.last_seq
        assert fast.matching.next_order_id == full.matching.next_order_id
    assert pairs > 200  # the shortcut ran (IOC remainders, post-only refusals)
    assert fast.core.state_hash() == full.core.state_hash()
    assert fast.matching.next_order_id == full.matching.next_order_id
    assert fast.matching._inflight is None and full.matching._inflight is None
    assert fast.owner_history == full.owner_history
    assert fast.owner_fills == full.owner_fills
    assert fast._order_owner == full._order_owner
    assert {m: list(t) for m, t in fast.trades.items()} == {
        m: list(t) for m, t in full.trades.items()
    }
    assert fast.book_seq == full.book_seq and sum(fast.book_seq.values()) > 100
