"""Direct tests of the numba ``FastMarket``: golden events, STP, post-only slide, API edges."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from numba import njit

from exchange.core.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    CreateMarket,
    ExpireOrders,
    PlaceOrder,
    UpdateTriggerPrice,
)
from exchange.core.errors import RejectCode
from exchange.core.events import (
    OrderAccepted,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderRested,
    OrderTriggered,
    SelfTradeDecremented,
    TradeExecuted,
)
from exchange.core.fastbook import H_CAP, ROW_W, TRADE_LOTS_COL, FastMarket, _magic, _udiv
from exchange.core.market import MarketSpec
from exchange.core.orders import CancelReason, OrderType, SelfTradePrevention, TimeInForce
from exchange.core.state import ExchangeCore

TICK = 1_000_000
LOT = 1_000
SPEC = dict(market_id=3, symbol="UNIT-PERP", tick_size=TICK, lot_size=LOT)
BID, ASK = 0, 1


@njit(cache=True)
def _udiv_all(ns: Any, m: int, sh: int) -> Any:
    out = np.empty_like(ns)
    for i in range(ns.shape[0]):
        out[i] = _udiv(ns[i], m, sh)
    return out


def test_division_by_multiplication_is_exact() -> None:
    rng = np.random.default_rng(5)
    divisors = [1, 2, 3, 5, 7, 10, 1000, 10**6, 10**9 + 7, 2**32 + 1, 2**40, 2**62 + 3, 2**63 - 1]
    divisors += [int(d) for d in rng.integers(1, 2**63 - 1, 20)]
    for d in divisors:
        ns = [0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, 2**63 - 1, 2**63 - 2, (2**63 - 1) // d * d]
        ns += [int(x) for x in rng.integers(0, 2**63 - 1, 200)]
        ns += [int(x) * d for x in rng.integers(0, (2**63 - 1) // d + 1, 50)]
        arr = np.array([n for n in ns if 0 <= n < 2**63], np.int64)
        got = _udiv_all(arr, *_magic(d))
        assert got.tolist() == [n // d for n in arr.tolist()], d
    with pytest.raises(ValueError):
        _magic(0)


def fresh(**kw: Any) -> FastMarket:
    return FastMarket(MarketSpec(**SPEC), **kw)


def place(
    fm: FastMarket, owner: int, sub: int, side: int, ticks: int, lots: int, ts: int = 1, **kw: Any
) -> list[Any]:
    fm.drain_events()
    fm.place(owner, sub, side, ticks * TICK, lots * LOT, ts_ns=ts, **kw)
    return fm.drain_events()


def test_sweep_golden_events() -> None:
    fm = fresh()
    place(fm, 1, 0, ASK, 101, 2)  # order 1, seq 1-2
    place(fm, 2, 0, ASK, 101, 3)  # order 2, seq 3-4
    place(fm, 3, 0, ASK, 102, 5)  # order 3, seq 5-6
    events = place(fm, 4, 0, BID, 102, 7, ts=9)
    assert events == [
        OrderAccepted(7, 9, 3, 4, 0, 4, 0, BID, 0, 0, 102, 7, 0, False, 0, 0),
        TradeExecuted(8, 9, 3, 1, 4, 1, 0, 4, 0, BID, 101, 2, 0, 5),
        TradeExecuted(9, 9, 3, 2, 4, 2, 0, 4, 0, BID, 101, 3, 0, 2),
        TradeExecuted(10, 9, 3, 3, 4, 3, 0, 4, 0, BID, 102, 2, 3, 0),
    ]
    assert fm.best_ask() == 102 and fm.best_bid() == 0
    assert fm.canonical() == [[], [[102, 3, [(3, 0, 3, 0, ASK, 0, 0, 102, 0, 3, 2, 0, 0, 0, 4)]]]]
    assert fm.positions() == {1 << 16: -2, 2 << 16: -3, 3 << 16: -2, 4 << 16: 7}
    assert fm.seq == 11 and fm.next_order_id == 5


def test_stp_decrement_both_cancels_whoever_reaches_zero() -> None:
    fm = fresh()
    place(fm, 1, 0, ASK, 100, 3)  # order 1
    place(fm, 2, 0, ASK, 100, 4)  # order 2
    events = place(fm, 1, 1, BID, 100, 5, ts=2, stp_mode=int(SelfTradePrevention.DECREMENT_BOTH))
    assert events == [
        OrderAccepted(5, 2, 3, 3, 0, 1, 1, BID, 0, 0, 100, 5, 0, False, 2, 0),
        SelfTradeDecremented(6, 2, 3, 1, 3, 3),
        OrderCanceled(7, 2, 3, 1, 1, 0, 0, 5),  # the maker reached zero
        TradeExecuted(8, 2, 3, 2, 3, 2, 0, 1, 1, BID, 100, 2, 2, 0),
    ]
    events = place(fm, 2, 1, BID, 100, 1, ts=3, stp_mode=2)
    assert events[1:] == [
        SelfTradeDecremented(10, 3, 3, 2, 4, 1),
        OrderCanceled(11, 3, 3, 4, 2, 1, 0, 5),
    ]  # the taker reached zero
    assert fm.canonical()[1] == [[100, 1, [(2, 0, 2, 0, ASK, 0, 0, 100, 0, 1, 2, 0, 0, 0, 4)]]]


def test_stp_cancel_taking_and_cancel_resting() -> None:
    fm = fresh()
    place(fm, 1, 0, ASK, 100, 3)  # order 1
    taking = place(fm, 1, 1, BID, 100, 2, stp_mode=int(SelfTradePrevention.CANCEL_TAKING))
    assert taking[1:] == [OrderCanceled(4, 1, 3, 2, 1, 1, 2, 3)]
    resting = place(fm, 1, 1, BID, 100, 2, stp_mode=int(SelfTradePrevention.CANCEL_RESTING))
    assert resting[1:] == [OrderCanceled(6, 1, 3, 1, 1, 0, 3, 4), OrderRested(7, 1, 3, 3, 100, 2)]


def test_post_only_slide_rests_one_tick_inside() -> None:
    fm = fresh()
    place(fm, 1, 0, ASK, 100, 3)
    slid = place(fm, 2, 0, BID, 105, 1, time_in_force=int(TimeInForce.POST_ONLY_SLIDE))
    assert slid == [
        OrderAccepted(3, 1, 3, 2, 0, 2, 0, BID, 0, 4, 105, 1, 0, False, 0, 0),
        OrderRested(4, 1, 3, 2, 99, 1),
    ]
    refused = place(fm, 2, 0, BID, 105, 1, time_in_force=int(TimeInForce.POST_ONLY))
    assert refused == [
        OrderRejected(
            5,
            1,
            3,
            0,
            0,
            2,
            0,
            int(RejectCode.POST_ONLY_WOULD_CROSS),
            "price: expected a post-only price that does not cross, got 105 ticks against 100",
        )
    ]
    assert fm.best_bid() == 99 and fm.best_ask() == 100


def test_wide_arguments_match_the_reference() -> None:
    """Client ids above 2**63 round-trip; prices and sizes beyond int64 are refused as the
    reference refuses them, message included."""
    core = ExchangeCore()
    core.execute(CreateMarket(**SPEC), 0)
    fm = fresh()
    fm.seq = core.next_seq
    cmds = [
        PlaceOrder(3, 1, 0, BID, 100 * TICK, 2 * LOT, client_order_id=2**64 - 1),
        PlaceOrder(3, 1, 0, BID, 100 * TICK, 2 * LOT, client_order_id=2**64 - 1),
        PlaceOrder(3, 1, 0, BID, 2**70 * TICK, LOT),
        PlaceOrder(3, 1, 0, BID, 2**70, LOT),
        PlaceOrder(3, 1, 0, BID, -(2**70), LOT),
        PlaceOrder(3, 1, 0, BID, 100 * TICK, 2**80 * LOT),
    ]
    for ts, cmd in enumerate(cmds, 1):
        assert fm.execute(cmd, ts) == core.execute(cmd, ts)
    assert fm.canonical() == core.books[3].canonical()


def test_last_mode_keeps_only_the_last_command() -> None:
    fm = fresh(events="last")
    assert fm.place(1, 0, ASK, 100 * TICK, LOT, ts_ns=1) == 2
    assert fm.place(2, 0, BID, 100 * TICK, LOT, ts_ns=2) == 2
    assert [type(e) for e in fm.events()] == [OrderAccepted, TradeExecuted]
    assert fm.rows().shape == (2, ROW_W)


def test_growth_keeps_state_and_priority() -> None:
    fm = fresh(capacity=2, accounts=2)
    for i in range(40):
        fm.place(10 + i, 0, i % 2, (50 + i % 5 if i % 2 == 0 else 60 + i % 5) * TICK, LOT, ts_ns=i)
    fm.drain_events()
    before = fm.canonical()
    assert sum(len(q) for side in before for _, _, q in side) == 40
    assert fm.best_bid() == 54 and fm.best_ask() == 60
    ops = FastMarket.encode([(PlaceOrder(3, 99, 0, BID, 60 * TICK, 3 * LOT), 50)])
    assert fm.run_batch(ops, keep_events=True) == 4  # accepted + 3 trades in time order
    trades = fm.drain_events()[1:]
    assert [t.maker_order_id for t in trades] == [6, 16, 26]  # the asks at 60, oldest first
    assert np.array_equal(fm.rows(), np.empty((0, ROW_W), np.int64))


def test_batch_spills_many_full_buffers_in_order() -> None:
    """A kept batch far larger than the event buffer (full buffers go to the spill list
    as they are, a fresh buffer takes over) gives exactly the per-call events."""
    rng = np.random.default_rng(7)
    cmds: list[tuple[Any, int]] = []
    for i in range(3000):
        side = int(rng.integers(2))
        ticks = int(rng.integers(95, 106))
        lots = int(rng.integers(1, 6))
        cmds.append((PlaceOrder(3, 1 + i % 7, 0, side, ticks * TICK, lots * LOT), i))
    one = fresh(capacity=8, accounts=2)
    want: list[Any] = []
    for cmd, ts in cmds:
        want.extend(one.execute(cmd, ts))
    batch = fresh(capacity=8, accounts=2)
    rows = batch.run_batch(FastMarket.encode(cmds), keep_events=True)
    got = batch.drain_events()
    assert rows == len(got) == len(want)
    assert got == want
    assert batch.canonical() == one.canonical()
    again = batch.run_batch(FastMarket.encode([(PlaceOrder(3, 9, 0, BID, 90 * TICK, LOT), 9000)]))
    assert again == 2 and batch.rows().shape == (2, ROW_W)


def test_rows_leave_out_the_market_id_and_decode_restores_it() -> None:
    fm = fresh()
    fm.place(1, 0, ASK, 100 * TICK, 2 * LOT, ts_ns=1)
    fm.place(2, 0, BID, 100 * TICK, LOT, ts_ns=2)
    rows = fm.rows()
    assert rows.ctypes.data % 64 == 0 and rows.flags.c_contiguous
    events = fm.decode(rows)
    assert events == fm.events()
    assert all(e.market_id == 3 for e in events)
    trade = next(i for i, e in enumerate(events) if isinstance(e, TradeExecuted))
    assert rows[trade, TRADE_LOTS_COL] == events[trade].num_base_lots == 1


def test_many_accounts_through_growth_keep_positions_and_events() -> None:
    """Thousands of accounts (wide owner ids, several sub-accounts) through repeated
    growth of the account table: every event equals the reference's, and positions equal
    the ones the trade events imply."""
    core = ExchangeCore()
    core.execute(CreateMarket(**SPEC), 0)
    fm = fresh(capacity=4, accounts=2)
    fm.seq = core.next_seq
    rng = np.random.default_rng(11)
    want: dict[int, int] = {}
    for i in range(2500):
        owner = int(rng.integers(1, 2**40)) if i % 3 else 1 + i % 50
        sub = int(rng.integers(0, 4))
        side = int(rng.integers(2))
        ticks = int(rng.integers(98, 103))
        cmd = PlaceOrder(3, owner, sub, side, ticks * TICK, int(rng.integers(1, 9)) * LOT)
        events = fm.execute(cmd, i + 1)
        assert events == core.execute(cmd, i + 1)
        for e in events:
            if isinstance(e, TradeExecuted):
                signed = e.num_base_lots if e.taker_side == BID else -e.num_base_lots
                taker = (e.taker_owner_id << 16) + e.taker_sub_account_id
                maker = (e.maker_owner_id << 16) + e.maker_sub_account_id
                want[taker] = want.get(taker, 0) + signed
                want[maker] = want.get(maker, 0) - signed
    assert fm.positions() == {k: v for k, v in want.items() if v != 0}
    assert fm.canonical() == core.books[3].canonical()


def test_levels_whose_prices_share_a_level_cache_entry() -> None:
    """Prices LCN ticks apart share an entry of the level cache (and a freed level is
    reused at another price or side): events and book equal the reference's throughout."""
    from exchange.core.commands import CancelOrder
    from exchange.core.fastbook import LCN

    core = ExchangeCore()
    core.execute(CreateMarket(**SPEC), 0)
    fm = fresh(capacity=4, accounts=2)
    fm.seq = core.next_seq
    rng = np.random.default_rng(3)
    prices = [1000 + k * LCN + d for k in range(3) for d in (0, 1)]
    live: list[int] = []
    for ts in range(1, 1500):
        if live and rng.random() < 0.3:
            oid = live.pop(int(rng.integers(len(live))))
            cmd: Any = CancelOrder(3, 1 + oid % 5, 0, oid)
        else:
            side = int(rng.integers(2))
            ticks = prices[int(rng.integers(len(prices)))]
            cmd = PlaceOrder(3, 1 + fm.next_order_id % 5, 0, side, ticks * TICK, LOT)
        events = fm.execute(cmd, ts)
        assert events == core.execute(cmd, ts)
        live += [e.order_id for e in events if isinstance(e, OrderRested)]
        done = {
            getattr(e, "maker_order_id", 0)
            for e in events
            if getattr(e, "maker_remaining_lots", 1) == 0
        }
        live = [o for o in live if o not in done]
    assert fm.canonical() == core.books[3].canonical()


