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


@pytest.mark.parametrize("compress", [0, 15], ids=["plain", "permessage-deflate"])
async def test_answers_ready_together_arrive_as_separate_messages_in_order(
    api: Api, compress: int
) -> None:
    # Arrange: a logged-in session, with or without compression negotiated (the server
    # writes the frames of one loop turn itself only when they are uncompressed)
    ws = await api.client.ws_connect("/ws", compress=compress)
    assert ws.compress == compress
    await ws.send_json(login_msg(MAKER_KEY))
    assert "result" in await recv(ws)
    # Act: 40 single orders and a batch (a bigger frame: a 2-byte length) without waiting,
    # so their answers become ready in the same few group commits (IOC: nothing rests)
    for i in range(40):
        ioc = order("BID", 97, 1, time_in_force="IOC")
        await ws.send_json({"op": "place", "id": i + 1, "params": ioc})
    batch = [order("BID", 98, 1, client_order_id=1000 + k, time_in_force="IOC") for k in range(20)]
    await ws.send_json({"op": "place_batch", "id": 41, "params": {"orders": batch}})
    answers = [await recv(ws) for _ in range(41)]
    await ws.close()
    # Assert: one message per request, in request order, each whole
    assert [a["id"] for a in answers] == list(range(1, 42))
    assert all(a["result"]["status"] == "ACCEPTED" for a in answers[:40]), answers[:40]
    results = answers[40]["result"]["results"]
    assert [r["client_order_id"] for r in results] == [1000 + k for k in range(20)]
