"""Request parsing: strict fields, units in names, enums by name."""

from __future__ import annotations

import contextlib

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


def test_place_accepts_only_what_the_engine_check_accepts() -> None:
    # place_command skips check_command on its hot path: every field value it lets through
    # must pass the engine's own check (boundaries, one past them, wrong types).
    from exchange.api.codec import _PLACE_SPEC
    from exchange.core.commands import check_command

    base = {"market_id": 1, "side": "BID", "price": 1, "size_base": 1}
    probes: list[object] = [
        -1,
        0,
        1,
        65535,
        65536,
        2**47,
        2**63,
        2**64 - 1,
        2**64,
        True,
        1.0,
        "1",
        None,
    ]
    accepted = 0
    for name, _field, kind, _lo, _hi in _PLACE_SPEC:
        values = probes + (
            ["BID", "ASK", "LIMIT", "IOC", "CANCEL_TAKING", "X"]
            if kind not in ("int", "bool")
            else [False]
        )
        for value in values:
            for owner_id in (0, 2**47 - 1):
                try:
                    cmd = place_command({**base, name: value}, owner_id)
                except MalformedRequest:
                    continue
                check_command(cmd)  # raises if the two disagree
                accepted += 1
    assert accepted > 50  # the probe set exercises accepting paths too


def test_place_fast_path_equals_the_field_table_path() -> None:
    # place_command reads the fields inline; the table-driven _place_command_checked is the
    # reference: same command, or a refusal (whose message the reference gives), for every probe
    from exchange.api.codec import _PLACE_SPEC, _place_command_checked

    base = {"market_id": 1, "side": "BID", "price": 1, "size_base": 1}
    probes: list[object] = [-1, 0, 1, 65535, 65536, 2**64 - 1, 2**64, True, False, 1.0, "1"]
    probes += [None, "BID", "ASK", "MARKET", "FOK", "CANCEL_BOTH", "bid", ["BID"], {}]
    compared = 0
    for name, _field, _kind, _lo, _hi in _PLACE_SPEC:
        for value in probes:
            body = {**base, name: value}
            try:
                expected: object = _place_command_checked(body, 5, "order")
            except MalformedRequest as exc:
                expected = str(exc)
            try:
                got: object = place_command(body, 5)
            except MalformedRequest as exc:
                got = str(exc)
            assert got == expected, (name, value)
            compared += 1
    for body in ({}, [], {"market_id": 1}, {**base, "extra": 1}, base):
        with pytest.raises(MalformedRequest) if body is not base else contextlib.nullcontext():
            place_command(body, 5)
    assert compared == len(_PLACE_SPEC) * len(probes)
