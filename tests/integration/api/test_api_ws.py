"""WebSocket against a real engine: book rebuilt from snapshot + deltas, order entry, safety.

The rebuilt book is compared with the engine's own book (read on its thread between
batches would race, so the comparison waits until the runner is idle: every command of the
test has been acknowledged).
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import orjson
import pytest
from aiohttp import ClientWebSocketResponse
from api_support import BTC, ETH, MAKER_KEY, MAKER_OWNER, TAKER_KEY, Api, engine_levels, order

from exchange.api.ws import signed_login
from exchange.engine.sequencer import EngineRunner

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class Book:
    """A client-side L2 book: snapshot, then deltas checked for gaps."""

    def __init__(self) -> None:
        self.seq = -1
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}

    def on(self, msg: dict[str, Any]) -> None:
        if msg["type"] == "snapshot":
            self.seq = msg["book_seq"]
            self.bids = dict(map(tuple, msg["bids"]))  # type: ignore[arg-type]
            self.asks = dict(map(tuple, msg["asks"]))  # type: ignore[arg-type]
            return
        assert msg["book_seq"] == self.seq + 1, "gap in book deltas"
        self.seq = msg["book_seq"]
        for side, levels in ((self.bids, msg["bids"]), (self.asks, msg["asks"])):
            for price, lots in levels:
                if lots:
                    side[price] = lots
                else:
                    side.pop(price, None)

    def levels(self) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        return sorted(self.bids.items(), reverse=True), sorted(self.asks.items())


async def recv(ws: ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    return orjson.loads(await asyncio.wait_for(ws.receive_str(), timeout))  # type: ignore[no-any-return]


async def until(
    ws: ClientWebSocketResponse, pred: Any, sink: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    while True:
        msg = await recv(ws)
        if sink is not None:
            sink.append(msg)
        if pred(msg):
            return msg


def login_msg(
    key: Any, cancel_on_disconnect: bool = False, nonce: str = "login1"
) -> dict[str, Any]:
    ts = time.time_ns() // 1_000_000
    return {"id": "login", **signed_login(key, ts, nonce, cancel_on_disconnect)}


async def test_book_rebuilt_from_snapshot_and_deltas_equals_engine_book(
    api: Api, runner: EngineRunner
) -> None:
    # Arrange: some resting orders before the subscription (they come in the snapshot)
    rng = random.Random(7)
    for _ in range(10):
        await api.post(
            MAKER_KEY,
            "/v1/orders",
            order(rng.choice(["BID", "ASK"]), rng.randint(96, 104), rng.randint(1, 5)),
        )
    ws = await api.client.ws_connect("/ws")
    await ws.send_json({"op": "subscribe", "channel": "book", "market_id": BTC, "id": 1})
    book = Book()
    ack = await recv(ws)
    assert ack == {"id": 1, "result": {"subscribed": "book"}}
    book.on(await recv(ws))
    # Act: a seeded random flow over REST from two owners: places that cross, cancels, amends
    live: list[int] = []
    for i in range(150):
        key = MAKER_KEY if i % 2 else TAKER_KEY
        action = rng.random()
        if action < 0.6 or not live:
            body = order(rng.choice(["BID", "ASK"]), rng.randint(96, 104), rng.randint(1, 5))
            _, res, _ = await api.post(key, "/v1/orders", body)
            if res.get("status") == "ACCEPTED":
                live.append(res["order_id"])
        elif action < 0.85:
            oid = live.pop(rng.randrange(len(live)))
            await api.post(MAKER_KEY, "/v1/orders/cancel", {"market_id": BTC, "order_id": oid})
            await api.post(TAKER_KEY, "/v1/orders/cancel", {"market_id": BTC, "order_id": oid})
        else:
            oid = rng.choice(live)
            amend = {
                "market_id": BTC,
                "order_id": oid,
                "new_price": rng.randint(96, 104) * 10**6,
                "new_size_base": rng.randint(1, 5) * 10**9,
            }
            await api.post(MAKER_KEY, "/v1/orders/amend", amend)
            await api.post(TAKER_KEY, "/v1/orders/amend", amend)
    expected = await engine_levels(runner, BTC)
    # Assert: drain deltas until the rebuilt book's seq reaches the server's
    _, server_book = await api.get(None, f"/v1/markets/{BTC}/book?depth=1000")
    while book.seq < server_book["book_seq"]:
        msg = await recv(ws)
        if msg.get("channel") == "book":
            book.on(msg)
    assert book.seq == server_book["book_seq"] > 0
    assert book.levels() == ([tuple(x) for x in expected[0]], [tuple(x) for x in expected[1]])
    await ws.close()


async def test_order_entry_over_websocket_and_account_channel(
    api: Api, runner: EngineRunner
) -> None:
    ws = await api.client.ws_connect("/ws")
    await ws.send_json({"op": "place", "id": 1, "params": order("BID", 99, 1)})
    assert (await recv(ws))["error"]["code"] == "AUTH_MISSING"
    await ws.send_json(login_msg(MAKER_KEY))
    assert (await recv(ws)) == {
        "id": "login",
        "result": {"owner_id": MAKER_OWNER, "cancel_on_disconnect": False},
    }
    await ws.send_json({"op": "subscribe", "channel": "account", "id": 2})
    assert (await recv(ws))["result"] == {"subscribed": "account"}

    await ws.send_json({"op": "place", "id": 3, "params": order("BID", 99, 2, client_order_id=9)})
    seen: list[dict[str, Any]] = []
    placed = await until(ws, lambda m: m.get("id") == 3, seen)
    assert placed["result"]["status"] == "ACCEPTED"
    oid = placed["result"]["order_id"]
    await ws.send_json(
        {
            "op": "place_batch",
            "id": 4,
            "params": {"orders": [order("ASK", 104, 1), order("ASK", 105, 1)]},
        }
    )
    batch = await until(ws, lambda m: m.get("id") == 4, seen)
    assert [r["status"] for r in batch["result"]["results"]] == ["ACCEPTED", "ACCEPTED"]
    await ws.send_json({"op": "cancel", "id": 5, "params": {"market_id": BTC, "order_id": oid}})
    canceled = await until(ws, lambda m: m.get("id") == 5, seen)
    assert canceled["result"]["status"] == "ACCEPTED"
    await ws.send_json({"op": "cancel", "id": 6, "params": {"market_id": BTC, "order_id": oid}})
    assert (await until(ws, lambda m: m.get("id") == 6, seen))["error"]["code"] == "UNKNOWN_ORDER"
    await ws.send_json({"op": "cancel_all", "id": 7, "params": {}})
    all_canceled = await until(ws, lambda m: m.get("id") == 7, seen)
    assert len(all_canceled["result"]["canceled_order_ids"]) == 2
    await ws.send_json({"op": "place", "id": 8, "params": order("BID", 1, 1, market_id=99)})
    assert (await until(ws, lambda m: m.get("id") == 8, seen))["error"]["code"] == "UNKNOWN_MARKET"
    await ws.send_str("{oops")
    assert (await recv(ws))["error"]["code"] == "MALFORMED_REQUEST"
    # the account channel carried this owner's order events
    while not any(
        m.get("channel") == "account" and any(e["type"] == "OrderCanceled" for e in m["events"])
        for m in seen
    ):
        seen.append(await recv(ws))
    account_types = {e["type"] for m in seen if m.get("channel") == "account" for e in m["events"]}
    assert {"OrderAccepted", "OrderRested", "OrderCanceled"} <= account_types
    await ws.close()


async def test_cancel_on_disconnect_cancels_only_when_opted_in(
    api: Api, runner: EngineRunner
) -> None:
    # Arrange: one session opted in (maker), one not (taker)
    opted = await api.client.ws_connect("/ws")
    await opted.send_json(login_msg(MAKER_KEY, cancel_on_disconnect=True, nonce="cod1"))
    assert (await recv(opted))["result"]["cancel_on_disconnect"] is True
    plain = await api.client.ws_connect("/ws")
    await plain.send_json(login_msg(TAKER_KEY, nonce="cod2"))
    await recv(plain)
    await opted.send_json({"op": "place", "id": 1, "params": order("ASK", 104, 1)})
    assert (await until(opted, lambda m: m.get("id") == 1))["result"]["status"] == "ACCEPTED"
    await plain.send_json({"op": "place", "id": 1, "params": order("BID", 96, 1)})
    assert (await until(plain, lambda m: m.get("id") == 1))["result"]["status"] == "ACCEPTED"
    # Act
    await opted.close()
    await plain.close()
    # Assert: the server cancels after it sees the close; poll briefly
    for _ in range(100):
        _, maker_open = await api.get(MAKER_KEY, "/v1/orders/open")
        if not maker_open["orders"]:
            break
        await asyncio.sleep(0.02)
    assert maker_open["orders"] == []
    _, taker_open = await api.get(TAKER_KEY, "/v1/orders/open")
    assert len(taker_open["orders"]) == 1


async def test_dead_man_timer_fires_unless_refreshed(api: Api) -> None:
    ws = await api.client.ws_connect("/ws")
    await ws.send_json(login_msg(MAKER_KEY, nonce="dm1"))
    await recv(ws)
    await ws.send_json({"op": "place", "id": 1, "params": order("ASK", 104, 1)})
    await until(ws, lambda m: m.get("id") == 1)
    await ws.send_json({"op": "dead_man", "id": 2, "timeout_ms": 300})
    assert (await until(ws, lambda m: m.get("id") == 2))["result"] == {"timeout_ms": 300}
    for _ in range(3):  # refreshed in time: nothing fires
        await asyncio.sleep(0.15)
        await ws.send_json({"op": "dead_man", "timeout_ms": 300})
    _, still = await api.get(MAKER_KEY, "/v1/orders/open")
    assert len(still["orders"]) == 1
    fired = await until(ws, lambda m: m.get("channel") == "dead_man")
    assert len(fired["canceled_order_ids"]) == 1
    _, after = await api.get(MAKER_KEY, "/v1/orders/open")
    assert after["orders"] == []
    await ws.close()


async def test_subscribe_refusals_and_public_channels(api: Api) -> None:
    ws = await api.client.ws_connect("/ws")
    await ws.send_json({"op": "subscribe", "channel": "book", "market_id": 42, "id": 1})
    assert (await recv(ws))["error"]["code"] == "UNKNOWN_MARKET"
    await ws.send_json({"op": "subscribe", "channel": "account", "id": 2})
    assert (await recv(ws))["error"]["code"] == "AUTH_MISSING"
    await ws.send_json({"op": "subscribe", "channel": "trades", "market_id": ETH, "id": 3})
    await recv(ws)
    await ws.send_json({"op": "subscribe", "channel": "ticker", "market_id": ETH, "id": 4})
    await recv(ws)
    assert (await recv(ws))["channel"] == "ticker"
    await api.post(MAKER_KEY, "/v1/orders", order("ASK", 100, 2, market_id=ETH))
    await api.post(
        TAKER_KEY, "/v1/orders", order("BID", 100, 1, market_id=ETH, time_in_force="IOC")
    )
    trades = await until(ws, lambda m: m.get("channel") == "trades")
    assert [(t["price_ticks"], t["num_base_lots"]) for t in trades["trades"]] == [(100, 1)]
    assert "maker_owner_id" not in trades["trades"][0]
    ticker = await until(ws, lambda m: m.get("channel") == "ticker" and m["last_trade_lots"] == 1)
    assert ticker["best_ask_ticks"] == 100 and ticker["best_ask_lots"] == 1
    await ws.close()


async def test_account_channel_of_a_sub_account_key_carries_only_that_sub_account(
    api: Api,
) -> None:
    from api_support import SUB3_KEY

    ws = await api.client.ws_connect("/ws")
    await ws.send_json(login_msg(SUB3_KEY, nonce="sub3"))
    assert (await recv(ws))["result"]["owner_id"] == 22
    await ws.send_json({"op": "subscribe", "channel": "account", "id": 1})
    await recv(ws)
    await api.post(TAKER_KEY, "/v1/orders", order("BID", 96, 1))  # same owner, sub-account 0
    _, mine, _ = await api.post(SUB3_KEY, "/v1/orders", order("BID", 97, 1))
    msg = await until(ws, lambda m: m.get("channel") == "account")
    assert {e["order_id"] for e in msg["events"]} == {mine["order_id"]}
    await ws.close()