# ---------------------------------------------------------------- trigger orders
STOP_MARKET, STOP_LIMIT = int(OrderType.STOP_MARKET), int(OrderType.STOP_LIMIT)
TP_MARKET, TP_LIMIT = int(OrderType.TAKE_PROFIT_MARKET), int(OrderType.TAKE_PROFIT_LIMIT)
GTC, IOC = int(TimeInForce.GTC), int(TimeInForce.IOC)


class Pair:
    """The reference core and a ``FastMarket`` fed the same commands: every command's
    events and the resulting book, pending triggers and positions must be identical."""

    def __init__(self, spec: dict[str, Any] = SPEC, **kw: Any) -> None:
        self.core = ExchangeCore()
        self.core.execute(CreateMarket(**spec), 0)
        self.fm = FastMarket(MarketSpec(**spec), **kw)
        self.fm.seq = self.core.next_seq
        self.mid = spec["market_id"]
        self.ts = 0

    def run(self, cmd: Any) -> list[Any]:
        self.ts += 1
        want = self.core.execute(cmd, self.ts)
        assert self.fm.execute(cmd, self.ts) == want, cmd
        self.check()
        return want

    def check(self) -> None:
        core, fm = self.core, self.fm
        assert fm.canonical() == core.books[self.mid].canonical()
        pending = sorted(core.trigger_books[self.mid].orders.values(), key=lambda o: o.order_id)
        assert fm.trigger_orders() == [o.canonical() for o in pending]
        assert fm.positions() == {a: n for (a, m), n in core.positions.items() if m == self.mid}
        assert fm.seq == core.next_seq and fm.next_order_id == core.next_order_id

    def order(self, owner: int, side: int, ticks: int, lots: int, **kw: Any) -> list[Any]:
        return self.run(
            PlaceOrder(self.mid, owner, kw.pop("sub", 0), side, ticks * TICK, lots * LOT, **kw)
        )

    def trigger(self, owner: int, side: int, otype: int, trig: int, lots: int, **kw: Any) -> int:
        """Arm a trigger order (market-like ones at an extreme protection price, IOC)."""
        market = otype in (STOP_MARKET, TP_MARKET)
        ticks = kw.pop("ticks", (10_000 if side == BID else 1) if market else trig)
        tif = kw.pop("time_in_force", IOC if market else GTC)
        (accepted,) = self.order(
            owner,
            side,
            ticks,
            lots,
            order_type=otype,
            time_in_force=tif,
            trigger_price=trig * TICK,
            **kw,
        )
        assert type(accepted) is OrderAccepted
        return accepted.order_id

    def price(self, price: int) -> list[Any]:
        return self.run(UpdateTriggerPrice(self.mid, price))


