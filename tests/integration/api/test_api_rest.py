"""REST against a real engine: signed order entry, reads, and every refusal changing nothing."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import (
    BTC,
    ETH,
    MAKER_KEY,
    MAKER_OWNER,
    STRANGER_KEY,
    SUB3_KEY,
    TAKER_KEY,
    Api,
    order,
)

from exchange.core.errors import RejectCode
from exchange.engine.sequencer import EngineRunner

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def engine_state(runner: EngineRunner) -> tuple[int, str]:
    core = runner.engine.core
    return core.next_seq, core.state_hash()


async def test_place_rests_then_taker_fills_and_reads_agree(api: Api, runner: EngineRunner) -> None:
    # Arrange
    status, maker, _ = await api.post(
        MAKER_KEY, "/v1/orders", order("ASK", 100, 5, client_order_id=7)
    )
    assert status == 200 and maker["status"] == "ACCEPTED", maker
    # Act
    status, taker, _ = await api.post(
        TAKER_KEY, "/v1/orders", order("BID", 100, 2, time_in_force="IOC")
    )
    # Assert
    assert status == 200 and taker["status"] == "ACCEPTED"
    fills = [e for e in taker["events"] if e["type"] == "Fill"]
    assert [(f["liquidity"], f["num_base_lots"], f["price_ticks"]) for f in fills] == [
        ("TAKER", 2, 100)
    ]
    assert all("maker_owner_id" not in e for e in taker["events"])
    status, book = await api.get(None, f"/v1/markets/{BTC}/book?depth=5")
    assert status == 200 and book["asks"] == [[100, 3]] and book["bids"] == []
    status, opened = await api.get(MAKER_KEY, "/v1/orders/open")
    assert [
        (o["order_id"], o["remaining_lots"], o["client_order_id"]) for o in opened["orders"]
    ] == [(maker["order_id"], 3, 7)]
    status, fills_resp = await api.get(MAKER_KEY, "/v1/fills")
    assert [(f["liquidity"], f["num_base_lots"]) for f in fills_resp["fills"]] == [("MAKER", 2)]
    status, trades = await api.get(None, f"/v1/markets/{BTC}/trades")
    assert [(t["price_ticks"], t["num_base_lots"], t["taker_side"]) for t in trades["trades"]] == [
        (100, 2, "BID")
    ]
    status, positions = await api.get(TAKER_KEY, "/v1/positions")
    assert [(p["sub_account_id"], p["market_id"], p["base"]) for p in positions["positions"]] == [
        (0, BTC, 2 * 10**9)
    ]
    assert positions["positions"][0]["entry_quote"] == -200 * 10**6  # signed: quote paid
    status, history = await api.get(MAKER_KEY, "/v1/orders/history")
    order_events = [e["type"] for e in history["events"] if e["type"].startswith(("Order", "Fill"))]
    assert order_events[:3] == ["OrderAccepted", "OrderRested", "Fill"]


async def test_cancel_amend_and_cancel_all(api: Api, runner: EngineRunner) -> None:
    _, a, _ = await api.post(MAKER_KEY, "/v1/orders", order("BID", 96, 1))
    _, b, _ = await api.post(MAKER_KEY, "/v1/orders", order("BID", 97, 1, client_order_id=5))
    _, c, _ = await api.post(
        MAKER_KEY, "/v1/orders", order("ASK", 104, 1, market_id=ETH, sub_account_id=3)
    )

    _, amended, _ = await api.post(
        MAKER_KEY,
        "/v1/orders/amend",
        {
            "market_id": BTC,
            "order_id": a["order_id"],
            "new_price": 95 * 1_000_000,
            "new_size_base": 4 * 10**9,
        },
    )
    assert amended["status"] == "ACCEPTED" and amended["events"][0]["type"] == "OrderAmended"
    _, canceled, _ = await api.post(
        MAKER_KEY, "/v1/orders/cancel", {"market_id": BTC, "client_order_id": 5}
    )
    assert canceled["status"] == "ACCEPTED" and canceled["order_id"] == b["order_id"]
    _, book = await api.get(None, f"/v1/markets/{BTC}/book")
    assert book["bids"] == [[95, 4]]

    status, all_canceled, _ = await api.post(MAKER_KEY, "/v1/orders/cancel-all", {})
    assert status == 200 and all_canceled["canceled_order_ids"] == sorted(
        [a["order_id"], c["order_id"]]
    )
    _, opened = await api.get(MAKER_KEY, "/v1/orders/open")
    assert opened["orders"] == []


async def test_batch_place_and_batch_cancel(api: Api) -> None:
    orders = [order("BID", 96 + i, 1) for i in range(10)]
    status, placed, _ = await api.post(MAKER_KEY, "/v1/orders/batch", {"orders": orders})
    assert status == 200 and [r["status"] for r in placed["results"]] == ["ACCEPTED"] * 10
    ids = [r["order_id"] for r in placed["results"]]
    cancels = [{"market_id": BTC, "order_id": i} for i in ids[:4]]
    status, canceled, _ = await api.post(MAKER_KEY, "/v1/orders/cancel-batch", {"cancels": cancels})
    assert status == 200 and [r["order_id"] for r in canceled["results"]] == ids[:4]
    _, book = await api.get(None, f"/v1/markets/{BTC}/book?depth=100")
    assert book["bids"] == [[96 + i, 1] for i in range(9, 3, -1)]


async def test_business_rejection_comes_back_with_its_code(api: Api) -> None:
    await api.post(MAKER_KEY, "/v1/orders", order("ASK", 100, 1))
    status, rejected, _ = await api.post(
        TAKER_KEY, "/v1/orders", order("BID", 100, 1, time_in_force="POST_ONLY")
    )
    assert status == 200
    assert rejected["status"] == "REJECTED"
    assert rejected["reject_code"] == RejectCode.POST_ONLY_WOULD_CROSS
    assert rejected["reject_code_name"] == "POST_ONLY_WOULD_CROSS"
    status, off_tick, _ = await api.post(
        TAKER_KEY, "/v1/orders", {**order("BID", 99, 1), "price": 99_500_000}
    )
    assert off_tick["reject_code_name"] == "OFF_TICK_PRICE"


BAD_INPUTS: list[tuple[str, dict[str, Any], int, str]] = [
    ("malformed json", {"raw_body": b"{not json"}, 400, "MALFORMED_REQUEST"),
    ("unknown field", {"obj": {**order("BID", 1, 1), "colour": "red"}}, 400, "MALFORMED_REQUEST"),
    ("missing field", {"obj": {"market_id": BTC, "side": "BID"}}, 400, "MALFORMED_REQUEST"),
    ("bool as int", {"obj": {**order("BID", 1, 1), "price": True}}, 400, "MALFORMED_REQUEST"),
    ("negative size", {"obj": {**order("BID", 1, 1), "size_base": -1}}, 400, "MALFORMED_REQUEST"),
    ("bad enum", {"obj": {**order("BID", 1, 1), "side": "BUY"}}, 400, "MALFORMED_REQUEST"),
    ("unknown market", {"obj": order("BID", 1, 1, market_id=9)}, 404, "UNKNOWN_MARKET"),
    (
        "wrong signature",
        {"override_headers": {"X-PD-Signature": str(TAKER_KEY.sign_message(b"other"))}},
        401,
        "AUTH_BAD_SIGNATURE",
    ),
    (
        "garbage signature",
        {"override_headers": {"X-PD-Signature": "abc"}},
        401,
        "AUTH_BAD_SIGNATURE",
    ),
    ("stale timestamp", {"timestamp_ms": 1_600_000_000_000}, 401, "AUTH_STALE_TIMESTAMP"),
    ("future timestamp", {"timestamp_ms": 4_000_000_000_000}, 401, "AUTH_STALE_TIMESTAMP"),
    ("bad nonce", {"override_headers": {"X-PD-Nonce": "has space"}}, 401, "AUTH_MISSING"),
    ("no headers", {"override_headers": {"X-PD-Pubkey": ""}}, 401, "AUTH_MISSING"),
]


@pytest.mark.parametrize(
    ("name", "case", "status", "code"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS]
)
async def test_bad_input_is_refused_with_its_code_and_changes_nothing(
    api: Api, runner: EngineRunner, name: str, case: dict[str, Any], status: int, code: str
) -> None:
    # Arrange
    await api.post(MAKER_KEY, "/v1/orders", order("ASK", 100, 1))
    before = engine_state(runner)
    obj = case.pop("obj", order("BID", 100, 1))
    # Act
    got_status, body, _ = await api.post(MAKER_KEY, "/v1/orders", obj, **case)
    # Assert
    assert (got_status, body["code"]) == (status, code), body
    assert isinstance(body["message"], str) and body["message"]
    assert engine_state(runner) == before


async def test_replayed_nonce_is_refused(api: Api, runner: EngineRunner) -> None:
    status, _first, _ = await api.post(
        MAKER_KEY, "/v1/orders", order("ASK", 100, 1), nonce="same-nonce"
    )
    assert status == 200
    before = engine_state(runner)
    status, second, _ = await api.post(
        MAKER_KEY, "/v1/orders", order("ASK", 100, 1), nonce="same-nonce"
    )
    assert (status, second["code"]) == (401, "AUTH_REPLAYED_NONCE")
    assert engine_state(runner) == before


async def test_unbound_key_is_forbidden(api: Api, runner: EngineRunner) -> None:
    before = engine_state(runner)
    status, body, _ = await api.post(STRANGER_KEY, "/v1/orders", order("ASK", 100, 1))
    assert (status, body["code"]) == (403, "AUTH_UNKNOWN_KEY")
    assert engine_state(runner) == before


async def test_oversized_batch_and_bad_item_refuse_the_whole_batch(
    api: Api, runner: EngineRunner
) -> None:
    before = engine_state(runner)
    status, body, _ = await api.post(
        MAKER_KEY, "/v1/orders/batch", {"orders": [order("BID", 1, 1)] * 51}
    )
    assert (status, body["code"]) == (400, "BATCH_TOO_LARGE")
    items = [order("BID", 1, 1), order("BID", 1, 1, market_id=77)]
    status, body, _ = await api.post(MAKER_KEY, "/v1/orders/batch", {"orders": items})
    assert (status, body["code"]) == (404, "UNKNOWN_MARKET")
    assert engine_state(runner) == before


async def test_unknown_order_and_someone_elses_order(api: Api, runner: EngineRunner) -> None:
    _, mine, _ = await api.post(MAKER_KEY, "/v1/orders", order("ASK", 100, 1))
    before = engine_state(runner)
    for key, obj in (
        (MAKER_KEY, {"market_id": BTC, "order_id": 999_999}),
        (MAKER_KEY, {"market_id": BTC, "client_order_id": 42}),
        (TAKER_KEY, {"market_id": BTC, "order_id": mine["order_id"]}),
    ):
        status, body, _ = await api.post(key, "/v1/orders/cancel", obj)
        assert (status, body["code"]) == (404, "UNKNOWN_ORDER"), body
    status, body, _ = await api.post(
        TAKER_KEY,
        "/v1/orders/amend",
        {
            "market_id": BTC,
            "order_id": mine["order_id"],
            "new_price": 100 * 10**6,
            "new_size_base": 10**9,
        },
    )
    assert (status, body["code"]) == (404, "UNKNOWN_ORDER")
    status, body = await api.get(None, "/v1/markets/9/book")
    assert (status, body["code"]) == (404, "UNKNOWN_MARKET")
    status, body = await api.get(None, "/v1/markets/1/book?depth=zero")
    assert (status, body["code"]) == (400, "MALFORMED_REQUEST")
    assert engine_state(runner) == before


async def test_public_market_data_needs_no_key(api: Api) -> None:
    status, markets = await api.get(None, "/v1/markets")
    assert status == 200
    assert [
        (m["market_id"], m["symbol"], m["tick_size"], m["lot_size"]) for m in markets["markets"]
    ] == [
        (BTC, "BTC-PERP", 1_000_000, 10**9),
        (ETH, "ETH-PERP", 1_000_000, 10**9),
    ]
    status, ticker = await api.get(None, f"/v1/markets/{ETH}/ticker")
    assert status == 200 and ticker["best_bid_ticks"] == 0
    status, body = await api.get(None, "/v1/orders/open")
    assert (status, body["code"]) == (401, "AUTH_MISSING")
    assert MAKER_OWNER  # bound in the config used by the fixture


async def test_balances_margin_funding_and_prices(api: Api) -> None:
    # Arrange: a trade gives both owners a position and fees
    await api.post(MAKER_KEY, "/v1/orders", order("ASK", 100, 1))
    await api.post(TAKER_KEY, "/v1/orders", order("BID", 100, 1, time_in_force="IOC"))
    # Act
    status, balances = await api.get(TAKER_KEY, "/v1/balances")
    _, margin = await api.get(TAKER_KEY, "/v1/margin")
    _, funding = await api.get(TAKER_KEY, "/v1/funding-payments")
    _, prices = await api.get(None, f"/v1/markets/{BTC}/prices")
    # Assert
    assert status == 200
    [taker_sub0] = balances["balances"]  # TAKER_KEY is limited to sub-account 0
    assert taker_sub0["sub_account_id"] == 0 and taker_sub0["fees_paid_quote"] > 0
    assert taker_sub0["collateral_quote"] == 10**12 - taker_sub0["fees_paid_quote"]
    _, maker_balances = await api.get(MAKER_KEY, "/v1/balances")  # every sub-account
    by_sub = {b["sub_account_id"]: b for b in maker_balances["balances"]}
    assert set(by_sub) == {0, 3}
    assert by_sub[3]["collateral_quote"] == 10**12  # untouched sub-account
    sub0 = next(m for m in margin["margin"] if m["sub_account_id"] == 0)
    assert sub0["initial_margin_quote"] > 0 and not sub0["below_maintenance"]
    assert sub0["free_collateral_quote"] == sub0["equity_quote"] - sub0["initial_margin_quote"]
    assert funding == {"funding_payments": []}  # no funding interval has closed yet
    assert prices["index_price"] == 100 * 10**6 and prices["oracle_valid"] is True
    assert prices["status"] == "ACTIVE"


async def test_a_key_limited_to_one_sub_account_acts_and_sees_only_it(
    api: Api, runner: EngineRunner
) -> None:
    # Arrange: the taker's sub-account 0 (TAKER_KEY) and 3 (SUB3_KEY) each rest an order
    _, on_sub0, _ = await api.post(TAKER_KEY, "/v1/orders", order("BID", 96, 1))
    _, on_sub3, _ = await api.post(SUB3_KEY, "/v1/orders", order("BID", 97, 1))
    assert on_sub3["events"][0]["sub_account_id"] == 3  # no sub-account named: the key's
    before = engine_state(runner)
    # Act / Assert: the sub-3 key can neither name sub-account 0 nor touch its order
    status, body, _ = await api.post(SUB3_KEY, "/v1/orders", order("BID", 96, 1, sub_account_id=0))
    assert (status, body["code"]) == (403, "AUTH_WRONG_SUB_ACCOUNT")
    status, body, _ = await api.post(
        SUB3_KEY, "/v1/orders/cancel", {"market_id": BTC, "order_id": on_sub0["order_id"]}
    )
    assert (status, body["code"]) == (404, "UNKNOWN_ORDER")
    status, body, _ = await api.post(SUB3_KEY, "/v1/orders/cancel-all", {"sub_account_id": 0})
    assert (status, body["code"]) == (403, "AUTH_WRONG_SUB_ACCOUNT")
    assert engine_state(runner) == before
    _, opened = await api.get(SUB3_KEY, "/v1/orders/open")
    assert [o["order_id"] for o in opened["orders"]] == [on_sub3["order_id"]]
    _, history = await api.get(SUB3_KEY, "/v1/orders/history")
    assert {e.get("order_id") for e in history["events"]} == {on_sub3["order_id"]}
    _, balances = await api.get(SUB3_KEY, "/v1/balances")
    assert [b["sub_account_id"] for b in balances["balances"]] == [3]
    # cancel-all with no scope cancels the key's sub-account only
    _, canceled, _ = await api.post(SUB3_KEY, "/v1/orders/cancel-all", {})
    assert canceled["canceled_order_ids"] == [on_sub3["order_id"]]
    _, still = await api.get(TAKER_KEY, "/v1/orders/open")
    assert [o["order_id"] for o in still["orders"]] == [on_sub0["order_id"]]
