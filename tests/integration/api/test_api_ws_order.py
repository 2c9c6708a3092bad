"""Websocket requests of one session reach the engine in frame order, whatever their op
(every op is checked and queued for the engine when its frame is read)."""

from __future__ import annotations

from typing import Any

import pytest
from api_support import BTC, MAKER_KEY, Api, order
from test_api_ws import login_msg, recv

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def test_frames_sent_back_to_back_run_in_frame_order(api: Api) -> None:
    # Arrange: a resting bid with client id 5
    ws = await api.client.ws_connect("/ws")
    await ws.send_json(login_msg(MAKER_KEY))
    assert "result" in await recv(ws)
    await ws.send_json({"op": "place", "id": 1, "params": order("BID", 97, 1, client_order_id=5)})
    first = await recv(ws)
    assert first["result"]["status"] == "ACCEPTED", first
    # Act: without waiting, cancel it by client id, place a new one with the same client id,
    # cancel that one too and place a third: each step needs the one before it done
    frames: list[dict[str, Any]] = [
        {"op": "cancel", "id": 2, "params": {"market_id": BTC, "client_order_id": 5}},
        {"op": "place", "id": 3, "params": order("BID", 98, 1, client_order_id=5)},
        {
            "op": "cancel_batch",
            "id": 4,
            "params": {"cancels": [{"market_id": BTC, "client_order_id": 5}]},
        },
        {
            "op": "place_batch",
            "id": 5,
            "params": {"orders": [order("BID", 99, 1, client_order_id=5)]},
        },
        {"op": "cancel_all", "id": 6, "params": {"market_id": BTC}},
    ]
    for frame in frames:
        await ws.send_json(frame)
    answers: dict[int, dict[str, Any]] = {}
    while len(answers) < len(frames):
        msg = await recv(ws)
        answers[msg["id"]] = msg
    await ws.close()
    # Assert: every step succeeded, so the engine saw them in this order
    assert answers[2]["result"]["status"] == "ACCEPTED", answers[2]
    assert answers[3]["result"]["status"] == "ACCEPTED", answers[3]
    assert answers[4]["result"]["results"][0]["order_id"] == answers[3]["result"]["order_id"]
    placed = answers[5]["result"]["results"][0]
    assert placed["status"] == "ACCEPTED", placed
    assert answers[6]["result"] == {"canceled_order_ids": [placed["order_id"]]}
