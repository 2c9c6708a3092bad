"""Order vocabulary, the live order record and the order state-transition table."""

from __future__ import annotations

from enum import IntEnum
from typing import NoReturn

from exchange.core.errors import IllegalTransition

SUB_ACCOUNTS_PER_OWNER = 1 << 16


class Side(IntEnum):
    BID = 0
    ASK = 1


class OrderType(IntEnum):
    LIMIT = 0
    MARKET = 1  # IOC/FOK at a mandatory protection price (the worst acceptable price)
    STOP_MARKET = 2
    STOP_LIMIT = 3
    TAKE_PROFIT_MARKET = 4
    TAKE_PROFIT_LIMIT = 5


TRIGGER_TYPES = frozenset(
    {
        OrderType.STOP_MARKET,
        OrderType.STOP_LIMIT,
        OrderType.TAKE_PROFIT_MARKET,
        OrderType.TAKE_PROFIT_LIMIT,
    }
)
MARKET_LIKE_TYPES = frozenset(
    {OrderType.MARKET, OrderType.STOP_MARKET, OrderType.TAKE_PROFIT_MARKET}
)


class TimeInForce(IntEnum):
    GTC = 0
    IOC = 1
    FOK = 2
    POST_ONLY = 3  # rejected if it would cross
    POST_ONLY_SLIDE = 4  # re-priced one tick inside the opposite touch if it would cross


class SelfTradePrevention(IntEnum):
    """What happens when a taker meets a resting order of the same owner (any sub-account)."""

    CANCEL_TAKING = 0
    CANCEL_RESTING = 1
    DECREMENT_BOTH = 2


class CancelReason(IntEnum):
    USER = 0
    CANCEL_ALL = 1
    IOC_REMAINDER = 2  # unfilled rest of an IOC / market order
    STP_CANCEL_TAKING = 3
    STP_CANCEL_RESTING = 4
    STP_DECREMENT = 5
    REDUCE_ONLY = 6  # a triggered reduce-only order would no longer reduce


class OrderStatus(IntEnum):
    INITIALIZED = 0
    TRIGGER_PENDING = 1  # waiting in the trigger book
    ACCEPTED = 2  # validated and being matched, not on the book (yet)
    OPEN = 3  # resting, nothing filled
    PARTIALLY_FILLED = 4  # something filled, still live (resting or being matched)
    FILLED = 5
    CANCELED = 6
    EXPIRED = 7
    REJECTED = 8


class Transition(IntEnum):
    ACCEPT = 0
    ARM_TRIGGER = 1
    TRIGGER = 2
    REST = 3
    FILL_PARTIAL = 4
    FILL_FULL = 5
    CANCEL = 6
    EXPIRE = 7
    AMEND_KEEP_PRIORITY = 8
    AMEND_REQUEUE = 9
    REJECT = 10
    DECREMENT = 11  # self-trade prevention took lots away without a fill


_S = OrderStatus
_T = Transition

#: The only legal moves of an order. Anything else is a bug (``IllegalTransition``).
TRANSITIONS: dict[OrderStatus, dict[Transition, OrderStatus]] = {
    _S.INITIALIZED: {
        _T.ACCEPT: _S.ACCEPTED,
        _T.ARM_TRIGGER: _S.TRIGGER_PENDING,
        _T.REJECT: _S.REJECTED,
    },
    _S.TRIGGER_PENDING: {
        _T.TRIGGER: _S.ACCEPTED,
        _T.CANCEL: _S.CANCELED,
        _T.EXPIRE: _S.EXPIRED,
    },
    _S.ACCEPTED: {
        _T.REST: _S.OPEN,
        _T.FILL_PARTIAL: _S.PARTIALLY_FILLED,
        _T.FILL_FULL: _S.FILLED,
        _T.DECREMENT: _S.ACCEPTED,
        _T.CANCEL: _S.CANCELED,
    },
    _S.OPEN: {
        _T.FILL_PARTIAL: _S.PARTIALLY_FILLED,
        _T.FILL_FULL: _S.FILLED,
        _T.DECREMENT: _S.OPEN,
        _T.CANCEL: _S.CANCELED,
        _T.EXPIRE: _S.EXPIRED,
        _T.AMEND_KEEP_PRIORITY: _S.OPEN,
        _T.AMEND_REQUEUE: _S.ACCEPTED,
    },
    _S.PARTIALLY_FILLED: {
        _T.REST: _S.PARTIALLY_FILLED,
        _T.FILL_PARTIAL: _S.PARTIALLY_FILLED,
        _T.FILL_FULL: _S.FILLED,
        _T.DECREMENT: _S.PARTIALLY_FILLED,
        _T.CANCEL: _S.CANCELED,
        _T.EXPIRE: _S.EXPIRED,
        _T.AMEND_KEEP_PRIORITY: _S.PARTIALLY_FILLED,
        _T.AMEND_REQUEUE: _S.PARTIALLY_FILLED,
    },
    _S.FILLED: {},
    _S.CANCELED: {},
    _S.EXPIRED: {},
    _S.REJECTED: {},
}

