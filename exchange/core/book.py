"""One market's central limit order book and its price-time matcher.

The matcher changes only the book (orders and levels) and reports every change as an
event appended to ``out``; it never moves funds. It is deterministic: time arrives as an
argument (``ts_ns``) and the global sequence number is threaded through (``seq`` in, next
``seq`` out). Validation of commands happens before the book is called (``state.py``).

Data layout, chosen for speed in pure Python: a level is a doubly linked FIFO of orders;
each side keeps ``price -> Level`` plus a heap of prices (bids negated). Emptied levels stay
in the dict until they reach the top of the heap, where they are discarded: this keeps the
heap and the dict in step without a search.
"""

from __future__ import annotations

from heapq import heappop, heappush
from typing import Any

from exchange.core.events import (
    OrderCanceled,
    OrderExpired,
    OrderRested,
    SelfTradeDecremented,
    TradeExecuted,
)
from exchange.core.market import MarketSpec
from exchange.core.orders import (
    CancelReason,
    Order,
    OrderStatus,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Transition,
    next_status,
)

_new = tuple.__new__
_BID = Side.BID.value
_ASK = Side.ASK.value
_STP_CANCEL_RESTING = SelfTradePrevention.CANCEL_RESTING.value
_STP_CANCEL_TAKING = SelfTradePrevention.CANCEL_TAKING.value
_OPEN = OrderStatus.OPEN.value
_PARTIAL = OrderStatus.PARTIALLY_FILLED.value
_T_FILL_PARTIAL = Transition.FILL_PARTIAL.value
_T_FILL_FULL = Transition.FILL_FULL.value
_T_CANCEL = Transition.CANCEL.value
_T_REST = Transition.REST.value
_T_DECREMENT = Transition.DECREMENT.value
_T_EXPIRE = Transition.EXPIRE.value
_R_STP_CANCEL_RESTING = CancelReason.STP_CANCEL_RESTING.value
_R_STP_CANCEL_TAKING = CancelReason.STP_CANCEL_TAKING.value
_R_STP_DECREMENT = CancelReason.STP_DECREMENT.value


class Level:
    """All resting orders at one price, oldest first."""

    __slots__ = ("count", "head", "price_ticks", "tail", "total_lots")

    def __init__(self, price_ticks: int) -> None:
        self.price_ticks = price_ticks
        self.head: Order | None = None
        self.tail: Order | None = None
        self.total_lots = 0
        self.count = 0