def fired(events: list[Any]) -> list[int]:
    return [e.order_id for e in events if type(e) is OrderTriggered]


def test_simultaneous_triggers_fire_oldest_first_from_both_directions() -> None:
    pair = Pair()
    tp_buy = pair.trigger(1, BID, TP_LIMIT, 100, 2)  # fires at <= 100
    stop_buy = pair.trigger(2, BID, STOP_LIMIT, 100, 2)  # fires at >= 100
    stop_sell = pair.trigger(3, ASK, STOP_LIMIT, 104, 2)  # fires at <= 104
    later = pair.trigger(4, BID, STOP_LIMIT, 101, 2)  # not at 100
    tp_sell = pair.trigger(5, ASK, TP_LIMIT, 99, 3)  # fires at >= 99
    events = pair.price(100 * TICK)
    assert fired(events) == [tp_buy, stop_buy, stop_sell, tp_sell]  # order id order
    assert all(e.fired_at_price == 100 * TICK for e in events if type(e) is OrderTriggered)
    assert [o[0] for o in pair.fm.trigger_orders()] == [later]
    # the fired limits met each other: the sell at 104 rested, the one at 99 took 3 lots
    # from the buys at 100 that had fired (and rested) before it
    assert sum(e.num_base_lots for e in events if type(e) is TradeExecuted) == 3
    assert pair.fm.best_ask() == 104 and pair.fm.best_bid() == 100


