"""``ExchangeCore``: every market's book, validation of commands, triggers and expiry, and
the fold of events back into state (``apply``) with a canonical SHA-256 state hash.

Two ways produce the same state: running commands (``execute``), which validates, matches
and emits events; and folding those events (``apply``), which is how a restart or a replay
rebuilds the exchange. ``state_hash`` proves they agree.
"""

from __future__ import annotations

import hashlib
import json
from heapq import heappop, heappush
from typing import Any

from exchange.core.book import OrderBook
from exchange.core.commands import (
    AmendOrder,
    CancelAll,
    CancelOrder,
    Command,
    CreateMarket,
    ExpireOrders,
    PlaceOrder,
    UpdateTriggerPrice,
)
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
from exchange.core.market import MarketSpec
from exchange.core.orders import (
    MARKET_LIKE_TYPES,
    SUB_ACCOUNTS_PER_OWNER,
    TRIGGER_TYPES,
    CancelReason,
    Order,
    OrderStatus,
    OrderType,
    Side,
    TimeInForce,
    Transition,
    next_status,
)

_new = tuple.__new__
_BID = Side.BID.value
_GTC = TimeInForce.GTC.value
_IOC = TimeInForce.IOC.value
_FOK = TimeInForce.FOK.value
_POST_ONLY = TimeInForce.POST_ONLY.value
_POST_ONLY_SLIDE = TimeInForce.POST_ONLY_SLIDE.value
_LIMIT = OrderType.LIMIT.value
_T_ACCEPT = Transition.ACCEPT.value
_T_ARM_TRIGGER = Transition.ARM_TRIGGER.value
_T_TRIGGER = Transition.TRIGGER.value
_T_CANCEL = Transition.CANCEL.value
_T_EXPIRE = Transition.EXPIRE.value
_T_REST = Transition.REST.value
_T_FILL_PARTIAL = Transition.FILL_PARTIAL.value
_T_FILL_FULL = Transition.FILL_FULL.value
_T_AMEND_KEEP = Transition.AMEND_KEEP_PRIORITY.value
_T_AMEND_REQUEUE = Transition.AMEND_REQUEUE.value
_T_DECREMENT = Transition.DECREMENT.value
_S_CANCELED = OrderStatus.CANCELED.value
_S_TRIGGER_PENDING = OrderStatus.TRIGGER_PENDING.value
_R_USER = CancelReason.USER.value
_R_CANCEL_ALL = CancelReason.CANCEL_ALL.value
_R_IOC_REMAINDER = CancelReason.IOC_REMAINDER.value
_R_REDUCE_ONLY = CancelReason.REDUCE_ONLY.value
_RESTING_TIFS = frozenset({_GTC, _POST_ONLY, _POST_ONLY_SLIDE})
_MARKET_LIKE = frozenset(int(t) for t in MARKET_LIKE_TYPES)
_TRIGGER_TYPES = frozenset(int(t) for t in TRIGGER_TYPES)
# Triggers that fire when the price rises to them (others fire when it falls to them).
_FIRES_ON_RISE = {
    (OrderType.STOP_MARKET, Side.BID),
    (OrderType.STOP_LIMIT, Side.BID),
    (OrderType.TAKE_PROFIT_MARKET, Side.ASK),
    (OrderType.TAKE_PROFIT_LIMIT, Side.ASK),
}


def price_size_problem(
    spec: MarketSpec, price: int, size: int, price_name: str, size_name: str
) -> tuple[RejectCode, str] | None:
    """The first thing wrong with a price (``PRICE_PRECISION``) and size (``BASE_PRECISION``)
    for ``spec``, as a reject code and an "expected X, got Y" message; ``None`` if valid."""
    if price <= 0:
        return RejectCode.NON_POSITIVE_PRICE, f"{price_name}: expected > 0, got {price}"
    if price % spec.tick_size:
        return (
            RejectCode.OFF_TICK_PRICE,
            f"{price_name}: expected a multiple of tick_size {spec.tick_size}, got {price}",
        )
    if price // spec.tick_size > spec.max_price_ticks:
        return (
            RejectCode.PRICE_OUT_OF_RANGE,
            f"{price_name}: expected <= {spec.max_price_ticks * spec.tick_size}, got {price}",
        )
    if size <= 0:
        return RejectCode.NON_POSITIVE_SIZE, f"{size_name}: expected > 0, got {size}"
    if size % spec.lot_size:
        return (
            RejectCode.OFF_LOT_SIZE,
            f"{size_name}: expected a multiple of lot_size {spec.lot_size}, got {size}",
        )
    lots = size // spec.lot_size
    if lots < spec.min_size_lots:
        return (
            RejectCode.SIZE_BELOW_MINIMUM,
            f"{size_name}: expected >= {spec.min_size_lots * spec.lot_size}, got {size}",
        )
    if lots > spec.max_size_lots:
        return (
            RejectCode.SIZE_ABOVE_MAXIMUM,
            f"{size_name}: expected <= {spec.max_size_lots * spec.lot_size}, got {size}",
        )
    return None


