"""Requests in, commands out: strict parsing of JSON request bodies (no aiohttp here).

Integers travel as JSON numbers and every name carries its unit: ``price`` and
``trigger_price`` at ``PRICE_PRECISION`` (quote per whole base unit), ``size_base`` at
``BASE_PRECISION``, ``*_ticks`` / ``*_lots`` in a market's ticks and lots, ``*_ns``
nanoseconds. Enums travel as their names (``"BID"``, ``"POST_ONLY"``...).
"""

from __future__ import annotations

from typing import Any

import orjson

from exchange.api.errors import BatchTooLarge, MalformedRequest
from exchange.core.commands import (
    AmendOrder,
    CancelOrder,
    MalformedCommand,
    PlaceOrder,
    check_command,
)
from exchange.core.orders import OrderType, SelfTradePrevention, Side, TimeInForce
from exchange.core.units import U64_MAX

_REQUIRED: Any = object()  # marks a field that has no default

_PLACE_FIELDS = {
    "market_id": _REQUIRED,
    "sub_account_id": 0,
    "side": _REQUIRED,
    "price": _REQUIRED,
    "size_base": _REQUIRED,
    "order_type": "LIMIT",
    "time_in_force": "GTC",
    "client_order_id": 0,
    "trigger_price": 0,
    "reduce_only": False,
    "stp_mode": "CANCEL_TAKING",
    "expire_at_ns": 0,
}
_CANCEL_FIELDS = {"market_id": _REQUIRED, "sub_account_id": 0, "order_id": 0, "client_order_id": 0}
_CANCEL_ALL_FIELDS = {"market_id": None, "sub_account_id": None}
_AMEND_FIELDS = {
    "market_id": _REQUIRED,
    "order_id": _REQUIRED,
    "new_price": _REQUIRED,
    "new_size_base": _REQUIRED,
}