def test_trigger_fires_at_the_exact_price_not_a_unit_before() -> None:
    pair = Pair()
    up = pair.trigger(1, BID, STOP_LIMIT, 100, 2)
    down = pair.trigger(2, ASK, STOP_LIMIT, 90, 2)
    assert pair.price(100 * TICK - 1) == [] and pair.price(90 * TICK + 1) == []
    assert fired(pair.price(100 * TICK)) == [up]  # off-tick prices compare exactly too
    assert fired(pair.price(90 * TICK)) == [down]
    assert pair.fm.trigger_orders() == []


def test_triggered_order_meets_its_owners_resting_order() -> None:
    pair = Pair()
    pair.order(1, ASK, 100, 3)  # order 1, owner 1 sub 0
    pair.order(2, ASK, 101, 3)  # order 2
    taking = pair.trigger(1, BID, STOP_MARKET, 95, 2, sub=1)
    decrement = pair.trigger(
        1,
        BID,
        STOP_LIMIT,
        96,
        5,
        sub=1,
        ticks=101,
        stp_mode=int(SelfTradePrevention.DECREMENT_BOTH),
    )
    events = pair.price(96 * TICK)
    ts, q = pair.ts, events[0].seq
    assert events == [
        OrderTriggered(q, ts, 3, taking, 96 * TICK),
        OrderCanceled(q + 1, ts, 3, taking, 1, 1, 2, int(CancelReason.STP_CANCEL_TAKING)),
        OrderTriggered(q + 2, ts, 3, decrement, 96 * TICK),
        SelfTradeDecremented(q + 3, ts, 3, 1, decrement, 3),
        OrderCanceled(q + 4, ts, 3, 1, 1, 0, 0, int(CancelReason.STP_DECREMENT)),
        TradeExecuted(q + 5, ts, 3, 2, decrement, 2, 0, 1, 1, BID, 101, 2, 1, 0),
    ]


