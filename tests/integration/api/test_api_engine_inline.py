"""The inline engine (``InlineEngine``: execute on the API's loop, commit on a writer
thread) behind the real API: orders over the websocket and REST are acknowledged once
durable, a book subscriber sees them, and a restart on the same journal recovers them.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import (
    BTC,
    MAKER_KEY,
    Api,
    api_config,
    order,
    set_up_journal,
    ws_login,
)

from exchange.api.app import create_app
from exchange.engine.inline import InlineEngine
from exchange.engine.sequencer import Engine

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_websocket_orders_through_the_inline_engine_are_durable(tmp_path: Path) -> None:
    # Arrange: the API over an inline engine, a book subscriber, a logged-in trader
    config = set_up_journal(tmp_path)
    inline = InlineEngine(Engine(config))
    app = create_app(api_config(), inline)
    try:
        async with TestClient(TestServer(app)) as client:
            api = Api(client)
            book = await client.ws_connect("/ws")
            await book.send_str(
                orjson.dumps({"op": "subscribe", "channel": "book", "market_id": BTC}).decode()
            )
            await book.receive_str()  # ack
            await book.receive_str()  # snapshot
            ws = await client.ws_connect("/ws")
            await ws_login(ws, "inline-login")
            # Act: ten single places over the websocket, sent together, and one over REST
            for i in range(10):
                params = order("BID", 95 + i % 5, 1)
                await ws.send_str(
                    orjson.dumps({"op": "place", "id": 100 + i, "params": params}).decode()
                )
            answers = [
                orjson.loads(await asyncio.wait_for(ws.receive_str(), 10)) for _ in range(10)
            ]
            status, placed, _ = await api.post(MAKER_KEY, "/v1/orders", order("ASK", 101, 3))
            deltas = [orjson.loads(await asyncio.wait_for(book.receive_str(), 10))]
            while not deltas[-1]["asks"]:  # deltas come per batch, the top levels only
                deltas.append(orjson.loads(await asyncio.wait_for(book.receive_str(), 10)))
            await ws.close()
            await book.close()
            acked_seq = max(e["seq"] for a in answers for e in a["result"]["events"])
            # Assert: every order acknowledged, in order, already in the journal
            assert [a["id"] for a in answers] == list(range(100, 110))
            assert all(a["result"]["status"] == "ACCEPTED" for a in answers), answers
            assert status == 200 and placed["status"] == "ACCEPTED", placed
            assert inline.engine.journal.last_seq >= acked_seq
            assert [d["book_seq"] for d in deltas] == list(range(1, len(deltas) + 1))
            assert deltas[-1]["asks"] == [[101, 3]]
    finally:
        inline.close()
    # Assert: a restart on the same journal has the book the API acknowledged
    again = Engine(config)
    try:
        book_depth = again.core.core.books[BTC]
        assert [tuple(level) for level in book_depth.depth(0, 20)] == [
            (price, 2) for price in range(99, 94, -1)
        ]
        assert [tuple(level) for level in book_depth.depth(1, 20)] == [(101, 3)]
    finally:
        again.close()
