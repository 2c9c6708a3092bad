"""The read model against the reference core: L2 deltas rebuild the book exactly."""

from __future__ import annotations

import random

import pytest

from exchange.api.read_model import ReadModel
from exchange.core.commands import AmendOrder, CancelOrder, CreateMarket, PlaceOrder
from exchange.core.errors import InvariantViolation
from exchange.core.events import OrderAccepted
from exchange.core.orders import TimeInForce
from exchange.core.state import ExchangeCore

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
