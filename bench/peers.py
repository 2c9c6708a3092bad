"""Order-book engines behind one interface, for ``bench.matching``.

Every adapter has ``add_limit(order_id, side, price_ticks, qty_lots)`` (a GTC limit order:
it trades what crosses and rests the remainder), ``cancel(order_id)`` (only ever called for an
order that rests), ``end_state() -> dict`` and ``close()``. ``side`` is 0 = bid, 1 = ask;
``order_id`` is the workload's id (1, 2, 3, ... in submission order). ``add_limit`` and
``cancel`` are plain functions (closures), so every engine pays the same one extra Python call.

``end_state`` figures: ``best_bid`` / ``best_ask`` (ticks, 0 = empty side), ``bid_qty`` /
``ask_qty`` (resting lots per side), ``fills`` (maker fills: one per resting order a taker
trades with) and ``filled_qty`` (lots traded). A figure the engine does not expose is ``None``.
``checks`` holds adapter self-checks (refused orders or cancels, which must be 0).

Engines: ``perpdex`` (this repo's numba-compiled ``exchange.core.fastbook.FastMarket``,
called once per order from Python), ``perpdex-python`` (this repo's pure-Python reference
``ExchangeCore``), ``naive`` (the ~80-line pure-Python baseline of the performance anchors:
dict + deque + heap, lazy cancel) and the PyPI peers ``limit-order-book``, ``liquibook``,
``lightmatchingengine``, ``pyorderbook``, ``fastlob``. Both ``perpdex`` engines run the same
market (tick 1.0 quote, lot 1 base unit; prices and sizes in the repo's fixed-point units),
produce every event and consume them in ``poll``. Engines are imported only inside ``make``
(``bench.matching`` calls it in a child process). The batch path of ``FastMarket`` (the whole
op array inside numba) is not an adapter: see ``fastbook_ops`` and ``FastEventCounter``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

TICK_SIZE = 1_000_000  # 1.0 quote per base unit at PRICE_PRECISION 1e6
LOT_SIZE = 1_000_000_000  # 1 whole base unit at BASE_PRECISION 1e9
MARKET_ID = 1
MAX_PRICE_TICKS = 10**6
MAX_SIZE_LOTS = 10**7  # max_price_ticks * max_size_lots * quote per tick-lot (1e6) fits u64
TS_NS = 1_700_000_000_000_000_000
SYMBOL = "BTC-PERP"


class Adapter:
    """One engine behind the common interface (the functions are set by each factory)."""

    name = ""
    kind = ""

    def __init__(self) -> None:
        self.add_limit: Callable[[int, int, int, int], Any]
        self.cancel: Callable[[int], Any]
        # Called by the harness between batches of operations (outside per-op timers, inside
        # the throughput loop): our adapter consumes and clears its event list there.
        self.poll: Callable[[], Any] | None = None

    def end_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def _state(
    best_bid: int,
    best_ask: int,
    bid_qty: int,
    ask_qty: int,
    fills: int | None,
    filled_qty: int | None,
    **checks: int,
) -> dict[str, Any]:
    return {
        "best_bid": int(best_bid),
        "best_ask": int(best_ask),
        "bid_qty": int(bid_qty),
        "ask_qty": int(ask_qty),
        "fills": fills,
        "filled_qty": filled_qty,
        "checks": checks,
    }


# ====================================================================== naive baseline
class NaiveBook:
    """The naive pure-Python book: dict of price -> deque, a heap of prices per side, lazy
    cancel (the entry's qty is zeroed; matching skips and drops dead entries)."""

    def __init__(self) -> None:
        self.levels: tuple[dict[int, deque[list[int]]], dict[int, deque[list[int]]]] = ({}, {})
        self.heaps: tuple[list[int], list[int]] = ([], [])  # bids hold -price
        self.orders: dict[int, list[int]] = {}  # resting id -> [qty, side, price, id]
        self.fills = 0
        self.filled_qty = 0

    def add(self, oid: int, side: int, price: int, qty: int) -> None:
        other = 1 - side
        levels, heap = self.levels[other], self.heaps[other]
        sign = 1 if side == 0 else -1  # the ask heap holds +price, the bid heap -price
        limit = price * sign
        orders = self.orders
        while qty and heap:
            key = heap[0]
            if key > limit:
                break
            queue = levels[key * sign]
            while queue and qty:
                entry = queue[0]
                have = entry[0]
                if not have:  # cancelled
                    queue.popleft()
                    continue
                take = qty if qty < have else have
                qty -= take
                self.fills += 1
                self.filled_qty += take
                if take == have:
                    queue.popleft()
                    entry[0] = 0
                    del orders[entry[3]]
                else:
                    entry[0] = have - take
            if not queue:
                heappop(heap)
                del levels[key * sign]
        if qty:
            entry = [qty, side, price, oid]
            orders[oid] = entry
            levels = self.levels[side]
            level = levels.get(price)
            if level is None:
                level = levels[price] = deque()
                heappush(self.heaps[side], -price if side == 0 else price)
            level.append(entry)

    def cancel(self, oid: int) -> None:
        self.orders.pop(oid)[0] = 0

    def end_state(self) -> dict[str, Any]:
        qty = [0, 0]
        best = [0, 0]
        for entry in self.orders.values():
            q, side, price = entry[0], entry[1], entry[2]
            qty[side] += q
            if not best[side] or (price > best[side] if side == 0 else price < best[side]):
                best[side] = price
        return _state(best[0], best[1], qty[0], qty[1], self.fills, self.filled_qty)


def make_naive() -> Adapter:
    book = NaiveBook()
    a = Adapter()
    a.name, a.kind = "naive", "baseline: pure Python dict + deque + heap, lazy cancel"
    a.add_limit = book.add
    a.cancel = book.cancel
    a.end_state = book.end_state  # type: ignore[method-assign]
    return a


# ====================================================================== this repo
def make_perpdex_python() -> Adapter:
    from collections import Counter

    from exchange.core.commands import CancelOrder, CreateMarket
    from exchange.core.events import MarketCreated, OrderRejected, TradeExecuted
    from exchange.core.state import ExchangeCore

    core = ExchangeCore()
    out: list[Any] = []
    spec = CreateMarket(MARKET_ID, SYMBOL, TICK_SIZE, LOT_SIZE, 1, MAX_SIZE_LOTS, MAX_PRICE_TICKS)
    core.execute(spec, TS_NS, out)
    if len(out) != 1 or type(out[0]) is not MarketCreated:
        raise RuntimeError(f"create_market failed: {out!r}")
    out.clear()
    place = core.place_order
    cancel_order = core.cancel_order
    counts: Counter[type] = Counter()
    tick, lot, mid, ts = TICK_SIZE, LOT_SIZE, MARKET_ID, TS_NS

    def flush() -> None:
        counts.update(map(type, out))
        out.clear()

    def add_limit(oid: int, side: int, price: int, qty: int) -> None:
        place(mid, oid, 0, side, price * tick, qty * lot, ts_ns=ts, out=out)

    def cancel(oid: int) -> None:
        cancel_order(CancelOrder(mid, oid, 0, oid), ts, out)

    def end_state() -> dict[str, Any]:
        flush()
        book = core.books[MARKET_ID]
        # One order per owner, so |position| of an account is its order's filled lots and
        # every fill counts twice (maker and taker).
        filled2 = sum(abs(v) for v in core.positions.values())
        return _state(
            book.best_bid(),
            book.best_ask(),
            sum(lvl.total_lots for lvl in book.bids.values()),
            sum(lvl.total_lots for lvl in book.asks.values()),
            counts[TradeExecuted],
            filled2 // 2,
            rejected=counts[OrderRejected],
            accepted=core.next_order_id - 1,
            resting=len(book.orders),
            events=sum(counts.values()),
        )

    a = Adapter()
    a.name = "perpdex-python"
    a.kind = (
        "this repo: ExchangeCore, pure-Python reference core (place_order / cancel_order; "
        "event tuples kept, counted by type and cleared every poll)"
    )
    a.add_limit, a.cancel, a.poll = add_limit, cancel, flush
    a.end_state = end_state  # type: ignore[method-assign]
    a.core = core  # type: ignore[attr-defined]  # for the profiler
    return a


# ---------------------------------------------------------------------- FastMarket
# Tables pre-sized as a deployment (or a replay, which knows its account count) would: growing
# the account table from the default 1,024 instead costs ~25 % on the batch path (the copies
# happen inside the timed loop) and is within noise per call.
FAST_CAPACITY = 1 << 14  # resting orders before the first growth; also sizes the event buffer
FAST_ACCOUNTS = 1 << 20  # accounts: the full workload has ~1.02M owners (one per order)


def fast_market() -> Any:
    """A ``FastMarket`` on the same market as ``perpdex-python`` (events kept: "append")."""
    from exchange.core.fastbook import FastMarket
    from exchange.core.market import MarketSpec

    spec = MarketSpec(
        market_id=MARKET_ID,
        symbol=SYMBOL,
        tick_size=TICK_SIZE,
        lot_size=LOT_SIZE,
        min_size_lots=1,
        max_size_lots=MAX_SIZE_LOTS,
        max_price_ticks=MAX_PRICE_TICKS,
    )
    return FastMarket(spec, capacity=FAST_CAPACITY, accounts=FAST_ACCOUNTS, events="append")


_COUNT_ROWS: Any = None


def _count_rows_kernel() -> Any:
    """The compiled row reader (numba, imported here like every engine): one pass over the
    rows adds each row's KIND to ``by_kind`` and returns the summed lots of its
    ``TradeExecuted`` rows, or -1 on a KIND outside ``by_kind`` (then nothing is trusted)."""
    global _COUNT_ROWS
    if _COUNT_ROWS is None:
        from numba import njit, types

        i64 = types.int64
        sig = i64(types.Array(i64, 2, "C"), types.Array(i64, 1, "C"), i64, i64)

        @njit(sig, cache=True)
        def count_rows(rows, by_kind, trade, lots_col):
            lots = 0
            nk = by_kind.shape[0]
            for i in range(rows.shape[0]):
                k = rows[i, 0]
                if k < 0 or k >= nk:
                    return -1
                by_kind[k] += 1
                if k == trade:
                    lots += rows[i, lots_col]
            return lots

        _COUNT_ROWS = count_rows
    return _COUNT_ROWS


class FastEventCounter:
    """Consumes a ``FastMarket``'s kept event rows: counts them by kind, sums the lots of its
    ``TradeExecuted`` rows, then clears them. Call it every ``poll``."""

    def __init__(self, fm: Any) -> None:
        import numpy as np

        from exchange.core.fastbook import K_TRADE, TRADE_LOTS_COL

        self.fm = fm
        self.by_kind = np.zeros(16, np.int64)
        self.filled_lots = 0
        self._trade, self._lots_col = K_TRADE, TRADE_LOTS_COL
        self._count = _count_rows_kernel()

    def __call__(self) -> None:
        fm, count, by_kind = self.fm, self._count, self.by_kind
        # ``_spill``: rows a full buffer moved out (never between two polls of this harness,
        # whose buffer holds 32k rows; counted anyway so no row can go uncounted).
        for rows in (*fm._spill, fm.rows()):
            lots = count(rows, by_kind, self._trade, self._lots_col)
            if lots < 0:
                raise ValueError("event rows: expected KINDs in 0..15")
            self.filled_lots += lots
        fm.clear_events()

    @property
    def rows(self) -> int:
        return int(self.by_kind.sum())


def fast_end_state(
    fm: Any, fills: int, filled_qty: int, event_rows: int, rejected: int
) -> dict[str, Any]:
    """End state of a ``FastMarket`` with the given event-derived figures; ``checks`` has the
    core's own fill statistics minus those figures (0 when every trade row was counted)."""
    bids, asks = fm.canonical()
    stat_fills, stat_lots = fm.fill_stats()
    return _state(
        fm.best_bid(),
        fm.best_ask(),
        sum(level[1] for level in bids),
        sum(level[1] for level in asks),
        fills,
        filled_qty,
        rejected=rejected,
        accepted=fm.next_order_id - 1,
        resting=fm.open_order_count(),
        events=event_rows,
        uncounted_fills=stat_fills - fills,
        uncounted_lots=stat_lots - filled_qty,
    )


def make_perpdex() -> Adapter:
    from exchange.core.fastbook import K_REJ, K_TRADE

    fm = fast_market()
    count = FastEventCounter(fm)
    place, cancel_order = fm.place_limit, fm.cancel
    tick, lot, ts = TICK_SIZE, LOT_SIZE, TS_NS

    def add_limit(oid: int, side: int, price: int, qty: int) -> None:
        place(oid, 0, side, price * tick, qty * lot, ts)

    def cancel(oid: int) -> None:
        cancel_order(oid, 0, oid, 0, ts)

    def end_state() -> dict[str, Any]:
        count()
        k = count.by_kind
        return fast_end_state(fm, int(k[K_TRADE]), count.filled_lots, count.rows, int(k[K_REJ]))

    a = Adapter()
    a.name = "perpdex"
    a.kind = (
        "this repo: FastMarket (numba core) called once per order from Python "
        "(place_limit / cancel; tables pre-sized for 16k orders, 1M accounts); "
        "events='append': every command's event rows are kept, counted by kind (fills, lots) "
        "and cleared every poll, like perpdex-python's events; not events='last', which "
        "overwrites each command's rows (a few % faster, but events would go uncounted)"
    )
    a.add_limit, a.cancel, a.poll = add_limit, cancel, count
    a.end_state = end_state  # type: ignore[method-assign]
    return a


def fastbook_ops(ops: list[Any]) -> Any:
    """Workload ops -> ``FastMarket.run_batch``'s int64 op array (``OP_W`` columns: op, ts,
    then the command's fields), same owners, prices and sizes as ``make_perpdex``."""
    import numpy as np

    from exchange.core.fastbook import OP_CANCEL, OP_PLACE, OP_W

    a = np.array(ops, np.int64).reshape(-1, 5)
    add = a[:, 0] == 0
    arr = np.zeros((len(a), OP_W), np.int64)
    arr[:, 0] = np.where(add, OP_PLACE, OP_CANCEL)
    arr[:, 1] = TS_NS
    arr[:, 2] = a[:, 1]  # owner = order id; sub-account 0
    arr[add, 4] = a[add, 2]  # place: side, price, size (order type, tif, ... 0: GTC limit)
    arr[add, 5] = a[add, 3] * TICK_SIZE
    arr[add, 6] = a[add, 4] * LOT_SIZE
    arr[~add, 4] = a[~add, 1]  # cancel: order_id (client order id 0)
    return arr


# ====================================================================== PyPI peers
def make_limit_order_book() -> Adapter:
    from limit_order_book import LimitOrderBook

    book = LimitOrderBook()
    buy, sell, cancel = book.limit_buy, book.limit_sell, book.cancel

    def add_limit(oid: int, side: int, price: int, qty: int) -> None:
        if side:
            sell(oid, qty, price)
        else:
            buy(oid, qty, price)

    def end_state() -> dict[str, Any]:
        # No fills exposed; an empty side reports best 0.
        return _state(
            book.best_buy(),
            book.best_sell(),
            book.volume_buy(),
            book.volume_sell(),
            None,
            None,
            resting=book.count(),
        )

    a = Adapter()
    a.name, a.kind = "limit-order-book", "C++ via ctypes, no fills exposed"
    a.add_limit, a.cancel = add_limit, cancel
    a.end_state = end_state  # type: ignore[method-assign]
    return a


def make_liquibook() -> Adapter:
    import liquibook as lb

    class Listener(lb.OrderListener):
        def __init__(self) -> None:
            lb.OrderListener.__init__(self)
            self.fills = 0
            self.qty = 0
            self.rejects = 0

        def on_accept(self, order: Any) -> None:
            pass

        def on_reject(self, order: Any, reason: Any) -> None:
            self.rejects += 1

        def on_fill(self, passive: Any, aggressive: Any, qty: int, cost: int) -> None:
            self.fills += 1
            self.qty += qty

        def on_cancel(self, order: Any) -> None:
            pass

        def on_cancel_reject(self, order: Any, reason: Any) -> None:
            self.rejects += 1

        def on_replace(self, *args: Any) -> None:
            pass

        def on_replace_reject(self, *args: Any) -> None:
            pass

        def on_trigger_stop(self, *args: Any) -> None:
            pass

    book = lb.liquibook_book_OrderBook()
    listener = Listener()
    book.set_order_listener(listener)
    orders: dict[int, Any] = {}  # the book holds raw pointers: keep every order alive
    Order, add, cancel_ = lb.SimpleOrder, book.add, book.cancel

    def add_limit(oid: int, side: int, price: int, qty: int) -> None:
        o = orders[oid] = Order(not side, price, qty)
        add(o)

    def cancel(oid: int) -> None:
        cancel_(orders[oid])

    def end_state() -> dict[str, Any]:
        side_state = []
        for trackers, better in ((book.bids(), max), (book.asks(), min)):
            best, qty = 0, 0
            for key, tracker in trackers.items():
                p = key.price()
                best = better(best, p) if best else p
                qty += tracker.open_qty()
            side_state.append((best, qty))
        return _state(
            side_state[0][0],
            side_state[1][0],
            side_state[0][1],
            side_state[1][1],
            listener.fills,
            listener.qty,
            rejected=listener.rejects,
        )

    a = Adapter()
    a.name, a.kind = "liquibook", "C++ via SWIG, fills via a Python callback"
    a.add_limit, a.cancel = add_limit, cancel
    a.end_state = end_state  # type: ignore[method-assign]
    a._keep = (listener, book)  # type: ignore[attr-defined]
    return a


def make_lightmatchingengine() -> Adapter:
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine

    lme = LightMatchingEngine()
    add_order, cancel_order = lme.add_order, lme.cancel_order
    c = [0, 0, 0]  # fills, filled qty, failed cancels

    def add_limit(oid: int, side: int, price: int, qty: int) -> None:
        order, trades = add_order(SYMBOL, price, qty, 2 if side else 1)
        if trades:  # one aggregate trade per level for the taker, then one per maker
            me = order.order_id
            for t in trades:
                if t.order_id != me:
                    c[0] += 1
            c[1] += order.cum_qty

    def cancel(oid: int) -> None:  # its ids are 1, 2, 3, ... like the workload's
        if cancel_order(oid, SYMBOL) is None:
            c[2] += 1

    def end_state() -> dict[str, Any]:
        book = lme.order_books[SYMBOL]
        bq = sum(o.leaves_qty for lvl in book.bids.values() for o in lvl)
        aq = sum(o.leaves_qty for lvl in book.asks.values() for o in lvl)
        return _state(
            max(book.bids, default=0),
            min(book.asks, default=0),
            bq,
            aq,
            c[0],
            c[1],
            failed_cancels=c[2],
            accepted=lme.curr_order_id,
        )

    a = Adapter()
    a.name, a.kind = "lightmatchingengine", "pure Python"
    a.add_limit, a.cancel = add_limit, cancel
    a.end_state = end_state  # type: ignore[method-assign]
    return a


def make_pyorderbook() -> Adapter:
    import logging

    from pyorderbook import Book, Side, ask, bid

    logging.getLogger("pyorderbook").setLevel(logging.WARNING)
    book = Book()
    match, cancel_ = book.match, book.cancel
    orders: dict[int, Any] = {}
    c = [0, 0]

    def add_limit(oid: int, side: int, price: int, qty: int) -> None:
        blotter = match((ask if side else bid)(SYMBOL, price, qty))
        order = blotter.order
        if order.quantity:
            orders[oid] = order
        if blotter.trades:
            c[0] += len(blotter.trades)
            c[1] += qty - order.quantity

    def cancel(oid: int) -> None:
        cancel_(orders.pop(oid))

    def end_state() -> dict[str, Any]:
        sides = []
        for side in (Side.BID, Side.ASK):
            live = [lvl for lvl in book.level_map[SYMBOL][side].values() if lvl.orders]
            prices = [int(lvl.price) for lvl in live]
            qty = sum(o.quantity for lvl in live for o in lvl.orders.values())
            sides.append(((max if side is Side.BID else min)(prices, default=0), qty))
        return _state(sides[0][0], sides[1][0], sides[0][1], sides[1][1], c[0], c[1])

    a = Adapter()
    a.name, a.kind = "pyorderbook", "pure Python, Decimal"
    a.add_limit, a.cancel = add_limit, cancel
    a.end_state = end_state  # type: ignore[method-assign]
    return a


def make_fastlob() -> Adapter:
    import logging

    import fastlob
    from fastlob import OrderParams, OrderSide
    from fastlob.engine import engine

    # Python's default: WARNING (pyorderbook's import sets the root logger to INFO).
    logging.getLogger("[bench]").setLevel(logging.WARNING)
    lob = fastlob.Orderbook("bench", start=True)  # starts its GTD-expiry thread
    process, cancel_ = lob.process, lob.cancel
    ids: dict[int, str] = {}
    c = [0, 0, 0, 0]  # whole-order fills, filled qty, partial fills, failures
    BID_, ASK_ = OrderSide.BID, OrderSide.ASK

    # fastlob reports whole makers matched and qty per price, not the last partial maker
    # fill: count it with a thin wrapper around the engine step that does it.
    inner = engine.fill_last_order

    def fill_last_order(side: Any, order: Any, result: Any) -> None:
        if not side.empty() and order.valid():
            c[2] += 1
        inner(side, order, result)

    engine.fill_last_order = fill_last_order

    def add_limit(oid: int, side: int, price: int, qty: int) -> None:
        r = process(OrderParams(ASK_ if side else BID_, price, qty))
        if not r._success:
            c[3] += 1
        ids[oid] = r._orderid
        if r._orders_matched:
            c[0] += r._orders_matched
        ep = r._execprices
        if ep:
            c[1] += sum(ep.values())

    def cancel(oid: int) -> None:
        if not cancel_(ids.pop(oid))._success:
            c[3] += 1

    def end_state() -> dict[str, Any]:
        bb, ba = lob._bidside, lob._askside
        return _state(
            0 if bb.empty() else bb.best().price(),
            0 if ba.empty() else ba.best().price(),
            bb.volume(),
            ba.volume(),
            c[0] + c[2],
            int(c[1]),
            failures=c[3],
        )

    a = Adapter()
    a.name, a.kind = "fastlob", "pure Python, Decimal"
    a.add_limit, a.cancel = add_limit, cancel
    a.end_state = end_state  # type: ignore[method-assign]
    a.close = lob.stop  # type: ignore[method-assign]
    return a


FACTORIES: dict[str, Callable[[], Adapter]] = {
    "perpdex": make_perpdex,
    "perpdex-python": make_perpdex_python,
    "naive": make_naive,
    "limit-order-book": make_limit_order_book,
    "liquibook": make_liquibook,
    "lightmatchingengine": make_lightmatchingengine,
    "pyorderbook": make_pyorderbook,
    "fastlob": make_fastlob,
}
PEERS = ("limit-order-book", "liquibook", "lightmatchingengine", "pyorderbook", "fastlob")


def make(name: str) -> Adapter:
    return FACTORIES[name]()
