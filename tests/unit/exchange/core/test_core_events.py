"""Unit tests for exchange.core.events: kinds, row form and the JSON journal encoding."""

from __future__ import annotations

import json

import pytest

from exchange.core import events as ev
from exchange.core.events import (
    EVENT_TYPES,
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
    decode_events,
    encode_events,
    event_from_row,
    event_to_row,
)

#: One example of every event type, with the kind the journal must store it under.
SAMPLES = [
    (1, MarketCreated(1, 10, 7, "SOL-PERP", 10_000, 10**7, 1, 1000, 10**7, 256)),
    (2, OrderAccepted(2, 11, 7, 1, 99, 3, 1, 0, 3, 4, 150, 5, 0, True, 2, 12345)),
    (3, OrderRejected(3, 12, 7, 0, 5, 3, 1, 14, "size: expected 5 lots fillable, got 2")),
    (4, OrderRested(4, 13, 7, 1, 149, 5)),
    (5, TradeExecuted(5, 14, 7, 1, 2, 3, 0, 4, 1, 0, 150, 2, 3, 0)),
    (6, OrderCanceled(6, 15, 7, 1, 3, 1, 3, 0)),
    (7, OrderExpired(7, 16, 7, 1, 3, 1, 3)),
    (8, OrderAmended(8, 17, 7, 1, 151, 2, False)),
    (9, OrderTriggered(9, 18, 7, 4, 152)),
    (10, SelfTradeDecremented(10, 19, 7, 1, 2, 3)),
    (21, ev.MarketParamsSet(11, 20, 7, '{"taker_fee_ppm":450}')),
    (22, ev.CollateralDeposited(12, 21, ev.NO_MARKET_ID, 3, 1, 500, 500)),
    (23, ev.CollateralWithdrawn(13, 22, ev.NO_MARKET_ID, 3, 1, 200, 300)),
    (24, ev.OraclePriceUpdated(14, 23, 7, 150_000_000, 12_000, 99, 1_700_000_000, True, False)),
    (25, ev.MarkPriceUpdated(15, 24, 7, 150_010_000, -5_000, 149_900_000, 150_100_000)),
    (
        26,
        ev.FillSettled(
            16, 25, 7, 5, 1, 0, 2, 0, 0, 10**9, 150_000_000, -3, 68, 13, -40, 40, 7, -7, 0
        ),
    ),
    (27, ev.FundingSettled(17, 26, 7, 1, 0, -12, 1)),
    (28, ev.FundingSampled(18, 27, 7, 150_000_000, 149_900_000, 150_100_000, -2_500)),
    (29, ev.FundingRateApplied(19, 28, 7, 720, -2_500, 10_000, 150_000_000, 1_500_000_000_000_000)),
    (30, ev.MarketStatusChanged(20, 29, 7, 0, 4, 1)),
    (31, ev.InsuranceFundDeposited(21, 30, ev.NO_MARKET_ID, 1_000, 1_013)),
    (
        32,
        ev.LiquidationExecuted(
            22,
            31,
            7,
            4,
            0,
            3,
            1,
            -(10**9),
            150_000_000,
            150_000_000,
            1_500_000,
            750_000,
            750_000,
            -2_000_000,
            0,
        ),
    ),
    (
        33,
        ev.PositionDeleveraged(
            23, 32, 7, 3, 1, 5, 0, -(10**9), 151_000_000, 151_000_000, -1_000_000, 900_000
        ),
    ),
    (34, ev.InsuranceFundPaidBadDebt(24, 33, ev.NO_MARKET_ID, 3, 1, 500_000, 1_500_000, 0, 513)),
    (
        35,
        ev.AccountLiquidated(
            25, 34, ev.NO_MARKET_ID, 4, 0, 3, 1, -1_500_000, 4_500_000, 0, 0, 1, 1, 1_500_000
        ),
    ),
    (36, ev.RiskParamsChanged(26, 35, 7, 12, '{"taker_fee_ppm":500}')),
    (37, ev.OnChainLiquidationBooked(27, 36, 7, 3, 1, 4, 0, -(10**17), "5" * 87, 1, 12, -11)),
    (38, ev.AccountRegistered(28, 37, ev.NO_MARKET_ID, 1_000_000, 0, "ab" * 32)),
    (39, ev.OnChainWithdrawalBooked(29, 38, ev.NO_MARKET_ID, 1_000_000, 0, 5, -3, "4" * 88, 1)),
    (40, ev.ReconciliationMismatchDetected(30, 39, 7, 3, 1, "base", -5, 2**64 - 1, 28, 1_234, 2)),
    (41, ev.ReconciliationMismatchResolved(31, 40, ev.NO_MARKET_ID, 3, 30, 1_300)),
]
IDS = [type(e).__name__ for _, e in SAMPLES]


def test_every_event_type_has_a_sample_and_stable_kind() -> None:
    assert {type(e) for _, e in SAMPLES} == set(EVENT_TYPES.values())
    assert {kind: type(e) for kind, e in SAMPLES} == EVENT_TYPES
    for kind, e in SAMPLES:
        assert kind == type(e).KIND  # type: ignore[attr-defined]


