"""The sequencer against a real SQLite journal in a temporary directory."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from engine_support import StepClock

from exchange.core.commands import (
    CancelOrder,
    CreateMarket,
    Deposit,
    PlaceOrder,
    UpdateOraclePrice,
)
from exchange.core.errors import JournalError, RejectCode
from exchange.core.events import (
    FillSettled,
    OrderAccepted,
    OrderRejected,
    OrderRested,
    TradeExecuted,
)
from exchange.core.orders import Side
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.sequencer import Engine, EngineRunner, EngineStopped

TICK = 1_000_000  # 1.0 quote per base unit
LOT = 1_000_000_000  # 1 base unit


def list_market(eng: Engine) -> None:
    """Market 0 with an index price of 100 and collateral for owners 0..4."""
    eng.process(
        [
            CreateMarket(0, "BTC-PERP", TICK, LOT),
            UpdateOraclePrice(0, 100 * TICK, 0, 1, 1, True),
            *[Deposit(owner, 0, 1_000_000 * 10**6) for owner in range(5)],
        ]
    )


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(EngineConfig(data_dir=tmp_path, snapshot_every_events=50), clock=StepClock())
    list_market(eng)
    yield eng
    eng.close()


def test_acknowledged_events_are_in_the_journal(engine: Engine, tmp_path: Path) -> None:
    # Act
    results = engine.process(
        [
            PlaceOrder(0, 1, 0, Side.BID, 100 * TICK, 2 * LOT),
            PlaceOrder(0, 2, 0, Side.ASK, 100 * TICK, 1 * LOT),
        ]
    )
    # Assert
    assert [type(e) for e in results[0]] == [OrderAccepted, OrderRested]
    assert [type(e) for e in results[1]] == [OrderAccepted, TradeExecuted, FillSettled]
    durable = list(Journal.for_data_dir(tmp_path).read())
    assert durable[-5:] == results[0] + results[1]


def test_malformed_command_is_rejected_and_changes_nothing(engine: Engine) -> None:
    before = engine.core.canonical()
    bad = PlaceOrder(0, 1, 0, Side.BID, "100", LOT)  # type: ignore[arg-type]
    [events] = engine.process([bad])
    assert len(events) == 1 and type(events[0]) is OrderRejected
    assert events[0].code == RejectCode.MALFORMED_COMMAND
    assert events[0].message == "price: expected an integer, got '100'"
    after = engine.core.canonical()
    assert after["core"].pop("next_seq") == before["core"].pop("next_seq") + 1
    assert after == before


def test_non_command_objects_are_rejected_not_crashing(engine: Engine) -> None:
    [events] = engine.process([{"type": "place"}])
    assert events[0].code == RejectCode.MALFORMED_COMMAND
    assert "expected a command, got dict" in events[0].message


def test_event_time_never_runs_backwards(tmp_path: Path) -> None:
    times = iter([50, 40, 60])
    eng = Engine(EngineConfig(data_dir=tmp_path), clock=lambda: next(times))
    results = eng.process(
        [
            CreateMarket(0, "A", TICK, LOT),
            CreateMarket(1, "B", TICK, LOT),
            CreateMarket(2, "C", TICK, LOT),
        ]
    )
    assert [r[0].ts_ns for r in results] == [50, 50, 60]
    eng.close()


def test_restart_recovers_identical_state_from_snapshot_and_tail(tmp_path: Path) -> None:
    # Arrange: enough events for several snapshots plus a tail after the last one.
    eng = Engine(EngineConfig(data_dir=tmp_path, snapshot_every_events=7), clock=StepClock())
    list_market(eng)
    for i in range(30):
        eng.process([PlaceOrder(0, i % 4, 0, i % 2, (100 + i % 5) * TICK, (1 + i % 3) * LOT)])
    expected = eng.core.state_hash()
    eng.close()
    # Act
    again = Engine(EngineConfig(data_dir=tmp_path), clock=StepClock())
    # Assert
    assert again.recovery.snapshot_seq > 0
    assert again.core.state_hash() == expected
    assert again.recovery.last_seq == again.core.next_seq - 1
    again.close()


def test_a_failed_journal_write_stops_the_engine(engine: Engine) -> None:
    def broken(_events: Any) -> None:
        raise OSError("disk full")

    engine.journal.append = broken  # type: ignore[method-assign]
    with pytest.raises(JournalError, match="disk full"):
        engine.process([PlaceOrder(0, 1, 0, Side.BID, 100 * TICK, LOT)])
    with pytest.raises(EngineStopped):
        engine.process([PlaceOrder(0, 1, 0, Side.BID, 100 * TICK, LOT)])


def test_subscribers_see_events_only_after_they_are_durable(engine: Engine) -> None:
    order: list[str] = []
    real_append = engine.journal.append

    def append(events: Any) -> None:
        real_append(events)
        order.append("journal")

    engine.journal.append = append  # type: ignore[method-assign]
    engine.subscribe(lambda events: order.append(f"publish {len(events)}"))
    engine.process([PlaceOrder(0, 1, 0, Side.BID, 100 * TICK, LOT)])
    assert order == ["journal", "publish 2"]


def test_runner_group_commits_concurrent_submissions(engine: Engine) -> None:
    # Arrange
    runner = EngineRunner(engine)
    batches_before = _batch_count(engine)
    futures = []

    def client(owner: int) -> None:
        for i in range(200):
            futures.append(
                runner.submit(PlaceOrder(0, owner, 0, Side.BID, (95 + i % 5) * TICK, LOT))
            )

    threads = [threading.Thread(target=client, args=(o,)) for o in range(4)]
    # Act
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results = [f.result(timeout=30) for f in futures]
    runner.close()
    # Assert: every command acknowledged, in fewer commits than commands.
    assert all(type(r[0]) is OrderAccepted for r in results)
    assert _batch_count(engine) - batches_before < len(futures)
    assert engine.journal.last_seq == engine.core.next_seq - 1


def test_runner_fails_pending_commands_after_a_journal_failure(engine: Engine) -> None:
    runner = EngineRunner(engine)
    engine.journal.append = lambda _e: (_ for _ in ()).throw(OSError("gone"))  # type: ignore[method-assign]
    future = runner.submit(CancelOrder(0, 1, 0, 99))
    with pytest.raises(JournalError):
        future.result(timeout=10)
    runner.close()


def _batch_count(engine: Engine) -> int:
    from sqlalchemy import text

    with engine.journal._engine.connect() as conn:
        return int(conn.execute(text("select count(*) from event_batches")).scalar_one())


def test_runner_drops_a_command_cancelled_before_the_engine_takes_it(engine: Engine) -> None:
    # Arrange: hold the sequencer inside its first batch so the second command waits queued.
    runner = EngineRunner(engine)
    entered, release = threading.Event(), threading.Event()
    real_process = engine.process

    def gated(commands: Any) -> Any:
        if commands:
            entered.set()
            release.wait(10)
        return real_process(commands)

    engine.process = gated  # type: ignore[method-assign]
    first = runner.submit(PlaceOrder(0, 1, 0, Side.BID, 95 * TICK, LOT))
    assert entered.wait(10)
    queued = runner.submit(PlaceOrder(0, 2, 0, Side.BID, 96 * TICK, LOT))
    # Act
    assert queued.cancel()
    release.set()
    later = runner.submit(PlaceOrder(0, 3, 0, Side.BID, 97 * TICK, LOT))
    # Assert: the runner survived, the cancelled command never reached the journal.
    assert type(first.result(timeout=10)[0]) is OrderAccepted
    assert type(later.result(timeout=10)[0]) is OrderAccepted
    assert queued.cancelled()
    runner.close()
    owners = {e.owner_id for e in engine.journal.read(after_seq=0) if type(e) is OrderAccepted}
    assert 2 not in owners and {1, 3} <= owners


def test_unsubscribed_subscriber_is_not_called(engine: Engine) -> None:
    seen: list[int] = []

    def subscriber(events: Any) -> None:
        seen.append(len(events))

    engine.subscribe(subscriber)
    engine.process([PlaceOrder(0, 1, 0, Side.BID, 95 * TICK, LOT)])
    engine.unsubscribe(subscriber)
    engine.process([PlaceOrder(0, 1, 0, Side.BID, 94 * TICK, LOT)])
    assert len(seen) == 1


def test_runner_submit_many_resolves_each_command_in_order_in_one_group_commit(
    engine: Engine,
) -> None:
    # Arrange: hold the sequencer so the single command and the batch queue up behind it.
    runner = EngineRunner(engine)
    entered, release = threading.Event(), threading.Event()
    real_process = engine.process
    batches: list[int] = []

    def gated(commands: Any) -> Any:
        if commands:
            batches.append(len(commands))
            entered.set()
            release.wait(10)
        return real_process(commands)

    engine.process = gated  # type: ignore[method-assign]
    runner.submit(PlaceOrder(0, 1, 0, Side.BID, 96 * TICK, LOT))
    assert entered.wait(10)
    single = runner.submit(PlaceOrder(0, 2, 0, Side.BID, 97 * TICK, LOT))
    many = runner.submit_many(
        [
            PlaceOrder(0, 3, 0, Side.BID, 98 * TICK, LOT),
            PlaceOrder(0, 4, 0, Side.BID, 0, LOT),  # refused: price 0
            PlaceOrder(0, 0, 0, Side.BID, 99 * TICK, LOT),
        ]
    )
    cancelled = runner.submit_many([PlaceOrder(0, 1, 0, Side.BID, 95 * TICK, LOT)])
    assert cancelled.cancel()

    # Act
    release.set()
    results = many.result(timeout=10)
    runner.close()

    # Assert: one result per command, in order; the single and the batch shared one commit;
    # the cancelled batch never ran.
    assert [type(r[0]) for r in results] == [OrderAccepted, OrderRejected, OrderAccepted]
    assert [r[0].owner_id for r in results] == [3, 4, 0]
    assert single.result(timeout=10)[0].owner_id == 2
    assert batches == [1, 4]
    owners = {e.owner_id for e in engine.journal.read(after_seq=0) if type(e) is OrderAccepted}
    assert owners == {0, 1, 2, 3}
    assert all(
        e.price_ticks != 95 for e in engine.journal.read(after_seq=0) if type(e) is OrderAccepted
    )
