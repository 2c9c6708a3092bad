"""The engine in its own process (``EngineProcess``) behind the real API.

Same answers as the engine on a thread; an acknowledged order is durable; a killed engine
process gives a clear ENGINE_UNAVAILABLE to REST and websocket clients; a new process on the
same data directory recovers every acknowledged command.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from api_support import (
    BTC,
    LOT,
    MAKER_KEY,
    TICK,
    Api,
    api_config,
    order,
    set_up_journal,
    ws_login,
)

from exchange.api.app import create_app
from exchange.core.commands import PlaceOrder
from exchange.engine.process import EngineProcess
from exchange.engine.sequencer import Engine, EngineRunner, EngineStopped
from perp.clearinghouse import Clearinghouse

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


@pytest.fixture
def engine_process(tmp_path: Path) -> Iterator[EngineProcess]:
    proc = EngineProcess(set_up_journal(tmp_path))
    yield proc
    proc.close()


def _without_times(events: list[Any]) -> list[tuple[Any, ...]]:
    return [(type(e).__name__, *e[:1], *e[2:]) for e in events]  # seq kept, ts_ns dropped


def test_same_events_as_the_engine_on_a_thread(tmp_path: Path) -> None:
    # Arrange: two identical journals, one engine on a thread, one in a child process
    cmds = [
        PlaceOrder(BTC, 11, 0, 1 - i % 2, (99 + i % 3) * TICK, (1 + i % 4) * LOT) for i in range(40)
    ]
    thread_engine = Engine(set_up_journal(tmp_path / "thread"))
    thread = EngineRunner(thread_engine)
    proc = EngineProcess(set_up_journal(tmp_path / "process"))
    published: list[Any] = []
    proc.subscribe(published.extend)
    try:
        # Act: one command, a batch, then a snapshot after both
        got_one = proc.submit(cmds[0]).result(30)
        got_many = proc.submit_many(cmds[1:]).result(30)
        blob, seq = proc.snapshot().result(30)
        want_one = thread.submit(cmds[0]).result(30)
        want_many = thread.submit_many(cmds[1:]).result(30)
    finally:
        thread.close()
        thread_engine.close()
        proc.close()
    # Assert: the same events per command, all published, the snapshot at the last seq
    assert _without_times(got_one) == _without_times(want_one)
    assert [_without_times(x) for x in got_many] == [_without_times(x) for x in want_many]
    assert _without_times(published) == _without_times(
        [*got_one, *(e for x in got_many for e in x)]
    )
    assert seq == got_many[-1][-1].seq
    assert Clearinghouse.from_snapshot(blob).next_seq == seq + 1


def test_close_finishes_queued_work_and_a_new_process_recovers_it(tmp_path: Path) -> None:
    # Arrange
    config = set_up_journal(tmp_path)
    proc = EngineProcess(config)
    futures = [
        proc.submit_many([PlaceOrder(BTC, 11, 0, 0, 90 * TICK, LOT) for _ in range(20)])
        for _ in range(10)
    ]
    # Act: close right away, then reopen
    proc.close()
    last_seq = max(e.seq for f in futures for events in f.result(0) for e in events)
    later = proc.submit(PlaceOrder(BTC, 11, 0, 0, 90 * TICK, LOT))
    reopened = EngineProcess(config)
    try:
        # Assert: everything queued ran and is in the journal; a closed runner refuses work
        assert reopened.recovery.last_seq == last_seq
        with pytest.raises(EngineStopped, match="expected a running engine"):
            later.result(0)
    finally:
        reopened.close()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_signal_to_the_process_group_leaves_the_child_to_its_parent(
    tmp_path: Path, signum: signal.Signals
) -> None:
    """Ctrl+C (SIGINT) signals the whole foreground process group, a service manager's stop
    (SIGTERM) every process of the service: the child keeps serving and the parent's close
    still drains it and ends it cleanly."""
    # Arrange
    proc = EngineProcess(set_up_journal(tmp_path))
    first = proc.submit(PlaceOrder(BTC, 11, 0, 0, 90 * TICK, LOT)).result(30)
    assert proc.pid is not None
    # Act: the signal the group's stop delivers to the child too
    os.kill(proc.pid, signum)
    time.sleep(0.2)
    after = proc.submit(PlaceOrder(BTC, 11, 0, 0, 90 * TICK, LOT)).result(30)
    proc.close()
    # Assert: still running after the signal, then stopped by its parent with exit code 0
    assert after[0].seq > first[-1].seq
    assert proc._process.exitcode == 0


async def test_killed_engine_process_gives_a_clear_error_and_restart_recovers(
    tmp_path: Path,
) -> None:
    # Arrange: the API over an engine process; one resting order acknowledged over REST
    config = set_up_journal(tmp_path)
    proc = EngineProcess(config)
    app = create_app(api_config(), proc)
    try:
        async with TestClient(TestServer(app)) as client:
            api = Api(client)
            ws = await client.ws_connect("/ws")
            await ws_login(ws, "proc-login")
            status, placed, _ = await api.post(MAKER_KEY, "/v1/orders", order("BID", 95, 2))
            assert status == 200 and placed["status"] == "ACCEPTED", placed
            acked_seq = max(e["seq"] for e in placed["events"])

            # Act: the engine process dies
            assert proc.pid is not None
            os.kill(proc.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            status, refused, _ = await api.post(MAKER_KEY, "/v1/orders", order("BID", 94, 1))
            while status == 200 and time.monotonic() < deadline:  # the kill is not instant
                status, refused, _ = await api.post(MAKER_KEY, "/v1/orders", order("BID", 94, 1))
            await ws.send_str(
                orjson.dumps({"op": "place", "id": 7, "params": order("BID", 93, 1)}).decode()
            )
            ws_answer = orjson.loads(await asyncio.wait_for(ws.receive_str(), 10))
            await ws.close()

            # Assert: REST 503 and websocket error, both naming the stopped engine
            assert status == 503, refused
            assert refused["code"] == "ENGINE_UNAVAILABLE"
            assert "exit code -9" in refused["message"], refused["message"]
            assert ws_answer["id"] == 7 and ws_answer["error"]["code"] == "ENGINE_UNAVAILABLE"
    finally:
        proc.close()

    # Assert: a new engine process on the same journal has the acknowledged order
    reopened = EngineProcess(config)
    try:
        assert reopened.recovery.last_seq >= acked_seq
        blob, _ = reopened.snapshot().result(30)
        book = Clearinghouse.from_snapshot(blob).core.books[BTC]
        assert [tuple(level) for level in book.depth(0, 10)] == [(95, 2)]
    finally:
        reopened.close()


def _iocs(n: int, start: int) -> list[PlaceOrder]:
    # IOC bids below the book (empty ask side): each is accepted, then canceled
    return [
        PlaceOrder(BTC, 11, 0, 0, 96 * TICK, LOT, time_in_force=1, client_order_id=start + i)
        for i in range(n)
    ]


async def test_loop_bound_pipe_carries_requests_the_socket_took_in_parts(
    tmp_path: Path,
) -> None:
    # Arrange: the pipe served by this loop; the child stopped, so it reads nothing
    proc = EngineProcess(set_up_journal(tmp_path))
    published: list[Any] = []
    proc.subscribe(published.extend)
    try:
        assert proc.bind_loop(asyncio.get_running_loop())
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGSTOP)
        # Act: requests until the socket's buffer is full and the rest waits for add_writer
        futures: list[Any] = []
        while not proc._writing:
            futures.append(proc.submit_many(_iocs(500, 1 + 500 * len(futures))))
        futures.append(proc.submit_many(_iocs(500, 1 + 500 * len(futures))))
        assert proc._wbuf  # held back, not lost
        os.kill(proc.pid, signal.SIGCONT)
        results: list[Any] = await asyncio.wait_for(
            asyncio.gather(*(asyncio.wrap_future(f) for f in futures)), 60
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid or 0, signal.SIGCONT)
        proc.close()
    # Assert: every order ran once, in submission order, each answered with its own events
    client_ids = [events[0].client_order_id for per_request in results for events in per_request]
    assert client_ids == list(range(1, 1 + 500 * len(futures)))
    assert all(
        [type(e).__name__ for e in events] == ["OrderAccepted", "OrderCanceled"]
        for per_request in results
        for events in per_request
    )
    assert len(published) == 2 * 500 * len(futures)
    assert not proc._writing and not proc._wbuf


async def test_loop_bound_pipe_fails_every_pending_request_when_the_child_dies_mid_batch(
    tmp_path: Path,
) -> None:
    # Arrange: the pipe served by this loop; requests queued in the child's socket and in
    # the parent's write buffer while the child is stopped
    config = set_up_journal(tmp_path)
    proc = EngineProcess(config)
    loop = asyncio.get_running_loop()
    try:
        assert proc.bind_loop(loop)
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGSTOP)
        futures = [proc.submit_many(_iocs(500, 1 + 500 * i)) for i in range(200)]
        assert proc._writing
        # Act: the child dies with all of them unanswered
        os.kill(proc.pid, signal.SIGKILL)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(asyncio.wrap_future(f) for f in futures), return_exceptions=True),
            30,
        )
        later = proc.submit(_iocs(1, 10**6)[0])
        watched = loop.remove_reader(proc._fd)  # False: nothing was registered any more
    finally:
        proc.close()
    # Assert: every request failed naming the exit code, so does a later one; the loop no
    # longer watches the pipe; nothing was journaled
    assert all(isinstance(o, EngineStopped) for o in outcomes), outcomes[:3]
    assert "exit code -9" in str(outcomes[0])
    with pytest.raises(EngineStopped, match="exit code -9"):
        later.result(0)
    assert not watched
    reopened = EngineProcess(config)
    reopened.close()
    assert reopened.recovery.last_seq == proc.recovery.last_seq