def test_reduce_only_trigger_runs_only_while_it_still_reduces() -> None:
    pair = Pair()
    pair.order(1, ASK, 100, 5)
    pair.order(2, BID, 100, 5)  # owner 2 is long 5
    stop = pair.trigger(2, ASK, STOP_MARKET, 90, 5, reduce_only=True)
    take = pair.trigger(2, ASK, TP_LIMIT, 110, 4, reduce_only=True)
    pair.order(3, BID, 95, 10)  # liquidity for the stop
    events = pair.price(90 * TICK)  # the stop sells the whole long
    assert fired(events) == [stop]
    assert (2 << 16) not in pair.fm.positions()  # flat
    events = pair.price(110 * TICK)  # now flat: the take-profit would open a short
    assert events == [
        OrderTriggered(events[0].seq, pair.ts, 3, take, 110 * TICK),
        OrderCanceled(events[0].seq + 1, pair.ts, 3, take, 2, 0, 4, int(CancelReason.REDUCE_ONLY)),
    ]
    # long 5 again, a reduce-only stop for 3: the position shrinks to 2 before it fires
    pair.order(1, ASK, 100, 5)
    pair.order(2, BID, 100, 5)
    small = pair.trigger(2, ASK, STOP_LIMIT, 90, 3, reduce_only=True)
    pair.order(2, ASK, 95, 3, sub=0)  # sells 3 to owner 3's bid: long 2 left
    events = pair.price(90 * TICK)
    assert fired(events) == [small]
    assert type(events[-1]) is OrderCanceled and events[-1].reason == int(CancelReason.REDUCE_ONLY)


