"""Request parsing: strict fields, units in names, enums by name."""

from __future__ import annotations

import pytest

from exchange.api.codec import (
    batch_items,
    cancel_all_scope,
    cancel_command,
    int_query,
    parse_json,
    place_command,
)
from exchange.api.errors import BatchTooLarge, MalformedRequest
from exchange.core.commands import CancelOrder, PlaceOrder
from exchange.core.orders import OrderType, Side, TimeInForce


def test_place_maps_names_and_units_onto_the_command() -> None:
    cmd = place_command(
        {
            "market_id": 1,
            "side": "ASK",
            "price": 5_000_000,
            "size_base": 2_000_000_000,
            "time_in_force": "POST_ONLY",
            "order_type": "LIMIT",
            "client_order_id": 3,
        },
        owner_id=42,
    )
    assert cmd == PlaceOrder(
        1, 42, 0, Side.ASK, 5_000_000, 2_000_000_000, OrderType.LIMIT, TimeInForce.POST_ONLY, 3
    )


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"market_id": 1, "side": "ASK", "price": 1},
        {"market_id": 1, "side": "ASK", "price": 1, "size_base": 1, "owner_id": 5},
        {"market_id": 1, "side": "SELL", "price": 1, "size_base": 1},
        {"market_id": 1, "side": "ASK", "price": 1.5, "size_base": 1},
        {"market_id": 1, "side": "ASK", "price": "1", "size_base": 1},
        {"market_id": 70_000, "side": "ASK", "price": 1, "size_base": 1},
        {"market_id": 1, "side": "ASK", "price": 1, "size_base": 2**64},
        {"market_id": 1, "side": "ASK", "price": 1, "size_base": 1, "reduce_only": 1},
    ],
)
def test_place_refuses_malformed_bodies(body: object) -> None:
    with pytest.raises(MalformedRequest):
        place_command(body, owner_id=1)


def test_cancel_needs_exactly_one_id() -> None:
    assert cancel_command({"market_id": 1, "order_id": 9}, 3) == CancelOrder(1, 3, 0, 9, 0)
    for bad in ({"market_id": 1}, {"market_id": 1, "order_id": 9, "client_order_id": 2}):
        with pytest.raises(MalformedRequest):
            cancel_command(bad, 3)


def test_cancel_all_scope_and_batches_and_queries() -> None:
    assert cancel_all_scope({}) == (None, None)
    assert cancel_all_scope({"market_id": 2, "sub_account_id": 1}) == (2, 1)
    assert batch_items({"orders": [1, 2]}, "orders", 2) == [1, 2]
    with pytest.raises(BatchTooLarge):
        batch_items({"orders": [1, 2, 3]}, "orders", 2)
    for bad in ({"orders": []}, {"orders": [1], "x": 1}, {"orders": "no"}):
        with pytest.raises(MalformedRequest):
            batch_items(bad, "orders", 2)
    assert int_query({"depth": "7"}, "depth", 50, 1, 10) == 7
    assert int_query({}, "depth", 50, 1, 100) == 50
    for raw in ("0", "11", "-1", "x"):
        with pytest.raises(MalformedRequest):
            int_query({"depth": raw}, "depth", 50, 1, 10)
    with pytest.raises(MalformedRequest):
        parse_json(b"{")
