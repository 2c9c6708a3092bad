"""An independent, deliberately naive reference model of one perpdex market.

Used by the property tests (``test_book_stateful.py``, ``test_book_seeded_stress.py``) as an
oracle for ``exchange.core.state.ExchangeCore``. It shares no code with the core: resting
orders are a plain dict, the book is re-sorted on every look-up, and the rules are written
straight from the specification:

* price-time priority, fills at the maker's price;
* STP on a resting order of the same owner (any sub-account), by the taker's mode;
* POST_ONLY refused when crossing, POST_ONLY_SLIDE re-priced one tick inside the opposite best;
* FOK refused unless a dry run on a copy of the model fills it completely by trades;
* market-like orders need IOC/FOK and use the price as the protection price;
* reduce-only refused if it would increase the position, clamped to ``|position|``; after a
  place / amend / trigger command, every account's resting reduce-only orders (oldest first)
  are cancelled if on the increasing side, else kept up to ``|position|`` in total (the
  first to overflow shrunk in place, the rest cancelled);
* triggers fire on a supplied price, oldest first; expiry before every command.

Every command yields a list of *normalized* events (tuples without seq / ts), which
``normalize`` also produces from the core's events, so the two can be compared exactly.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from exchange.core import events as ev

BID, ASK = 0, 1
LIMIT, MARKET, STOP_MARKET, STOP_LIMIT, TP_MARKET, TP_LIMIT = range(6)
GTC, IOC, FOK, POST_ONLY, POST_ONLY_SLIDE = range(5)
CANCEL_TAKING, CANCEL_RESTING, DECREMENT_BOTH = range(3)
R_USER, R_CANCEL_ALL, R_IOC, R_STP_TAKING, R_STP_RESTING, R_STP_DECREMENT, R_REDUCE_ONLY = range(7)

TRIGGER_TYPES = {STOP_MARKET, STOP_LIMIT, TP_MARKET, TP_LIMIT}
MARKET_LIKE = {MARKET, STOP_MARKET, TP_MARKET}
FIRES_ON_RISE = {(STOP_MARKET, BID), (STOP_LIMIT, BID), (TP_MARKET, ASK), (TP_LIMIT, ASK)}

# RejectCode values, spelled out independently of exchange.core.errors.
UNKNOWN_MARKET = 2
NON_POSITIVE_PRICE = 3
OFF_TICK_PRICE = 4
PRICE_OUT_OF_RANGE = 5
NON_POSITIVE_SIZE = 6
OFF_LOT_SIZE = 7
SIZE_BELOW_MINIMUM = 8
SIZE_ABOVE_MAXIMUM = 9
UNKNOWN_ORDER = 10
DUPLICATE_CLIENT_ORDER_ID = 11
TOO_MANY_OPEN_ORDERS = 12
POST_ONLY_WOULD_CROSS = 13
FOK_NOT_FILLABLE = 14
REDUCE_ONLY_WOULD_INCREASE = 15
EXPIRED_ON_ARRIVAL = 16
INVALID_ORDER_TYPE = 17
INVALID_TRIGGER_PRICE = 18
AMEND_NOT_ALLOWED = 19


@dataclass
class RefOrder:
    oid: int
    owner: int
    sub: int
    side: int
    otype: int
    tif: int
    price: int  # ticks
    trigger: int  # ticks
    lots: int  # remaining
    reduce_only: bool
    stp: int
    expire: int
    client: int
    prio: int = 0  # time priority: lower is older

    @property
    def account(self) -> tuple[int, int]:
        return (self.owner, self.sub)


def normalize(e: Any) -> tuple[Any, ...]:
    """The core's event as the model's tuple (no seq / ts / market)."""
    t = type(e)
    if t is ev.OrderAccepted:
        return ("accepted", e.order_id, e.num_base_lots, e.price_ticks)
    if t is ev.OrderRejected:
        return ("rejected", e.code)
    if t is ev.OrderRested:
        return ("rested", e.order_id, e.price_ticks, e.num_base_lots)
    if t is ev.TradeExecuted:
        return (
            "trade",
            e.maker_order_id,
            e.taker_order_id,
            e.price_ticks,
            e.num_base_lots,
            e.maker_remaining_lots,
            e.taker_remaining_lots,
        )
    if t is ev.OrderCanceled:
        return ("canceled", e.order_id, e.canceled_lots, e.reason)
    if t is ev.OrderExpired:
        return ("expired", e.order_id, e.expired_lots)
    if t is ev.OrderAmended:
        return ("amended", e.order_id, e.price_ticks, e.num_base_lots, e.priority_kept)
    if t is ev.OrderTriggered:
        return ("triggered", e.order_id)
    if t is ev.SelfTradeDecremented:
        return ("decremented", e.maker_order_id, e.taker_order_id, e.num_base_lots)
    if t is ev.MarketCreated:
        return ("market", e.market_id)
    raise AssertionError(f"unknown event {e!r}")


class RefMarket:
    """One market: resting orders, pending triggers, positions (signed lots per account)."""

    def __init__(
        self,
        market_id: int,
        tick_size: int,
        lot_size: int,
        min_lots: int = 1,
        max_lots: int = 10**8,
        max_ticks: int = 10**7,
        max_open: int = 256,
    ) -> None:
        self.market_id = market_id
        self.tick, self.lot = tick_size, lot_size
        self.min_lots, self.max_lots = min_lots, max_lots
        self.max_ticks, self.max_open = max_ticks, max_open
        self.resting: dict[int, RefOrder] = {}
        self.triggers: dict[int, RefOrder] = {}
        self.positions: dict[tuple[int, int], int] = {}
        self.next_id = 1
        self.clock = 0  # time-priority counter
        self.out: list[tuple[Any, ...]] = []

    # ------------------------------------------------------------ views
    def side_orders(self, side: int) -> list[RefOrder]:
        """Resting orders of one side, best first, oldest first within a price."""
        orders = [o for o in self.resting.values() if o.side == side]
        if side == BID:
            return sorted(orders, key=lambda o: (-o.price, o.prio))
        return sorted(orders, key=lambda o: (o.price, o.prio))

    def book(self) -> list[list[tuple[int, int, int]]]:
        """``[bids, asks]`` as ``(price_ticks, order_id, remaining_lots)`` in priority order."""
        return [[(o.price, o.oid, o.lots) for o in self.side_orders(s)] for s in (BID, ASK)]

    def best(self, side: int) -> int | None:
        orders = self.side_orders(side)
        return orders[0].price if orders else None

    def live(self, owner: int, sub: int) -> list[RefOrder]:
        return [
            o
            for o in (*self.resting.values(), *self.triggers.values())
            if o.account == (owner, sub)
        ]

    def position(self, owner: int, sub: int) -> int:
        return self.positions.get((owner, sub), 0)

    def open_positions(self) -> dict[tuple[int, int], int]:
        """The non-zero positions, ``(owner, sub) -> signed lots``."""
        return {k: v for k, v in self.positions.items() if v}

    # ------------------------------------------------------------ internals
    def _emit(self, *event: Any) -> None:
        self.out.append(tuple(event))

    def _rest(self, o: RefOrder) -> None:
        self.clock += 1
        o.prio = self.clock
        self.resting[o.oid] = o
        self._emit("rested", o.oid, o.price, o.lots)

    def _crosses(self, side: int, price: int) -> bool:
        if side == BID:
            best = self.best(ASK)
            return best is not None and best <= price
        best = self.best(BID)
        return best is not None and best >= price

    def _match(self, t: RefOrder) -> bool:
        """Match taker ``t``; return False if STP ended it."""
        while t.lots > 0:
            opposite = self.side_orders(1 - t.side)
            if not opposite:
                return True
            m = opposite[0]
            if (t.side == BID and m.price > t.price) or (t.side == ASK and m.price < t.price):
                return True
            if m.owner == t.owner:
                if t.stp == CANCEL_TAKING:
                    self._emit("canceled", t.oid, t.lots, R_STP_TAKING)
                    return False
                if t.stp == CANCEL_RESTING:
                    del self.resting[m.oid]
                    self._emit("canceled", m.oid, m.lots, R_STP_RESTING)
                    continue
                qty = min(t.lots, m.lots)
                self._emit("decremented", m.oid, t.oid, qty)
                t.lots -= qty
                m.lots -= qty
                if m.lots == 0:
                    del self.resting[m.oid]
                    self._emit("canceled", m.oid, 0, R_STP_DECREMENT)
                if t.lots == 0:
                    self._emit("canceled", t.oid, 0, R_STP_DECREMENT)
                    return False
                continue
            qty = min(t.lots, m.lots)
            t.lots -= qty
            m.lots -= qty
            if m.lots == 0:
                del self.resting[m.oid]
            self._emit("trade", m.oid, t.oid, m.price, qty, m.lots, t.lots)
            signed = qty if t.side == BID else -qty
            self.positions[t.account] = self.position(*t.account) + signed
            self.positions[m.account] = self.position(*m.account) - signed
        return True

    def _run_taker(self, t: RefOrder) -> None:
        if not self._match(t) or t.lots == 0:
            return
        if t.tif in (GTC, POST_ONLY, POST_ONLY_SLIDE) and t.otype not in MARKET_LIKE:
            self._rest(t)
        else:
            self._emit("canceled", t.oid, t.lots, R_IOC)

    def _fully_fillable(self, t: RefOrder) -> bool:
        """Dry run on a deep copy: do trades alone fill ``t`` completely right now?

        (Lots removed by DECREMENT_BOTH are not fills, so they make FOK refuse.)
        """
        sim = copy.deepcopy(self)
        sim.out = []
        probe = copy.copy(t)
        sim._match(probe)
        traded = sum(e[4] for e in sim.out if e[0] == "trade")
        return traded == t.lots

    def _reduce_only(self, owner: int, sub: int, side: int, lots: int) -> int | None:
        """Clamped lots, or None if the order would increase the position."""
        pos = self.position(owner, sub)
        if (side == BID and pos >= 0) or (side == ASK and pos <= 0):
            return None
        return min(lots, abs(pos))

    def _post_only_price(self, side: int, tif: int, price: int) -> tuple[int | None, int]:
        """``(reject_code, price)``: refuse or slide a crossing post-only order."""
        if not self._crosses(side, price):
            return None, price
        if tif == POST_ONLY:
            return POST_ONLY_WOULD_CROSS, price
        slid = self.best(ASK) - 1 if side == BID else self.best(BID) + 1  # type: ignore[operator]
        if not 1 <= slid <= self.max_ticks:
            return PRICE_OUT_OF_RANGE, price
        return None, slid

    def _reduce_only_upkeep(self) -> None:
        """Checked over every account (the core only rechecks the accounts it touched)."""
        accounts = sorted(
            {(o.owner, o.sub) for o in self.resting.values() if o.reduce_only},
            key=lambda a: a[0] * 65536 + a[1],
        )
        for owner, sub in accounts:
            pos = self.position(owner, sub)
            room = abs(pos)
            mine = sorted(
                (
                    o
                    for o in self.resting.values()
                    if o.reduce_only and (o.owner, o.sub) == (owner, sub)
                ),
                key=lambda o: o.oid,
            )
            for o in mine:
                wrong_side = (o.side == BID and pos >= 0) or (o.side == ASK and pos <= 0)
                if wrong_side or room == 0:
                    del self.resting[o.oid]
                    self._emit("canceled", o.oid, o.lots, R_REDUCE_ONLY)
                elif o.lots <= room:
                    room -= o.lots
                else:
                    o.lots = room
                    room = 0
                    self._emit("amended", o.oid, o.price, o.lots, True)

    # ------------------------------------------------------------ commands
    def expire_due(self, ts: int) -> None:
        due = [
            o
            for o in (*self.resting.values(), *self.triggers.values())
            if o.expire and o.expire <= ts
        ]
        for o in sorted(due, key=lambda o: (o.expire, o.oid)):
            self.resting.pop(o.oid, None)
            self.triggers.pop(o.oid, None)
            self._emit("expired", o.oid, o.lots)

    def place(
        self,
        ts: int,
        owner: int,
        sub: int,
        side: int,
        price: int,
        size: int,
        otype: int = LIMIT,
        tif: int = GTC,
        client: int = 0,
        trigger_price: int = 0,
        reduce_only: bool = False,
        stp: int = CANCEL_TAKING,
        expire: int = 0,
    ) -> list[tuple[Any, ...]]:
        self.out = []
        self.expire_due(ts)
        code = None
        lots = size // self.lot
        if price <= 0:
            code = NON_POSITIVE_PRICE
        elif price % self.tick:
            code = OFF_TICK_PRICE
        elif price // self.tick > self.max_ticks:
            code = PRICE_OUT_OF_RANGE
        elif size <= 0:
            code = NON_POSITIVE_SIZE
        elif size % self.lot:
            code = OFF_LOT_SIZE
        elif lots < self.min_lots:
            code = SIZE_BELOW_MINIMUM
        elif lots > self.max_lots:
            code = SIZE_ABOVE_MAXIMUM
        elif expire and expire <= ts:
            code = EXPIRED_ON_ARRIVAL
        elif (otype in MARKET_LIKE and tif not in (IOC, FOK)) or (
            otype in TRIGGER_TYPES and tif not in (GTC, IOC)
        ):
            code = INVALID_ORDER_TYPE
        elif (
            otype in TRIGGER_TYPES
            and (
                trigger_price <= 0
                or trigger_price % self.tick
                or trigger_price // self.tick > self.max_ticks
            )
        ) or (otype not in TRIGGER_TYPES and trigger_price != 0):
            code = INVALID_TRIGGER_PRICE
        elif client and any(o.client == client for o in self.live(owner, sub)):
            code = DUPLICATE_CLIENT_ORDER_ID
        elif (tif in (GTC, POST_ONLY, POST_ONLY_SLIDE) or otype in TRIGGER_TYPES) and len(
            self.live(owner, sub)
        ) >= self.max_open:
            code = TOO_MANY_OPEN_ORDERS
        elif reduce_only:
            clamped = self._reduce_only(owner, sub, side, lots)
            if clamped is None:
                code = REDUCE_ONLY_WOULD_INCREASE
            else:
                lots = clamped
        ticks = price // self.tick if price > 0 else 0
        order = RefOrder(
            self.next_id,
            owner,
            sub,
            side,
            otype,
            tif,
            ticks,
            trigger_price // self.tick if otype in TRIGGER_TYPES else 0,
            lots,
            reduce_only,
            stp,
            expire,
            client,
        )
        if code is None and otype not in TRIGGER_TYPES:
            if tif == FOK and not self._fully_fillable(order):
                code = FOK_NOT_FILLABLE
            elif tif in (POST_ONLY, POST_ONLY_SLIDE):
                code, order.price = self._post_only_price(side, tif, ticks)
        if code is not None:
            self._emit("rejected", code)
            return self.out
        self.next_id += 1
        self._emit("accepted", order.oid, lots, ticks)
        if otype in TRIGGER_TYPES:
            self.triggers[order.oid] = order
        else:
            self._run_taker(order)
            self._reduce_only_upkeep()
        return self.out

    def _find(self, owner: int, sub: int, oid: int, client: int = 0) -> RefOrder | None:
        for o in self.live(owner, sub):
            if (oid and o.oid == oid) or (not oid and client and o.client == client):
                return o
        return None

    def cancel(
        self, ts: int, owner: int, sub: int, oid: int = 0, client: int = 0
    ) -> list[tuple[Any, ...]]:
        self.out = []
        self.expire_due(ts)
        o = self._find(owner, sub, oid, client)
        if o is None:
            self._emit("rejected", UNKNOWN_ORDER)
            return self.out
        self.resting.pop(o.oid, None)
        self.triggers.pop(o.oid, None)
        self._emit("canceled", o.oid, o.lots, R_USER)
        return self.out

    def cancel_all(self, ts: int, owner: int, sub: int) -> list[tuple[Any, ...]]:
        self.out = []
        self.expire_due(ts)
        for o in sorted(self.live(owner, sub), key=lambda o: o.oid):
            self.resting.pop(o.oid, None)
            self.triggers.pop(o.oid, None)
            self._emit("canceled", o.oid, o.lots, R_CANCEL_ALL)
        return self.out

    def amend(
        self, ts: int, owner: int, sub: int, oid: int, new_price: int, new_size: int
    ) -> list[tuple[Any, ...]]:
        self.out = []
        self.expire_due(ts)
        o = self._find(owner, sub, oid)
        code = None
        lots = new_size // self.lot
        ticks = new_price // self.tick
        if o is None:
            code = UNKNOWN_ORDER
        elif o.oid in self.triggers:
            code = AMEND_NOT_ALLOWED
        elif new_price <= 0:
            code = NON_POSITIVE_PRICE
        elif new_price % self.tick:
            code = OFF_TICK_PRICE
        elif ticks > self.max_ticks:
            code = PRICE_OUT_OF_RANGE
        elif new_size <= 0:
            code = NON_POSITIVE_SIZE
        elif new_size % self.lot:
            code = OFF_LOT_SIZE
        elif lots < self.min_lots:
            code = SIZE_BELOW_MINIMUM
        elif lots > self.max_lots:
            code = SIZE_ABOVE_MAXIMUM
        elif o.reduce_only:
            clamped = self._reduce_only(owner, sub, o.side, lots)
            if clamped is None:
                code = REDUCE_ONLY_WOULD_INCREASE
            else:
                lots = clamped
        if code is None and ticks == o.price and lots == o.lots:  # type: ignore[union-attr]
            code = AMEND_NOT_ALLOWED
        if code is not None:
            self._emit("rejected", code)
            return self.out
        assert o is not None
        if ticks == o.price and lots < o.lots:
            o.lots = lots
            self._emit("amended", o.oid, ticks, lots, True)
            self._reduce_only_upkeep()
            return self.out
        new_ticks = ticks
        if o.tif in (POST_ONLY, POST_ONLY_SLIDE):
            code, new_ticks = self._post_only_price(o.side, o.tif, ticks)
            if code is not None:
                self._emit("rejected", code)
                return self.out
        del self.resting[o.oid]
        o.lots = lots
        self._emit("amended", o.oid, ticks, lots, False)
        o.price = new_ticks
        self._run_taker(o)
        self._reduce_only_upkeep()
        return self.out

    def update_trigger_price(self, ts: int, price: int) -> list[tuple[Any, ...]]:
        self.out = []
        self.expire_due(ts)
        # ``price`` (PRICE_PRECISION) may be off-tick: compare it exactly with the trigger.
        fired = [
            o
            for o in self.triggers.values()
            if (
                price >= o.trigger * self.tick
                if (o.otype, o.side) in FIRES_ON_RISE
                else price <= o.trigger * self.tick
            )
        ]
        for o in sorted(fired, key=lambda o: o.oid):
            del self.triggers[o.oid]
            self._emit("triggered", o.oid)
            if o.reduce_only:
                clamped = self._reduce_only(o.owner, o.sub, o.side, o.lots)
                if clamped is None or clamped != o.lots:
                    self._emit("canceled", o.oid, o.lots, R_REDUCE_ONLY)
                    continue
            self._run_taker(o)
        self._reduce_only_upkeep()
        return self.out

    def expire_orders(self, ts: int) -> list[tuple[Any, ...]]:
        self.out = []
        self.expire_due(ts)
        return self.out


def core_book(core: Any, market_id: int) -> list[list[tuple[int, int, int]]]:
    """The core's resting book in the same shape as ``RefMarket.book``."""
    out = []
    for side in core.books[market_id].canonical():
        rows = []
        for price, total, queue in side:
            assert total == sum(o[9] for o in queue), (price, total, queue)
            rows.extend((price, o[0], o[9]) for o in queue)
        out.append(rows)
    return out