# Dense int-indexed copy for the hot path: _NEXT[status][transition] or -1.
_NEXT: tuple[tuple[int, ...], ...] = tuple(
    tuple(int(TRANSITIONS[s].get(t, -1)) for t in Transition) for s in OrderStatus
)


def next_status(status: int, transition: int) -> int:
    """Return the status after ``transition`` or raise ``IllegalTransition``."""
    nxt = _NEXT[status][transition]
    if nxt < 0:
        _illegal(status, transition)
    return nxt


def _illegal(status: int, transition: int) -> NoReturn:
    raise IllegalTransition(
        f"order transition: expected one of "
        f"{[t.name for t in TRANSITIONS[OrderStatus(status)]]} from "
        f"{OrderStatus(status).name}, got {Transition(transition).name}"
    )


def account_key(owner_id: int, sub_account_id: int) -> int:
    """One int naming a sub-account (owner and sub-account id packed together)."""
    return owner_id * SUB_ACCOUNTS_PER_OWNER + sub_account_id


class Order:
    """A live order inside a book (mutable; owned by the book, never shared out)."""

    __slots__ = (
        "account",
        "client_order_id",
        "expire_at_ns",
        "filled_lots",
        "level",
        "next",
        "order_id",
        "order_type",
        "owner_id",
        "prev",
        "price_ticks",
        "reduce_only",
        "remaining_lots",
        "side",
        "status",
        "stp_mode",
        "sub_account_id",
        "time_in_force",
        "trigger_price_ticks",
    )

    def __init__(
        self,
        order_id: int,
        client_order_id: int,
        owner_id: int,
        sub_account_id: int,
        side: int,
        order_type: int,
        time_in_force: int,
        price_ticks: int,
        trigger_price_ticks: int,
        remaining_lots: int,
        reduce_only: bool,
        stp_mode: int,
        expire_at_ns: int,
    ) -> None:
        self.order_id = order_id
        self.client_order_id = client_order_id
        self.owner_id = owner_id
        self.sub_account_id = sub_account_id
        self.account = owner_id * SUB_ACCOUNTS_PER_OWNER + sub_account_id
        self.side = side
        self.order_type = order_type
        self.time_in_force = time_in_force
        self.price_ticks = price_ticks
        self.trigger_price_ticks = trigger_price_ticks
        self.remaining_lots = remaining_lots
        self.filled_lots = 0
        self.reduce_only = reduce_only
        self.stp_mode = stp_mode
        self.expire_at_ns = expire_at_ns
        self.status: int = 0  # OrderStatus.INITIALIZED, as a plain int for the hot path
        self.prev: Order | None = None
        self.next: Order | None = None
        self.level: object | None = None

    def canonical(self) -> tuple[int, ...]:
        """Every field that defines the order, for the state hash and snapshots."""
        return (
            self.order_id,
            self.client_order_id,
            self.owner_id,
            self.sub_account_id,
            self.side,
            self.order_type,
            self.time_in_force,
            self.price_ticks,
            self.trigger_price_ticks,
            self.remaining_lots,
            self.filled_lots,
            int(self.reduce_only),
            self.stp_mode,
            self.expire_at_ns,
            self.status,
        )

    def __repr__(self) -> str:
        return (
            f"Order(id={self.order_id}, acct={self.owner_id}/{self.sub_account_id}, "
            f"{Side(self.side).name} {self.remaining_lots}@{self.price_ticks}, "
            f"{OrderStatus(self.status).name})"
        )
