"""The journal writer thread against a real SQLite journal in a temporary directory."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from engine_support import LOT, ONE_MARKET_SETUP, TICK, StepClock

from exchange.core.commands import CreateMarket, Deposit, PlaceOrder, UpdateOraclePrice
from exchange.core.errors import JournalError
from exchange.core.events import Event
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.journal_writer import JournalWriter
from exchange.engine.sequencer import Engine, EngineStopped, ExecutedBatch

WAIT_S = 10


class GatedJournal(Journal):
    """A real journal whose appends wait until the test opens the gate (a commit in
    flight), and which can be told to fail its next append."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Semaphore(0)  # released as each append starts
        self.fail_next = False

    def append(self, events: Sequence[Event]) -> bytes:
        self.entered.release()
        assert self.gate.wait(WAIT_S), "test never opened the gate"
        if self.fail_next:
            raise JournalError("disk full (injected)")
        return super().append(events)


class Reports:
    """What the writer reported: (number of each batch's first seq, error) per call."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[ExecutedBatch], BaseException | None]] = []
        self.cond = threading.Condition()

    def __call__(self, batches: list[ExecutedBatch], error: BaseException | None) -> None:
        with self.cond:
            self.calls.append((batches, error))
            self.cond.notify_all()

    def wait_for(self, count: int) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.calls) >= count, WAIT_S), self.calls


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = Engine(EngineConfig(data_dir=tmp_path, snapshot_every_events=10**6), clock=StepClock())
    eng.process(ONE_MARKET_SETUP)
    yield eng
    eng.close()


def _order(i: int) -> PlaceOrder:
    return PlaceOrder(0, i % 4, 0, i % 2, (99 + i % 3) * TICK, LOT)


def _gated(tmp_path: Path, engine: Engine) -> GatedJournal:
    engine.journal.close()  # the writer owns the appends from here
    journal = GatedJournal(f"sqlite:///{tmp_path / 'journal.sqlite'}")
    engine.journal = journal
    return journal


def test_batches_queued_during_a_commit_go_in_one_group_commit_in_order(
    engine: Engine, tmp_path: Path
) -> None:
    # Arrange: the first commit is held in flight
    journal = _gated(tmp_path, engine)
    reports = Reports()
    writer = JournalWriter(journal, reports)
    rows_before = len(list(journal.read_batches_raw()))
    journal.gate.clear()
    first = engine.execute([_order(0)])
    writer.enqueue(first)
    assert journal.entered.acquire(timeout=WAIT_S)
    # Act: three more batches while it is in flight, then the commit returns
    later = [engine.execute([_order(i)]) for i in (1, 2, 3)]
    for batch in later:
        writer.enqueue(batch)
    assert reports.calls == []  # nothing acknowledged before its commit
    journal.gate.set()
    reports.wait_for(2)
    writer.close(WAIT_S)
    # Assert: two reports (the first batch; then the other three together), two rows
    assert [(batches, error) for batches, error in reports.calls] == [
        ([first], None),
        (later, None),
    ]
    rows = list(journal.read_batches_raw())
    assert len(rows) == rows_before + 2
    stored = list(journal.read(after_seq=first.events[0].seq - 1))
    assert stored == first.events + [e for batch in later for e in batch.events]


def test_a_failed_commit_fails_its_group_and_every_later_batch(
    engine: Engine, tmp_path: Path
) -> None:
    # Arrange: one good commit, then a failing one with a batch queued behind it
    journal = _gated(tmp_path, engine)
    reports = Reports()
    writer = JournalWriter(journal, reports)
    good = engine.execute([_order(0)])
    writer.enqueue(good)
    reports.wait_for(1)
    journal.gate.clear()
    journal.fail_next = True
    doomed = engine.execute([_order(1)])
    writer.enqueue(doomed)
    assert journal.entered.acquire(timeout=WAIT_S)  # twice: the good one, then this
    assert journal.entered.acquire(timeout=WAIT_S)
    behind = engine.execute([_order(2)])
    writer.enqueue(behind)
    # Act
    journal.gate.set()
    reports.wait_for(2)
    # Assert: the failure names both batches; later enqueues are refused
    batches, error = reports.calls[1]
    assert batches == [doomed, behind]
    assert isinstance(error, JournalError) and "disk full" in str(error)
    assert writer.failure is error
    with pytest.raises(EngineStopped, match="expected a healthy journal, got failure"):
        writer.enqueue(engine.execute([_order(3)]))
    writer.close(WAIT_S)
    assert journal.last_seq == good.events[-1].seq  # nothing after the good batch


def test_snapshot_is_stored_only_after_its_covering_commit(tmp_path: Path) -> None:
    # Arrange: an engine due a snapshot after every event
    eng = Engine(EngineConfig(data_dir=tmp_path, snapshot_every_events=1), clock=StepClock())
    journal = _gated(tmp_path, eng)
    reports = Reports()
    writer = JournalWriter(journal, reports)
    journal.gate.clear()
    batch = eng.execute([CreateMarket(0, "BTC-PERP", TICK, LOT)])
    assert batch.snapshot is not None
    # Act: the commit is in flight
    writer.enqueue(batch)
    assert journal.entered.acquire(timeout=WAIT_S)
    assert journal.latest_snapshot() is None
    journal.gate.set()
    writer.close(WAIT_S)
    # Assert: stored at the batch's last seq, with the state's hash
    snap = journal.latest_snapshot()
    assert snap is not None and snap.seq == batch.events[-1].seq
    assert snap.state_hash == eng.core.state_hash()
    eng.close()


def test_close_commits_what_is_queued_then_refuses(engine: Engine) -> None:
    reports = Reports()
    writer = JournalWriter(engine.journal, reports)
    batches = [engine.execute([_order(i)]) for i in range(5)]
    for batch in batches:
        writer.enqueue(batch)
    writer.close(WAIT_S)
    assert [b for call, error in reports.calls for b in call if error is None] == batches
    assert engine.journal.last_seq == batches[-1].events[-1].seq
    with pytest.raises(EngineStopped, match="expected an open writer, got closed"):
        writer.enqueue(engine.execute([_order(9)]))


def test_engine_process_and_execute_then_writer_store_the_same_bytes(tmp_path: Path) -> None:
    # Arrange: two journals, same commands, same clock
    commands: list[Any] = [
        CreateMarket(0, "BTC-PERP", TICK, LOT),
        UpdateOraclePrice(0, 100 * TICK, 0, 1, 1, True),
        *[Deposit(owner, 0, 10**12) for owner in range(4)],
        *[_order(i) for i in range(20)],
    ]
    direct = Engine(EngineConfig(data_dir=tmp_path / "a"), clock=StepClock())
    queued = Engine(EngineConfig(data_dir=tmp_path / "b"), clock=StepClock())
    writer = JournalWriter(queued.journal, Reports())
    # Act: batches of four
    for i in range(0, len(commands), 4):
        direct.process(commands[i : i + 4])
        writer.enqueue(queued.execute(commands[i : i + 4]))
    writer.close(WAIT_S)
    # Assert
    assert list(direct.journal.read()) == list(queued.journal.read())
    assert direct.core.state_hash() == queued.core.state_hash()
    direct.close()
    queued.close()