def core_live_lots(core: Any, market_id: int) -> dict[int, int]:
    """The core's live orders (resting and pending triggers) -> remaining lots, for
    ``Ledger.check``."""
    live = {o.order_id: o.remaining_lots for o in core.books[market_id].orders.values()}
    live.update({oid: o.remaining_lots for oid, o in core.trigger_books[market_id].orders.items()})
    return live


def core_positions(core: Any) -> dict[tuple[int, int], int]:
    """The core's non-zero positions (of its one market) in the shape of
    ``RefMarket.open_positions``."""
    return {(a // 65536, a % 65536): v for (a, _m), v in core.positions.items() if v}


def assert_book_matches(core: Any, ref: RefMarket) -> None:
    """The core passes ``check_invariants``, its book is not crossed, and its resting book
    and pending triggers equal the reference model's."""
    core.check_invariants()
    book = core.books[ref.market_id]
    bid, ask = book.best_bid(), book.best_ask()
    assert not (bid and ask) or bid < ask, (bid, ask)
    assert core_book(core, ref.market_id) == ref.book()
    assert sorted(core.trigger_books[ref.market_id].orders) == sorted(ref.triggers)


class Ledger:
    """Quantity conservation per order, built only from events.

    For every accepted order: accepted lots (+ amend size changes) ==
    filled + remaining + canceled + expired + decremented.
    """

    def __init__(self) -> None:
        self.total: dict[int, int] = {}
        self.remaining: dict[int, int] = {}
        self.filled: dict[int, int] = {}
        self.gone: dict[int, int] = {}  # canceled + expired + decremented
        self.owner: dict[int, int] = {}
        self.done: set[int] = set()

    def feed(self, e: Any) -> None:
        t = type(e)
        if t is ev.OrderAccepted:
            oid = e.order_id
            assert oid not in self.total, f"order id {oid} accepted twice"
            self.total[oid] = self.remaining[oid] = e.num_base_lots
            self.filled[oid] = self.gone[oid] = 0
            self.owner[oid] = e.owner_id
        elif t is ev.TradeExecuted:
            assert e.maker_owner_id != e.taker_owner_id, f"self-trade executed: {e!r}"
            assert e.num_base_lots > 0, e
            for oid, after in (
                (e.maker_order_id, e.maker_remaining_lots),
                (e.taker_order_id, e.taker_remaining_lots),
            ):
                assert oid not in self.done, f"trade on finished order {oid}: {e!r}"
                self.remaining[oid] -= e.num_base_lots
                self.filled[oid] += e.num_base_lots
                assert self.remaining[oid] == after, (oid, self.remaining[oid], e)
                if after == 0 and oid == e.maker_order_id:
                    self.done.add(oid)
            if e.taker_remaining_lots == 0:
                self.done.add(e.taker_order_id)
        elif t is ev.SelfTradeDecremented:
            assert self.owner[e.maker_order_id] == self.owner[e.taker_order_id], e
            for oid in (e.maker_order_id, e.taker_order_id):
                self.remaining[oid] -= e.num_base_lots
                self.gone[oid] += e.num_base_lots
                assert self.remaining[oid] >= 0, e
        elif t is ev.OrderCanceled or t is ev.OrderExpired:
            oid = e.order_id
            lots = e.canceled_lots if t is ev.OrderCanceled else e.expired_lots
            assert oid not in self.done, f"end of finished order: {e!r}"
            assert lots == self.remaining[oid], (oid, lots, self.remaining[oid], e)
            self.remaining[oid] = 0
            self.gone[oid] += lots
            self.done.add(oid)
        elif t is ev.OrderAmended:
            oid = e.order_id
            self.total[oid] += e.num_base_lots - self.remaining[oid]
            self.remaining[oid] = e.num_base_lots
        elif t is ev.OrderRested:
            assert e.num_base_lots == self.remaining[e.order_id], e

    def check(self, live_remaining: dict[int, int]) -> None:
        """``live_remaining``: the core's live orders (resting + pending) -> remaining lots."""
        for oid, total in self.total.items():
            rem = self.remaining[oid]
            assert total == self.filled[oid] + rem + self.gone[oid], (
                oid,
                total,
                self.filled[oid],
                rem,
                self.gone[oid],
            )
            if oid in live_remaining:
                assert live_remaining[oid] == rem, (oid, live_remaining[oid], rem)
                assert oid not in self.done, oid
            else:
                assert oid in self.done and rem == 0, (oid, rem)
