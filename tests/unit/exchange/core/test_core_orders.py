"""Unit tests for exchange.core.orders: vocabulary, the transition table, Order records."""

from __future__ import annotations

import pytest

from exchange.core.errors import IllegalTransition, InvariantViolation
from exchange.core.orders import (
    MARKET_LIKE_TYPES,
    SUB_ACCOUNTS_PER_OWNER,
    TRANSITIONS,
    TRIGGER_TYPES,
    Order,
    OrderStatus,
    OrderType,
    SelfTradePrevention,
    Side,
    TimeInForce,
    Transition,
    account_key,
    next_status,
)

S, T = OrderStatus, Transition

#: The specification, written out independently of ``TRANSITIONS``.
EXPECTED: dict[tuple[OrderStatus, Transition], OrderStatus] = {
    (S.INITIALIZED, T.ACCEPT): S.ACCEPTED,
    (S.INITIALIZED, T.ARM_TRIGGER): S.TRIGGER_PENDING,
    (S.INITIALIZED, T.REJECT): S.REJECTED,
    (S.TRIGGER_PENDING, T.TRIGGER): S.ACCEPTED,
    (S.TRIGGER_PENDING, T.CANCEL): S.CANCELED,
    (S.TRIGGER_PENDING, T.EXPIRE): S.EXPIRED,
    (S.ACCEPTED, T.REST): S.OPEN,
    (S.ACCEPTED, T.FILL_PARTIAL): S.PARTIALLY_FILLED,
    (S.ACCEPTED, T.FILL_FULL): S.FILLED,
    (S.ACCEPTED, T.DECREMENT): S.ACCEPTED,
    (S.ACCEPTED, T.CANCEL): S.CANCELED,
    (S.OPEN, T.FILL_PARTIAL): S.PARTIALLY_FILLED,
    (S.OPEN, T.FILL_FULL): S.FILLED,
    (S.OPEN, T.DECREMENT): S.OPEN,
    (S.OPEN, T.CANCEL): S.CANCELED,
    (S.OPEN, T.EXPIRE): S.EXPIRED,
    (S.OPEN, T.AMEND_KEEP_PRIORITY): S.OPEN,
    (S.OPEN, T.AMEND_REQUEUE): S.ACCEPTED,
    (S.PARTIALLY_FILLED, T.REST): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.FILL_PARTIAL): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.FILL_FULL): S.FILLED,
    (S.PARTIALLY_FILLED, T.DECREMENT): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.CANCEL): S.CANCELED,
    (S.PARTIALLY_FILLED, T.EXPIRE): S.EXPIRED,
    (S.PARTIALLY_FILLED, T.AMEND_KEEP_PRIORITY): S.PARTIALLY_FILLED,
    (S.PARTIALLY_FILLED, T.AMEND_REQUEUE): S.PARTIALLY_FILLED,
}
TERMINAL = {S.FILLED, S.CANCELED, S.EXPIRED, S.REJECTED}
ALL_PAIRS = [(s, t) for s in OrderStatus for t in Transition]


def test_table_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(OrderStatus)


def test_table_is_exactly_the_specification() -> None:
    table = {(s, t): nxt for s, moves in TRANSITIONS.items() for t, nxt in moves.items()}
    assert table == EXPECTED


@pytest.mark.parametrize(("status", "transition"), sorted(EXPECTED))
def test_every_legal_transition(status: OrderStatus, transition: Transition) -> None:
    assert next_status(status, transition) == EXPECTED[(status, transition)]
    assert next_status(int(status), int(transition)) == EXPECTED[(status, transition)]


@pytest.mark.parametrize(("status", "transition"), [p for p in ALL_PAIRS if p not in EXPECTED])
def test_every_illegal_transition_raises(status: OrderStatus, transition: Transition) -> None:
    with pytest.raises(IllegalTransition) as info:
        next_status(status, transition)
    msg = str(info.value)
    assert msg.startswith("order transition: expected one of ")
    assert f"from {status.name}, got {transition.name}" in msg


def test_illegal_transition_example_and_hierarchy() -> None:
    with pytest.raises(IllegalTransition, match="from FILLED, got CANCEL"):
        next_status(OrderStatus.FILLED, Transition.CANCEL)
    assert issubclass(IllegalTransition, InvariantViolation)
    assert IllegalTransition.code == "ILLEGAL_TRANSITION"


@pytest.mark.parametrize("status", sorted(TERMINAL))
def test_terminal_states_have_no_way_out(status: OrderStatus) -> None:
    assert TRANSITIONS[status] == {}


def test_every_non_terminal_state_can_reach_a_terminal_one() -> None:
    for start in set(OrderStatus) - TERMINAL:
        seen, todo = {start}, [start]
        while todo:
            for nxt in TRANSITIONS[todo.pop()].values():
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & TERMINAL, start


def test_enum_values_are_stable() -> None:
    assert [int(x) for x in Side] == [0, 1]
    assert [x.name for x in OrderType] == [
        "LIMIT",
        "MARKET",
        "STOP_MARKET",
        "STOP_LIMIT",
        "TAKE_PROFIT_MARKET",
        "TAKE_PROFIT_LIMIT",
    ]
    assert [x.name for x in TimeInForce] == ["GTC", "IOC", "FOK", "POST_ONLY", "POST_ONLY_SLIDE"]
    assert [x.name for x in SelfTradePrevention] == [
        "CANCEL_TAKING",
        "CANCEL_RESTING",
        "DECREMENT_BOTH",
    ]
    assert {
        OrderType.STOP_MARKET,
        OrderType.STOP_LIMIT,
        OrderType.TAKE_PROFIT_MARKET,
        OrderType.TAKE_PROFIT_LIMIT,
    } == TRIGGER_TYPES
    assert {
        OrderType.MARKET,
        OrderType.STOP_MARKET,
        OrderType.TAKE_PROFIT_MARKET,
    } == MARKET_LIKE_TYPES


def test_account_key() -> None:
    assert SUB_ACCOUNTS_PER_OWNER == 65536
    assert account_key(0, 0) == 0
    assert account_key(3, 7) == 3 * 65536 + 7
    keys = {account_key(o, s) for o in range(4) for s in (0, 1, 65535)}
    assert len(keys) == 12  # one int per sub-account, no collisions
    assert account_key(5, 65535) // SUB_ACCOUNTS_PER_OWNER == 5


def test_order_record() -> None:
    o = Order(
        9,
        77,
        3,
        2,
        Side.ASK,
        OrderType.LIMIT,
        TimeInForce.GTC,
        150,
        0,
        4,
        True,
        SelfTradePrevention.DECREMENT_BOTH,
        123,
    )
    assert o.account == account_key(3, 2)
    assert o.status == OrderStatus.INITIALIZED
    assert o.filled_lots == 0 and o.prev is None and o.next is None and o.level is None
    assert o.canonical() == (9, 77, 3, 2, 1, 0, 0, 150, 0, 4, 0, 1, 2, 123, 0)
    assert repr(o) == "Order(id=9, acct=3/2, ASK 4@150, INITIALIZED)"
    with pytest.raises(AttributeError):
        o.unknown = 1  # type: ignore[attr-defined]
