"""Rate limits (429 + Retry-After, per key) and the OpenAPI document (validated)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import BTC, MAKER_KEY, TAKER_KEY, Api, api_config, order
from openapi_spec_validator import validate

from exchange.api.app import create_app
from exchange.engine.sequencer import EngineRunner

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


class FrozenClock:
    """Server time that moves only when told (token refills become exact)."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


@pytest.fixture
async def slow_api(runner: EngineRunner) -> AsyncIterator[tuple[Api, FrozenClock]]:
    import time

    clock = FrozenClock(time.time_ns())
    config = api_config(
        rate_limit_burst=3,
        rate_limit_per_second=2,
        public_rate_limit_burst=2,
        public_rate_limit_per_second=1,
    )
    async with TestClient(TestServer(create_app(config, runner, clock_ns=clock))) as client:
        yield Api(client), clock


async def test_key_bucket_gives_429_with_retry_after_then_refills(
    slow_api: tuple[Api, FrozenClock], runner: EngineRunner
) -> None:
    api, clock = slow_api
    for i in range(3):
        status, _, _ = await api.post(MAKER_KEY, "/v1/orders", order("ASK", 100 + i, 1))
        assert status == 200
    before = runner.engine.core.next_seq
    status, body, headers = await api.post(MAKER_KEY, "/v1/orders", order("ASK", 104, 1))
    assert (status, body["code"]) == (429, "RATE_LIMITED")
    assert headers["Retry-After"] == "1"  # half a second to one token, rounded up
    assert runner.engine.core.next_seq == before
    # another key has its own bucket
    status, _, _ = await api.post(TAKER_KEY, "/v1/orders", order("BID", 96, 1))
    assert status == 200
    clock.now_ns += 500_000_000  # one token back
    status, _, _ = await api.post(MAKER_KEY, "/v1/orders", order("ASK", 104, 1))
    assert status == 200
    # a batch costs one token per item
    clock.now_ns += 1_000_000_000  # two tokens back
    status, body, _ = await api.post(
        MAKER_KEY, "/v1/orders/batch", {"orders": [order("ASK", 105, 1)] * 3}
    )
    assert (status, body["code"]) == (429, "RATE_LIMITED")


async def test_malformed_batch_is_authenticated_first_and_costs_one_token(
    slow_api: tuple[Api, FrozenClock],
) -> None:
    # Arrange
    api, _ = slow_api
    bad_signature = {"X-PD-Signature": str(MAKER_KEY.sign_message(b"other"))}
    # Act / Assert: a bad signature is reported before the body's shape
    status, body, _ = await api.post(
        MAKER_KEY, "/v1/orders/batch", None, raw_body=b"{not json", override_headers=bad_signature
    )
    assert (status, body["code"]) == (401, "AUTH_BAD_SIGNATURE")
    status, body, _ = await api.post(
        MAKER_KEY, "/v1/orders/cancel-batch", None, raw_body=b"{not json"
    )
    assert (status, body["code"]) == (400, "MALFORMED_REQUEST")
    # burst 3: the malformed batch took one token, two are left
    for i in range(2):
        status, _, _ = await api.post(MAKER_KEY, "/v1/orders", order("ASK", 100 + i, 1))
        assert status == 200
    status, body, _ = await api.post(MAKER_KEY, "/v1/orders/batch", None, raw_body=b"[")
    assert (status, body["code"]) == (429, "RATE_LIMITED")


async def test_public_bucket_per_address(slow_api: tuple[Api, FrozenClock]) -> None:
    api, _ = slow_api
    assert (await api.get(None, f"/v1/markets/{BTC}/book"))[0] == 200
    assert (await api.get(None, "/v1/markets"))[0] == 200
    status, body = await api.get(None, "/v1/markets")
    assert (status, body["code"]) == (429, "RATE_LIMITED")


async def test_openapi_document_is_valid_and_lists_every_route(api: Api) -> None:
    status, doc = await api.get(None, "/openapi.json")
    assert status == 200
    validate(doc)  # raises on an invalid OpenAPI 3.1 document
    routes = {
        (r.method, r.resource.canonical)  # type: ignore[union-attr]
        for r in api.client.app.router.routes()  # type: ignore[union-attr]
        if r.method != "HEAD"
    }
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    undocumented = {r for r in routes if r[1] not in ("/openapi.json", "/ws")} - documented
    assert undocumented == set()


async def test_unknown_route_and_method_are_json_errors(api: Api) -> None:
    resp = await api.client.get("/v1/nope")
    assert resp.status == 404 and (await resp.json())["code"] == "NOT_FOUND"
    resp = await api.client.delete("/v1/orders")
    assert resp.status == 405 and (await resp.json())["code"] == "METHOD_NOT_ALLOWED"


async def test_oversized_body_is_refused(api: Api) -> None:
    status, body, _ = await api.post(
        MAKER_KEY, "/v1/orders", None, raw_body=b"{" + b" " * 300_000 + b"}"
    )
    assert (status, body["code"]) == (413, "BODY_TOO_LARGE")


async def test_websocket_subscriptions_spend_the_public_bucket(
    slow_api: tuple[Api, FrozenClock],
) -> None:
    api, _ = slow_api
    ws = await api.client.ws_connect("/ws")
    answers = []
    for i in range(3):
        await ws.send_json({"op": "subscribe", "channel": "ticker", "market_id": BTC, "id": i})
        while True:
            msg = await ws.receive_json()
            if msg.get("id") == i:
                answers.append(msg)
                break
    assert [("result" in a) for a in answers] == [True, True, False]
    assert answers[2]["error"]["code"] == "RATE_LIMITED"
    await ws.close()


async def test_a_subscriber_too_far_behind_is_disconnected(runner: EngineRunner) -> None:
    from aiohttp import WSMsgType

    config = api_config(ws_send_queue_max=2)
    async with TestClient(TestServer(create_app(config, runner))) as client:
        api = Api(client)
        ws = await client.ws_connect("/ws")
        for i, channel in enumerate(("book", "trades", "ticker")):
            await ws.send_json({"op": "subscribe", "channel": channel, "market_id": BTC, "id": i})
        # one trade makes three frames for this session at once (delta, trade, ticker)
        await api.post(MAKER_KEY, "/v1/orders", order("ASK", 100, 1))
        await api.post(TAKER_KEY, "/v1/orders", order("BID", 100, 1, time_in_force="IOC"))
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type != WSMsgType.TEXT:
                break
        assert (msg.type, msg.data, msg.extra) == (WSMsgType.CLOSE, 1008, "slow consumer")
