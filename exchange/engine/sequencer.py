"""The sequencer: command -> validate -> risk gate -> match -> settle -> events -> journal ->
publish.

One thread owns the ``Clearinghouse`` (matching core, accounts, risk). Commands are taken in batches; every event of a batch
is written to the journal in one transaction (group commit) and only then are the commands
acknowledged and the events published. If the journal cannot be written the engine stops
(the in-memory state is ahead of the durable one, which is the truth): a restart rebuilds
the state from the journal.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, NamedTuple

from exchange.core.commands import Command, MalformedCommand, Tick, check_command
from exchange.core.errors import ExchangeError, JournalError, RejectCode, ReplayMismatch
from exchange.core.events import Event
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from perp.clearinghouse import DEFAULT_LIQUIDATION_MAX_ORACLE_AGE_NS, Clearinghouse
from perp.params import PerpMarketParams

Subscriber = Callable[[Sequence[Event]], None]


class EngineStopped(ExchangeError):
    """The engine refused work because it has failed or been closed."""

    code = "ENGINE_STOPPED"


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    snapshot_seq: int  # 0 when no snapshot was used
    events_replayed: int
    last_seq: int
    state_hash: str
    seconds: float


def recover(
    journal: Journal,
    upto_seq: int | None = None,
    *,
    default_params: PerpMarketParams | None = None,
    params_by_symbol: Mapping[str, PerpMarketParams] | None = None,
    liquidation_max_oracle_age_ns: int = DEFAULT_LIQUIDATION_MAX_ORACLE_AGE_NS,
) -> tuple[Clearinghouse, RecoveryReport]:
    """Rebuild the clearinghouse from the newest usable snapshot plus the events after it.

    A snapshot whose own hash does not match its payload is a ``ReplayMismatch``.
    ``default_params`` / ``params_by_symbol`` only list markets created from now on (existing
    ones carry their journaled parameters); ``liquidation_max_oracle_age_ns`` is the
    engine's staleness bound for liquidation (a setting, not state).
    """
    started = time.perf_counter()
    snap = journal.latest_snapshot(upto_seq)
    if snap is None:
        core = Clearinghouse(
            default_params=default_params,
            params_by_symbol=params_by_symbol,
            liquidation_max_oracle_age_ns=liquidation_max_oracle_age_ns,
        )
        after = 0
    else:
        core = Clearinghouse.from_snapshot(
            snap.payload,
            default_params=default_params,
            params_by_symbol=params_by_symbol,
            liquidation_max_oracle_age_ns=liquidation_max_oracle_age_ns,
        )
        if core.state_hash() != snap.state_hash:
            raise ReplayMismatch(
                f"snapshot at seq {snap.seq}: expected hash {snap.state_hash}, got "
                f"{core.state_hash()}"
            )
        after = snap.seq
    count = 0
    apply = core.apply
    for event in journal.read(after_seq=after, upto_seq=upto_seq):
        apply(event)
        count += 1
    core.check_invariants()
    report = RecoveryReport(
        after, count, core.next_seq - 1, core.state_hash(), time.perf_counter() - started
    )
    return core, report


class ExecutedBatch(NamedTuple):
    """One executed, not yet durable batch (``Engine.execute``)."""

    events: list[Event]  # every event of the batch, seq order (a Tick's first)
    bounds: list[tuple[int, int]]  # each command's [start, end) in ``events``
    snapshot: tuple[int, str, bytes] | None  # (seq, state hash, payload) due after it

    def results(self) -> list[list[Event]]:
        """Each command's events, in command order."""
        events = self.events
        return [events[a:b] for a, b in self.bounds]