def test_pending_triggers_count_as_open_and_can_be_cancelled_or_expire() -> None:
    pair = Pair(dict(SPEC, max_open_orders_per_account=3))
    a = pair.trigger(1, BID, STOP_LIMIT, 100, 2, client_order_id=7)
    pair.trigger(1, BID, STOP_MARKET, 100, 2, expire_at_ns=50)  # IOC, counted all the same
    pair.trigger(1, ASK, TP_MARKET, 120, 2)
    (refused,) = pair.order(1, BID, 90, 1)
    assert refused.code == int(RejectCode.TOO_MANY_OPEN_ORDERS)
    (dup,) = pair.order(1, BID, 90, 1, client_order_id=7)
    assert dup.code == int(RejectCode.DUPLICATE_CLIENT_ORDER_ID)
    (amend,) = pair.run(AmendOrder(3, 1, 0, a, 99 * TICK, LOT))
    assert amend.code == int(RejectCode.AMEND_NOT_ALLOWED)
    (cancel,) = pair.run(CancelOrder(3, 1, 0, 0, 7))  # by client order id
    assert cancel == OrderCanceled(cancel.seq, pair.ts, 3, a, 1, 0, 2, int(CancelReason.USER))
    pair.ts = 60
    (expired,) = pair.run(ExpireOrders())
    assert type(expired) is OrderExpired and expired.expired_lots == 2
    assert len(pair.run(CancelAll(3, 1, 0))) == 1
    assert pair.fm.trigger_orders() == [] and pair.fm.open_order_count() == 0
    assert pair.price(100 * TICK) == []