class TriggerBook:
    """Stop and take-profit orders waiting for a supplied price to cross their trigger."""

    def __init__(self) -> None:
        self.orders: dict[int, Order] = {}
        self._rise: list[tuple[int, int]] = []  # (trigger_ticks, order_id): fire at price >= t
        self._fall: list[tuple[int, int]] = []  # (-trigger_ticks, order_id): fire at price <= t

    def add(self, order: Order) -> None:
        self.orders[order.order_id] = order
        if (order.order_type, order.side) in _FIRES_ON_RISE:
            heappush(self._rise, (order.trigger_price_ticks, order.order_id))
        else:
            heappush(self._fall, (-order.trigger_price_ticks, order.order_id))

    def pop_fired(self, price: int, tick_size: int) -> list[Order]:
        """Remove and return every order ``price`` fires, oldest (lowest id) first.

        ``price`` is in ``PRICE_PRECISION`` and need not be on a tick (a mark price rarely
        is): triggers compare against it exactly, never against a rounded copy.
        """
        fired: list[Order] = []
        orders = self.orders
        rise, fall = self._rise, self._fall
        while rise and rise[0][0] * tick_size <= price:
            order = orders.pop(heappop(rise)[1], None)
            if order is not None:
                fired.append(order)
        while fall and -fall[0][0] * tick_size >= price:
            order = orders.pop(heappop(fall)[1], None)
            if order is not None:
                fired.append(order)
        fired.sort(key=lambda o: o.order_id)
        return fired


