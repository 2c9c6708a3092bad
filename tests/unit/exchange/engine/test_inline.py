"""The inline engine (execute on the caller's loop, commit on a writer thread) against a
real SQLite journal in a temporary directory."""

from __future__ import annotations

import asyncio
import functools
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import pytest
from engine_support import LOT, ONE_MARKET_SETUP, TICK, StepClock

from exchange.core.commands import PlaceOrder
from exchange.core.errors import JournalError
from exchange.core.events import Event, FundingSampled
from exchange.engine.config import EngineConfig
from exchange.engine.inline import InlineEngine
from exchange.engine.journal import Journal
from exchange.engine.sequencer import Engine, EngineStopped

WAIT_S = 10


SETUP = ONE_MARKET_SETUP
ORDERS = [PlaceOrder(0, i % 4, 0, i % 2, (99 + i % 3) * TICK, (1 + i % 2) * LOT) for i in range(30)]


def in_loop(test: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop (``asyncio.run``)."""

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(test(*args, **kwargs))

    return run


def _engine(data_dir: Path, **config: Any) -> Engine:
    return Engine(EngineConfig(data_dir=data_dir, **config), clock=StepClock())


class FailingJournal(Journal):
    """A real journal that fails its appends once told to (a dying disk)."""

    failing = False

    def append(self, events: Sequence[Event]) -> bytes:
        if self.failing:
            raise JournalError("I/O error (injected)")
        return super().append(events)


def _failing(engine: Engine, data_dir: Path) -> FailingJournal:
    engine.journal.close()
    journal = FailingJournal(f"sqlite:///{data_dir / 'journal.sqlite'}")
    engine.journal = journal
    return journal


def test_unbound_gives_the_same_events_and_hash_as_engine_process(tmp_path: Path) -> None:
    # Arrange
    direct = _engine(tmp_path / "direct")
    inline = InlineEngine(_engine(tmp_path / "inline"), switch_interval_s=None)
    published: list[Event] = []
    inline.subscribe(published.extend)
    # Act: the same batches through both
    want = [direct.process(SETUP)] + [direct.process(ORDERS[i : i + 5]) for i in range(0, 30, 5)]
    got = [inline.submit_many(SETUP).result(WAIT_S)]
    got += [inline.submit_many(ORDERS[i : i + 5]).result(WAIT_S) for i in range(0, 30, 5)]
    one = inline.submit(PlaceOrder(0, 1, 0, 0, 90 * TICK, LOT)).result(WAIT_S)
    [direct_one] = direct.process([PlaceOrder(0, 1, 0, 0, 90 * TICK, LOT)])
    inline.close()
    # Assert: same results, published in seq order, stored, same state
    assert got == want and one == direct_one
    assert published == list(direct.journal.read())
    again = _engine(tmp_path / "inline")
    assert again.core.state_hash() == direct.core.state_hash()
    assert list(again.journal.read()) == list(direct.journal.read())
    again.close()
    direct.close()


@in_loop
async def test_bound_executes_on_the_loop_and_publishes_before_resolving(tmp_path: Path) -> None:
    # Arrange
    direct = _engine(tmp_path / "direct")
    direct.process(SETUP)
    engine = _engine(tmp_path / "inline")
    engine.process(SETUP)
    inline = InlineEngine(engine, switch_interval_s=None)
    assert inline.bind_loop(asyncio.get_running_loop())
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []  # (thread, last seq) per published batch

    def subscriber(events: Sequence[Event]) -> None:
        seen.append((threading.get_ident(), events[-1].seq))

    inline.subscribe(subscriber)
    # Act: submissions from the loop, in one turn, and one from another thread
    futures = [inline.submit(cmd) for cmd in ORDERS[:10]]
    assert engine.core.next_seq > direct.core.next_seq  # executed at once, on the loop
    results = [await asyncio.wrap_future(f) for f in futures]
    other: list[Any] = []
    worker = threading.Thread(target=lambda: other.append(inline.submit(ORDERS[10])))
    worker.start()
    worker.join()
    other_events = await asyncio.wait_for(asyncio.wrap_future(other[0]), WAIT_S)
    inline.close()
    # Assert: same events as the direct engine; subscribers on the loop, in seq order
    want = [direct.process([cmd])[0] for cmd in ORDERS[:11]]
    assert [*results, other_events] == want
    assert {thread for thread, _ in seen} == {loop_thread}
    assert [seq for _, seq in seen] == sorted(seq for _, seq in seen)
    assert seen[-1][1] == want[-1][-1].seq
    direct.close()


@in_loop
async def test_a_failed_commit_stops_the_engine_and_restart_recovers(tmp_path: Path) -> None:
    # Arrange: a bound engine that committed some orders
    engine = _engine(tmp_path)
    engine.process(SETUP)
    journal = _failing(engine, tmp_path)
    inline = InlineEngine(engine, switch_interval_s=None)
    inline.bind_loop(asyncio.get_running_loop())
    for cmd in ORDERS[:5]:
        await asyncio.wrap_future(inline.submit(cmd))
    durable_hash = engine.core.state_hash()
    # Act: the disk dies with requests in flight; one more after
    journal.failing = True
    pending = [inline.submit(cmd) for cmd in ORDERS[5:8]]
    outcomes = await asyncio.gather(*map(asyncio.wrap_future, pending), return_exceptions=True)
    later = inline.submit(ORDERS[8])
    # Assert: every pending and later request fails with EngineStopped naming the cause
    assert all(isinstance(o, EngineStopped) for o in outcomes), outcomes
    assert "I/O error" in str(outcomes[0])
    with pytest.raises(EngineStopped):
        later.result(WAIT_S)
    inline.close()
    again = _engine(tmp_path)
    assert again.core.state_hash() == durable_hash
    again.close()


@in_loop
async def test_snapshot_waits_for_the_commits_before_it(tmp_path: Path) -> None:
    engine = _engine(tmp_path)
    inline = InlineEngine(engine, switch_interval_s=None)
    inline.bind_loop(asyncio.get_running_loop())
    inline.submit_many(SETUP)
    blob, seq = await asyncio.wrap_future(inline.snapshot())
    assert seq == engine.journal.last_seq == engine.core.next_seq - 1
    assert type(engine.core).from_snapshot(blob).state_hash() == engine.core.state_hash()
    inline.close()


@in_loop
async def test_snapshots_in_the_journal_are_of_durable_state(tmp_path: Path) -> None:
    # Arrange: a snapshot due every few events
    engine = _engine(tmp_path, snapshot_every_events=7)
    inline = InlineEngine(engine, switch_interval_s=None)
    inline.bind_loop(asyncio.get_running_loop())
    await asyncio.wrap_future(inline.submit_many(SETUP))
    # Act
    futures = [inline.submit(cmd) for cmd in ORDERS]
    for future in futures:
        await asyncio.wrap_future(future)
    want = engine.core.state_hash()
    inline.close()
    # Assert: snapshots were stored and recovery through them gives the same state
    again = _engine(tmp_path)
    assert again.recovery.snapshot_seq > 0
    assert again.core.state_hash() == want
    again.close()


@in_loop
async def test_idle_ticks_come_from_a_loop_timer(tmp_path: Path) -> None:
    # Arrange: a two-sided book (funding samples need impact prices), then no commands
    clock = StepClock()
    engine = Engine(EngineConfig(data_dir=tmp_path, tick_interval_ns=10_000_000), clock=clock)
    engine.process([*SETUP, PlaceOrder(0, 1, 0, 0, 99 * TICK, 10 * LOT)])
    engine.process([PlaceOrder(0, 2, 0, 1, 101 * TICK, 10 * LOT)])
    inline = InlineEngine(engine, switch_interval_s=None)
    sampled = asyncio.Event()

    def on_events(events: Sequence[Event]) -> None:
        if any(type(e) is FundingSampled for e in events):
            sampled.set()

    inline.subscribe(on_events)
    inline.bind_loop(asyncio.get_running_loop())
    # Act: time passes with nothing submitted
    clock.now += 60 * 10**9
    # Assert: a timer tick's funding sample, committed, then published
    await asyncio.wait_for(sampled.wait(), WAIT_S)
    assert engine.journal.last_seq == engine.core.next_seq - 1
    inline.close()


@in_loop
async def test_bind_loop_lowers_the_switch_interval_and_close_puts_it_back(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    inline = InlineEngine(_engine(tmp_path), switch_interval_s=0.0002)
    try:
        inline.bind_loop(asyncio.get_running_loop())
        lowered = sys.getswitchinterval()
        inline.close()
        assert lowered == pytest.approx(0.0002)
        assert sys.getswitchinterval() == pytest.approx(before)
    finally:
        inline.close()
        sys.setswitchinterval(before)


@in_loop
async def test_close_leaves_a_switch_interval_set_by_someone_else(tmp_path: Path) -> None:
    before = sys.getswitchinterval()
    inline = InlineEngine(_engine(tmp_path), switch_interval_s=0.0002)
    try:
        inline.bind_loop(asyncio.get_running_loop())
        sys.setswitchinterval(0.003)
        inline.close()
        assert sys.getswitchinterval() == pytest.approx(0.003)
    finally:
        inline.close()
        sys.setswitchinterval(before)


def test_closed_engine_refuses_requests(tmp_path: Path) -> None:
    inline = InlineEngine(_engine(tmp_path), switch_interval_s=None)
    inline.close()
    with pytest.raises(EngineStopped, match="expected open, got closed"):
        inline.submit(ORDERS[0]).result(WAIT_S)


def test_after_its_loop_closed_it_runs_on_the_callers_thread(tmp_path: Path) -> None:
    # Arrange: bound to a loop that has since closed
    engine = _engine(tmp_path)
    inline = InlineEngine(engine, switch_interval_s=None)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    inline.bind_loop(loop)
    loop.close()
    published: list[Event] = []
    inline.subscribe(published.extend)
    # Act
    results = inline.submit_many(SETUP).result(WAIT_S)
    inline.close()
    # Assert: executed, committed, published, then resolved
    assert [e for events in results for e in events] == published
    assert engine.journal.last_seq == published[-1].seq