class OrderBook:
    """Resting orders of one market, and the matching of incoming takers against them."""

    def __init__(self, spec: MarketSpec) -> None:
        self.spec = spec
        self.market_id = spec.market_id
        self.bids: dict[int, Level] = {}
        self.asks: dict[int, Level] = {}
        self._bid_heap: list[int] = []  # -price_ticks
        self._ask_heap: list[int] = []  # price_ticks
        self.orders: dict[int, Order] = {}  # resting orders by id
        self.account_orders: dict[int, dict[int, Order]] = {}  # account -> live orders
        self.client_ids: dict[tuple[int, int], int] = {}  # (account, client id) -> order id
        self.fill_listener: Any = None  # callable(account, market, signed_lots) or None
        self.reduce_only_live: dict[int, int] = {}  # account -> live reduce-only orders
        # account -> [bid lots, ask lots] of its live orders (indexed by side), kept with
        # every change so the risk checks read an account's open base without a scan
        self.open_lots: dict[int, list[int]] = {}

    # ------------------------------------------------------------------ queries
    def best_bid(self) -> int:
        """Best bid in ticks, 0 when the side is empty."""
        heap, levels = self._bid_heap, self.bids
        while heap:
            price = -heap[0]
            if levels[price].count:
                return price
            heappop(heap)
            del levels[price]
        return 0

    def best_ask(self) -> int:
        """Best ask in ticks, 0 when the side is empty."""
        heap, levels = self._ask_heap, self.asks
        while heap:
            price = heap[0]
            if levels[price].count:
                return price
            heappop(heap)
            del levels[price]
        return 0

    def depth(self, side: int, max_levels: int) -> list[tuple[int, int]]:
        """Up to ``max_levels`` ``(price_ticks, total_lots)`` from the touch outwards."""
        levels = self.bids if side == _BID else self.asks
        prices = sorted((p for p, lvl in levels.items() if lvl.count), reverse=side == _BID)
        return [(p, levels[p].total_lots) for p in prices[:max_levels]]

    def open_orders(self, account: int) -> list[Order]:
        return list(self.account_orders.get(account, {}).values())

    def fillable_lots(self, taker: Order, want_lots: int) -> int:
        """Lots a taker would fill before stopping, honouring STP; stops once ``want_lots``.

        Used for FOK: an order that cannot fill completely is refused before anything
        happens, so it never leaves partial effects.
        """
        if taker.side == _BID:
            levels, limit, sign = self.asks, taker.price_ticks, 1
        else:
            levels, limit, sign = self.bids, taker.price_ticks, -1
        prices = sorted(p for p, lvl in levels.items() if lvl.count and p * sign <= limit * sign)
        if sign < 0:
            prices.reverse()
        got = 0
        owner = taker.owner_id
        stp = taker.stp_mode
        for p in prices:
            maker = levels[p].head
            while maker is not None:
                if maker.owner_id == owner:
                    if stp != _STP_CANCEL_RESTING:
                        return got  # the taker would stop (or shrink) here
                else:
                    got += maker.remaining_lots
                    if got >= want_lots:
                        return got
                maker = maker.next
        return got

    def crosses(self, side: int, price_ticks: int) -> bool:
        """Whether a ``side`` order at ``price_ticks`` would trade on arrival."""
        if side == _BID:
            best = self.best_ask()
            return best != 0 and best <= price_ticks
        best = self.best_bid()
        return best != 0 and best >= price_ticks

    # ------------------------------------------------------------------ mutation
    def rest(self, order: Order, ts_ns: int, seq: int, out: list[Any]) -> int:
        """Put ``order`` at the back of its price level and emit ``OrderRested``."""
        self._link(order)
        order.status = next_status(order.status, _T_REST)
        out.append(
            _new(
                OrderRested,
                (
                    seq,
                    ts_ns,
                    self.market_id,
                    order.order_id,
                    order.price_ticks,
                    order.remaining_lots,
                ),
            )
        )
        return seq + 1

    def _link(self, order: Order) -> None:
        price = order.price_ticks
        if order.side == _BID:
            level = self.bids.get(price)
            if level is None:
                level = self.bids[price] = Level(price)
                heappush(self._bid_heap, -price)
        else:
            level = self.asks.get(price)
            if level is None:
                level = self.asks[price] = Level(price)
                heappush(self._ask_heap, price)
        tail = level.tail
        order.prev = tail
        order.next = None
        if tail is None:
            level.head = order
        else:
            tail.next = order
        level.tail = order
        level.total_lots += order.remaining_lots
        level.count += 1
        order.level = level
        self.orders[order.order_id] = order

    def _unlink(self, order: Order) -> None:
        """Take a resting order off its level (the level may become empty)."""
        level: Level = order.level  # type: ignore[assignment]
        prev, nxt = order.prev, order.next
        if prev is None:
            level.head = nxt
        else:
            prev.next = nxt
        if nxt is None:
            level.tail = prev
        else:
            nxt.prev = prev
        level.total_lots -= order.remaining_lots
        level.count -= 1
        order.prev = order.next = None
        order.level = None
        del self.orders[order.order_id]

    def register_live(self, order: Order) -> None:
        """Index a live order (resting or trigger-pending) by account and client id."""
        acct = order.account
        by_acct = self.account_orders.get(acct)
        if by_acct is None:
            by_acct = self.account_orders[acct] = {}
        by_acct[order.order_id] = order
        lots = self.open_lots.get(acct)
        if lots is None:
            lots = self.open_lots[acct] = [0, 0]
        lots[order.side] += order.remaining_lots
        if order.client_order_id:
            self.client_ids[(acct, order.client_order_id)] = order.order_id
        if order.reduce_only:
            self.reduce_only_live[acct] = self.reduce_only_live.get(acct, 0) + 1

    def forget_live(self, order: Order) -> None:
        """Drop a finished order from the account and client-id indexes (with the lots it
        still has: call before zeroing them)."""
        acct = order.account
        by_acct = self.account_orders[acct]
        del by_acct[order.order_id]
        if by_acct:
            self.open_lots[acct][order.side] -= order.remaining_lots
        else:
            del self.account_orders[acct]
            del self.open_lots[acct]
        if order.client_order_id:
            del self.client_ids[(acct, order.client_order_id)]
        if order.reduce_only:
            left = self.reduce_only_live[acct] - 1
            if left:
                self.reduce_only_live[acct] = left
            else:
                del self.reduce_only_live[acct]

    def is_live(self, order: Order) -> bool:
        """Whether ``order`` is in the account index (resting or trigger-pending)."""
        live = self.account_orders.get(order.account)
        return live is not None and order.order_id in live

    def adjust_live(self, order: Order, delta_lots: int) -> None:
        """Record a change of a live order's remaining lots in its account's open lots."""
        self.open_lots[order.account][order.side] += delta_lots

    def cancel_resting(
        self, order: Order, reason: int, ts_ns: int, seq: int, out: list[Any]
    ) -> int:
        """Remove a resting order and emit ``OrderCanceled``."""
        lots = order.remaining_lots
        self._unlink(order)
        self.forget_live(order)
        order.status = next_status(order.status, _T_CANCEL)
        out.append(
            _new(
                OrderCanceled,
                (
                    seq,
                    ts_ns,
                    self.market_id,
                    order.order_id,
                    order.owner_id,
                    order.sub_account_id,
                    lots,
                    reason,
                ),
            )
        )
        return seq + 1

    def expire_resting(self, order: Order, ts_ns: int, seq: int, out: list[Any]) -> int:
        lots = order.remaining_lots
        self._unlink(order)
        self.forget_live(order)
        order.status = next_status(order.status, _T_EXPIRE)
        out.append(
            _new(
                OrderExpired,
                (
                    seq,
                    ts_ns,
                    self.market_id,
                    order.order_id,
                    order.owner_id,
                    order.sub_account_id,
                    lots,
                ),
            )
        )
        return seq + 1

    def reduce_resting(self, order: Order, new_remaining_lots: int) -> None:
        """Shrink a resting order in place (keeps its queue position)."""
        level: Level = order.level  # type: ignore[assignment]
        level.total_lots -= order.remaining_lots - new_remaining_lots
        self.open_lots[order.account][order.side] += new_remaining_lots - order.remaining_lots
        order.remaining_lots = new_remaining_lots

    def match(self, taker: Order, ts_ns: int, seq: int, out: list[Any]) -> int:
        """Match ``taker`` against the opposite side up to its limit price.

        Fills happen at the maker's price, best price first, oldest first. On a resting
        order of the same owner (any sub-account) the taker's STP mode applies. Returns
        the next sequence number; ``taker.remaining_lots`` is what is left (the caller
        rests or cancels it). ``taker.status`` is CANCELED if STP ended it.
        """
        mid = self.market_id
        if taker.side == _BID:
            levels, heap, sign = self.asks, self._ask_heap, 1
        else:
            levels, heap, sign = self.bids, self._bid_heap, -1
        limit = taker.price_ticks * sign
        owner = taker.owner_id
        taker_id = taker.order_id
        taker_side = taker.side
        listener = self.fill_listener
        orders = self.orders
        remaining = taker.remaining_lots
        while remaining and heap:
            signed_price = heap[0]
            if signed_price > limit:
                break
            price = signed_price * sign
            level = levels[price]
            if not level.count:
                heappop(heap)
                del levels[price]
                continue
            maker = level.head
            while maker is not None and remaining:
                nxt = maker.next
                if maker.owner_id == owner:
                    stp = taker.stp_mode
                    if stp == _STP_CANCEL_RESTING:
                        seq = self.cancel_resting(maker, _R_STP_CANCEL_RESTING, ts_ns, seq, out)
                    elif stp == _STP_CANCEL_TAKING:
                        taker.remaining_lots = remaining
                        taker.status = next_status(taker.status, _T_CANCEL)
                        out.append(
                            _new(
                                OrderCanceled,
                                (
                                    seq,
                                    ts_ns,
                                    mid,
                                    taker_id,
                                    owner,
                                    taker.sub_account_id,
                                    remaining,
                                    _R_STP_CANCEL_TAKING,
                                ),
                            )
                        )
                        return seq + 1
                    else:  # DECREMENT_BOTH
                        qty = (
                            remaining if remaining < maker.remaining_lots else maker.remaining_lots
                        )
                        out.append(
                            _new(
                                SelfTradeDecremented,
                                (seq, ts_ns, mid, maker.order_id, taker_id, qty),
                            )
                        )
                        seq += 1
                        remaining -= qty
                        taker.remaining_lots = remaining
                        taker.status = next_status(taker.status, _T_DECREMENT)
                        maker.status = next_status(maker.status, _T_DECREMENT)
                        if qty == maker.remaining_lots:
                            maker.remaining_lots = qty  # all of it leaves the level
                            seq = self._cancel_emptied(maker, ts_ns, seq, out)
                        else:
                            level.total_lots -= qty
                            maker.remaining_lots -= qty
                            self.open_lots[maker.account][maker.side] -= qty
                        if not remaining:
                            taker.status = next_status(taker.status, _T_CANCEL)
                            out.append(
                                _new(
                                    OrderCanceled,
                                    (
                                        seq,
                                        ts_ns,
                                        mid,
                                        taker_id,
                                        owner,
                                        taker.sub_account_id,
                                        0,
                                        _R_STP_DECREMENT,
                                    ),
                                )
                            )
                            return seq + 1
                    maker = nxt
                    continue
                maker_left = maker.remaining_lots
                if remaining >= maker_left:
                    qty = maker_left
                    remaining -= qty
                    # Fully filled maker leaves the book.
                    level.head = nxt
                    if nxt is None:
                        level.tail = None
                    else:
                        nxt.prev = None
                    level.total_lots -= qty
                    level.count -= 1
                    maker.next = None
                    maker.level = None
                    del orders[maker.order_id]
                    self.forget_live(maker)
                    maker.remaining_lots = 0
                    maker.filled_lots += qty
                    maker.status = next_status(maker.status, _T_FILL_FULL)
                    maker_after = 0
                else:
                    qty = remaining
                    remaining = 0
                    maker_after = maker_left - qty
                    maker.remaining_lots = maker_after
                    maker.filled_lots += qty
                    level.total_lots -= qty
                    self.open_lots[maker.account][maker.side] -= qty
                    maker.status = next_status(maker.status, _T_FILL_PARTIAL)
                taker.filled_lots += qty
                taker.status = next_status(
                    taker.status, _T_FILL_PARTIAL if remaining else _T_FILL_FULL
                )
                out.append(
                    _new(
                        TradeExecuted,
                        (
                            seq,
                            ts_ns,
                            mid,
                            maker.order_id,
                            taker_id,
                            maker.owner_id,
                            maker.sub_account_id,
                            owner,
                            taker.sub_account_id,
                            taker_side,
                            price,
                            qty,
                            maker_after,
                            remaining,
                        ),
                    )
                )
                seq += 1
                if listener is not None:
                    listener(maker.account, mid, -qty if taker_side == _BID else qty)
                    listener(taker.account, mid, qty if taker_side == _BID else -qty)
                maker = nxt
        taker.remaining_lots = remaining
        return seq

    def _cancel_emptied(self, maker: Order, ts_ns: int, seq: int, out: list[Any]) -> int:
        """A maker decremented to nothing by STP: off the book, reported as canceled."""
        self._unlink(maker)
        self.forget_live(maker)
        maker.remaining_lots = 0
        maker.status = next_status(maker.status, _T_CANCEL)
        out.append(
            _new(
                OrderCanceled,
                (
                    seq,
                    ts_ns,
                    self.market_id,
                    maker.order_id,
                    maker.owner_id,
                    maker.sub_account_id,
                    0,
                    _R_STP_DECREMENT,
                ),
            )
        )
        return seq + 1

    # ------------------------------------------------------------------ state
    def canonical(self) -> list[Any]:
        """Resting orders in price-time priority per side: what defines the book."""
        out: list[Any] = []
        for levels, reverse in ((self.bids, True), (self.asks, False)):
            side: list[Any] = []
            for price in sorted((p for p, lvl in levels.items() if lvl.count), reverse=reverse):
                level = levels[price]
                node = level.head
                queue = []
                while node is not None:
                    queue.append(node.canonical())
                    node = node.next
                side.append([price, level.total_lots, queue])
            out.append(side)
        return out

    def check_invariants(self) -> None:
        """Fail fast if the book is inconsistent (crossed, bad totals, broken links)."""
        from exchange.core.errors import InvariantViolation

        bid, ask = self.best_bid(), self.best_ask()
        if bid and ask and bid >= ask:
            raise InvariantViolation(
                f"book {self.spec.symbol}: expected bid < ask, got {bid} >= {ask}"
            )
        seen = 0
        for levels, side in ((self.bids, _BID), (self.asks, _ASK)):
            for price, level in levels.items():
                total = count = 0
                node = level.head
                prev = None
                while node is not None:
                    if node.prev is not prev or node.price_ticks != price or node.side != side:
                        raise InvariantViolation(f"level {price}: broken link at {node!r}")
                    if node.remaining_lots <= 0 or node.status not in (_OPEN, _PARTIAL):
                        raise InvariantViolation(f"level {price}: dead order {node!r}")
                    total += node.remaining_lots
                    count += 1
                    prev = node
                    node = node.next
                if level.tail is not prev or total != level.total_lots or count != level.count:
                    raise InvariantViolation(
                        f"level {price}: expected total {total}/count {count}, got "
                        f"{level.total_lots}/{level.count}"
                    )
                seen += count
        if seen != len(self.orders):
            raise InvariantViolation(f"expected {seen} indexed orders, got {len(self.orders)}")
        recomputed: dict[int, list[int]] = {}
        for acct, live in self.account_orders.items():
            lots = recomputed[acct] = [0, 0]
            for node in live.values():
                lots[node.side] += node.remaining_lots
        if recomputed != self.open_lots:
            raise InvariantViolation(
                f"open lots per account: expected {recomputed} (recomputed), got "
                f"{self.open_lots} (kept)"
            )


__all__ = ["Level", "OrderBook", "TimeInForce"]