class ExchangeCore:
    """All markets of the exchange as plain in-memory data; deterministic and I/O-free."""

    def __init__(self) -> None:
        self.books: dict[int, OrderBook] = {}
        self.trigger_books: dict[int, TriggerBook] = {}
        self.next_seq = 1
        self.next_order_id = 1
        self.positions: dict[tuple[int, int], int] = {}  # (account, market) -> signed lots
        self._expiry: list[tuple[int, int, int]] = []  # (expire_at_ns, order_id, market_id)
        self._inflight: Order | None = None  # fold only: the taker being replayed
        # (market, account) whose resting reduce-only orders must be rechecked after this
        # command: their position moved, or a reduce-only order of theirs came to rest.
        self._reduce_only_touched: set[tuple[int, int]] = set()

    # ================================================================== commands
    def execute(self, cmd: Command, ts_ns: int, out: list[Any] | None = None) -> list[Any]:
        """Run one command at time ``ts_ns``; append its events to ``out`` and return it."""
        if out is None:
            out = []
        kind = type(cmd)
        if kind is PlaceOrder:
            self.place_order(*cmd, ts_ns=ts_ns, out=out)
        elif kind is CancelOrder:
            self.cancel_order(cmd, ts_ns, out)  # type: ignore[arg-type]
        elif kind is AmendOrder:
            self.amend_order(cmd, ts_ns, out)  # type: ignore[arg-type]
        elif kind is CancelAll:
            self.cancel_all(cmd, ts_ns, out)  # type: ignore[arg-type]
        elif kind is UpdateTriggerPrice:
            self.update_trigger_price(cmd, ts_ns, out)  # type: ignore[arg-type]
        elif kind is ExpireOrders:
            self.expire_due(ts_ns, out)
        elif kind is CreateMarket:
            self.create_market(cmd, ts_ns, out)  # type: ignore[arg-type]
        else:
            raise TypeError(f"expected a command, got {type(cmd).__name__}")
        return out

    def reject(
        self,
        out: list[Any],
        ts_ns: int,
        market_id: int,
        order_id: int,
        client_order_id: int,
        owner_id: int,
        sub_account_id: int,
        code: RejectCode,
        message: str,
    ) -> None:
        """Record one refused command as ``OrderRejected``; nothing else changes."""
        seq = self.next_seq
        self.next_seq = seq + 1
        out.append(
            _new(
                OrderRejected,
                (
                    seq,
                    ts_ns,
                    market_id,
                    order_id,
                    client_order_id,
                    owner_id,
                    sub_account_id,
                    int(code),
                    message,
                ),
            )
        )

    def _prepare(
        self,
        ts_ns: int,
        out: list[Any],
        market_id: int,
        order_id: int,
        client_order_id: int,
        owner_id: int,
        sub_account_id: int,
    ) -> OrderBook | None:
        """Every order command's first step: expire what is due, then find the market's book
        (``None`` after recording an ``UNKNOWN_MARKET`` rejection)."""
        if self._expiry and self._expiry[0][0] <= ts_ns:
            self.expire_due(ts_ns, out)
        book = self.books.get(market_id)
        if book is None:
            self.reject(
                out,
                ts_ns,
                market_id,
                order_id,
                client_order_id,
                owner_id,
                sub_account_id,
                RejectCode.UNKNOWN_MARKET,
                f"market_id: expected one of {sorted(self.books)}, got {market_id}",
            )
        return book

    def create_market(self, cmd: CreateMarket, ts_ns: int, out: list[Any]) -> None:
        """Open a new order book; refused if the id exists or the spec is invalid."""
        if self._expiry and self._expiry[0][0] <= ts_ns:
            self.expire_due(ts_ns, out)
        if cmd.market_id in self.books:
            self.reject(
                out,
                ts_ns,
                cmd.market_id,
                0,
                0,
                0,
                0,
                RejectCode.MARKET_ALREADY_EXISTS,
                f"market_id: expected an unused id, got {cmd.market_id}",
            )
            return
        try:
            spec = MarketSpec(**cmd._asdict())
        except Exception as exc:  # ConfigError, or a mistyped field
            self.reject(
                out, ts_ns, cmd.market_id, 0, 0, 0, 0, RejectCode.INVALID_MARKET_SPEC, str(exc)
            )
            return
        # The event records the resolved spec (defaults filled in), not the request.
        event = MarketCreated(
            self.next_seq,
            ts_ns,
            spec.market_id,
            spec.symbol,
            spec.tick_size,
            spec.lot_size,
            spec.min_size_lots,
            spec.max_size_lots,
            spec.max_price_ticks,
            spec.max_open_orders_per_account,
        )
        self.next_seq += 1
        self._apply_market_created(event)
        out.append(event)

    def place_order(
        self,
        market_id: int,
        owner_id: int,
        sub_account_id: int,
        side: int,
        price: int,
        size: int,
        order_type: int = _LIMIT,
        time_in_force: int = _GTC,
        client_order_id: int = 0,
        trigger_price: int = 0,
        reduce_only: bool = False,
        stp_mode: int = 0,
        expire_at_ns: int = 0,
        *,
        ts_ns: int,
        out: list[Any],
    ) -> None:
        """Validate and run a new order. Every refusal is one ``OrderRejected`` event."""
        book = self._prepare(ts_ns, out, market_id, 0, client_order_id, owner_id, sub_account_id)
        if book is None:
            return
        spec = book.spec
        # --- price and size against tick, lot and limits (cheapest checks first)
        price_ticks, off_tick = divmod(price, spec.tick_size)
        lots, off_lot = divmod(size, spec.lot_size)
        problem = None
        if (
            price <= 0
            or off_tick
            or price_ticks > spec.max_price_ticks
            or size <= 0
            or off_lot
            or not spec.min_size_lots <= lots <= spec.max_size_lots
        ):
            problem = price_size_problem(spec, price, size, "price", "size")
        elif expire_at_ns and expire_at_ns <= ts_ns:
            problem = (
                RejectCode.EXPIRED_ON_ARRIVAL,
                f"expire_at_ns: expected > now {ts_ns}, got {expire_at_ns}",
            )
        if problem is None and (order_type != _LIMIT or time_in_force > _FOK or trigger_price):
            problem = self._check_order_kind(
                book, order_type, time_in_force, side, price, trigger_price
            )
        account = owner_id * SUB_ACCOUNTS_PER_OWNER + sub_account_id
        if problem is None and client_order_id and (account, client_order_id) in book.client_ids:
            problem = (
                RejectCode.DUPLICATE_CLIENT_ORDER_ID,
                f"client_order_id: expected one not live on this account, got "
                f"{client_order_id} (order {book.client_ids[(account, client_order_id)]})",
            )
        may_rest = time_in_force in _RESTING_TIFS or order_type in _TRIGGER_TYPES
        if problem is None and may_rest:
            live = book.account_orders.get(account)
            if live is not None and len(live) >= spec.max_open_orders_per_account:
                problem = (
                    RejectCode.TOO_MANY_OPEN_ORDERS,
                    f"open orders: expected < {spec.max_open_orders_per_account} "
                    f"per account, got {len(live)}",
                )
        if problem is None and reduce_only:
            lots, problem = self._reduce_only_lots(account, market_id, side, lots)
        if problem is not None:
            self.reject(
                out, ts_ns, market_id, 0, client_order_id, owner_id, sub_account_id, *problem
            )
            return

        trigger_ticks = trigger_price // spec.tick_size if trigger_price else 0
        order = Order(
            self.next_order_id,
            client_order_id,
            owner_id,
            sub_account_id,
            side,
            order_type,
            time_in_force,
            price_ticks,
            trigger_ticks,
            lots,
            reduce_only,
            stp_mode,
            expire_at_ns,
        )
        # Refusals that depend on the book come before acceptance: nothing half-happens.
        if time_in_force >= _FOK and order_type not in _TRIGGER_TYPES:
            problem = self._check_against_book(book, order)
            if problem is not None:
                self.reject(
                    out, ts_ns, market_id, 0, client_order_id, owner_id, sub_account_id, *problem
                )
                return
        self.next_order_id += 1
        seq = self.next_seq
        out.append(
            _new(
                OrderAccepted,
                (
                    seq,
                    ts_ns,
                    market_id,
                    order.order_id,
                    client_order_id,
                    owner_id,
                    sub_account_id,
                    side,
                    order_type,
                    time_in_force,
                    price_ticks,
                    lots,
                    trigger_ticks,
                    reduce_only,
                    stp_mode,
                    expire_at_ns,
                ),
            )
        )
        seq += 1
        if order_type in _TRIGGER_TYPES:
            order.status = next_status(order.status, _T_ARM_TRIGGER)
            self.trigger_books[market_id].add(order)
            book.register_live(order)
            if expire_at_ns:
                heappush(self._expiry, (expire_at_ns, order.order_id, market_id))
            self.next_seq = seq
            return
        order.status = next_status(order.status, _T_ACCEPT)
        self.next_seq = self._run_taker(book, order, False, ts_ns, seq, out)
        if self._reduce_only_touched:
            self._enforce_reduce_only(ts_ns, out)

    def _check_order_kind(
        self, book: OrderBook, order_type: int, tif: int, side: int, price: int, trigger_price: int
    ) -> tuple[RejectCode, str] | None:
        spec = book.spec
        if order_type in _MARKET_LIKE and tif not in (_IOC, _FOK):
            return (
                RejectCode.INVALID_ORDER_TYPE,
                f"time_in_force: expected IOC or FOK for {OrderType(order_type).name}, got "
                f"{TimeInForce(tif).name}",
            )
        if order_type in _TRIGGER_TYPES:
            if tif in (_FOK, _POST_ONLY, _POST_ONLY_SLIDE):
                return (
                    RejectCode.INVALID_ORDER_TYPE,
                    f"time_in_force: expected GTC or IOC for a trigger order, got "
                    f"{TimeInForce(tif).name}",
                )
            if (
                trigger_price <= 0
                or trigger_price % spec.tick_size
                or trigger_price // spec.tick_size > spec.max_price_ticks
            ):
                return (
                    RejectCode.INVALID_TRIGGER_PRICE,
                    f"trigger_price: expected a positive multiple of {spec.tick_size} up "
                    f"to {spec.max_price_ticks * spec.tick_size}, got {trigger_price}",
                )
        elif trigger_price:
            return (
                RejectCode.INVALID_TRIGGER_PRICE,
                f"trigger_price: expected 0 for {OrderType(order_type).name}, got {trigger_price}",
            )
        return None

    def _check_against_book(self, book: OrderBook, order: Order) -> tuple[RejectCode, str] | None:
        """Post-only and FOK decisions, made before the order is accepted."""
        tif = order.time_in_force
        if tif == _FOK:
            got = book.fillable_lots(order, order.remaining_lots)
            if got < order.remaining_lots:
                return (
                    RejectCode.FOK_NOT_FILLABLE,
                    f"size: expected {order.remaining_lots} lots fillable at once, got {got}",
                )
            return None
        return self._post_only_price(book, order)

    def _post_only_price(self, book: OrderBook, order: Order) -> tuple[RejectCode, str] | None:
        """Reject a crossing post-only order, or slide it one tick inside the touch."""
        if not book.crosses(order.side, order.price_ticks):
            return None
        if order.time_in_force == _POST_ONLY:
            return (
                RejectCode.POST_ONLY_WOULD_CROSS,
                f"price: expected a post-only price that does not cross, got "
                f"{order.price_ticks} ticks against "
                f"{book.best_ask() if order.side == _BID else book.best_bid()}",
            )
        if order.side == _BID:
            slid = book.best_ask() - 1
        else:
            slid = book.best_bid() + 1
        if not 1 <= slid <= book.spec.max_price_ticks:
            return (
                RejectCode.PRICE_OUT_OF_RANGE,
                f"price: expected a slid post-only price in 1..{book.spec.max_price_ticks} "
                f"ticks, got {slid}",
            )
        order.price_ticks = slid
        return None

    def _reduce_only_lots(
        self, account: int, market_id: int, side: int, lots: int
    ) -> tuple[int, tuple[RejectCode, str] | None]:
        """Clamp a reduce-only order to the position, or refuse one that would increase it."""
        position = self.positions.get((account, market_id), 0)
        if (side == _BID and position >= 0) or (side != _BID and position <= 0):
            return lots, (
                RejectCode.REDUCE_ONLY_WOULD_INCREASE,
                f"reduce_only: expected a {'short' if side == _BID else 'long'} "
                f"position to reduce, got {position} lots",
            )
        return min(lots, abs(position)), None

    def _run_taker(
        self, book: OrderBook, order: Order, registered: bool, ts_ns: int, seq: int, out: list[Any]
    ) -> int:
        """Match an accepted order, then rest, or end, what is left of it."""
        if book.crosses(order.side, order.price_ticks):
            before_lots = order.remaining_lots
            seq = book.match(order, ts_ns, seq, out)
            if registered:  # a live order (amended, triggered) trading as the taker
                book.adjust_live(order, order.remaining_lots - before_lots)
        if order.status == _S_CANCELED:  # self-trade prevention ended it
            if registered:
                book.forget_live(order)
            return seq
        remaining = order.remaining_lots
        if not remaining:
            if registered:
                book.forget_live(order)
            return seq
        if order.time_in_force in _RESTING_TIFS and order.order_type not in _MARKET_LIKE:
            if not registered:
                book.register_live(order)
            if order.expire_at_ns and not registered:
                heappush(self._expiry, (order.expire_at_ns, order.order_id, book.market_id))
            if order.reduce_only:
                self._reduce_only_touched.add((book.market_id, order.account))
            return book.rest(order, ts_ns, seq, out)
        return self._end_off_book(book, order, _R_IOC_REMAINDER, registered, ts_ns, seq, out)

    def _end_off_book(
        self,
        book: OrderBook,
        order: Order,
        reason: int,
        registered: bool,
        ts_ns: int,
        seq: int,
        out: list[Any],
    ) -> int:
        """Cancel an order that is not on the book (in flight or trigger-pending)."""
        if registered:
            book.forget_live(order)
        order.status = next_status(order.status, _T_CANCEL)
        out.append(
            _new(
                OrderCanceled,
                (
                    seq,
                    ts_ns,
                    book.market_id,
                    order.order_id,
                    order.owner_id,
                    order.sub_account_id,
                    order.remaining_lots,
                    reason,
                ),
            )
        )
        return seq + 1

    def _find_live(
        self, book: OrderBook, account: int, order_id: int, client_order_id: int
    ) -> Order | None:
        if not order_id and client_order_id:
            order_id = book.client_ids.get((account, client_order_id), 0)
        live = book.account_orders.get(account)
        return None if live is None else live.get(order_id)

    def cancel_order(self, cmd: CancelOrder, ts_ns: int, out: list[Any]) -> None:
        """Cancel one live order of the account, by order id or client order id."""
        book = self._prepare(
            ts_ns,
            out,
            cmd.market_id,
            cmd.order_id,
            cmd.client_order_id,
            cmd.owner_id,
            cmd.sub_account_id,
        )
        if book is None:
            return
        account = cmd.owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.sub_account_id
        order = self._find_live(book, account, cmd.order_id, cmd.client_order_id)
        if order is None:
            self.reject(
                out,
                ts_ns,
                cmd.market_id,
                cmd.order_id,
                cmd.client_order_id,
                cmd.owner_id,
                cmd.sub_account_id,
                RejectCode.UNKNOWN_ORDER,
                f"order: expected a live order of this account, got order_id "
                f"{cmd.order_id} client_order_id {cmd.client_order_id}",
            )
            return
        self.next_seq = self._cancel_live(book, order, _R_USER, ts_ns, self.next_seq, out)

    def _cancel_live(
        self, book: OrderBook, order: Order, reason: int, ts_ns: int, seq: int, out: list[Any]
    ) -> int:
        if order.status == _S_TRIGGER_PENDING:
            del self.trigger_books[book.market_id].orders[order.order_id]
            return self._end_off_book(book, order, reason, True, ts_ns, seq, out)
        return book.cancel_resting(order, reason, ts_ns, seq, out)

    def cancel_all(self, cmd: CancelAll, ts_ns: int, out: list[Any]) -> None:
        """Cancel every live order (resting and trigger-pending) of one account in a market."""
        book = self._prepare(ts_ns, out, cmd.market_id, 0, 0, cmd.owner_id, cmd.sub_account_id)
        if book is None:
            return
        account = cmd.owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.sub_account_id
        seq = self.next_seq
        for order in sorted(
            book.account_orders.get(account, {}).values(), key=lambda o: o.order_id
        ):
            seq = self._cancel_live(book, order, _R_CANCEL_ALL, ts_ns, seq, out)
        self.next_seq = seq

    def amend_order(self, cmd: AmendOrder, ts_ns: int, out: list[Any]) -> None:
        """Change a resting order's price and/or remaining size.

        Size down at the same price keeps queue priority; a price change or a size increase
        re-queues the order at the back (and it may trade if the new price crosses, except
        post-only orders, which are refused or slid as on arrival).
        """
        book = self._prepare(
            ts_ns, out, cmd.market_id, cmd.order_id, 0, cmd.owner_id, cmd.sub_account_id
        )
        if book is None:
            return

        def reject(code: RejectCode, message: str) -> None:
            self.reject(
                out,
                ts_ns,
                cmd.market_id,
                cmd.order_id,
                0,
                cmd.owner_id,
                cmd.sub_account_id,
                code,
                message,
            )

        spec = book.spec
        account = cmd.owner_id * SUB_ACCOUNTS_PER_OWNER + cmd.sub_account_id
        order = self._find_live(book, account, cmd.order_id, 0)
        if order is None:
            reject(
                RejectCode.UNKNOWN_ORDER,
                f"order_id: expected a live order of this account, got {cmd.order_id}",
            )
            return
        if order.status == _S_TRIGGER_PENDING:
            reject(
                RejectCode.AMEND_NOT_ALLOWED,
                "order: expected a resting order, got a pending trigger order",
            )
            return
        size_problem = price_size_problem(
            spec, cmd.new_price, cmd.new_size, "new_price", "new_size"
        )
        if size_problem is not None:
            reject(*size_problem)
            return
        price_ticks = cmd.new_price // spec.tick_size
        lots = cmd.new_size // spec.lot_size
        if order.reduce_only:
            lots, problem = self._reduce_only_lots(account, cmd.market_id, order.side, lots)
            if problem is not None:
                reject(*problem)
                return
        if price_ticks == order.price_ticks and lots == order.remaining_lots:
            reject(
                RejectCode.AMEND_NOT_ALLOWED,
                "amend: expected a new price or size, got the order's current ones",
            )
            return
        seq = self.next_seq
        if price_ticks == order.price_ticks and lots < order.remaining_lots:
            book.reduce_resting(order, lots)
            order.status = next_status(order.status, _T_AMEND_KEEP)
            out.append(
                _new(
                    OrderAmended,
                    (seq, ts_ns, cmd.market_id, order.order_id, price_ticks, lots, True),
                )
            )
            self.next_seq = seq + 1
            if order.reduce_only:
                self._reduce_only_touched.add((cmd.market_id, account))
                self._enforce_reduce_only(ts_ns, out)
            return
        # Re-queue: decide post-only on a probe first, so a refusal leaves the order untouched.
        probe = Order(
            order.order_id,
            0,
            order.owner_id,
            order.sub_account_id,
            order.side,
            order.order_type,
            order.time_in_force,
            price_ticks,
            0,
            lots,
            False,
            order.stp_mode,
            0,
        )
        if order.time_in_force in (_POST_ONLY, _POST_ONLY_SLIDE):
            problem = self._post_only_price(book, probe)
            if problem is not None:
                reject(*problem)
                return
        book._unlink(order)
        order.price_ticks = price_ticks
        book.adjust_live(order, lots - order.remaining_lots)
        order.remaining_lots = lots
        order.status = next_status(order.status, _T_AMEND_REQUEUE)
        out.append(
            _new(
                OrderAmended, (seq, ts_ns, cmd.market_id, order.order_id, price_ticks, lots, False)
            )
        )
        order.price_ticks = probe.price_ticks  # a slide may have moved it
        self.next_seq = self._run_taker(book, order, True, ts_ns, seq + 1, out)
        if self._reduce_only_touched:
            self._enforce_reduce_only(ts_ns, out)

    def update_trigger_price(self, cmd: UpdateTriggerPrice, ts_ns: int, out: list[Any]) -> None:
        """Fire the stop / take-profit orders that ``cmd.price`` reaches, oldest first."""
        book = self._prepare(ts_ns, out, cmd.market_id, 0, 0, 0, 0)
        if book is None:
            return
        if cmd.price <= 0:
            self.reject(
                out,
                ts_ns,
                cmd.market_id,
                0,
                0,
                0,
                0,
                RejectCode.NON_POSITIVE_PRICE,
                f"price: expected > 0, got {cmd.price}",
            )
            return
        seq = self.next_seq
        for order in self.trigger_books[cmd.market_id].pop_fired(cmd.price, book.spec.tick_size):
            order.status = next_status(order.status, _T_TRIGGER)
            out.append(
                _new(OrderTriggered, (seq, ts_ns, book.market_id, order.order_id, cmd.price))
            )
            seq += 1
            if order.reduce_only:
                lots, problem = self._reduce_only_lots(
                    order.account, book.market_id, order.side, order.remaining_lots
                )
                if problem is not None or lots != order.remaining_lots:
                    # The position changed since placement: a reduce-only order that would no
                    # longer only reduce is cancelled whole rather than silently resized.
                    seq = self._end_off_book(book, order, _R_REDUCE_ONLY, True, ts_ns, seq, out)
                    continue
            seq = self._run_taker(book, order, True, ts_ns, seq, out)
        self.next_seq = seq
        if self._reduce_only_touched:
            self._enforce_reduce_only(ts_ns, out)

    def _enforce_reduce_only(self, ts_ns: int, out: list[Any]) -> None:
        """Keep resting reduce-only orders reducing after a position change.

        Per account (in key order), its resting reduce-only orders, oldest first: one on the
        side that would increase the position is cancelled; on the reducing side they may
        total at most ``|position|`` lots: the first order past that is shrunk in place
        (keeping its priority, ``OrderAmended``), any later one is cancelled.
        """
        touched = sorted(self._reduce_only_touched)
        self._reduce_only_touched.clear()
        seq = self.next_seq
        for market_id, account in touched:
            book = self.books[market_id]
            live = book.account_orders.get(account)
            if live is None:
                continue
            position = self.positions.get((account, market_id), 0)
            allowed = abs(position)
            for order in sorted(
                (o for o in live.values() if o.reduce_only and o.status != _S_TRIGGER_PENDING),
                key=lambda o: o.order_id,
            ):
                increases = position >= 0 if order.side == _BID else position <= 0
                if not increases and order.remaining_lots <= allowed:
                    allowed -= order.remaining_lots
                elif not increases and allowed:
                    book.reduce_resting(order, allowed)
                    order.status = next_status(order.status, _T_AMEND_KEEP)
                    out.append(
                        _new(
                            OrderAmended,
                            (
                                seq,
                                ts_ns,
                                market_id,
                                order.order_id,
                                order.price_ticks,
                                allowed,
                                True,
                            ),
                        )
                    )
                    seq += 1
                    allowed = 0
                else:
                    seq = book.cancel_resting(order, _R_REDUCE_ONLY, ts_ns, seq, out)
        self.next_seq = seq

    def expire_due(self, ts_ns: int, out: list[Any]) -> None:
        """Expire, oldest deadline first, every live order whose good-till time is <= ts_ns."""
        heap = self._expiry
        seq = self.next_seq
        while heap and heap[0][0] <= ts_ns:
            _, order_id, market_id = heappop(heap)
            book = self.books[market_id]
            order = book.orders.get(order_id)
            if order is not None:
                seq = book.expire_resting(order, ts_ns, seq, out)
                continue
            order = self.trigger_books[market_id].orders.pop(order_id, None)
            if order is not None:
                book.forget_live(order)
                order.status = next_status(order.status, _T_EXPIRE)
                out.append(
                    _new(
                        OrderExpired,
                        (
                            seq,
                            ts_ns,
                            market_id,
                            order_id,
                            order.owner_id,
                            order.sub_account_id,
                            order.remaining_lots,
                        ),
                    )
                )
                seq += 1
        self.next_seq = seq

    def _on_fill(self, account: int, market_id: int, signed_lots: int) -> None:
        """Execution-time fill hook: move the position, note reduce-only orders to recheck."""
        if account in self.books[market_id].reduce_only_live:
            self._reduce_only_touched.add((market_id, account))
        self._add_position(account, market_id, signed_lots)

    def _add_position(self, account: int, market_id: int, signed_lots: int) -> None:
        key = (account, market_id)
        lots = self.positions.get(key, 0) + signed_lots
        if lots:
            self.positions[key] = lots
        else:  # flat accounts leave the map, so it stays the size of open interest
            del self.positions[key]

    # ================================================================== fold
    def _apply_market_created(self, e: MarketCreated) -> None:
        spec = MarketSpec(**{k: getattr(e, k) for k in MarketSpec.__dataclass_fields__})
        book = OrderBook(spec)
        book.fill_listener = self._on_fill
        self.books[e.market_id] = book
        self.trigger_books[e.market_id] = TriggerBook()

    def apply(self, e: Event) -> None:
        """Fold one journaled event into the state (replay / recovery)."""
        seq = e.seq
        if seq != self.next_seq:
            raise InvariantViolation(f"apply: expected seq {self.next_seq}, got {seq}")
        self.next_seq = seq + 1
        handler = self._appliers.get(type(e))
        if handler is None:
            raise InvariantViolation(f"apply: expected a known event, got {e!r}")
        handler(self, e)

    def _apply_rejected(self, e: OrderRejected) -> None:
        pass  # a refusal changes nothing but the sequence number

    def _apply_accepted(self, a: OrderAccepted) -> None:
        book = self.books[a.market_id]
        order = Order(
            a.order_id,
            a.client_order_id,
            a.owner_id,
            a.sub_account_id,
            a.side,
            a.order_type,
            a.time_in_force,
            a.price_ticks,
            a.trigger_price_ticks,
            a.num_base_lots,
            a.reduce_only,
            a.stp_mode,
            a.expire_at_ns,
        )
        if a.order_id >= self.next_order_id:
            self.next_order_id = a.order_id + 1
        if a.order_type in _TRIGGER_TYPES:
            order.status = next_status(order.status, _T_ARM_TRIGGER)
            self.trigger_books[a.market_id].add(order)
            book.register_live(order)
            if a.expire_at_ns:
                heappush(self._expiry, (a.expire_at_ns, a.order_id, a.market_id))
        else:
            order.status = next_status(order.status, _T_ACCEPT)
            self._inflight = order

    def _apply_rested(self, e: OrderRested) -> None:
        book = self.books[e.market_id]
        order = self._take_inflight(e.order_id)
        order.price_ticks = e.price_ticks
        if e.num_base_lots != order.remaining_lots:
            raise InvariantViolation(f"rest of {order!r}: lots disagree with {e!r}")
        live = book.account_orders.get(order.account)
        if live is None or order.order_id not in live:
            book.register_live(order)
            if order.expire_at_ns:
                heappush(self._expiry, (order.expire_at_ns, order.order_id, e.market_id))
        book._link(order)
        order.status = next_status(order.status, _T_REST)
        self._inflight = None

    def _apply_canceled(self, e: OrderCanceled) -> None:
        self._apply_end(self.books[e.market_id], e, False)

    def _apply_expired(self, e: OrderExpired) -> None:
        self._apply_end(self.books[e.market_id], e, True)

    def _apply_amended(self, m: OrderAmended) -> None:
        book = self.books[m.market_id]
        order = book.orders[m.order_id]
        if m.priority_kept:
            book.reduce_resting(order, m.num_base_lots)
            order.status = next_status(order.status, _T_AMEND_KEEP)
        else:
            book._unlink(order)
            order.price_ticks = m.price_ticks
            book.adjust_live(order, m.num_base_lots - order.remaining_lots)
            order.remaining_lots = m.num_base_lots
            order.status = next_status(order.status, _T_AMEND_REQUEUE)
            self._inflight = order

    def _apply_triggered(self, e: OrderTriggered) -> None:
        order = self.trigger_books[e.market_id].orders.pop(e.order_id)
        order.status = next_status(order.status, _T_TRIGGER)
        self._inflight = order

    def _apply_decremented(self, d: SelfTradeDecremented) -> None:
        book = self.books[d.market_id]
        maker = book.orders[d.maker_order_id]
        taker = self._take_inflight(d.taker_order_id)
        book.reduce_resting(maker, maker.remaining_lots - d.num_base_lots)
        maker.status = next_status(maker.status, _T_DECREMENT)
        if book.is_live(taker):
            book.adjust_live(taker, -d.num_base_lots)
        taker.remaining_lots -= d.num_base_lots
        taker.status = next_status(taker.status, _T_DECREMENT)

    _appliers: dict[type, Any] = {}  # filled in below the class body

    def _take_inflight(self, order_id: int) -> Order:
        order = self._inflight
        if order is None or order.order_id != order_id:
            raise InvariantViolation(f"expected in-flight order {order_id}, got {order!r}")
        return order

    def _apply_trade(self, t: TradeExecuted) -> None:
        book = self.books[t.market_id]
        maker = book.orders[t.maker_order_id]
        taker = self._take_inflight(t.taker_order_id)
        qty = t.num_base_lots
        if maker.remaining_lots == qty:
            book._unlink(maker)
            book.forget_live(maker)
            maker.remaining_lots = 0
            maker.status = next_status(maker.status, _T_FILL_FULL)
        else:
            book.reduce_resting(maker, maker.remaining_lots - qty)
            maker.status = next_status(maker.status, _T_FILL_PARTIAL)
        maker.filled_lots += qty
        if book.is_live(taker):
            book.adjust_live(taker, -qty)
        taker.remaining_lots -= qty
        taker.filled_lots += qty
        if (
            maker.remaining_lots != t.maker_remaining_lots
            or taker.remaining_lots != t.taker_remaining_lots
        ):
            raise InvariantViolation(f"trade replay disagrees with state: {t!r}")
        signed = qty if t.taker_side == _BID else -qty
        self._add_position(maker.account, t.market_id, -signed)
        self._add_position(taker.account, t.market_id, signed)
        if taker.remaining_lots:
            taker.status = next_status(taker.status, _T_FILL_PARTIAL)
        else:
            taker.status = next_status(taker.status, _T_FILL_FULL)
            if taker.order_id in book.account_orders.get(taker.account, {}):
                book.forget_live(taker)
            self._inflight = None

    def _apply_end(self, book: OrderBook, e: Any, expired: bool) -> None:
        transition = _T_EXPIRE if expired else _T_CANCEL
        order = book.orders.get(e.order_id)
        if order is not None:
            book._unlink(order)
        else:
            pending = self.trigger_books[e.market_id].orders.pop(e.order_id, None)
            if pending is not None:
                order = pending
            else:
                order = self._take_inflight(e.order_id)
                self._inflight = None
        if order.order_id in book.account_orders.get(order.account, {}):
            book.forget_live(order)
        order.status = next_status(order.status, transition)

    # ================================================================== state hash
    def canonical(self) -> dict[str, Any]:
        """Everything that defines the state, in a canonical order (JSON-ready)."""
        markets = []
        for market_id in sorted(self.books):
            book = self.books[market_id]
            spec = book.spec
            triggers = [
                o.canonical()
                for o in sorted(
                    self.trigger_books[market_id].orders.values(), key=lambda o: o.order_id
                )
            ]
            markets.append(
                {
                    "market_id": market_id,
                    "symbol": spec.symbol,
                    "tick_size": spec.tick_size,
                    "lot_size": spec.lot_size,
                    "min_size_lots": spec.min_size_lots,
                    "max_size_lots": spec.max_size_lots,
                    "max_price_ticks": spec.max_price_ticks,
                    "max_open_orders_per_account": spec.max_open_orders_per_account,
                    "book": book.canonical(),
                    "triggers": triggers,
                }
            )
        positions = sorted([a, m, lots] for (a, m), lots in self.positions.items() if lots)
        return {
            "next_seq": self.next_seq,
            "next_order_id": self.next_order_id,
            "markets": markets,
            "positions": positions,
        }

    def state_hash(self) -> str:
        """SHA-256 (hex) of the canonical state."""
        blob = json.dumps(self.canonical(), separators=(",", ":"), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def snapshot(self) -> bytes:
        """The canonical state as bytes: enough to rebuild an identical core."""
        return json.dumps(self.canonical(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def from_snapshot(cls, blob: bytes) -> ExchangeCore:
        """Rebuild a core from :meth:`snapshot`; its ``state_hash`` equals the original's."""
        data = json.loads(blob)
        core = cls()
        core.next_seq = data["next_seq"]
        core.next_order_id = data["next_order_id"]
        for m in data["markets"]:
            spec_fields = {k: m[k] for k in MarketSpec.__dataclass_fields__}
            core._apply_market_created(MarketCreated(0, 0, **spec_fields))
            book = core.books[m["market_id"]]
            for side in m["book"]:
                for _price, _total, queue in side:
                    for fields in queue:
                        order = _order_from_canonical(fields)
                        book._link(order)
                        book.register_live(order)
                        if order.expire_at_ns:
                            heappush(
                                core._expiry, (order.expire_at_ns, order.order_id, book.market_id)
                            )
            for fields in m["triggers"]:
                order = _order_from_canonical(fields)
                core.trigger_books[book.market_id].add(order)
                book.register_live(order)
                if order.expire_at_ns:
                    heappush(core._expiry, (order.expire_at_ns, order.order_id, book.market_id))
        for account, market_id, lots in data["positions"]:
            core.positions[(account, market_id)] = lots
        return core

    def check_invariants(self) -> None:
        """Fail fast on any inconsistency in any book or index."""
        for market_id, book in self.books.items():
            book.check_invariants()
            live = sum(len(v) for v in book.account_orders.values())
            expected = len(book.orders) + len(self.trigger_books[market_id].orders)
            if live != expected:
                raise InvariantViolation(
                    f"market {market_id}: expected {expected} live orders indexed, got {live}"
                )


ExchangeCore._appliers = {
    MarketCreated: ExchangeCore._apply_market_created,
    OrderAccepted: ExchangeCore._apply_accepted,
    OrderRejected: ExchangeCore._apply_rejected,
    OrderRested: ExchangeCore._apply_rested,
    TradeExecuted: ExchangeCore._apply_trade,
    OrderCanceled: ExchangeCore._apply_canceled,
    OrderExpired: ExchangeCore._apply_expired,
    OrderAmended: ExchangeCore._apply_amended,
    OrderTriggered: ExchangeCore._apply_triggered,
    SelfTradeDecremented: ExchangeCore._apply_decremented,
}


def _order_from_canonical(f: list[Any]) -> Order:
    (
        order_id,
        client_order_id,
        owner_id,
        sub_account_id,
        side,
        order_type,
        tif,
        price_ticks,
        trigger_ticks,
        remaining,
        filled,
        reduce_only,
        stp,
        expire_at_ns,
        status,
    ) = f
    order = Order(
        order_id,
        client_order_id,
        owner_id,
        sub_account_id,
        side,
        order_type,
        tif,
        price_ticks,
        trigger_ticks,
        remaining,
        bool(reduce_only),
        stp,
        expire_at_ns,
    )
    order.filled_lots = filled
    order.status = status
    return order
