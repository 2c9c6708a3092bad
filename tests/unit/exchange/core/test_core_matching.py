"""Arrange/Act/Assert tests of ExchangeCore: matching, STP, TIFs, triggers, expiry, amend,
client ids, every RejectCode the core emits, and golden event lists for small scenarios.

Every test that uses the ``ex`` fixture is also checked at teardown: ``check_invariants``
passes, a fresh core folding the journal has the same ``state_hash``, and so does a core
rebuilt from ``snapshot()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from exchange.core.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    CreateMarket,
    ExpireOrders,
    PlaceOrder,
    UpdateTriggerPrice,
)
from exchange.core.errors import (
    CLEARINGHOUSE_CODES,
    GOVERNANCE_CODES,
    LIQUIDATION_CODES,
    RISK_GATE_CODES,
    InvariantViolation,
    RejectCode,
)
from exchange.core.events import (
    MarketCreated,
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderRested,
    OrderTriggered,
    SelfTradeDecremented,
    TradeExecuted,
    decode_events,
    encode_events,
)
from exchange.core.orders import (
    CancelReason,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    account_key,
)
from exchange.core.state import ExchangeCore

M = 1
TICK = 10_000  # 0.01 quote per base unit
LOT = 10**7  # 0.01 base unit
TS0 = 1_000
BID, ASK = Side.BID, Side.ASK
LIMIT, MARKET = OrderType.LIMIT, OrderType.MARKET
STOP_MARKET, STOP_LIMIT = OrderType.STOP_MARKET, OrderType.STOP_LIMIT
TP_MARKET, TP_LIMIT = OrderType.TAKE_PROFIT_MARKET, OrderType.TAKE_PROFIT_LIMIT
GTC, IOC, FOK = TimeInForce.GTC, TimeInForce.IOC, TimeInForce.FOK
PO, POS = TimeInForce.POST_ONLY, TimeInForce.POST_ONLY_SLIDE
CT = SelfTradePrevention.CANCEL_TAKING
CR = SelfTradePrevention.CANCEL_RESTING
DB = SelfTradePrevention.DECREMENT_BOTH


def px(ticks: int) -> int:
    return ticks * TICK


def sz(lots: int) -> int:
    return lots * LOT


class Ex:
    """An ExchangeCore with one market, a clock and the full journal of its events."""

    def __init__(self, **spec: int) -> None:
        self.core = ExchangeCore()
        self.journal: list[Any] = []
        self.ts = TS0
        kw = {
            "min_size_lots": 1,
            "max_size_lots": 1000,
            "max_price_ticks": 10_000,
            "max_open_orders_per_account": 256,
            **spec,
        }
        events = self.run(CreateMarket(M, "SOL-PERP", TICK, LOT, **kw), ts=TS0)
        assert [type(e) for e in events] == [MarketCreated]

    def run(self, cmd: Any, ts: int | None = None) -> list[Any]:
        """Execute at ``ts`` (default: one ns after the previous command)."""
        self.ts = self.ts + 1 if ts is None else ts
        events = self.core.execute(cmd, self.ts)
        for i, e in enumerate(events):
            assert e.seq == len(self.journal) + i + 1, "seq must be gap-free"
            assert e.ts_ns == self.ts
        self.journal.extend(events)
        return events

    def place(
        self,
        owner: int,
        side: int,
        ticks: int,
        lots: int,
        sub: int = 0,
        ts: int | None = None,
        **kw: Any,
    ) -> list[Any]:
        """``otype`` / ``tif`` / ``stp`` are short for order_type / time_in_force / stp_mode."""
        for short, full in (("otype", "order_type"), ("tif", "time_in_force"), ("stp", "stp_mode")):
            if short in kw:
                kw[full] = kw.pop(short)
        return self.run(PlaceOrder(M, owner, sub, side, px(ticks), sz(lots), **kw), ts)

    def rest(self, owner: int, side: int, ticks: int, lots: int, sub: int = 0, **kw: Any) -> int:
        """Place a non-crossing order and return its order id."""
        events = self.place(owner, side, ticks, lots, sub, **kw)
        assert [type(e) for e in events] == [OrderAccepted, OrderRested], events
        return events[0].order_id

    def book(self) -> list[list[tuple[int, int, int]]]:
        """``[bids, asks]`` as ``(price_ticks, order_id, remaining_lots)``, priority order."""
        return [
            [(price, o[0], o[9]) for price, _total, queue in side for o in queue]
            for side in self.core.books[M].canonical()
        ]

    def position(self, owner: int, sub: int = 0) -> int:
        return self.core.positions.get((account_key(owner, sub), M), 0)

    def check(self) -> None:
        self.core.check_invariants()
        h = self.core.state_hash()
        fresh = ExchangeCore()
        for e in decode_events(encode_events(self.journal)):
            fresh.apply(e)
        assert fresh.state_hash() == h, "replayed journal disagrees with the executing core"
        assert ExchangeCore.from_snapshot(self.core.snapshot()).state_hash() == h


@pytest.fixture
def ex() -> Iterator[Ex]:
    e = Ex()
    yield e
    e.check()


def kinds(events: list[Any]) -> list[str]:
    return [type(e).__name__ for e in events]


def trades(events: list[Any]) -> list[tuple[int, int, int, int]]:
    """``(maker_id, taker_id, price_ticks, lots)`` of each trade."""
    return [
        (e.maker_order_id, e.taker_order_id, e.price_ticks, e.num_base_lots)
        for e in events
        if type(e) is TradeExecuted
    ]


def accepted(
    seq: int,
    ts: int,
    oid: int,
    owner: int,
    side: int,
    price: int,
    lots: int,
    sub: int = 0,
    otype: int = LIMIT,
    tif: int = GTC,
    client: int = 0,
    trigger: int = 0,
    reduce_only: bool = False,
    stp: int = CT,
    expire: int = 0,
) -> OrderAccepted:
    return OrderAccepted(
        seq,
        ts,
        M,
        oid,
        client,
        owner,
        sub,
        side,
        otype,
        tif,
        price,
        lots,
        trigger,
        reduce_only,
        stp,
        expire,
    )


def without_seq(core: ExchangeCore) -> dict[str, Any]:
    state = core.canonical()
    del state["next_seq"]
    return state


def assert_rejected(ex: Ex, cmd: Any, code: RejectCode, prefix: str) -> OrderRejected:
    """Exactly one OrderRejected with ``code``; nothing but next_seq changes."""
    before = without_seq(ex.core)
    seq = ex.core.next_seq
    events = ex.run(cmd)
    assert len(events) == 1, events
    (e,) = events
    assert type(e) is OrderRejected, e
    assert e.code == code, (RejectCode(e.code).name, e.message)
    assert e.seq == seq and ex.core.next_seq == seq + 1
    assert e.message.startswith(prefix), e.message
    assert "expected" in e.message and "got" in e.message, e.message
    assert without_seq(ex.core) == before
    return e


# ====================================================================== golden scenarios
def test_golden_partial_fill_then_rest(ex: Ex) -> None:
    # Arrange
    assert ex.place(2, ASK, 100, 3) == [
        accepted(2, 1001, 1, 2, ASK, 100, 3),
        OrderRested(3, 1001, M, 1, 100, 3),
    ]
    # Act
    events = ex.place(1, BID, 101, 5)
    # Assert
    assert events == [
        accepted(4, 1002, 2, 1, BID, 101, 5),
        TradeExecuted(5, 1002, M, 1, 2, 2, 0, 1, 0, BID, 100, 3, 0, 2),
        OrderRested(6, 1002, M, 2, 101, 2),
    ]
    assert ex.book() == [[(101, 2, 2)], []]
    assert ex.position(1) == 3 and ex.position(2) == -3


def test_golden_sweep_across_three_levels(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 1)  # id 1
    ex.rest(3, ASK, 101, 2)  # id 2
    ex.rest(2, ASK, 102, 3)  # id 3
    ex.rest(3, ASK, 103, 1)  # id 4: beyond the taker's limit
    events = ex.place(1, BID, 102, 5, tif=IOC)
    assert events == [
        accepted(10, 1005, 5, 1, BID, 102, 5, tif=IOC),
        TradeExecuted(11, 1005, M, 1, 5, 2, 0, 1, 0, BID, 100, 1, 0, 4),
        TradeExecuted(12, 1005, M, 2, 5, 3, 0, 1, 0, BID, 101, 2, 0, 2),
        TradeExecuted(13, 1005, M, 3, 5, 2, 0, 1, 0, BID, 102, 2, 1, 0),
    ]
    assert ex.book() == [[], [(102, 3, 1), (103, 4, 1)]]
    assert ex.position(1) == 5


def _stp_arrange(ex: Ex) -> None:
    ex.rest(2, ASK, 99, 1)  # id 1: another owner, better price
    ex.rest(1, ASK, 100, 2, sub=0)  # id 2: owner 1, sub-account 0
    ex.rest(2, ASK, 100, 2)  # id 3: another owner, behind it


def test_golden_stp_cancel_taking_across_sub_accounts(ex: Ex) -> None:
    _stp_arrange(ex)
    events = ex.place(1, BID, 100, 4, sub=1, stp=CT)
    assert events == [
        accepted(8, 1004, 4, 1, BID, 100, 4, sub=1, stp=CT),
        TradeExecuted(9, 1004, M, 1, 4, 2, 0, 1, 1, BID, 99, 1, 0, 3),  # fills so far stand
        OrderCanceled(10, 1004, M, 4, 1, 1, 3, CancelReason.STP_CANCEL_TAKING),
    ]
    assert ex.book() == [[], [(100, 2, 2), (100, 3, 2)]]


def test_golden_stp_cancel_resting_across_sub_accounts(ex: Ex) -> None:
    _stp_arrange(ex)
    events = ex.place(1, BID, 100, 4, sub=1, stp=CR)
    assert events == [
        accepted(8, 1004, 4, 1, BID, 100, 4, sub=1, stp=CR),
        TradeExecuted(9, 1004, M, 1, 4, 2, 0, 1, 1, BID, 99, 1, 0, 3),
        OrderCanceled(10, 1004, M, 2, 1, 0, 2, CancelReason.STP_CANCEL_RESTING),
        TradeExecuted(11, 1004, M, 3, 4, 2, 0, 1, 1, BID, 100, 2, 0, 1),
        OrderRested(12, 1004, M, 4, 100, 1),
    ]
    assert ex.book() == [[(100, 4, 1)], []]


def test_golden_stp_decrement_both_across_sub_accounts(ex: Ex) -> None:
    _stp_arrange(ex)
    events = ex.place(1, BID, 100, 4, sub=1, stp=DB)
    assert events == [
        accepted(8, 1004, 4, 1, BID, 100, 4, sub=1, stp=DB),
        TradeExecuted(9, 1004, M, 1, 4, 2, 0, 1, 1, BID, 99, 1, 0, 3),
        SelfTradeDecremented(10, 1004, M, 2, 4, 2),
        OrderCanceled(11, 1004, M, 2, 1, 0, 0, CancelReason.STP_DECREMENT),
        TradeExecuted(12, 1004, M, 3, 4, 2, 0, 1, 1, BID, 100, 1, 1, 0),
    ]
    assert ex.book() == [[], [(100, 3, 1)]]
    assert ex.position(1, 1) == 2 and ex.position(1, 0) == 0


def test_golden_stp_decrement_both_smaller_taker(ex: Ex) -> None:
    ex.rest(1, ASK, 100, 5, sub=0)  # id 1
    events = ex.place(1, BID, 100, 2, sub=1, stp=DB)
    assert events == [
        accepted(4, 1002, 2, 1, BID, 100, 2, sub=1, stp=DB),
        SelfTradeDecremented(5, 1002, M, 1, 2, 2),
        OrderCanceled(6, 1002, M, 2, 1, 1, 0, CancelReason.STP_DECREMENT),
    ]
    assert ex.book() == [[], [(100, 1, 3)]]  # keeps its place, 3 lots left
    assert not any(type(e) is TradeExecuted for e in ex.journal)


def test_golden_post_only_slide(ex: Ex) -> None:
    ex.rest(2, ASK, 101, 1)  # id 1
    events = ex.place(1, BID, 103, 2, tif=POS)
    assert events == [
        accepted(4, 1002, 2, 1, BID, 103, 2, tif=POS),
        OrderRested(5, 1002, M, 2, 100, 2),  # one tick inside the best ask
    ]
    assert ex.book() == [[(100, 2, 2)], [(101, 1, 1)]]


def test_golden_amend_size_down_keeps_priority(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 3)  # id 1, first in the queue
    ex.rest(3, ASK, 100, 3)  # id 2
    assert ex.run(AmendOrder(M, 2, 0, 1, px(100), sz(2))) == [
        OrderAmended(6, 1003, M, 1, 100, 2, True)
    ]
    events = ex.place(1, BID, 100, 2, tif=IOC)
    assert events == [
        accepted(7, 1004, 3, 1, BID, 100, 2, tif=IOC),
        TradeExecuted(8, 1004, M, 1, 3, 2, 0, 1, 0, BID, 100, 2, 0, 0),  # id 1 still first
    ]
    assert ex.book() == [[], [(100, 2, 3)]]


def test_golden_amend_size_up_loses_priority(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 3)  # id 1
    ex.rest(3, ASK, 100, 3)  # id 2
    assert ex.run(AmendOrder(M, 2, 0, 1, px(100), sz(4))) == [
        OrderAmended(6, 1003, M, 1, 100, 4, False),
        OrderRested(7, 1003, M, 1, 100, 4),
    ]
    events = ex.place(1, BID, 100, 2, tif=IOC)
    assert events == [
        accepted(8, 1004, 3, 1, BID, 100, 2, tif=IOC),
        TradeExecuted(9, 1004, M, 2, 3, 3, 0, 1, 0, BID, 100, 2, 1, 0),  # id 2 now first
    ]
    assert ex.book() == [[], [(100, 2, 1), (100, 1, 4)]]


def test_golden_stop_market_triggering(ex: Ex) -> None:
    ex.rest(2, ASK, 101, 2)  # id 1
    events = ex.place(1, BID, 110, 2, otype=STOP_MARKET, tif=IOC, trigger_price=px(105))
    assert events == [accepted(4, 1002, 2, 1, BID, 110, 2, otype=STOP_MARKET, tif=IOC, trigger=105)]
    assert ex.run(UpdateTriggerPrice(M, px(104))) == []
    events = ex.run(UpdateTriggerPrice(M, px(105)))
    assert events == [
        OrderTriggered(5, 1004, M, 2, px(105)),  # the supplied price, PRICE_PRECISION
        TradeExecuted(6, 1004, M, 1, 2, 2, 0, 1, 0, BID, 101, 2, 0, 0),
    ]
    assert ex.book() == [[], []]
    assert ex.core.trigger_books[M].orders == {}


def test_golden_expiry_before_the_command_acts(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 1, expire_at_ns=2_000)  # id 1
    assert ex.place(1, BID, 90, 1, ts=1_999) == [  # one ns early: still there
        accepted(4, 1_999, 2, 1, BID, 90, 1),
        OrderRested(5, 1_999, M, 2, 90, 1),
    ]
    events = ex.place(3, BID, 100, 1, ts=2_000)
    assert events == [
        OrderExpired(6, 2_000, M, 1, 2, 0, 1),  # gone before the bid arrives: no trade
        accepted(7, 2_000, 3, 3, BID, 100, 1),
        OrderRested(8, 2_000, M, 3, 100, 1),
    ]
    assert ex.book() == [[(100, 3, 1), (90, 2, 1)], []]


# ====================================================================== matching basics
def test_resting_order_does_not_trade_through_its_limit(ex: Ex) -> None:
    ex.rest(2, ASK, 101, 1)
    events = ex.place(1, BID, 100, 1)
    assert kinds(events) == ["OrderAccepted", "OrderRested"]
    assert ex.book() == [[(100, 2, 1)], [(101, 1, 1)]]


def test_price_time_priority_and_maker_price(ex: Ex) -> None:
    a = ex.rest(2, ASK, 101, 1)
    b = ex.rest(3, ASK, 100, 1)
    c = ex.rest(2, ASK, 100, 1, sub=1)
    d = ex.rest(3, ASK, 101, 1)
    events = ex.place(1, BID, 105, 4)
    assert trades(events) == [(b, 5, 100, 1), (c, 5, 100, 1), (a, 5, 101, 1), (d, 5, 101, 1)]


def test_bid_side_priority_for_a_sell_taker(ex: Ex) -> None:
    a = ex.rest(2, BID, 99, 1)
    b = ex.rest(3, BID, 100, 1)
    c = ex.rest(2, BID, 100, 1)
    events = ex.place(1, ASK, 99, 3)
    assert trades(events) == [(b, 4, 100, 1), (c, 4, 100, 1), (a, 4, 99, 1)]
    assert ex.position(1) == -3 and ex.position(2) == 2 and ex.position(3) == 1


def test_ioc_remainder_is_canceled(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 1)
    events = ex.place(1, BID, 100, 3, tif=IOC)
    assert kinds(events) == ["OrderAccepted", "TradeExecuted", "OrderCanceled"]
    assert events[-1].canceled_lots == 2 and events[-1].reason == CancelReason.IOC_REMAINDER
    assert ex.book() == [[], []]


def test_ioc_without_liquidity_is_accepted_then_canceled(ex: Ex) -> None:
    events = ex.place(1, BID, 100, 3, tif=IOC)
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert events[1].canceled_lots == 3
    assert ex.book() == [[], []]


def test_no_self_trade_across_owners_only(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 1)
    events = ex.place(1, BID, 100, 1)  # different owner: trades
    assert trades(events) == [(1, 2, 100, 1)]


def test_stp_applies_within_one_sub_account_too(ex: Ex) -> None:
    ex.rest(1, ASK, 100, 1)
    events = ex.place(1, BID, 100, 1, stp=CT)
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert events[1].reason == CancelReason.STP_CANCEL_TAKING
    assert ex.book() == [[], [(100, 1, 1)]]


def test_stp_cancel_taking_before_any_fill(ex: Ex) -> None:
    ex.rest(1, ASK, 100, 2, sub=3)
    ex.rest(2, ASK, 101, 2)
    events = ex.place(1, BID, 101, 4, sub=4, stp=CT)
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert events[1].canceled_lots == 4
    assert ex.book() == [[], [(100, 1, 2), (101, 2, 2)]]


# ====================================================================== FOK and market orders
def test_fok_fills_completely(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 2)
    ex.rest(3, ASK, 101, 2)
    events = ex.place(1, BID, 101, 4, tif=FOK)
    assert kinds(events) == ["OrderAccepted", "TradeExecuted", "TradeExecuted"]
    assert events[-1].taker_remaining_lots == 0


def test_fok_short_by_one_lot_is_rejected_and_changes_nothing(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 2)
    ex.rest(3, ASK, 101, 2)
    ex.rest(3, ASK, 102, 9)  # beyond the limit
    e = assert_rejected(
        ex,
        PlaceOrder(M, 1, 0, BID, px(101), sz(5), time_in_force=FOK),
        RejectCode.FOK_NOT_FILLABLE,
        "size:",
    )
    assert e.message == "size: expected 5 lots fillable at once, got 4"


def test_fok_blocked_by_own_order_under_cancel_taking(ex: Ex) -> None:
    ex.rest(1, ASK, 100, 1, sub=1)
    ex.rest(2, ASK, 100, 5)
    assert_rejected(
        ex,
        PlaceOrder(M, 1, 0, BID, px(100), sz(2), time_in_force=FOK, stp_mode=CT),
        RejectCode.FOK_NOT_FILLABLE,
        "size:",
    )


def test_fok_with_decrement_both_is_not_completely_fillable(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 1)
    ex.rest(1, ASK, 100, 1, sub=1)
    ex.rest(3, ASK, 100, 5)
    assert_rejected(
        ex,
        PlaceOrder(M, 1, 0, BID, px(100), sz(3), time_in_force=FOK, stp_mode=DB),
        RejectCode.FOK_NOT_FILLABLE,
        "size:",
    )


def test_fok_with_cancel_resting_skips_own_orders(ex: Ex) -> None:
    ex.rest(1, ASK, 100, 3, sub=1)  # id 1, own
    ex.rest(2, ASK, 100, 2)  # id 2
    events = ex.place(1, BID, 100, 2, tif=FOK, stp=CR)
    assert kinds(events) == ["OrderAccepted", "OrderCanceled", "TradeExecuted"]
    assert events[1].order_id == 1 and events[1].reason == CancelReason.STP_CANCEL_RESTING
    assert ex.book() == [[], []]


def test_market_order_stops_at_protection_price(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 1)
    ex.rest(2, ASK, 101, 1)
    ex.rest(2, ASK, 105, 1)
    events = ex.place(1, BID, 101, 10, otype=MARKET, tif=IOC)
    assert trades(events) == [(1, 4, 100, 1), (2, 4, 101, 1)]
    assert events[-1] == OrderCanceled(
        events[-1].seq, ex.ts, M, 4, 1, 0, 8, CancelReason.IOC_REMAINDER
    )
    assert ex.book() == [[], [(105, 3, 1)]]


def test_market_sell_fok(ex: Ex) -> None:
    ex.rest(2, BID, 100, 3)
    events = ex.place(1, ASK, 1, 3, otype=MARKET, tif=FOK)
    assert trades(events) == [(1, 2, 100, 3)]
    assert_rejected(
        ex,
        PlaceOrder(M, 1, 0, ASK, px(1), sz(1), order_type=MARKET, time_in_force=FOK),
        RejectCode.FOK_NOT_FILLABLE,
        "size:",
    )


def test_market_order_never_rests(ex: Ex) -> None:
    events = ex.place(1, BID, 200, 1, otype=MARKET, tif=IOC)
    assert kinds(events) == ["OrderAccepted", "OrderCanceled"]
    assert ex.book() == [[], []]


# ====================================================================== post-only
def test_post_only_rests_when_not_crossing(ex: Ex) -> None:
    ex.rest(2, ASK, 101, 1)
    assert ex.rest(1, BID, 100, 1, time_in_force=PO) == 2


def test_post_only_slide_ask_side(ex: Ex) -> None:
    ex.rest(2, BID, 100, 1)
    events = ex.place(1, ASK, 97, 2, tif=POS)
    assert events[1] == OrderRested(events[1].seq, ex.ts, M, 2, 101, 2)


def test_post_only_slide_not_crossing_keeps_price(ex: Ex) -> None:
    ex.rest(2, ASK, 105, 1)
    events = ex.place(1, BID, 100, 2, tif=POS)
    assert events[1].price_ticks == 100


def test_post_only_against_own_order_is_still_refused(ex: Ex) -> None:
    ex.rest(1, ASK, 100, 1)
    assert_rejected(
        ex,
        PlaceOrder(M, 1, 0, BID, px(100), sz(1), time_in_force=PO),
        RejectCode.POST_ONLY_WOULD_CROSS,
        "price:",
    )


# ====================================================================== reduce-only
def _long(ex: Ex, owner: int, lots: int) -> None:
    ex.rest(9, ASK, 100, lots)
    ex.place(owner, BID, 100, lots)
    assert ex.position(owner) == lots


def test_reduce_only_is_clamped_to_the_position(ex: Ex) -> None:
    _long(ex, 1, 2)
    events = ex.place(1, ASK, 105, 5, reduce_only=True)
    assert kinds(events) == ["OrderAccepted", "OrderRested"]
    assert events[0].num_base_lots == 2 and events[1].num_base_lots == 2


def test_reduce_only_buy_reduces_a_short(ex: Ex) -> None:
    ex.rest(9, BID, 100, 3)
    ex.place(1, ASK, 100, 3)
    assert ex.position(1) == -3
    ex.rest(8, ASK, 101, 10)
    events = ex.place(1, BID, 101, 10, tif=IOC, reduce_only=True)
    assert trades(events) == [(3, 4, 101, 3)]
    assert ex.position(1) == 0


def test_reduce_only_position_is_per_sub_account(ex: Ex) -> None:
    _long(ex, 1, 2)
    assert_rejected(
        ex,
        PlaceOrder(M, 1, 1, ASK, px(105), sz(1), reduce_only=True),
        RejectCode.REDUCE_ONLY_WOULD_INCREASE,
        "reduce_only:",
    )


def test_triggered_reduce_only_order_canceled_if_position_shrank(ex: Ex) -> None:
    _long(ex, 1, 3)
    ev = ex.place(1, ASK, 90, 3, otype=STOP_MARKET, tif=IOC, trigger_price=px(95), reduce_only=True)
    stop = ev[0].order_id
    ex.rest(7, BID, 99, 2)
    ex.place(1, ASK, 99, 2)  # sells 2: position 1
    assert ex.position(1) == 1
    events = ex.run(UpdateTriggerPrice(M, px(95)))
    assert kinds(events) == ["OrderTriggered", "OrderCanceled"]
    assert events[1].order_id == stop and events[1].canceled_lots == 3
    assert events[1].reason == CancelReason.REDUCE_ONLY


def test_triggered_reduce_only_order_runs_if_still_reducing(ex: Ex) -> None:
    _long(ex, 1, 3)
    ex.place(1, ASK, 90, 3, otype=STOP_MARKET, tif=IOC, trigger_price=px(95), reduce_only=True)
    ex.rest(7, BID, 94, 5)
    events = ex.run(UpdateTriggerPrice(M, px(94)))
    assert kinds(events) == ["OrderTriggered", "TradeExecuted"]
    assert ex.position(1) == 0


# ====================================================================== triggers
@pytest.mark.parametrize(
    ("otype", "side", "trigger", "no_fire", "fire"),
    [
        (STOP_MARKET, BID, 105, 104, 105),  # stop-buy: price >= trigger
        (STOP_LIMIT, BID, 105, 104, 106),
        (STOP_MARKET, ASK, 95, 96, 95),  # stop-sell: price <= trigger
        (STOP_LIMIT, ASK, 95, 96, 94),
        (TP_MARKET, ASK, 105, 104, 105),  # take-profit sell: price >= trigger
        (TP_LIMIT, ASK, 105, 104, 110),
        (TP_MARKET, BID, 95, 96, 95),  # take-profit buy: price <= trigger
        (TP_LIMIT, BID, 95, 96, 90),
    ],
)
def test_trigger_direction(
    ex: Ex, otype: OrderType, side: Side, trigger: int, no_fire: int, fire: int
) -> None:
    tif = IOC if otype in (STOP_MARKET, TP_MARKET) else GTC
    events = ex.place(1, side, 100, 1, otype=otype, tif=tif, trigger_price=px(trigger))
    assert kinds(events) == ["OrderAccepted"]
    oid = events[0].order_id
    assert list(ex.core.trigger_books[M].orders) == [oid]
    assert ex.run(UpdateTriggerPrice(M, px(no_fire))) == []
    events = ex.run(UpdateTriggerPrice(M, px(fire)))
    assert events[0] == OrderTriggered(events[0].seq, ex.ts, M, oid, px(fire))
    assert ex.core.trigger_books[M].orders == {}
    if tif == GTC:  # a triggered stop/take-profit limit rests like a limit order
        assert kinds(events) == ["OrderTriggered", "OrderRested"]
        assert oid in ex.core.books[M].orders
    else:
        assert kinds(events) == ["OrderTriggered", "OrderCanceled"]
        assert events[1].reason == CancelReason.IOC_REMAINDER


def test_triggers_execute_oldest_first(ex: Ex) -> None:
    ex.rest(2, ASK, 101, 1)
    old = ex.place(1, BID, 110, 1, otype=STOP_MARKET, tif=IOC, trigger_price=px(104))
    new = ex.place(3, BID, 110, 1, otype=STOP_MARKET, tif=IOC, trigger_price=px(103))
    events = ex.run(UpdateTriggerPrice(M, px(105)))
    old_id, new_id = old[0].order_id, new[0].order_id
    assert [
        (type(e).__name__, e.order_id if hasattr(e, "order_id") else e.taker_order_id)
        for e in events
    ] == [
        ("OrderTriggered", old_id),
        ("TradeExecuted", old_id),
        ("OrderTriggered", new_id),
        ("OrderCanceled", new_id),
    ]


def test_trigger_order_can_be_canceled_by_id_client_id_and_cancel_all(ex: Ex) -> None:
    a = ex.place(1, BID, 110, 1, otype=STOP_LIMIT, trigger_price=px(104))[0].order_id
    b = ex.place(1, BID, 110, 1, otype=STOP_LIMIT, trigger_price=px(104), client_order_id=7)[
        0
    ].order_id
    c = ex.place(1, ASK, 90, 1, otype=TP_LIMIT, trigger_price=px(96))[0].order_id
    assert kinds(ex.run(CancelOrder(M, 1, 0, a))) == ["OrderCanceled"]
    assert ex.run(CancelOrder(M, 1, 0, 0, 7))[0].order_id == b
    events = ex.run(CancelAll(M, 1, 0))
    assert [(e.order_id, e.reason) for e in events] == [(c, CancelReason.CANCEL_ALL)]
    assert ex.core.trigger_books[M].orders == {}
    assert ex.run(UpdateTriggerPrice(M, px(104))) == []


def test_trigger_order_counts_as_open_and_keeps_client_id(ex: Ex) -> None:
    ex.place(1, BID, 110, 1, otype=STOP_LIMIT, trigger_price=px(104), client_order_id=5)
    assert_rejected(
        ex,
        PlaceOrder(M, 1, 0, BID, px(90), sz(1), client_order_id=5),
        RejectCode.DUPLICATE_CLIENT_ORDER_ID,
        "client_order_id:",
    )


# ====================================================================== expiry
def test_expire_orders_command(ex: Ex) -> None:
    a = ex.rest(1, BID, 90, 1, expire_at_ns=5_000)
    b = ex.rest(2, ASK, 110, 1, expire_at_ns=4_000)
    c = ex.place(3, BID, 120, 1, otype=STOP_LIMIT, trigger_price=px(115), expire_at_ns=4_500)[
        0
    ].order_id
    keep = ex.rest(3, BID, 91, 1)
    assert ex.run(ExpireOrders(), ts=3_999) == []
    events = ex.run(ExpireOrders(), ts=4_500)
    assert [(type(e), e.order_id, e.expired_lots) for e in events] == [
        (OrderExpired, b, 1),
        (OrderExpired, c, 1),
    ]  # by deadline
    events = ex.run(ExpireOrders(), ts=10_000)
    assert [e.order_id for e in events] == [a]
    assert ex.book() == [[(91, keep, 1)], []]


def test_expiry_order_same_deadline_by_id(ex: Ex) -> None:
    a = ex.rest(1, BID, 90, 1, expire_at_ns=5_000)
    b = ex.rest(1, BID, 91, 1, expire_at_ns=5_000)
    events = ex.run(CancelAll(M, 2, 0), ts=6_000)  # any command expires first
    assert [e.order_id for e in events] == [a, b]


def test_partially_filled_order_expires_with_its_rest(ex: Ex) -> None:
    a = ex.rest(2, ASK, 100, 5, expire_at_ns=3_000)
    ex.place(1, BID, 100, 2)
    events = ex.run(ExpireOrders(), ts=3_000)
    assert events == [OrderExpired(events[0].seq, 3_000, M, a, 2, 0, 3)]


def test_ioc_with_deadline_is_unaffected(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 1)
    events = ex.place(1, BID, 100, 1, tif=IOC, expire_at_ns=1_500)
    assert trades(events) == [(1, 2, 100, 1)]
    assert ex.run(ExpireOrders(), ts=2_000) == []


# ====================================================================== amend
def test_amend_price_change_loses_priority_even_when_moved_back(ex: Ex) -> None:
    a = ex.rest(2, ASK, 100, 1)
    b = ex.rest(3, ASK, 100, 1)
    ex.run(AmendOrder(M, 2, 0, a, px(101), sz(1)))
    events = ex.run(AmendOrder(M, 2, 0, a, px(100), sz(1)))
    assert events[0].priority_kept is False
    assert ex.book() == [[], [(100, b, 1), (100, a, 1)]]


def test_amend_into_the_spread_that_crosses_trades(ex: Ex) -> None:
    bid = ex.rest(1, BID, 99, 3)
    ask = ex.rest(2, ASK, 101, 2)
    events = ex.run(AmendOrder(M, 1, 0, bid, px(101), sz(3)))
    assert events == [
        OrderAmended(events[0].seq, ex.ts, M, bid, 101, 3, False),
        TradeExecuted(events[0].seq + 1, ex.ts, M, ask, bid, 2, 0, 1, 0, BID, 101, 2, 0, 1),
        OrderRested(events[0].seq + 2, ex.ts, M, bid, 101, 1),
    ]
    o = ex.core.books[M].orders[bid]
    assert o.status == OrderStatus.PARTIALLY_FILLED and o.filled_lots == 2


def test_amend_partially_filled_order_keeps_its_fills(ex: Ex) -> None:
    a = ex.rest(2, ASK, 100, 5)
    ex.place(1, BID, 100, 2)
    ex.run(AmendOrder(M, 2, 0, a, px(100), sz(1)))
    o = ex.core.books[M].orders[a]
    assert (o.remaining_lots, o.filled_lots, o.status) == (1, 2, OrderStatus.PARTIALLY_FILLED)


def test_amend_post_only_slide_slides(ex: Ex) -> None:
    ex.rest(2, ASK, 102, 1)
    a = ex.rest(1, BID, 99, 1, time_in_force=POS)
    events = ex.run(AmendOrder(M, 1, 0, a, px(105), sz(1)))
    assert kinds(events) == ["OrderAmended", "OrderRested"]
    assert events[0].price_ticks == 105 and events[1].price_ticks == 101


def test_amended_order_can_self_trade_prevent(ex: Ex) -> None:
    own = ex.rest(1, ASK, 101, 1, sub=1)
    bid = ex.rest(1, BID, 99, 1, stp_mode=CR)
    events = ex.run(AmendOrder(M, 1, 0, bid, px(101), sz(1)))
    assert kinds(events) == ["OrderAmended", "OrderCanceled", "OrderRested"]
    assert events[1].order_id == own and events[1].reason == CancelReason.STP_CANCEL_RESTING


# ====================================================================== client ids & cancel
def test_cancel_by_client_order_id(ex: Ex) -> None:
    a = ex.rest(1, BID, 90, 1, client_order_id=42)
    events = ex.run(CancelOrder(M, 1, 0, 0, 42))
    assert events == [OrderCanceled(events[0].seq, ex.ts, M, a, 1, 0, 1, CancelReason.USER)]
    assert ex.book() == [[], []]


def test_client_order_id_is_per_account_and_reusable(ex: Ex) -> None:
    ex.rest(1, BID, 90, 1, client_order_id=42)
    ex.rest(1, BID, 90, 1, sub=1, client_order_id=42)  # other sub-account: fine
    ex.rest(2, BID, 90, 1, client_order_id=42)  # other owner: fine
    ex.run(CancelOrder(M, 1, 0, 0, 42))
    ex.rest(1, BID, 91, 1, client_order_id=42)  # reusable once the first is gone


def test_client_order_id_released_when_filled(ex: Ex) -> None:
    ex.rest(1, BID, 100, 1, client_order_id=5)
    ex.place(2, ASK, 100, 1)
    ex.rest(1, BID, 100, 1, client_order_id=5)


def test_order_id_takes_precedence_over_client_id(ex: Ex) -> None:
    a = ex.rest(1, BID, 90, 1, client_order_id=1)
    b = ex.rest(1, BID, 91, 1, client_order_id=2)
    events = ex.run(CancelOrder(M, 1, 0, b, 1))
    assert events[0].order_id == b
    assert ex.book() == [[(90, a, 1)], []]


def test_cancel_all_only_touches_one_sub_account(ex: Ex) -> None:
    a = ex.rest(1, BID, 90, 1)
    b = ex.rest(1, BID, 91, 1, sub=1)
    c = ex.rest(1, ASK, 110, 1)
    events = ex.run(CancelAll(M, 1, 0))
    assert [(e.order_id, e.canceled_lots, e.reason) for e in events] == [
        (a, 1, CancelReason.CANCEL_ALL),
        (c, 1, CancelReason.CANCEL_ALL),
    ]
    assert ex.book() == [[(91, b, 1)], []]
    assert ex.run(CancelAll(M, 5, 0)) == []  # nothing live: no events


def test_other_account_cannot_cancel(ex: Ex) -> None:
    a = ex.rest(1, BID, 90, 1)
    assert_rejected(ex, CancelOrder(M, 1, 1, a), RejectCode.UNKNOWN_ORDER, "order:")
    assert_rejected(ex, CancelOrder(M, 2, 0, a), RejectCode.UNKNOWN_ORDER, "order:")


def test_cancel_a_filled_order_is_unknown(ex: Ex) -> None:
    a = ex.rest(1, BID, 100, 1)
    ex.place(2, ASK, 100, 1)
    assert_rejected(ex, CancelOrder(M, 1, 0, a), RejectCode.UNKNOWN_ORDER, "order:")


# ====================================================================== state plumbing
def test_order_ids_are_not_consumed_by_rejections(ex: Ex) -> None:
    ex.place(1, BID, 0, 1)  # rejected
    assert ex.rest(1, BID, 90, 1) == 1


def test_positions_follow_fills(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 4)
    ex.place(1, BID, 100, 3, sub=2)
    assert ex.position(1, 2) == 3 and ex.position(2) == -3
    ex.rest(1, BID, 99, 1, sub=2)
    ex.place(2, ASK, 99, 1)
    assert ex.position(1, 2) == 4 and ex.position(2) == -4


def test_execute_rejects_non_commands() -> None:
    with pytest.raises(TypeError, match="expected a command"):
        ExchangeCore().execute(("place",), 1)  # type: ignore[arg-type]


def test_apply_requires_gap_free_seq() -> None:
    core = ExchangeCore()
    with pytest.raises(InvariantViolation, match="expected seq 1, got 2"):
        core.apply(MarketCreated(2, 0, M, "X", TICK, LOT, 1, 10, 100, 5))


def test_check_invariants_detects_a_corrupted_level(ex: Ex) -> None:
    a = ex.rest(1, BID, 90, 2)
    level = ex.core.books[M].bids[90]
    level.total_lots += 1
    with pytest.raises(InvariantViolation, match="level 90"):
        ex.core.check_invariants()
    level.total_lots -= 1
    assert a in ex.core.books[M].orders


def test_check_invariants_detects_a_crossed_book(ex: Ex) -> None:
    ex.rest(1, BID, 90, 1)
    a = ex.rest(2, ASK, 95, 1)
    order = ex.core.books[M].orders[a]
    book = ex.core.books[M]
    book._unlink(order)  # move the ask below the bid behind the matcher's back
    order.price_ticks = 89
    book._link(order)
    with pytest.raises(InvariantViolation, match="expected bid < ask"):
        ex.core.check_invariants()
    book._unlink(order)
    order.price_ticks = 95
    book._link(order)


def test_replay_and_snapshot_of_a_busy_book() -> None:
    ex = Ex()
    ex.rest(1, BID, 99, 3, expire_at_ns=9_000, client_order_id=3)
    ex.rest(2, ASK, 101, 3)
    ex.place(3, BID, 120, 2, otype=STOP_LIMIT, trigger_price=px(104), expire_at_ns=8_000)
    ex.place(4, ASK, 101, 1, tif=POS)
    ex.place(1, BID, 101, 1, stp=DB)
    ex.run(AmendOrder(M, 2, 0, 2, px(102), sz(4)))
    ex.run(UpdateTriggerPrice(M, px(104)))
    ex.check()
    restored = ExchangeCore.from_snapshot(ex.core.snapshot())
    for cmd, ts in ((ExpireOrders(), 8_500), (ExpireOrders(), 9_000)):
        assert restored.execute(cmd, ts) == ex.run(cmd, ts)
    assert restored.state_hash() == ex.core.state_hash()


def test_two_markets_are_independent_but_share_seq_ids_and_expiry() -> None:
    ex = Ex()
    ex.run(CreateMarket(2, "ETH-PERP", TICK, LOT))
    a = ex.rest(1, BID, 90, 1, client_order_id=1)
    b = ex.run(PlaceOrder(2, 1, 0, BID, px(90), sz(1), client_order_id=1, expire_at_ns=5_000))[
        0
    ].order_id
    assert b == a + 1  # one order-id space across markets
    ex.run(PlaceOrder(2, 2, 0, ASK, px(90), sz(1)))  # trades in market 2 only
    assert ex.core.positions[(account_key(1, 0), 2)] == 1
    assert (account_key(1, 0), M) not in ex.core.positions
    assert ex.book() == [[(90, a, 1)], []]
    c = ex.run(PlaceOrder(2, 1, 0, BID, px(80), sz(1), expire_at_ns=5_000))[0].order_id
    events = ex.place(3, ASK, 200, 1, ts=6_000)  # a market-1 command expires market-2 orders
    assert (type(events[0]), events[0].market_id, events[0].order_id) == (OrderExpired, 2, c)
    assert [e.order_id for e in ex.run(CancelAll(2, 1, 0))] == []
    assert [e.order_id for e in ex.run(CancelAll(M, 1, 0))] == [a]
    ex.check()


# ====================================================================== every RejectCode
def _resting(
    owner: int = 1, side: int = BID, ticks: int = 90, lots: int = 1, **kw: Any
) -> Callable[[Ex], None]:
    def arrange(ex: Ex) -> None:
        ex.rest(owner, side, ticks, lots, **kw)

    return arrange


def _post_only_bid_below_an_ask(ex: Ex) -> None:
    ex.rest(2, ASK, 100, 1)  # order 1
    ex.rest(1, BID, 95, 1, time_in_force=PO)  # order 2


def _nothing(ex: Ex) -> None:
    return None


def _long_then_flat_with_reduce_only_ask(ex: Ex) -> None:
    _long(ex, 1, 2)  # orders 1, 2
    ex.rest(1, ASK, 110, 2, reduce_only=True)  # order 3
    ex.rest(8, BID, 100, 2)
    ex.place(1, ASK, 100, 2, tif=IOC)
    assert ex.position(1) == 0


def _stop(ex: Ex) -> None:
    ex.place(1, BID, 110, 1, otype=STOP_LIMIT, trigger_price=px(105))  # order 1


def _two_open(ex: Ex) -> None:  # market with max_open_orders_per_account=2
    ex.rest(1, BID, 90, 1)
    ex.place(1, BID, 110, 1, otype=STOP_LIMIT, trigger_price=px(105))


def _ask_at_one_tick(ex: Ex) -> None:
    ex.rest(2, ASK, 1, 1)


P = PlaceOrder
A = AmendOrder
R = RejectCode
REJECTIONS: list[tuple[str, dict[str, int], Callable[[Ex], None], Any, RejectCode, str]] = [
    (
        "unknown_market_place",
        {},
        _nothing,
        P(9, 1, 0, BID, px(100), sz(1)),
        R.UNKNOWN_MARKET,
        "market_id:",
    ),
    (
        "unknown_market_cancel",
        {},
        _nothing,
        CancelOrder(9, 1, 0, 1),
        R.UNKNOWN_MARKET,
        "market_id:",
    ),
    ("unknown_market_cancel_all", {}, _nothing, CancelAll(9, 1, 0), R.UNKNOWN_MARKET, "market_id:"),
    (
        "unknown_market_amend",
        {},
        _nothing,
        A(9, 1, 0, 1, px(1), sz(1)),
        R.UNKNOWN_MARKET,
        "market_id:",
    ),
    (
        "unknown_market_trigger",
        {},
        _nothing,
        UpdateTriggerPrice(9, px(1)),
        R.UNKNOWN_MARKET,
        "market_id:",
    ),
    ("zero_price", {}, _nothing, P(M, 1, 0, BID, 0, sz(1)), R.NON_POSITIVE_PRICE, "price:"),
    ("negative_price", {}, _nothing, P(M, 1, 0, BID, -TICK, sz(1)), R.NON_POSITIVE_PRICE, "price:"),
    ("off_tick", {}, _nothing, P(M, 1, 0, BID, px(100) + 1, sz(1)), R.OFF_TICK_PRICE, "price:"),
    (
        "above_max_price",
        {},
        _nothing,
        P(M, 1, 0, BID, px(10_001), sz(1)),
        R.PRICE_OUT_OF_RANGE,
        "price:",
    ),
    (
        "slide_below_one_tick",
        {},
        _ask_at_one_tick,
        P(M, 1, 0, BID, px(1), sz(1), time_in_force=POS),
        R.PRICE_OUT_OF_RANGE,
        "price:",
    ),
    ("zero_size", {}, _nothing, P(M, 1, 0, BID, px(100), 0), R.NON_POSITIVE_SIZE, "size:"),
    ("negative_size", {}, _nothing, P(M, 1, 0, BID, px(100), -LOT), R.NON_POSITIVE_SIZE, "size:"),
    ("off_lot", {}, _nothing, P(M, 1, 0, BID, px(100), LOT + 1), R.OFF_LOT_SIZE, "size:"),
    (
        "below_min",
        {"min_size_lots": 2},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1)),
        R.SIZE_BELOW_MINIMUM,
        "size:",
    ),
    ("above_max", {}, _nothing, P(M, 1, 0, BID, px(100), sz(1001)), R.SIZE_ABOVE_MAXIMUM, "size:"),
    ("cancel_unknown_id", {}, _resting(), CancelOrder(M, 1, 0, 99), R.UNKNOWN_ORDER, "order:"),
    (
        "cancel_unknown_client_id",
        {},
        _resting(client_order_id=4),
        CancelOrder(M, 1, 0, 0, 5),
        R.UNKNOWN_ORDER,
        "order:",
    ),
    ("cancel_no_ids", {}, _resting(), CancelOrder(M, 1, 0), R.UNKNOWN_ORDER, "order:"),
    ("amend_unknown", {}, _resting(), A(M, 1, 0, 99, px(90), sz(1)), R.UNKNOWN_ORDER, "order_id:"),
    (
        "amend_other_owner",
        {},
        _resting(),
        A(M, 2, 0, 1, px(91), sz(1)),
        R.UNKNOWN_ORDER,
        "order_id:",
    ),
    (
        "duplicate_client_id",
        {},
        _resting(client_order_id=4),
        P(M, 1, 0, ASK, px(100), sz(1), client_order_id=4),
        R.DUPLICATE_CLIENT_ORDER_ID,
        "client_order_id:",
    ),
    (
        "too_many_open",
        {"max_open_orders_per_account": 2},
        _two_open,
        P(M, 1, 0, BID, px(91), sz(1)),
        R.TOO_MANY_OPEN_ORDERS,
        "open orders:",
    ),
    (
        "too_many_open_trigger",
        {"max_open_orders_per_account": 2},
        _two_open,
        P(M, 1, 0, BID, px(91), sz(1), order_type=STOP_LIMIT, trigger_price=px(104)),
        R.TOO_MANY_OPEN_ORDERS,
        "open orders:",
    ),
    (
        "post_only_cross",
        {},
        _resting(2, ASK, 100),
        P(M, 1, 0, BID, px(100), sz(1), time_in_force=PO),
        R.POST_ONLY_WOULD_CROSS,
        "price:",
    ),
    (
        "post_only_ask_cross",
        {},
        _resting(2, BID, 100),
        P(M, 1, 0, ASK, px(99), sz(1), time_in_force=PO),
        R.POST_ONLY_WOULD_CROSS,
        "price:",
    ),
    (
        "amend_post_only_cross",
        {},
        _post_only_bid_below_an_ask,
        A(M, 1, 0, 2, px(100), sz(1)),
        R.POST_ONLY_WOULD_CROSS,
        "price:",
    ),
    (
        "fok_empty_book",
        {},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1), time_in_force=FOK),
        R.FOK_NOT_FILLABLE,
        "size:",
    ),
    (
        "reduce_only_flat",
        {},
        _nothing,
        P(M, 1, 0, ASK, px(100), sz(1), reduce_only=True),
        R.REDUCE_ONLY_WOULD_INCREASE,
        "reduce_only:",
    ),
    (
        "reduce_only_same_side",
        {},
        lambda ex: _long(ex, 1, 2),
        P(M, 1, 0, BID, px(90), sz(1), reduce_only=True),
        R.REDUCE_ONLY_WOULD_INCREASE,
        "reduce_only:",
    ),
    (
        "reduce_only_trigger_flat",
        {},
        _nothing,
        P(
            M,
            1,
            0,
            ASK,
            px(90),
            sz(1),
            order_type=STOP_MARKET,
            time_in_force=IOC,
            trigger_price=px(95),
            reduce_only=True,
        ),
        R.REDUCE_ONLY_WOULD_INCREASE,
        "reduce_only:",
    ),
    (
        # Going flat cancelled the resting reduce-only order, so there is nothing to amend.
        "amend_reduce_only_cancelled_when_flat",
        {},
        _long_then_flat_with_reduce_only_ask,
        A(M, 1, 0, 3, px(111), sz(2)),
        R.UNKNOWN_ORDER,
        "order_id:",
    ),
    (
        "expired_on_arrival_now",
        {},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1), expire_at_ns=TS0 + 1),
        R.EXPIRED_ON_ARRIVAL,
        "expire_at_ns:",
    ),
    (
        "expired_on_arrival_past",
        {},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1), expire_at_ns=5),
        R.EXPIRED_ON_ARRIVAL,
        "expire_at_ns:",
    ),
    (
        "market_gtc",
        {},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1), order_type=MARKET),
        R.INVALID_ORDER_TYPE,
        "time_in_force:",
    ),
    (
        "market_post_only",
        {},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1), order_type=MARKET, time_in_force=PO),
        R.INVALID_ORDER_TYPE,
        "time_in_force:",
    ),
    (
        "stop_market_gtc",
        {},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1), order_type=STOP_MARKET, trigger_price=px(101)),
        R.INVALID_ORDER_TYPE,
        "time_in_force:",
    ),
    (
        "stop_limit_fok",
        {},
        _nothing,
        P(
            M,
            1,
            0,
            BID,
            px(100),
            sz(1),
            order_type=STOP_LIMIT,
            time_in_force=FOK,
            trigger_price=px(101),
        ),
        R.INVALID_ORDER_TYPE,
        "time_in_force:",
    ),
    (
        "take_profit_post_only",
        {},
        _nothing,
        P(
            M,
            1,
            0,
            BID,
            px(100),
            sz(1),
            order_type=TP_LIMIT,
            time_in_force=POS,
            trigger_price=px(99),
        ),
        R.INVALID_ORDER_TYPE,
        "time_in_force:",
    ),
    (
        "stop_without_trigger",
        {},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1), order_type=STOP_LIMIT),
        R.INVALID_TRIGGER_PRICE,
        "trigger_price:",
    ),
    (
        "stop_off_tick_trigger",
        {},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1), order_type=STOP_LIMIT, trigger_price=px(101) + 7),
        R.INVALID_TRIGGER_PRICE,
        "trigger_price:",
    ),
    (
        "stop_trigger_above_max",
        {},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1), order_type=STOP_LIMIT, trigger_price=px(10_001)),
        R.INVALID_TRIGGER_PRICE,
        "trigger_price:",
    ),
    (
        "market_with_trigger",
        {},
        _nothing,
        P(
            M,
            1,
            0,
            BID,
            px(100),
            sz(1),
            order_type=MARKET,
            time_in_force=IOC,
            trigger_price=px(101),
        ),
        R.INVALID_TRIGGER_PRICE,
        "trigger_price:",
    ),
    (
        "post_only_limit_with_trigger",
        {},
        _nothing,
        P(M, 1, 0, BID, px(100), sz(1), time_in_force=PO, trigger_price=px(101)),
        R.INVALID_TRIGGER_PRICE,
        "trigger_price:",
    ),
    (
        "amend_trigger_order",
        {},
        _stop,
        A(M, 1, 0, 1, px(111), sz(1)),
        R.AMEND_NOT_ALLOWED,
        "order:",
    ),
    (
        "amend_no_change",
        {},
        _resting(),
        A(M, 1, 0, 1, px(90), sz(1)),
        R.AMEND_NOT_ALLOWED,
        "amend:",
    ),
    (
        "amend_off_tick",
        {},
        _resting(),
        A(M, 1, 0, 1, px(90) + 1, sz(1)),
        R.OFF_TICK_PRICE,
        "new_price:",
    ),
    (
        "amend_above_max_price",
        {},
        _resting(),
        A(M, 1, 0, 1, px(10_001), sz(1)),
        R.PRICE_OUT_OF_RANGE,
        "new_price:",
    ),
    ("amend_zero_size", {}, _resting(), A(M, 1, 0, 1, px(90), 0), R.NON_POSITIVE_SIZE, "new_size:"),
    ("amend_off_lot", {}, _resting(), A(M, 1, 0, 1, px(90), LOT + 1), R.OFF_LOT_SIZE, "new_size:"),
    (
        "amend_below_min",
        {"min_size_lots": 2},
        _resting(lots=2),
        A(M, 1, 0, 1, px(90), sz(1)),
        R.SIZE_BELOW_MINIMUM,
        "new_size:",
    ),
    (
        "amend_above_max",
        {},
        _resting(),
        A(M, 1, 0, 1, px(90), sz(1001)),
        R.SIZE_ABOVE_MAXIMUM,
        "new_size:",
    ),
    (
        "market_exists",
        {},
        _nothing,
        CreateMarket(M, "DUP", TICK, LOT),
        R.MARKET_ALREADY_EXISTS,
        "market_id:",
    ),
    (
        "bad_market_spec",
        {},
        _nothing,
        CreateMarket(2, "BAD", 3, LOT),
        R.INVALID_MARKET_SPEC,
        "MarketSpec 'BAD': expected tick_size*lot_size divisible",
    ),
    (
        "bad_market_id",
        {},
        _nothing,
        CreateMarket(70_000, "BAD", TICK, LOT),
        R.INVALID_MARKET_SPEC,
        "MarketSpec 'BAD': expected market_id",
    ),
]


@pytest.mark.parametrize(
    ("name", "spec", "arrange", "cmd", "code", "prefix"), REJECTIONS, ids=[r[0] for r in REJECTIONS]
)
def test_rejection(
    name: str,
    spec: dict[str, int],
    arrange: Callable[[Ex], None],
    cmd: Any,
    code: RejectCode,
    prefix: str,
) -> None:
    ex = Ex(**spec)
    arrange(ex)
    e = assert_rejected(ex, cmd, code, prefix)
    if type(cmd) is PlaceOrder:
        assert (e.order_id, e.owner_id, e.sub_account_id, e.client_order_id) == (
            0,
            cmd.owner_id,
            cmd.sub_account_id,
            cmd.client_order_id,
        )
    ex.check()


def test_every_core_reject_code_is_covered() -> None:
    covered = {r[4] for r in REJECTIONS}
    # MALFORMED_COMMAND belongs to the engine (parse errors never reach the core), and the
    # risk gate's codes to perp.risk_gate (tests/unit/perp/test_perp_risk_gate.py), the
    # account and market-control codes to perp.clearinghouse (test_perp_clearinghouse.py),
    # the liquidation codes to its Liquidate (test_clearinghouse_liquidation.py), the
    # governance codes to its SetRiskParams (test_perp_clearinghouse_risk.py).
    assert (
        covered
        == set(RejectCode)
        - {RejectCode.MALFORMED_COMMAND}
        - RISK_GATE_CODES
        - CLEARINGHOUSE_CODES
        - LIQUIDATION_CODES
        - GOVERNANCE_CODES
    )


# ====================================================================== regressions
# Each of these failed on the core as first tested (they were strict xfails) and was
# fixed in exchange/core/state.py while these tests were written.
@pytest.mark.parametrize("tif", [GTC, IOC, FOK])
def test_limit_order_with_trigger_price_is_rejected(tif: TimeInForce) -> None:
    ex = Ex()
    ex.rest(2, ASK, 100, 5)
    assert_rejected(
        ex,
        P(M, 1, 0, BID, px(100), sz(1), time_in_force=tif, trigger_price=px(105)),
        R.INVALID_TRIGGER_PRICE,
        "trigger_price:",
    )


def test_off_tick_trigger_price_does_not_fire_stop_sell_early() -> None:
    ex = Ex()
    ex.place(1, ASK, 90, 1, otype=STOP_MARKET, tif=IOC, trigger_price=px(100))
    # 100.005 > 100.00: a stop-sell at 100.00 must not fire yet
    assert ex.run(UpdateTriggerPrice(M, px(100) + TICK // 2)) == []


def test_amend_non_positive_price_code() -> None:
    ex = Ex()
    ex.rest(1, BID, 90, 1)
    assert_rejected(ex, A(M, 1, 0, 1, 0, sz(1)), R.NON_POSITIVE_PRICE, "new_price:")


def test_create_market_expires_due_orders_first() -> None:
    ex = Ex()
    a = ex.rest(1, BID, 90, 1, expire_at_ns=2_000)
    events = ex.run(CreateMarket(2, "ETH-PERP", TICK, LOT), ts=3_000)
    assert [type(e) for e in events] == [OrderExpired, MarketCreated]
    assert events[0].order_id == a


@pytest.mark.parametrize(
    ("otype", "side", "trigger", "no_fire", "fire"),
    [
        (STOP_MARKET, ASK, 100, px(100) + 1, px(100)),  # stop-sell: price <= trigger
        (TP_MARKET, BID, 100, px(100) + TICK // 2, px(100) - 1),  # take-profit buy: <=
        (STOP_MARKET, BID, 100, px(100) - 1, px(100)),  # stop-buy: price >= trigger
        (TP_MARKET, ASK, 100, px(100) - TICK // 2, px(100) + 1),  # take-profit sell: >=
    ],
)
def test_off_tick_trigger_prices_compare_exactly(
    otype: OrderType, side: Side, trigger: int, no_fire: int, fire: int
) -> None:
    ex = Ex()
    oid = ex.place(1, side, 100, 1, otype=otype, tif=IOC, trigger_price=px(trigger))[0].order_id
    assert ex.run(UpdateTriggerPrice(M, no_fire)) == []
    events = ex.run(UpdateTriggerPrice(M, fire))
    assert events[0] == OrderTriggered(events[0].seq, ex.ts, M, oid, fire)
    ex.check()


def test_non_positive_trigger_price_is_rejected_and_fires_nothing() -> None:
    # Arrange: a resting bid and a stop-sell that a price of 0 would otherwise fire.
    core = ExchangeCore()
    core.execute(CreateMarket(0, "T", 1_000_000, 1_000_000_000), 1)
    core.execute(PlaceOrder(0, 1, 0, 0, 90 * 1_000_000, 1_000_000_000), 2)
    core.execute(
        PlaceOrder(
            0,
            2,
            0,
            1,
            80 * 1_000_000,
            1_000_000_000,
            order_type=OrderType.STOP_MARKET,
            time_in_force=TimeInForce.IOC,
            trigger_price=95 * 1_000_000,
        ),
        3,
    )
    before = core.canonical()
    # Act
    events = core.execute(UpdateTriggerPrice(0, 0), 4)
    # Assert
    assert [type(e) for e in events] == [OrderRejected]
    assert events[0].code == RejectCode.NON_POSITIVE_PRICE
    after = core.canonical()
    assert after.pop("next_seq") == before.pop("next_seq") + 1
    assert after == before


# ---------------------------------------------------------------- resting reduce-only upkeep
def ro_market() -> Ex:
    """Owner 1 long 5 lots (bought from owner 9), with a resting bid of owner 8 below."""
    ex = Ex()
    ex.rest(9, ASK, 100, 5)
    ex.place(1, BID, 100, 5, tif=IOC)
    ex.rest(8, BID, 90, 50)
    assert ex.position(1) == 5
    return ex


def reduce_only_ask(ex: Ex, lots: int) -> list[Any]:
    return ex.place(1, ASK, 120, lots, reduce_only=True)


def sell_ioc(ex: Ex, lots: int) -> list[Any]:
    return ex.place(1, ASK, 90, lots, tif=IOC)


def test_resting_reduce_only_order_is_cancelled_when_the_position_closes() -> None:
    # Arrange
    ex = ro_market()
    resting_id = reduce_only_ask(ex, 5)[0].order_id
    # Act: close the position with another order.
    events = sell_ioc(ex, 5)
    # Assert
    cancel = events[-1]
    assert type(cancel) is OrderCanceled and cancel.order_id == resting_id
    assert cancel.reason == CancelReason.REDUCE_ONLY and cancel.canceled_lots == 5
    assert resting_id not in ex.core.books[M].orders
    ex.check()


def test_resting_reduce_only_order_shrinks_with_a_partial_close_and_keeps_priority() -> None:
    ex = ro_market()
    resting_id = reduce_only_ask(ex, 5)[0].order_id
    events = sell_ioc(ex, 2)
    amended = events[-1]
    assert type(amended) is OrderAmended and amended.order_id == resting_id
    assert amended.num_base_lots == 3 and amended.priority_kept
    assert ex.core.books[M].orders[resting_id].remaining_lots == 3
    ex.check()


def test_reduce_only_orders_together_never_exceed_the_position() -> None:
    # Arrange: 3 lots rest first; a second reduce-only order of 3 would take the total to 6.
    ex = ro_market()
    first = reduce_only_ask(ex, 3)[0].order_id
    # Act
    events = reduce_only_ask(ex, 3)
    # Assert: the older order keeps its 3, the newer is cut to the remaining 2.
    second = events[0].order_id
    assert type(events[-1]) is OrderAmended and events[-1].order_id == second
    assert ex.core.books[M].orders[first].remaining_lots == 3
    assert ex.core.books[M].orders[second].remaining_lots == 2
    ex.check()