def parse_json(body: bytes) -> Any:
    """Decode a request body, or ``MalformedRequest``."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedRequest(f"body: expected JSON, got {exc}") from None


def _fields(obj: Any, spec: dict[str, Any], what: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise MalformedRequest(f"{what}: expected a JSON object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(spec))
    if unknown:
        raise MalformedRequest(f"{what}: unknown fields {unknown}, expected {sorted(spec)}")
    missing = sorted(k for k, default in spec.items() if default is _REQUIRED and k not in obj)
    if missing:
        raise MalformedRequest(f"{what}: missing fields {missing}")
    return {k: obj.get(k, default) for k, default in spec.items()}


def int_field(what: str, value: Any, lo: int = 0, hi: int = U64_MAX) -> int:
    """A JSON integer in ``lo..hi`` (booleans are not integers)."""
    if type(value) is not int or not lo <= value <= hi:
        raise MalformedRequest(f"{what}: expected an integer in {lo}..{hi}, got {value!r}")
    return value


_ENUM_VALUES: dict[Any, dict[str, int]] = {
    e: {name: int(member) for name, member in e.__members__.items()}
    for e in (Side, OrderType, TimeInForce, SelfTradePrevention)
}


def _enum(what: str, value: Any, enum: Any) -> int:
    values = _ENUM_VALUES[enum]
    got = values.get(value) if type(value) is str else None
    if got is None:
        raise MalformedRequest(f"{what}: expected one of {list(values)}, got {value!r}")
    return got


def _checked(cmd: Any, what: str) -> Any:
    try:
        check_command(cmd)
    except MalformedCommand as exc:
        raise MalformedRequest(f"{what}: {exc}") from None
    return cmd


# (request field, command field, kind, lo, hi): kind "int", "bool" or an enum class.
_PLACE_SPEC: tuple[tuple[str, str, Any, int, int], ...] = (
    ("market_id", "market_id", "int", 0, 65535),
    ("sub_account_id", "sub_account_id", "int", 0, 65535),
    ("side", "side", Side, 0, 0),
    ("price", "price", "int", 0, U64_MAX),
    ("size_base", "size", "int", 0, U64_MAX),
    ("order_type", "order_type", OrderType, 0, 0),
    ("time_in_force", "time_in_force", TimeInForce, 0, 0),
    ("client_order_id", "client_order_id", "int", 0, U64_MAX),
    ("trigger_price", "trigger_price", "int", 0, U64_MAX),
    ("reduce_only", "reduce_only", "bool", 0, 0),
    ("stp_mode", "stp_mode", SelfTradePrevention, 0, 0),
    ("expire_at_ns", "expire_at_ns", "int", 0, U64_MAX),
)
_PLACE_KEYS = frozenset(_PLACE_FIELDS)
_PLACE_REQUIRED = frozenset(k for k, v in _PLACE_FIELDS.items() if v is _REQUIRED)


_SIDE_VALUES = _ENUM_VALUES[Side]
_ORDER_TYPE_VALUES = _ENUM_VALUES[OrderType]
_TIF_VALUES = _ENUM_VALUES[TimeInForce]
_STP_VALUES = _ENUM_VALUES[SelfTradePrevention]


def place_command(obj: Any, owner_id: int, what: str = "order") -> PlaceOrder:
    """A ``PlaceOrder`` for ``owner_id`` from a request object.

    The hot path of order entry: the fields are read and checked inline (no loop over a
    table, no message built); anything irregular goes through ``_place_command_checked``,
    which applies the same checks one field at a time and raises the precise refusal.
    """
    if type(obj) is dict and obj.keys() <= _PLACE_KEYS and obj.keys() >= _PLACE_REQUIRED:
        get = obj.get
        market_id = obj["market_id"]
        sub_account_id = get("sub_account_id", 0)
        price = obj["price"]
        size = obj["size_base"]
        client_order_id = get("client_order_id", 0)
        trigger_price = get("trigger_price", 0)
        expire_at_ns = get("expire_at_ns", 0)
        reduce_only = get("reduce_only", False)
        side = obj["side"]
        order_type = get("order_type", "LIMIT")
        tif = get("time_in_force", "GTC")
        stp = get("stp_mode", "CANCEL_TAKING")
        if (
            type(market_id) is int
            and 0 <= market_id <= 65535
            and type(sub_account_id) is int
            and 0 <= sub_account_id <= 65535
            and type(price) is int
            and 0 <= price <= U64_MAX
            and type(size) is int
            and 0 <= size <= U64_MAX
            and type(client_order_id) is int
            and 0 <= client_order_id <= U64_MAX
            and type(trigger_price) is int
            and 0 <= trigger_price <= U64_MAX
            and type(expire_at_ns) is int
            and 0 <= expire_at_ns <= U64_MAX
            and type(reduce_only) is bool
            and type(side) is str
            and type(order_type) is str
            and type(tif) is str
            and type(stp) is str
        ):
            side_value = _SIDE_VALUES.get(side)
            type_value = _ORDER_TYPE_VALUES.get(order_type)
            tif_value = _TIF_VALUES.get(tif)
            stp_value = _STP_VALUES.get(stp)
            if (
                side_value is not None
                and type_value is not None
                and tif_value is not None
                and stp_value is not None
            ):
                return PlaceOrder(
                    market_id,
                    owner_id,
                    sub_account_id,
                    side_value,
                    price,
                    size,
                    type_value,
                    tif_value,
                    client_order_id,
                    trigger_price,
                    reduce_only,
                    stp_value,
                    expire_at_ns,
                )
    return _place_command_checked(obj, owner_id, what)


def _place_command_checked(obj: Any, owner_id: int, what: str) -> PlaceOrder:
    # One pass over the field table with a precise message for the first bad field.
    if type(obj) is not dict or not obj.keys() <= _PLACE_KEYS or not obj.keys() >= _PLACE_REQUIRED:
        _fields(obj, _PLACE_FIELDS, what)  # raises with the precise message
    values: dict[str, Any] = {"owner_id": owner_id}
    get = obj.get
    for name, field, kind, lo, hi in _PLACE_SPEC:
        value = get(name, _PLACE_FIELDS[name])
        if kind == "int":
            if type(value) is not int or not lo <= value <= hi:
                int_field(f"{what}.{name}", value, lo, hi)
        elif kind == "bool":
            if type(value) is not bool:
                raise MalformedRequest(f"{what}.{name}: expected true or false, got {value!r}")
        else:
            value = _enum(f"{what}.{name}", value, kind)
        values[field] = value
    # Every field was checked above against the same types and ranges as the engine's
    # ``check_command`` (tests/unit/exchange/api/test_api_codec.py proves the two agree), so
    # the command is not checked a second time here.
    return PlaceOrder(**values)


def cancel_command(obj: Any, owner_id: int, what: str = "cancel") -> CancelOrder:
    """A ``CancelOrder`` (by ``order_id`` or ``client_order_id``, exactly one)."""
    f = _fields(obj, _CANCEL_FIELDS, what)
    order_id = int_field(f"{what}.order_id", f["order_id"])
    client_order_id = int_field(f"{what}.client_order_id", f["client_order_id"])
    if (order_id == 0) == (client_order_id == 0):
        raise MalformedRequest(
            f"{what}: expected exactly one of order_id, client_order_id, got "
            f"{order_id}, {client_order_id}"
        )
    cmd = CancelOrder(
        market_id=int_field(f"{what}.market_id", f["market_id"], 0, 65535),
        owner_id=owner_id,
        sub_account_id=int_field(f"{what}.sub_account_id", f["sub_account_id"], 0, 65535),
        order_id=order_id,
        client_order_id=client_order_id,
    )
    return _checked(cmd, what)  # type: ignore[no-any-return]


def cancel_all_scope(obj: Any, what: str = "cancel_all") -> tuple[int | None, int | None]:
    """``(market_id, sub_account_id)`` of a cancel-all; ``None`` means all of them."""
    f = _fields(obj, _CANCEL_ALL_FIELDS, what)
    market_id = f["market_id"]
    sub = f["sub_account_id"]
    return (
        None if market_id is None else int_field(f"{what}.market_id", market_id, 0, 65535),
        None if sub is None else int_field(f"{what}.sub_account_id", sub, 0, 65535),
    )


def amend_command(obj: Any, owner_id: int, sub_account_id: int, what: str = "amend") -> AmendOrder:
    """An ``AmendOrder``; the order's sub-account comes from the live order."""
    f = _fields(obj, _AMEND_FIELDS, what)
    cmd = AmendOrder(
        market_id=int_field(f"{what}.market_id", f["market_id"], 0, 65535),
        owner_id=owner_id,
        sub_account_id=sub_account_id,
        order_id=int_field(f"{what}.order_id", f["order_id"], 1),
        new_price=int_field(f"{what}.new_price", f["new_price"]),
        new_size=int_field(f"{what}.new_size_base", f["new_size_base"]),
    )
    return _checked(cmd, what)  # type: ignore[no-any-return]


def batch_items(obj: Any, key: str, max_items: int) -> list[Any]:
    """The list under ``key`` of a batch request: 1..``max_items`` items."""
    if not isinstance(obj, dict) or set(obj) != {key}:
        raise MalformedRequest(f"batch: expected an object with exactly {key!r}, got {obj!r:.200}")
    items = obj[key]
    if not isinstance(items, list) or not items:
        raise MalformedRequest(f"batch.{key}: expected a non-empty list, got {items!r:.200}")
    if len(items) > max_items:
        raise BatchTooLarge(f"batch.{key}: expected at most {max_items} items, got {len(items)}")
    return items


def int_query(query: Any, name: str, default: int, lo: int, hi: int) -> int:
    """An integer query parameter in ``lo..hi``."""
    raw = query.get(name)
    if raw is None:
        return default
    if not isinstance(raw, str) or not raw.isdigit():
        raise MalformedRequest(f"{name}: expected an integer in {lo}..{hi}, got {raw!r}")
    return int_field(name, int(raw), lo, hi)
