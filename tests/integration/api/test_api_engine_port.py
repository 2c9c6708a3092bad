"""The engine port on a real engine: consistent start, read-your-writes, cancellation."""

from __future__ import annotations

import asyncio
import gc
from concurrent.futures import Future

import pytest
from api_support import BTC, LOT, MAKER_OWNER, TICK

from exchange.api.engine_port import EnginePort
from exchange.core.commands import PlaceOrder
from exchange.core.events import OrderAccepted
from exchange.engine.sequencer import EngineRunner

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def bid(price_units: int) -> PlaceOrder:
    return PlaceOrder(BTC, MAKER_OWNER, 0, 0, price_units * TICK, LOT)


async def test_start_mirrors_the_engine_and_submit_reads_its_own_writes(
    runner: EngineRunner,
) -> None:
    # Arrange: state that exists before the port starts
    await asyncio.wrap_future(runner.submit(bid(97)))
    port = EnginePort(runner)
    # Act
    await port.start()
    events = await port.submit(bid(98))
    # Assert: the read model already holds the command's events when submit returns
    assert port.model.last_seq == events[-1].seq
    assert port.model.book(BTC, 10).bids == ((98, 1), (97, 1))  # type: ignore[union-attr]
    assert port.model.core.state_hash() == runner.engine.core.state_hash()
    port.close()


async def test_a_cancelled_caller_does_not_break_the_sequencer(runner: EngineRunner) -> None:
    port = EnginePort(runner)
    await port.start()
    waiting = asyncio.ensure_future(port.submit(bid(96)))
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # the cancelled command still ran; the engine keeps serving
    events = await port.submit(bid(99))
    assert type(events[0]) is OrderAccepted
    batch = await port.submit_many([bid(98), bid(97)])
    assert [type(evs[0]) for evs in batch] == [OrderAccepted, OrderAccepted]
    prices = [p for p, _ in port.model.book(BTC, 10).bids]  # type: ignore[union-attr]
    assert prices == [99, 98, 97, 96]
    port.close()


async def test_start_api_serves_on_a_real_port_and_closes(runner: EngineRunner) -> None:
    from exchange.api.config import ApiConfig
    from exchange.api.server import start_api
    from exchange.client import PerpdexRest

    server = await start_api(ApiConfig(port=0), runner)
    try:
        async with PerpdexRest(server.url) as client:
            assert [m.market_id for m in await client.markets()] == [BTC, 2]
    finally:
        await server.close()
    # the engine is the caller's: still serving after the API closed
    events = await asyncio.wrap_future(runner.submit(bid(99)))
    assert type(events[0]) is OrderAccepted


async def test_submitted_batches_leave_no_cyclic_garbage(runner: EngineRunner) -> None:
    # Arrange: a started port; the cyclic GC off, so only reference counting frees
    port = EnginePort(runner)
    await port.start()
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        # Act: single and batched submits, each its own hand-off to the engine
        for price in (90, 91, 92):
            await port.submit(bid(price))
        await port.submit_many([bid(93), bid(94)])
        gc.collect()
        leftovers = [obj for obj in gc.garbage if isinstance(obj, (Future, PlaceOrder))]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    # Assert: no engine Future or command kept alive by a cycle (a full GC pass would
    # have to walk them: a pause on the event loop)
    assert leftovers == []
    port.close()


async def test_submit_then_calls_back_in_order_then_the_hook_and_one_failure_spares_the_others(
    runner: EngineRunner,
) -> None:
    # Arrange: a started port; the loop's exception handler records what callbacks raise
    port = EnginePort(runner)
    await port.start()
    loop = asyncio.get_running_loop()
    reported: list[BaseException] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context["exception"]))
    seen: list[tuple[str, object]] = []
    done: asyncio.Future[None] = loop.create_future()
    delivering: list[bool] = []

    def last(outcome: object) -> None:
        seen.append(("last", outcome))
        delivering.append(port.delivering)

    def after() -> None:  # once per hand-off, after its callbacks
        seen.append(("after", None))
        delivering.append(port.delivering)
        done.set_result(None)

    def failing(outcome: object) -> None:
        seen.append(("failing", outcome))
        raise RuntimeError("caller bug")

    remove = port.after_delivery(after)
    try:
        # Act: three requests in one loop turn (one hand-off), the middle callback raises
        port.submit_then([bid(96)], lambda outcome: seen.append(("first", outcome)))
        port.submit_then([bid(97)], failing)
        port.submit_then([bid(98), bid(99)], last)
        await asyncio.wait_for(done, 10)
    finally:
        loop.set_exception_handler(None)
        remove()
    # Assert: every callback ran, in submission order, with its own commands' events, and
    # the delivery hook right after them
    assert [name for name, _ in seen] == ["first", "failing", "last", "after"]
    assert delivering == [True, False]
    firsts = [events[0] for _, outcome in seen[:3] for events in outcome]  # type: ignore[attr-defined]
    assert [type(e) for e in firsts] == [OrderAccepted] * 4
    assert [e.price_ticks for e in firsts] == [96, 97, 98, 99]
    assert [str(exc) for exc in reported] == ["caller bug"]
    with pytest.raises(ValueError, match="expected at least one command"):
        port.submit_then([], lambda outcome: None)
    port.close()