def test_trigger_kind_refusals_match_the_reference() -> None:
    pair = Pair()
    for kw in (
        dict(order_type=STOP_MARKET, time_in_force=GTC, trigger_price=90 * TICK),
        dict(order_type=STOP_LIMIT, time_in_force=int(TimeInForce.POST_ONLY), trigger_price=TICK),
        dict(order_type=TP_LIMIT, trigger_price=0),
        dict(order_type=TP_LIMIT, trigger_price=90 * TICK + 1),
        dict(order_type=STOP_LIMIT, trigger_price=2**70 * TICK),  # beyond int64
        dict(order_type=STOP_LIMIT, trigger_price=-(2**70)),
    ):
        (rejected,) = pair.order(1, BID, 100, 1, **kw)
        assert type(rejected) is OrderRejected
    assert [type(e) for e in pair.price(0)] == [OrderRejected]
    assert [type(e) for e in pair.price(-(2**70))] == [OrderRejected]


def test_a_price_beyond_int64_fires_every_rising_trigger() -> None:
    pair = Pair()
    up = pair.trigger(1, BID, STOP_LIMIT, 100, 2)
    pair.trigger(1, ASK, STOP_LIMIT, 90, 2)
    events = pair.price(2**64 - 1)
    assert events[0] == OrderTriggered(events[0].seq, pair.ts, 3, up, 2**64 - 1)


def test_mass_trigger_grows_the_book_and_the_event_buffer() -> None:
    """Far more pending triggers than the initial capacity (growth copies them), then one
    price fires them all at once: more rows than a plain command's bound."""
    for events in ("append", "last"):
        pair = Pair(capacity=2, accounts=2, events=events)
        for i in range(60):
            pair.order(100 + i, ASK, 101 + i % 3, 1)
        for i in range(60):
            pair.trigger(1 + i % 7, BID, STOP_LIMIT if i % 2 else STOP_MARKET, 100, 2, ticks=102)
        got = pair.price(100 * TICK)
        assert len(fired(got)) == 60
        # the worst case of that command is beyond a plain command's bound: the buffer grew
        assert len(pair.fm._E) > 2 * int(pair.fm._S[H_CAP]) + 16


def test_batch_with_triggers_equals_per_call() -> None:
    rng = np.random.default_rng(21)
    cmds: list[tuple[Any, int]] = []
    for ts in range(1, 3000):
        x = rng.random()
        owner, side = int(rng.integers(1, 6)), int(rng.integers(2))
        if x < 0.08:
            cmds.append((UpdateTriggerPrice(3, int(rng.integers(95, 106)) * TICK), ts))
            continue
        otype = int(rng.choice([0, 0, 0, STOP_MARKET, STOP_LIMIT, TP_MARKET, TP_LIMIT]))
        market = otype in (STOP_MARKET, TP_MARKET)
        ticks = int(rng.integers(95, 106))
        cmds.append(
            (
                PlaceOrder(
                    3,
                    owner,
                    0,
                    side,
                    ticks * TICK,
                    int(rng.integers(1, 6)) * LOT,
                    otype,
                    IOC if market else GTC,
                    0,
                    int(rng.integers(95, 106)) * TICK if otype else 0,
                    bool(rng.random() < 0.2) and otype != 0,
                ),
                ts,
            )
        )
    pair = Pair(capacity=8, accounts=2)
    want: list[Any] = []
    for cmd, ts in cmds:
        pair.ts = ts - 1
        want.extend(pair.run(cmd))
    assert sum(type(e) is OrderTriggered for e in want) > 100
    batch = FastMarket(MarketSpec(**SPEC), capacity=8, accounts=2)
    batch.seq = 2
    rows = batch.run_batch(FastMarket.encode(cmds), keep_events=True)
    got = batch.drain_events()
    assert rows == len(got) == len(want) and got == want
    assert batch.trigger_orders() == pair.fm.trigger_orders()
    assert batch.canonical() == pair.fm.canonical()