class Engine:
    """The single-threaded sequencer over one journal. Not thread-safe: see ``EngineRunner``."""

    def __init__(self, config: EngineConfig, *, clock: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        if config.journal_url:
            self.journal = Journal(config.journal_url)
        else:
            self.journal = Journal.for_data_dir(config.data_dir)
        self.core, self.recovery = recover(
            self.journal,
            default_params=config.market_params,
            params_by_symbol=dict(config.market_overrides),
            liquidation_max_oracle_age_ns=config.liquidation_max_oracle_age_ns,
        )
        self._clock = clock
        self._last_ts = 0
        self._last_tick_ns = 0
        self._events_since_snapshot = self.recovery.events_replayed
        self._subscribers: list[Subscriber] = []
        self._failure: BaseException | None = None
        #: the newest batch as the journal stored it (``encode_events``; ``b""`` if empty)
        self.last_batch_payload = b""

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(events)`` after every durable batch, in sequence order."""
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber``; unknown subscribers are ignored."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def _now(self) -> int:
        # Event time never runs backwards, even if the wall clock does.
        ts = self._clock()
        if ts < self._last_ts:
            ts = self._last_ts
        self._last_ts = ts
        return ts

    def process(self, commands: Sequence[Any]) -> list[list[Event]]:
        """Run a batch of commands; return each command's events once they are durable."""
        return self.commit(self.execute(commands))

    def execute(self, commands: Sequence[Any]) -> ExecutedBatch:
        """Run a batch of commands against the in-memory state; nothing is written.

        The state is then ahead of the journal until the batch is committed (``commit``, or
        a ``JournalWriter`` for an engine that executes while earlier commits are in
        flight). A snapshot due after this batch is taken now (the state is exactly the
        one after its events) and travels with it, to be stored after its commit: a
        snapshot never holds state that is not durable.
        """
        if self._failure is not None:
            raise EngineStopped(f"engine: expected a healthy engine, got failure {self._failure!r}")
        core = self.core
        events: list[Any] = []
        bounds: list[tuple[int, int]] = []
        for i, cmd in enumerate(commands):
            ts = self._now()
            if i == 0:
                self._maybe_tick(ts, events)
            start = len(events)
            try:
                check_command(cmd)
            except MalformedCommand as exc:
                self._reject_malformed(cmd, ts, str(exc), events)
            else:
                core.execute(cmd, ts, events)
            bounds.append((start, len(events)))
        if not commands:
            self._maybe_tick(self._now(), events)
        snapshot: tuple[int, str, bytes] | None = None
        self._events_since_snapshot += len(events)
        if self._events_since_snapshot >= self.config.snapshot_every_events:
            payload = core.snapshot()
            snapshot = (core.next_seq - 1, core.state_hash(), payload)
            self._events_since_snapshot = 0
        return ExecutedBatch(events, bounds, snapshot)

    def commit(self, batch: ExecutedBatch) -> list[list[Event]]:
        """Write an executed batch to the journal (one transaction), store its snapshot if
        one is due, publish its events; each command's events. A failed write stops the
        engine (``JournalError`` now, ``EngineStopped`` for every later call)."""
        try:
            self.last_batch_payload = self.journal.append(batch.events)
        except BaseException as exc:
            self.fail(exc)
            raise JournalError(f"journal append: expected durable write, got {exc!r}") from exc
        if batch.snapshot is not None:
            self.journal.save_snapshot(*batch.snapshot)
        self.publish(batch.events)
        return batch.results()

    def publish(self, events: list[Event]) -> None:
        """Hand a durable batch's events to every subscriber (nothing for no events)."""
        if events:
            for subscriber in self._subscribers:
                subscriber(events)

    def fail(self, exc: BaseException) -> None:
        """Mark the engine failed: its state is ahead of the journal, every later
        ``execute`` raises ``EngineStopped`` (a restart recovers from the journal)."""
        if self._failure is None:
            self._failure = exc

    @property
    def failure(self) -> BaseException | None:
        """Why the engine stopped, ``None`` while healthy."""
        return self._failure

    def _maybe_tick(self, ts: int, events: list[Any]) -> None:
        # Time-driven work (funding, expiry) enters as a command from the engine's clock;
        # its events belong to the batch but to no caller's command.
        if ts - self._last_tick_ns >= self.config.tick_interval_ns:
            self._last_tick_ns = ts
            self.core.execute(Tick(), ts, events)

    def _reject_malformed(self, cmd: Any, ts: int, message: str, out: list[Any]) -> None:
        def field(name: str) -> int:
            value = getattr(cmd, name, 0)
            return value if type(value) is int and 0 <= value < 2**63 else 0

        self.core.reject(
            out,
            ts,
            field("market_id"),
            field("order_id"),
            field("client_order_id"),
            field("owner_id"),
            field("sub_account_id"),
            RejectCode.MALFORMED_COMMAND,
            message,
        )

    def snapshot(self) -> str:
        """Write a snapshot of the current state (bounds replay); returns its hash."""
        payload = self.core.snapshot()
        state_hash = self.core.state_hash()
        self.journal.save_snapshot(self.core.next_seq - 1, state_hash, payload)
        self._events_since_snapshot = 0
        return state_hash

    def close(self) -> None:
        self.journal.close()


class EngineRunner:
    """Owns an ``Engine`` on one thread; any thread may ``submit`` and wait on a Future.

    The thread drains whatever is queued (up to the configured batch size) into one group
    commit, so throughput grows with load while an idle engine still answers at once.
    """

    _STOP = object()
    _SNAPSHOT = object()  # the "many" slot of a snapshot request (no commands)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sequencer", daemon=True)
        self._thread.start()

    @property
    def core_type(self) -> type[Any]:
        """The engine's state class (a read model rebuilds it from ``snapshot``)."""
        return type(self.engine.core)

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(events)`` on the sequencer thread after every durable batch."""
        self.engine.subscribe(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber``; unknown subscribers are ignored."""
        self.engine.unsubscribe(subscriber)

    def snapshot(self) -> Future[tuple[bytes, int]]:
        """The core's snapshot and last seq, taken on the sequencer thread right after a
        batch (so after everything submitted before this call) and before the next."""
        future: Future[tuple[bytes, int]] = Future()
        self._queue.put(((), future, self._SNAPSHOT))
        return future

    def submit(self, command: Command) -> Future[list[Event]]:
        """Queue a command; the Future resolves to its events once they are durable."""
        future: Future[list[Event]] = Future()
        self._queue.put(((command,), future, False))
        return future

    def submit_many(self, commands: Sequence[Command]) -> Future[list[list[Event]]]:
        """Queue several commands as one item (one Future, one queue hand-off); the Future
        resolves to each command's events, in order, once they are durable. They run
        together in one group commit (a batch may take the engine past
        ``group_commit_max_commands``); cancelled before the engine took them, none runs."""
        future: Future[list[list[Event]]] = Future()
        self._queue.put((tuple(commands), future, True))
        return future

    def _run(self) -> None:
        q = self._queue
        limit = self.engine.config.group_commit_max_commands
        idle_s = self.engine.config.tick_interval_ns / 1e9
        while True:
            try:
                item = q.get(timeout=idle_s)
            except queue.Empty:  # idle: the clock still drives funding and expiry
                try:
                    self.engine.process([])
                except BaseException as exc:
                    self._fail_pending(exc)
                    return
                continue
            if item is self._STOP:
                return
            # A Future cancelled before the engine took its command is dropped unexecuted;
            # once taken it is RUNNING and can no longer be cancelled, so set_result is safe.
            batch = [item] if item[1].set_running_or_notify_cancel() else []
            count = len(item[0]) if batch else 0
            stop = False
            while count < limit:
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                if nxt is self._STOP:
                    stop = True
                    break
                if nxt[1].set_running_or_notify_cancel():
                    batch.append(nxt)
                    count += len(nxt[0])
            if not batch:
                if stop:
                    return
                continue
            commands = [cmd for cmds, _, _ in batch for cmd in cmds]
            try:
                results = self.engine.process(commands)
            except BaseException as exc:
                for _, future, _ in batch:
                    future.set_exception(exc)
                self._fail_pending(exc)
                return
            at = 0
            for cmds, future, many in batch:
                n = len(cmds)
                if many is self._SNAPSHOT:  # the batch is published: the core is quiescent
                    core = self.engine.core
                    future.set_result((core.snapshot(), core.next_seq - 1))
                    continue
                future.set_result(results[at : at + n] if many else results[at])
                at += n
            if stop:
                return

    def _fail_pending(self, exc: BaseException) -> None:
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not self._STOP and item[1].set_running_or_notify_cancel():
                item[1].set_exception(EngineStopped(f"engine stopped after {exc!r}"))

    def close(self) -> None:
        """Finish everything already queued, then stop the thread."""
        self._queue.put(self._STOP)
        self._thread.join()