@pytest.mark.parametrize(("kind", "event"), SAMPLES, ids=IDS)
def test_first_fields_are_seq_ts_market(kind: int, event: tuple) -> None:
    assert type(event)._fields[:3] == ("seq", "ts_ns", "market_id")  # type: ignore[attr-defined]


@pytest.mark.parametrize(("kind", "event"), SAMPLES, ids=IDS)
def test_row_round_trip(kind: int, event: tuple) -> None:
    row = event_to_row(event)  # type: ignore[arg-type]
    assert row == [kind, *event]
    back = event_from_row(list(row))
    assert back == event and type(back) is type(event)


@pytest.mark.parametrize(("kind", "event"), SAMPLES, ids=IDS)
def test_row_round_trip_through_json(kind: int, event: tuple) -> None:
    row = json.loads(json.dumps(event_to_row(event)))  # type: ignore[arg-type]
    back = event_from_row(row)
    assert back == event and type(back) is type(event)
    # bools come back as bools, never as ints
    for name, value in zip(type(event)._fields, back):  # type: ignore[attr-defined]
        assert type(value) is type(getattr(event, name)), name


def test_encode_decode_round_trip_all_types() -> None:
    events = [e for _, e in SAMPLES]
    blob = encode_events(events)  # type: ignore[arg-type]
    assert isinstance(blob, bytes)
    assert json.loads(blob)[0][0] == 1
    back = decode_events(blob)
    assert back == events
    assert [type(e) for e in back] == [type(e) for e in events]
    assert type(back[1].reduce_only) is bool and back[1].reduce_only is True
    assert type(back[7].priority_kept) is bool and back[7].priority_kept is False


def test_encoding_is_compact_utf8() -> None:
    e = MarketCreated(1, 0, 1, "ÉTH-PERP", 1, 10**9, 1, 5, 10, 1)
    blob = encode_events([e])
    assert b" " not in blob.replace(b"\xc3\x89TH", b"")
    assert "ÉTH-PERP".encode() in blob  # not \\u-escaped
    assert decode_events(blob) == [e]


def test_integer_bools_decode_to_bools() -> None:
    row = event_to_row(SAMPLES[1][1])  # type: ignore[arg-type]
    row[14] = 1  # reduce_only as an int, as some databases hand it back
    assert event_from_row(row).reduce_only is True
    row[14] = 0
    assert event_from_row(list(row)).reduce_only is False
    blob = json.dumps([row]).encode()
    assert decode_events(blob)[0].reduce_only is False


def test_empty_journal() -> None:
    assert encode_events([]) == b"[]"
    assert decode_events(b"[]") == []


@pytest.mark.parametrize(
    "row", [[0, 1, 2], [11, 1, 2, 3], [99], ["OrderRested", 1], [None], [], [[1], 1]]
)
def test_unknown_kind_raises_value_error(row: list) -> None:
    with pytest.raises(ValueError, match="expected a known KIND"):
        event_from_row(row)


@pytest.mark.parametrize(("kind", "event"), SAMPLES, ids=IDS)
def test_wrong_arity_raises_value_error(kind: int, event: tuple) -> None:
    name, n = type(event).__name__, len(event)
    with pytest.raises(ValueError, match=rf"^{name}: expected {n} fields, got {n - 1}$"):
        event_from_row([kind, *event][:-1])
    with pytest.raises(ValueError, match=rf"^{name}: expected {n} fields, got {n + 1}$"):
        event_from_row([kind, *event, 0])


def test_decode_rejects_malformed_blobs() -> None:
    good = event_to_row(SAMPLES[3][1])  # type: ignore[arg-type]
    cases = [
        json.dumps([good, [42, 1, 2]]),  # unknown kind
        json.dumps([good, good[:-1]]),  # wrong arity
        json.dumps([good, [*good, 1]]),
        json.dumps({"kind": 4}),  # not an array
        json.dumps([good, 5]),  # a row that is not a list
        json.dumps([[]]),
        "not json",
    ]
    for blob in cases:
        with pytest.raises(ValueError):
            decode_events(blob.encode())


def test_decode_wrong_arity_message_names_the_type() -> None:
    row = event_to_row(SAMPLES[3][1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="OrderRested: expected 6 fields, got 5"):
        decode_events(json.dumps([row[:-1]]).encode())


def test_event_union_lists_every_type() -> None:
    assert set(ev.Event.__args__) == set(EVENT_TYPES.values())  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", [[(1, 2)], [SAMPLES[0][1], [1, 2]], [object()]])
def test_encode_refuses_items_that_are_not_events(bad: list) -> None:
    # Arrange: a plain tuple or list would be written as an array without its kind
    # Act / Assert
    with pytest.raises(TypeError):
        encode_events(bad)  # type: ignore[arg-type]


def test_encode_is_byte_identical_to_rows_of_kind_and_fields() -> None:
    events = [e for _, e in SAMPLES]
    expected = json.dumps(
        [[ev.EVENT_KINDS[type(e)], *e] for e in events], separators=(",", ":"), ensure_ascii=False
    ).encode()
    assert encode_events(events) == expected  # type: ignore[arg-type]
