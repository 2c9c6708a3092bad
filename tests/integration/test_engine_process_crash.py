"""The engine child (``EngineProcess``) with many requests in flight: it never acknowledges
an event that is not in the journal (SIGKILL as an acknowledgement arrives), a failed commit
fails its requests and stops the child, an empty request is answered in order."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

from exchange.core.errors import JournalError
from exchange.core.events import Event
from exchange.demo import account_setup_commands, demo_round, market_setup_commands
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.process import EngineProcess
from exchange.engine.sequencer import Engine, EngineStopped

pytestmark = pytest.mark.integration

IN_FLIGHT = 24  # requests outstanding at once: requests queue behind commits


def _config(data_dir: Path) -> EngineConfig:
    config = EngineConfig(data_dir=data_dir)
    engine = Engine(config)
    if not engine.core.books:
        engine.process(market_setup_commands() + account_setup_commands())
    engine.close()
    return config


def _stream_until_killed(
    proc: EngineProcess, seed: int, kill_after_acks: int
) -> tuple[list[list[Event]], int]:
    """Submit demo flow with ``IN_FLIGHT`` requests outstanding; SIGKILL the child as the
    ``kill_after_acks``-th acknowledgement comes in (requests are in flight). Returns
    the acknowledged requests' events and how many requests failed."""
    rng = random.Random(seed)
    mids = {0: 950_000, 1: 350_000, 2: 180_000}
    acked: list[list[Event]] = []
    failed = 0
    slots = threading.Semaphore(IN_FLIGHT)
    lock = threading.Lock()
    done = threading.Event()

    def on_done(future: Future[Any]) -> None:
        nonlocal failed
        with lock:
            try:
                acked.append(future.result())
            except EngineStopped:
                failed += 1
            if len(acked) >= kill_after_acks and not done.is_set():
                # at once, on the thread that read the acknowledgement: a commit still in
                # flight when it was sent would be lost
                assert proc.pid is not None
                os.kill(proc.pid, signal.SIGKILL)
                done.set()
        slots.release()

    futures: list[Future[Any]] = []
    deadline = time.monotonic() + 60
    while not done.is_set() and time.monotonic() < deadline:
        for command in demo_round(rng, mids):
            slots.acquire()
            future = proc.submit(command)
            futures.append(future)
            future.add_done_callback(on_done)
            if done.is_set():
                break
    assert done.is_set(), f"only {len(acked)} acknowledgements in 60 s"
    for future in futures:
        future.exception(30)
    return acked, failed


def test_sigkill_as_an_acknowledgement_arrives_loses_no_acknowledged_event(
    tmp_path: Path,
) -> None:
    # Arrange
    config = _config(tmp_path)
    for round_no, kill_after in enumerate((100, 250, 400)):
        proc = EngineProcess(config)
        try:
            # Act
            acked, failed = _stream_until_killed(proc, seed=round_no, kill_after_acks=kill_after)
        finally:
            proc.close()

        # Assert: every acknowledged event is in the journal, exactly as acknowledged
        with Journal.for_data_dir(tmp_path, read_only=True) as journal:
            stored = list(journal.read())
            assert journal.verify() == len(stored)
        acked_events = [event for events in acked for event in events]
        assert len(acked) >= kill_after and failed > 0  # killed mid-stream
        assert acked_events, "the acknowledged orders had events"
        assert max(event[0] for event in acked_events) <= len(stored)
        for event in acked_events:
            assert stored[event[0] - 1] == event


def test_failed_commit_fails_its_requests_and_stops_the_child(tmp_path: Path) -> None:
    # Arrange: the child runs; a second writer then appends behind its back, so the
    # child's next commit finds a stored last seq it did not write (JournalError)
    config = _config(tmp_path)
    proc = EngineProcess(config)
    try:
        rng = random.Random(7)
        first = demo_round(rng, {0: 950_000, 1: 350_000, 2: 180_000})[:5]
        proc.submit_many(first).result(30)
        with Journal.for_data_dir(tmp_path) as intruder:
            last = next(iter(intruder.read(after_seq=intruder.last_seq - 1)))
            intruder.append([last._replace(seq=last[0] + 1)])

        # Act
        refused = proc.submit(first[0])
        with pytest.raises(JournalError, match="expected a durable batch"):
            refused.result(30)
        deadline = time.monotonic() + 10
        later: Future[Any] = proc.submit(first[1])
        while time.monotonic() < deadline and not isinstance(later.exception(30), EngineStopped):
            later = proc.submit(first[1])

        # Assert: the child exited and says why
        assert isinstance(later.exception(30), EngineStopped)
        assert "second writer" in str(later.exception(30))
    finally:
        proc.close()


def test_an_empty_request_is_answered_after_the_commits_before_it(tmp_path: Path) -> None:
    # Arrange
    proc = EngineProcess(_config(tmp_path))
    try:
        rng = random.Random(3)
        placed = proc.submit_many(demo_round(rng, {0: 950_000, 1: 350_000, 2: 180_000})[:20])
        # Act
        empty = proc.submit_many([])
        # Assert: no events of its own, answered after the batch queued before it
        assert empty.result(30) == []
        assert placed.done() and len(placed.result()) == 20
        _blob, seq = proc.snapshot().result(30)
        assert seq == max(e[0] for events in placed.result() for e in events)
    finally:
        proc.close()
