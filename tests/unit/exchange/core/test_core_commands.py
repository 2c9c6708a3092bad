"""Unit tests for exchange.core.commands: parse_command / check_command."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.core.commands import (
    COMMAND_TYPES,
    AmendOrder,
    BookOnChainLiquidation,
    BookOnChainWithdrawal,
    CancelAll,
    CancelOrder,
    CreateMarket,
    Deposit,
    DepositInsurance,
    ExpireOrders,
    Liquidate,
    MalformedCommand,
    PlaceOrder,
    RecordReconciliationClean,
    RecordReconciliationMismatch,
    RegisterAccount,
    SetKillSwitch,
    SetMarketStatus,
    SetRiskParams,
    Tick,
    UpdateOraclePrice,
    UpdateTriggerPrice,
    Withdraw,
    check_command,
    parse_command,
)
from exchange.core.orders import OrderType, SelfTradePrevention, Side, TimeInForce
from exchange.core.units import U64_MAX

PLACE = {
    "type": "place",
    "market_id": 1,
    "owner_id": 7,
    "sub_account_id": 2,
    "side": 1,
    "price": 1_500_000,
    "size": 10**9,
}

GOOD: list[tuple[dict[str, Any], Any]] = [
    (
        {
            "type": "create_market",
            "market_id": 3,
            "symbol": "BTC-PERP",
            "tick_size": 100_000,
            "lot_size": 10**5,
        },
        CreateMarket(3, "BTC-PERP", 100_000, 10**5),
    ),
    (PLACE, PlaceOrder(1, 7, 2, 1, 1_500_000, 10**9)),
    (
        {
            **PLACE,
            "order_type": 3,
            "time_in_force": 1,
            "client_order_id": 9,
            "trigger_price": 1_400_000,
            "reduce_only": True,
            "stp_mode": 2,
            "expire_at_ns": 5,
        },
        PlaceOrder(1, 7, 2, 1, 1_500_000, 10**9, 3, 1, 9, 1_400_000, True, 2, 5),
    ),
    (
        {"type": "cancel", "market_id": 1, "owner_id": 7, "sub_account_id": 0, "order_id": 4},
        CancelOrder(1, 7, 0, 4, 0),
    ),
    (
        {
            "type": "cancel",
            "market_id": 1,
            "owner_id": 7,
            "sub_account_id": 0,
            "client_order_id": 4,
        },
        CancelOrder(1, 7, 0, 0, 4),
    ),
    (
        {"type": "cancel_all", "market_id": 1, "owner_id": 7, "sub_account_id": 65535},
        CancelAll(1, 7, 65535),
    ),
    (
        {
            "type": "amend",
            "market_id": 1,
            "owner_id": 7,
            "sub_account_id": 0,
            "order_id": 4,
            "new_price": 10,
            "new_size": 20,
        },
        AmendOrder(1, 7, 0, 4, 10, 20),
    ),
    ({"type": "trigger_price", "market_id": 1, "price": 99}, UpdateTriggerPrice(1, 99)),
    ({"type": "expire"}, ExpireOrders()),
    (
        {"type": "deposit", "owner_id": 7, "sub_account_id": 1, "amount_quote": 10**6},
        Deposit(7, 1, 10**6),
    ),
    (
        {"type": "withdraw", "owner_id": 7, "sub_account_id": 1, "amount_quote": 5},
        Withdraw(7, 1, 5),
    ),
    (
        {
            "type": "oracle_price",
            "market_id": 1,
            "price": 150_000_000,
            "confidence": 20_000,
            "slot": 300,
            "publish_time_s": 1_700_000_000,
            "valid": True,
        },
        UpdateOraclePrice(1, 150_000_000, 20_000, 300, 1_700_000_000, True),
    ),
    ({"type": "tick"}, Tick()),
    ({"type": "market_status", "market_id": 1, "status": 2}, SetMarketStatus(1, 2)),
    (
        {"type": "kill_switch", "market_id": 1, "engaged": True},
        SetKillSwitch(1, True, False),
    ),
    ({"type": "insurance_deposit", "amount_quote": 9}, DepositInsurance(9)),
    (
        {
            "type": "liquidate",
            "owner_id": 4,
            "sub_account_id": 0,
            "target_owner_id": 7,
            "target_sub_account_id": 1,
        },
        Liquidate(4, 0, 7, 1, 0xFFFF),
    ),
    (
        {"type": "risk_params", "market_id": 1, "params_json": '{"taker_fee_ppm":500}'},
        SetRiskParams(1, '{"taker_fee_ppm":500}', 0),
    ),
    (
        {
            "type": "onchain_liquidation",
            "market_id": 1,
            "owner_id": 7,
            "sub_account_id": 1,
            "liquidator_owner_id": 4,
            "liquidator_sub_account_id": 0,
            "base_delta": -(10**9),
            "quote_delta": 99_000_000,
            "price": 100_000_000,
            "fee_quote": 1_000_000,
            "liquidator_fee_quote": 500_000,
            "insurance_fee_quote": 500_000,
            "cumulative_funding": 0,
            "tx_signature": "5" * 88,
            "slice_index": 0,
        },
        BookOnChainLiquidation(
            1,
            7,
            1,
            4,
            0,
            -(10**9),
            99_000_000,
            100_000_000,
            1_000_000,
            500_000,
            500_000,
            0,
            "5" * 88,
            0,
            0,
        ),
    ),
    (
        {"type": "register_account", "wallet_pubkey_hex": "ab" * 32},
        RegisterAccount("ab" * 32),
    ),
    (
        {
            "type": "onchain_withdrawal",
            "owner_id": 1_000_000,
            "sub_account_id": 0,
            "amount_quote": 2_500_000,
            "tx_signature": "4" * 88,
        },
        BookOnChainWithdrawal(1_000_000, 0, 2_500_000, "4" * 88, 0),
    ),
    (
        {
            "type": "reconciliation_mismatch",
            "market_id": 0xFFFF,
            "account_owner_id": -1,
            "account_sub_account_id": -1,
            "field": "fee_pool_quote",
            "engine_value": -(2**63),
            "onchain_value": 2**64 - 1,
            "settled_through_seq": 41,
            "chain_slot": 9_000,
        },
        RecordReconciliationMismatch(
            0xFFFF, -1, -1, "fee_pool_quote", -(2**63), 2**64 - 1, 41, 9_000
        ),
    ),
    (
        {"type": "reconciliation_clean", "market_id": 3, "settled_through_seq": 0, "chain_slot": 1},
        RecordReconciliationClean(3, 0, 1),
    ),
]


def test_every_command_type_has_a_good_example() -> None:
    assert {m["type"] for m, _ in GOOD} == set(COMMAND_TYPES)


@pytest.mark.parametrize(("message", "expected"), GOOD, ids=[m["type"] for m, _ in GOOD])
def test_parse_good(message: dict[str, Any], expected: Any) -> None:
    cmd = parse_command(dict(message))
    assert cmd == expected
    assert type(cmd) is type(expected)
    check_command(cmd)  # a parsed command is well-formed


def test_defaults_of_place_order() -> None:
    cmd = parse_command(PLACE)
    assert cmd.order_type == OrderType.LIMIT and cmd.time_in_force == TimeInForce.GTC
    assert cmd.client_order_id == 0 and cmd.trigger_price == 0 and cmd.reduce_only is False
    assert cmd.stp_mode == SelfTradePrevention.CANCEL_TAKING and cmd.expire_at_ns == 0


def test_parse_does_not_mutate_input() -> None:
    msg = dict(PLACE)
    parse_command(msg)
    assert msg == PLACE


@pytest.mark.parametrize("kind", ["nope", "Place", "", None, 5, ["place"]])
def test_unknown_type(kind: Any) -> None:
    with pytest.raises(MalformedCommand, match=r"^type: expected one of \["):
        parse_command({**PLACE, "type": kind})


def test_missing_type() -> None:
    msg = {k: v for k, v in PLACE.items() if k != "type"}
    with pytest.raises(MalformedCommand, match=r"^type: expected one of .*got None"):
        parse_command(msg)


@pytest.mark.parametrize("message", [[], "place", None, 5, ("type", "place")])
def test_not_an_object(message: Any) -> None:
    with pytest.raises(MalformedCommand, match=r"^expected a JSON object, got "):
        parse_command(message)


def test_unknown_field() -> None:
    with pytest.raises(MalformedCommand, match=r"^place: unknown fields \['colour'\], expected"):
        parse_command({**PLACE, "colour": "red"})


@pytest.mark.parametrize(
    "field", ["market_id", "owner_id", "sub_account_id", "side", "price", "size"]
)
def test_missing_field(field: str) -> None:
    msg = {k: v for k, v in PLACE.items() if k != field}
    with pytest.raises(MalformedCommand, match=rf"^place: missing fields \['{field}'\]$"):
        parse_command(msg)


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("price", 1.5, "an integer"),
        ("price", "1500000", "an integer"),
        ("size", None, "an integer"),
        ("side", True, "an integer"),  # bool is not an int here
        ("owner_id", [7], "an integer"),
        ("reduce_only", 1, "true or false"),
        ("reduce_only", "true", "true or false"),
    ],
)
def test_wrong_type(field: str, value: Any, what: str) -> None:
    with pytest.raises(MalformedCommand, match=rf"^{field}: expected {what}, got "):
        parse_command({**PLACE, field: value})


def test_wrong_type_string_field() -> None:
    msg = {"type": "create_market", "market_id": 3, "symbol": 42, "tick_size": 1, "lot_size": 10**9}
    with pytest.raises(MalformedCommand, match=r"^symbol: expected a string, got 42$"):
        parse_command(msg)


@pytest.mark.parametrize(
    ("field", "value", "lo", "hi"),
    [
        ("market_id", -1, 0, 65535),
        ("market_id", 65536, 0, 65535),
        ("owner_id", 2**47, 0, 2**47 - 1),
        ("sub_account_id", 65536, 0, 65535),
        ("side", 2, 0, len(Side) - 1),
        ("side", -1, 0, len(Side) - 1),
        ("order_type", 6, 0, len(OrderType) - 1),
        ("time_in_force", 5, 0, len(TimeInForce) - 1),
        ("stp_mode", 3, 0, len(SelfTradePrevention) - 1),
        ("price", -1, 0, U64_MAX),
        ("size", U64_MAX + 1, 0, U64_MAX),
        ("client_order_id", -5, 0, U64_MAX),
        ("expire_at_ns", 2**64, 0, U64_MAX),
    ],
)
def test_out_of_range(field: str, value: int, lo: int, hi: int) -> None:
    with pytest.raises(MalformedCommand, match=rf"^{field}: expected {lo}\.\.{hi}, got {value}$"):
        parse_command({**PLACE, field: value})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("market_id", 0),
        ("market_id", 65535),
        ("owner_id", 2**47 - 1),
        ("price", U64_MAX),
        ("side", 1),
        ("stp_mode", 2),
    ],
)
def test_range_bounds_are_inclusive(field: str, value: int) -> None:
    assert getattr(parse_command({**PLACE, field: value}), field) == value


def test_check_command_rejects_non_commands() -> None:
    with pytest.raises(MalformedCommand, match=r"^expected a command, got tuple$"):
        check_command((1, 2, 3))
    with pytest.raises(MalformedCommand, match=r"^expected a command, got dict$"):
        check_command(PLACE)


def test_check_command_on_directly_built_commands() -> None:
    check_command(PlaceOrder(1, 7, 2, Side.ASK, 10, 10, OrderType.MARKET, TimeInForce.IOC))
    with pytest.raises(MalformedCommand, match=r"^price: expected an integer, got 1\.0$"):
        check_command(PlaceOrder(1, 7, 2, 0, 1.0, 10))  # type: ignore[arg-type]
    with pytest.raises(MalformedCommand, match=r"^market_id: expected 0\.\.65535, got 70000$"):
        check_command(UpdateTriggerPrice(70000, 1))


def test_malformed_command_is_a_value_error_with_code() -> None:
    assert issubclass(MalformedCommand, ValueError)
    assert MalformedCommand.code == "MALFORMED_COMMAND"


@pytest.mark.parametrize(
    ("field", "value", "lo", "hi"),
    [
        ("account_owner_id", -2, -1, 2**47 - 1),
        ("account_sub_account_id", 65536, -1, 65535),
        ("engine_value", -(2**63) - 1, -(2**63), U64_MAX),
        ("onchain_value", 2**64, -(2**63), U64_MAX),
        ("settled_through_seq", -1, 0, 2**63 - 1),
    ],
)
def test_reconciliation_mismatch_ranges(field: str, value: int, lo: int, hi: int) -> None:
    # Arrange: values the journal's 64-bit JSON integers can hold, -1 for "no account"
    message = {
        "type": "reconciliation_mismatch", "market_id": 0, "account_owner_id": 1,
        "account_sub_account_id": 0, "field": "base", "engine_value": 1, "onchain_value": 2,
        "settled_through_seq": 5, "chain_slot": 7, field: value,
    }  # fmt: skip
    # Act / Assert
    with pytest.raises(MalformedCommand, match=rf"^{field}: expected {lo}\.\.{hi}, got {value}$"):
        parse_command(message)


# -- the generated fast check agrees with the per-field rule -------------------------------


def _reference_fast(shapes: tuple[Any, ...], cmd: Any) -> bool:
    """The fast check as a loop over the shapes (what the generated check replaces)."""
    for shape, value in zip(shapes, cmd, strict=True):
        if shape is str or shape is bool:
            if type(value) is not shape:
                return False
        elif type(value) is not int or not shape[0] <= value <= shape[1]:
            return False
    return True


def _odd_values(shape: Any) -> list[Any]:
    if shape is str:
        return ["", "BTC-PERP", 1, None]
    if shape is bool:
        return [True, False, 0, 1, None]
    lo, hi = shape
    return [lo, hi, lo - 1, hi + 1, (lo + hi) // 2, True, Side.ASK, 1.0, "1", None]


@pytest.mark.parametrize("cls", list(COMMAND_TYPES.values()), ids=list(COMMAND_TYPES))
def test_generated_fast_check_agrees_with_the_per_field_rule(cls: Any) -> None:
    # Arrange: a good command, then each field in turn set to bounds, beyond them and to
    # values of other types
    from exchange.core.commands import _FAST_CHECKS, _FIELD_SHAPES

    shapes = _FIELD_SHAPES[cls]
    good = [("x" if s is str else False if s is bool else s[0]) for s in shapes]
    variants = [tuple(good)]
    for i, shape in enumerate(shapes):
        for value in _odd_values(shape):
            variants.append((*good[:i], value, *good[i + 1 :]))
    for fields in variants:
        cmd = tuple.__new__(cls, fields)
        # Act / Assert: the same verdict
        assert _FAST_CHECKS[cls](cmd) is _reference_fast(shapes, cmd), fields
    # a tuple of the wrong length is refused as before (a ValueError from the strict zip)
    with pytest.raises(ValueError):
        check_command(tuple.__new__(cls, (*good, 0)))
