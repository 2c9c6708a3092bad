"""What the API serves, folded from the engine's events: books, orders, trades, fills.

A mirror ``ExchangeCore`` (the reference fold, ``ExchangeCore.apply``) holds books and live
orders, so the API reads exactly the state the engine's events describe. Around it this
module keeps what the core does not: L2 book deltas with a per-market sequence number,
recent trades per market, and per-owner order events and fills (bounded).

Pure and single-threaded: the engine port feeds it events in sequence order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any, Protocol

from exchange.core.errors import InvariantViolation, RejectCode
from exchange.core.events import (
    Event,
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
)
from exchange.core.orders import (
    SUB_ACCOUNTS_PER_OWNER,
    TRIGGER_TYPES,
    CancelReason,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
)
from exchange.core.state import ExchangeCore


class FoldedState(Protocol):
    """What the read model needs of the engine's state class (``ExchangeCore`` or a
    clearinghouse wrapping one): its books, its next sequence number and its fold."""

    @property
    def books(self) -> dict[int, Any]: ...

    @property
    def next_seq(self) -> int: ...

    def apply(self, e: Any) -> None: ...


# The events the core's own fold applies (its applier table): the matching events.
_MATCHING_KINDS = frozenset(ExchangeCore._appliers)
_BID = int(Side.BID)


def _owner_fields(e: Any) -> tuple[tuple[int, int], ...]:
    fields = e._fields
    if "owner_id" in fields and "sub_account_id" in fields:
        return ((e.owner_id, e.sub_account_id),)
    if "maker_owner_id" in fields and "maker_sub_account_id" in fields:
        return (
            (e.maker_owner_id, e.maker_sub_account_id),
            (e.taker_owner_id, e.taker_sub_account_id),
        )
    return ()


_ASK = int(Side.ASK)


@dataclass(frozen=True, slots=True)
class BookDelta:
    """Levels of one market that changed in one engine batch, as their new total lots.

    ``book_seq`` counts deltas of this market from 1 (0 = the empty, never-changed book); a
    client that sees ``book_seq`` jump by more than one has missed a delta and resyncs.
    A level with ``num_base_lots`` 0 is gone.
    """

    market_id: int
    book_seq: int
    bids: tuple[tuple[int, int], ...]  # (price_ticks, num_base_lots), best first
    asks: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    market_id: int
    book_seq: int
    bids: tuple[tuple[int, int], ...]  # (price_ticks, num_base_lots), best first
    asks: tuple[tuple[int, int], ...]


@dataclass(slots=True)
class ReadUpdate:
    """What one batch of events changed, for the websocket fan-out."""

    book_deltas: list[BookDelta] = field(default_factory=list)
    trades: list[TradeExecuted] = field(default_factory=list)
    owner_events: dict[int, list[tuple[int, Event]]] = field(default_factory=dict)  # (sub, e)
    tickers: list[dict[str, Any]] = field(default_factory=list)
    markets_created: list[int] = field(default_factory=list)


_SIDE_NAMES = tuple(s.name for s in Side)
_REJECT_NAMES = {int(c): c.name for c in RejectCode}
_CANCEL_REASON_NAMES = {int(r): r.name for r in CancelReason}


def event_json(event: Event) -> dict[str, Any]:
    """An event as a JSON object: ``{"type": ClassName, **fields}`` (ints stay ints).

    Enum fields also get their name (``side_name``, ``code_name``...), for humans.
    """
    kind = type(event)
    out: dict[str, Any] = dict(zip(kind._fields, event))
    out["type"] = kind.__name__
    if kind is OrderRejected:
        out["code_name"] = _REJECT_NAMES.get(event.code, "?")  # type: ignore[union-attr]
    elif kind is OrderCanceled:
        out["reason_name"] = _CANCEL_REASON_NAMES.get(event.reason, "?")  # type: ignore[union-attr]
    elif kind is OrderAccepted:
        out["side_name"] = _SIDE_NAMES[event.side]  # type: ignore[union-attr]
    elif kind is TradeExecuted:
        out["taker_side_name"] = _SIDE_NAMES[event.taker_side]  # type: ignore[union-attr]
    return out


def order_json(market_id: int, order: Order) -> dict[str, Any]:
    """A live order as a JSON object."""
    return {
        "market_id": market_id,
        "order_id": order.order_id,
        "client_order_id": order.client_order_id,
        "owner_id": order.owner_id,
        "sub_account_id": order.sub_account_id,
        "side": Side(order.side).name,
        "order_type": OrderType(order.order_type).name,
        "time_in_force": TimeInForce(order.time_in_force).name,
        "price_ticks": order.price_ticks,
        "trigger_price_ticks": order.trigger_price_ticks,
        "remaining_lots": order.remaining_lots,
        "filled_lots": order.filled_lots,
        "reduce_only": order.reduce_only,
        "status": OrderStatus(order.status).name,
        "expire_at_ns": order.expire_at_ns,
    }


class ReadModel:
    """The API's view of the exchange, advanced one engine batch at a time."""

    def __init__(
        self,
        core: FoldedState,
        *,
        recent_trades_kept: int = 1_000,
        history_kept_per_owner: int = 1_000,
    ) -> None:
        self.core = core
        # the matching core: the state itself, or the one a clearinghouse wraps
        self.matching: ExchangeCore = getattr(core, "core", None) or core  # type: ignore[assignment]
        self.recent_trades_kept = recent_trades_kept
        self.history_kept_per_owner = history_kept_per_owner
        self.book_seq: dict[int, int] = dict.fromkeys(core.books, 0)
        self.trades: dict[int, deque[TradeExecuted]] = {
            m: deque(maxlen=recent_trades_kept) for m in core.books
        }
        self.owner_history: dict[int, deque[tuple[int, Event]]] = {}  # (sub_account_id, e)
        self.owner_fills: dict[int, deque[dict[str, Any]]] = {}
        self.owner_funding: dict[int, deque[dict[str, Any]]] = {}  # FundingSettled per owner
        self.last_funding: dict[int, dict[str, Any]] = {}  # market -> last FundingRateApplied
        # live order id -> (owner_id, market_id): events after OrderAccepted name only the id
        self._order_owner: dict[int, tuple[int, int]] = {}  # (owner_id, sub_account_id)
        # the transient-order shortcut needs the matching core's own fold for both kinds
        appliers = getattr(type(core), "_appliers", {})
        self._transient_ok = core is self.matching or not (
            OrderAccepted in appliers or OrderCanceled in appliers
        )
        for book in core.books.values():
            for account_orders in book.account_orders.values():
                for order in account_orders.values():
                    self._order_owner[order.order_id] = (order.owner_id, order.sub_account_id)

    @property
    def last_seq(self) -> int:
        """Sequence number of the last event folded in."""
        return self.core.next_seq - 1

    # ------------------------------------------------------------------ fold
    def apply(self, events: list[Event]) -> ReadUpdate:
        """Fold one batch (in sequence order); return what changed.

        An order accepted and canceled at once (an IOC's unfilled remainder, a refused
        post-only...: ``OrderAccepted`` directly followed by its ``OrderCanceled``) never
        reaches a book, so the pair is folded without the mirror core (only its sequence
        and order-id counters move, and the owner's history records both events): the same
        state as the core's own fold (``tests/unit/exchange/api/test_api_read_model.py``
        compares the two over seeded streams), at a fraction of the cost.
        """
        core = self.core
        matching = self.matching
        books = core.books
        touched: dict[int, set[tuple[int, int]]] = {}
        update = ReadUpdate()
        transient_ok = self._transient_ok
        last = len(events) - 1
        i = -1
        while i < last:
            i += 1
            e = events[i]
            if transient_ok and type(e) is OrderAccepted and i < last:
                end = events[i + 1]
                if (
                    type(end) is OrderCanceled
                    and end.order_id == e.order_id
                    and e.seq == matching.next_seq
                    and end.seq == e.seq + 1
                    and e.order_type not in TRIGGER_TYPES
                    and e.market_id in books
                    and end.market_id == e.market_id
                    and matching._inflight is None
                ):
                    self._fold_transient(e, end, update)
                    i += 1
                    continue
            if e.seq != core.next_seq:
                raise InvariantViolation(f"read model: expected seq {core.next_seq}, got {e.seq}")
            kind = type(e)
            market_id = e.market_id
            book = books.get(market_id)
            owners: tuple[tuple[int, int], ...] = ()  # (owner_id, sub_account_id)
            if kind is TradeExecuted:
                t: TradeExecuted = e  # type: ignore[assignment]
                touched.setdefault(market_id, set()).add((1 - t.taker_side, t.price_ticks))
                owners = (
                    (t.maker_owner_id, t.maker_sub_account_id),
                    (t.taker_owner_id, t.taker_sub_account_id),
                )
                update.trades.append(t)
                self.trades[market_id].append(t)
            elif kind is OrderAccepted or kind is OrderRejected:
                owners = ((e.owner_id, e.sub_account_id),)  # type: ignore[union-attr]
                if kind is OrderAccepted:
                    self._order_owner[e.order_id] = owners[0]  # type: ignore[union-attr]
            elif kind is SelfTradeDecremented:
                oid = e.maker_order_id  # type: ignore[union-attr]
                self._touch_resting(book, oid, touched)
                owners = self._owners_of((oid, e.taker_order_id))  # type: ignore[union-attr]
            elif kind is OrderCanceled or kind is OrderExpired or kind is OrderAmended:
                self._touch_resting(book, e.order_id, touched)  # type: ignore[union-attr]
                owners = self._owners_of((e.order_id,))  # type: ignore[union-attr]
            elif kind is OrderRested or kind is OrderTriggered:
                owners = self._owners_of((e.order_id,))  # type: ignore[union-attr]
            elif kind not in _MATCHING_KINDS:
                # account events of the engine's other parts (collateral, settlement...)
                owners = _owner_fields(e)
                name = kind.__name__
                if name == "FundingRateApplied":
                    self.last_funding[market_id] = event_json(e)
                elif name == "FundingSettled":
                    self._keep(self.owner_funding, e.owner_id, event_json(e))  # type: ignore[union-attr]
            core.apply(e)
            if kind is OrderRested or kind is OrderAmended:
                self._touch_resting(books.get(market_id), e.order_id, touched)  # type: ignore[union-attr]
            elif kind is MarketCreated:
                self.book_seq[market_id] = 0
                self.trades[market_id] = deque(maxlen=self.recent_trades_kept)
                update.markets_created.append(market_id)
            for owner_id, sub_account_id in dict.fromkeys(owners):
                self._record(owner_id, sub_account_id, e, update)
            self._forget_ended(e, kind)
        for market_id in sorted(touched):
            update.book_deltas.append(self._delta(market_id, touched[market_id]))
        ticker_markets = set(touched) | {t.market_id for t in update.trades}
        update.tickers = [self.ticker(m) for m in sorted(ticker_markets)]
        return update

    def _fold_transient(self, a: OrderAccepted, end: OrderCanceled, update: ReadUpdate) -> None:
        # What ExchangeCore._apply_accepted + _apply_end do to an order that never rested:
        # the counters move, the in-flight slot ends empty, no book or live-order index
        # changes (the order was in none); no level is touched, nothing to forget.
        matching = self.matching
        matching.next_seq = end.seq + 1
        if a.order_id >= matching.next_order_id:
            matching.next_order_id = a.order_id + 1
        owner_id = a.owner_id
        sub = a.sub_account_id
        first = (sub, a)
        second = (sub, end)
        pending = update.owner_events.get(owner_id)
        if pending is None:
            update.owner_events[owner_id] = [first, second]
        else:
            pending.append(first)
            pending.append(second)
        history = self.owner_history.get(owner_id)
        if history is None:
            history = self.owner_history[owner_id] = deque(maxlen=self.history_kept_per_owner)
        history.append(first)
        history.append(second)

    def _touch_resting(
        self, book: Any, order_id: int, touched: dict[int, set[tuple[int, int]]]
    ) -> None:
        if book is None:
            return
        order = book.orders.get(order_id)
        if order is not None:
            touched.setdefault(book.market_id, set()).add((order.side, order.price_ticks))

    def _owners_of(self, order_ids: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
        got = self._order_owner.get
        return tuple(o for o in (got(i) for i in order_ids) if o is not None)

    def _forget_ended(self, e: Event, kind: type) -> None:
        pop = self._order_owner.pop
        if kind is OrderCanceled or kind is OrderExpired:
            pop(e.order_id, None)  # type: ignore[union-attr]
        elif kind is TradeExecuted:
            if e.maker_remaining_lots == 0:  # type: ignore[union-attr]
                pop(e.maker_order_id, None)  # type: ignore[union-attr]
            if e.taker_remaining_lots == 0:  # type: ignore[union-attr]
                pop(e.taker_order_id, None)  # type: ignore[union-attr]

    def _record(self, owner_id: int, sub_account_id: int, e: Event, update: ReadUpdate) -> None:
        update.owner_events.setdefault(owner_id, []).append((sub_account_id, e))
        history = self.owner_history.get(owner_id)
        if history is None:
            history = self.owner_history[owner_id] = deque(maxlen=self.history_kept_per_owner)
        history.append((sub_account_id, e))
        if type(e) is TradeExecuted:
            fills = self.owner_fills.get(owner_id)
            if fills is None:
                fills = self.owner_fills[owner_id] = deque(maxlen=self.history_kept_per_owner)
            for fill in fills_of(e):
                if fill["owner_id"] == owner_id and fill["sub_account_id"] == sub_account_id:
                    fills.append(fill)

    def _keep(self, table: dict[int, deque[Any]], owner_id: int, item: Any) -> None:
        kept = table.get(owner_id)
        if kept is None:
            kept = table[owner_id] = deque(maxlen=self.history_kept_per_owner)
        kept.append(item)

    def _delta(self, market_id: int, levels: set[tuple[int, int]]) -> BookDelta:
        book = self.core.books[market_id]
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        for side, price in levels:
            level = (book.bids if side == _BID else book.asks).get(price)
            lots = level.total_lots if level is not None and level.count else 0
            (bids if side == _BID else asks).append((price, lots))
        bids.sort(reverse=True)
        asks.sort()
        seq = self.book_seq[market_id] + 1
        self.book_seq[market_id] = seq
        return BookDelta(market_id, seq, tuple(bids), tuple(asks))

    # ------------------------------------------------------------------ queries
    def book(self, market_id: int, depth: int) -> BookSnapshot | None:
        """Up to ``depth`` levels a side, best first; ``None`` for an unknown market."""
        book = self.core.books.get(market_id)
        if book is None:
            return None
        return BookSnapshot(
            market_id,
            self.book_seq[market_id],
            tuple(book.depth(_BID, depth)),
            tuple(book.depth(_ASK, depth)),
        )

    def ticker(self, market_id: int) -> dict[str, Any]:
        """Top of book and last trade of one market."""
        book = self.core.books[market_id]
        bid = book.best_bid()
        ask = book.best_ask()
        last = self.trades[market_id][-1] if self.trades[market_id] else None
        return {
            "market_id": market_id,
            "book_seq": self.book_seq[market_id],
            "best_bid_ticks": bid,
            "best_bid_lots": book.bids[bid].total_lots if bid else 0,
            "best_ask_ticks": ask,
            "best_ask_lots": book.asks[ask].total_lots if ask else 0,
            "last_trade_price_ticks": last.price_ticks if last else 0,
            "last_trade_lots": last.num_base_lots if last else 0,
            "last_trade_seq": last.seq if last else 0,
        }

    def open_orders(
        self, owner_id: int, market_id: int | None = None, sub_account_id: int | None = None
    ) -> list[dict[str, Any]]:
        """The owner's live orders (resting or trigger-pending), by order id."""
        out: list[dict[str, Any]] = []
        for mid, book in self.core.books.items():
            if market_id is not None and mid != market_id:
                continue
            for account, orders in book.account_orders.items():
                if account // SUB_ACCOUNTS_PER_OWNER != owner_id:
                    continue
                if (
                    sub_account_id is not None
                    and account % SUB_ACCOUNTS_PER_OWNER != sub_account_id
                ):
                    continue
                out.extend(order_json(mid, o) for o in orders.values())
        out.sort(key=lambda o: o["order_id"])
        return out

    def find_order(self, owner_id: int, market_id: int, order_id: int) -> Order | None:
        """A live order of this owner in this market, or ``None``."""
        book = self.core.books.get(market_id)
        if book is None:
            return None
        for account, orders in book.account_orders.items():
            if account // SUB_ACCOUNTS_PER_OWNER == owner_id and order_id in orders:
                found: Order = orders[order_id]
                return found
        return None


def fills_of(t: TradeExecuted) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two sides of a trade as fills (maker first)."""
    common = {
        "seq": t.seq,
        "ts_ns": t.ts_ns,
        "market_id": t.market_id,
        "price_ticks": t.price_ticks,
        "num_base_lots": t.num_base_lots,
    }
    maker_side = Side(1 - t.taker_side).name
    return (
        {
            **common,
            "owner_id": t.maker_owner_id,
            "sub_account_id": t.maker_sub_account_id,
            "order_id": t.maker_order_id,
            "side": maker_side,
            "liquidity": "MAKER",
            "remaining_lots": t.maker_remaining_lots,
        },
        {
            **common,
            "owner_id": t.taker_owner_id,
            "sub_account_id": t.taker_sub_account_id,
            "order_id": t.taker_order_id,
            "side": Side(t.taker_side).name,
            "liquidity": "TAKER",
            "remaining_lots": t.taker_remaining_lots,
        },
    )
