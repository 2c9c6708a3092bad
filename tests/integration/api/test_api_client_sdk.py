"""The SDK against a real server: typed REST, websocket book with gap resync and reconnect."""

from __future__ import annotations

import asyncio
import random

import pytest
from api_support import BTC, MAKER_KEY, TAKER_KEY, TICK, Api, engine_levels, order

from exchange.api.ws import HUB_KEY
from exchange.client import ApiRequestError, PerpdexRest, PerpdexWs
from exchange.engine.sequencer import EngineRunner

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


async def wait_for_seq(ws: PerpdexWs, market_id: int, rest: PerpdexRest) -> None:
    target = (await rest.book(market_id)).book_seq
    for _ in range(500):
        if ws.books[market_id].book_seq >= target:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"book_seq stuck at {ws.books[market_id].book_seq}, expected {target}")


async def flow(rest_clients: list[PerpdexRest], rng: random.Random, n: int) -> None:
    for i in range(n):
        client = rest_clients[i % len(rest_clients)]
        side = rng.choice(["BID", "ASK"])
        await client.place(**order(side, rng.randint(97, 103), rng.randint(1, 3)))


async def test_sdk_rest_and_book_stream_match_the_engine(api: Api, runner: EngineRunner) -> None:
    base = str(api.client.make_url("/"))
    async with (
        PerpdexRest(base, MAKER_KEY) as maker,
        PerpdexRest(base, TAKER_KEY) as taker,
        PerpdexRest(base) as public,
    ):
        markets = await public.markets()
        assert [m.symbol for m in markets] == ["BTC-PERP", "ETH-PERP"] and markets[
            0
        ].tick_size == TICK
        stream = PerpdexWs(str(api.client.make_url("/ws")))
        await stream.connect()
        book = await stream.subscribe_book(BTC)
        await stream.subscribe("trades", BTC)
        await flow([maker, taker], random.Random(3), 60)
        placed = await maker.place(**order("ASK", 103, 1, client_order_id=77))
        assert placed.accepted and placed.client_order_id == 77
        rejected = await taker.place(**order("BID", 103, 1, time_in_force="POST_ONLY"))
        assert not rejected.accepted and rejected.reject_code_name == "POST_ONLY_WOULD_CROSS"
        canceled = await maker.cancel(BTC, order_id=placed.order_id)
        assert canceled.accepted
        with pytest.raises(ApiRequestError) as err:
            await maker.cancel(BTC, order_id=10**9)
        assert (err.value.status, err.value.code) == (404, "UNKNOWN_ORDER")
        await wait_for_seq(stream, BTC, public)
        bids, asks = await engine_levels(runner, BTC)
        assert book.levels() == (bids, asks)
        assert stream.resyncs == 0
        assert [b.sub_account_id for b in await maker.balances()] == [0, 3]
        assert all(m["equity_quote"] > 0 for m in await taker.margin())
        assert await taker.funding_payments() == []
        assert (await public.prices(BTC)).index_price == 100 * TICK
        assert {p["market_id"] for p in await taker.positions()} <= {BTC}
        trades = await public.trades(BTC)
        assert trades and all(t.market_id == BTC for t in trades)
        assert not stream.messages.empty()  # the trades channel delivered
        await stream.close()


async def test_sdk_detects_a_gap_and_resyncs(api: Api, runner: EngineRunner) -> None:
    base = str(api.client.make_url("/"))
    async with PerpdexRest(base, MAKER_KEY) as maker:
        stream = PerpdexWs(str(api.client.make_url("/ws")))
        await stream.connect()
        book = await stream.subscribe_book(BTC)
        await maker.place(**order("BID", 98, 1))
        await wait_for_seq(stream, BTC, maker)
        # a delta that skips one sequence number, as if a frame had been lost
        stream.on_message(
            {
                "channel": "book",
                "type": "delta",
                "market_id": BTC,
                "book_seq": book.book_seq + 2,
                "bids": [[99, 5]],
                "asks": [],
            }
        )
        assert stream.resyncs == 1 and book.book_seq == -1
        await maker.place(**order("BID", 97, 2))
        await wait_for_seq(stream, BTC, maker)
        assert book.levels() == await engine_levels(runner, BTC)
        assert 99 not in book.bids
        await stream.close()


async def test_sdk_reconnects_logs_in_again_and_resubscribes(
    api: Api, runner: EngineRunner
) -> None:
    base = str(api.client.make_url("/"))
    async with PerpdexRest(base, TAKER_KEY) as taker:
        stream = PerpdexWs(str(api.client.make_url("/ws")), MAKER_KEY, backoff_s=(0.01,))
        await stream.connect()
        book = await stream.subscribe_book(BTC)
        first = await stream.place(**order("ASK", 102, 1))
        assert first.accepted
        # the server drops every session
        for session in list(api.client.app[HUB_KEY].sessions):  # type: ignore[index]
            await session.ws.close()
        for _ in range(300):
            if stream.reconnects and book.book_seq >= 0:
                break
            await asyncio.sleep(0.01)
        assert stream.reconnects == 1
        second = await stream.place(**order("ASK", 103, 1))  # logged in again
        assert second.accepted
        await taker.place(**order("BID", 102, 1, time_in_force="IOC"))
        await wait_for_seq(stream, BTC, taker)
        assert book.levels() == await engine_levels(runner, BTC)
        await stream.close()
