"""The inline engine: the engine executes on the API's event loop, its journal commits run
on a writer thread (``InlineEngine``).

Why: with the engine in a child process (``exchange.engine.process``) every single order
crosses two process boundaries (API -> engine -> API), each a wake-up of a process on the
other core, and the child pays its own per-order and per-wake-up costs. Here a command
submitted on the loop is executed at once, on the loop (``Engine.execute``: no hand-off),
and only the durable commit leaves it: the executed batch goes to a ``JournalWriter``
thread, which group-commits whatever queued meanwhile while the loop goes on executing
(sqlite3 releases the GIL for the commit). The commit's report comes back to the loop
(one ``call_soon_threadsafe`` per group commit), which publishes each batch's events to the
subscribers, in seq order, and only then resolves its Future, as ``EngineRunner`` does.

Durability is unchanged: a Future resolves only after its batch's commit; snapshots are
stored by the writer after the commit that covers them. The in-memory state runs ahead of
the journal by the batches in flight; if a commit fails, the engine stops (the pending
requests and every later one fail with ``EngineStopped``) and a restart recovers from the
journal, as with the other runners.

Threads: bound to a loop (``bind_loop``, what ``EnginePort.start`` calls), commands from
the loop's thread run at once, commands from other threads are marshalled onto the loop,
and subscribers and Future callbacks run on the loop; the funding/expiry ``Tick`` of an
idle engine comes from a loop timer every ``tick_interval_ns``. Unbound (never bound, or
once the loop is closed) a command runs on the caller's thread under a lock, and
subscribers and callbacks run on the writer thread; idle ticks then only come with traffic
(every command batch ticks when the interval has passed).

The GIL: when its commit returns, the writer thread needs the GIL back to report; while the
loop is busy that waits up to the interpreter's switch interval (5 ms by default, the whole
latency budget), so ``bind_loop`` lowers it (``switch_interval_s``; process-wide: ``close``
puts back the interval it found, unless someone changed it meanwhile).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from exchange.core.commands import Command
from exchange.core.events import Event
from exchange.engine.config import EngineConfig
from exchange.engine.journal_writer import JournalWriter
from exchange.engine.sequencer import Engine, EngineStopped, ExecutedBatch, RecoveryReport

Subscriber = Callable[[Sequence[Event]], None]

#: What ``bind_loop`` sets ``sys.setswitchinterval`` to (seconds): the longest the writer
#: thread waits for the GIL when its commit returns while the loop is busy (see the module).
SWITCH_INTERVAL_S = 0.000_5

# What a pending batch answers: its Future gets ...
_ONE = 0  # ... the events of its one command
_MANY = 1  # ... each command's events
_SNAPSHOT = 2  # ... (snapshot blob, seq) taken when it was queued
_TICK = 3  # nothing: an idle tick, no Future


class InlineEngine:
    """An ``Engine`` executing on the caller's event loop, committing on a writer thread;
    the ``Runner`` surface of ``EngineRunner`` / ``EngineProcess``. Takes ownership of
    ``engine`` (``close`` closes it)."""

    def __init__(
        self, engine: Engine, *, switch_interval_s: float | None = SWITCH_INTERVAL_S
    ) -> None:
        if switch_interval_s is not None and not 0 < switch_interval_s <= 1:
            raise ValueError(
                f"switch_interval_s: expected None or 0 < s <= 1, got {switch_interval_s!r}"
            )
        self.engine = engine
        self._switch_interval_s = switch_interval_s
        self._switch_interval_before_s: float | None = None  # what bind_loop replaced
        # execute + enqueue, and drains, one at a time; re-entrant: a subscriber called by a
        # drain may submit
        self._lock = threading.RLock()
        # one entry per queued batch, enqueue order: (batch, future, kind, snapshot)
        self._pending: deque[tuple[ExecutedBatch, Future[Any] | None, int, Any]] = deque()
        # the writer's reports not yet handled: (batch count, error)
        self._reports: deque[tuple[int, BaseException | None]] = deque()
        self._drain_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False
        self._writer = JournalWriter(engine.journal, self._on_report)

    # ------------------------------------------------------------------ Runner surface
    @property
    def core_type(self) -> type[Any]:
        """The engine's state class (a read model rebuilds it from ``snapshot``)."""
        return type(self.engine.core)

    @property
    def config(self) -> EngineConfig:
        """The engine's configuration."""
        return self.engine.config

    @property
    def recovery(self) -> RecoveryReport:
        """How the engine recovered its state at start-up."""
        return self.engine.recovery

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Execute on ``loop`` from now on (call on the loop's thread): commands from other
        threads are marshalled onto it, subscribers and callbacks run on it, a timer drives
        idle ticks. ``True`` if bound to ``loop`` (also when it already was)."""
        with self._lock:
            if self._loop is not None:
                return self._loop is loop
            self._loop = loop
            self._loop_thread = threading.get_ident()
        if self._switch_interval_s is not None:
            self._switch_interval_before_s = sys.getswitchinterval()
            sys.setswitchinterval(self._switch_interval_s)
        self._arm_timer()
        return True

    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(events)`` after every durable batch, in seq order (on the
        bound loop; unbound, on the writer thread)."""
        self.engine.subscribe(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber``; unknown subscribers are ignored."""
        self.engine.unsubscribe(subscriber)

    def submit(self, command: Command) -> Future[list[Event]]:
        """Run a command; the Future resolves to its events once they are durable."""
        return self._request((command,), _ONE)

    def submit_many(self, commands: Sequence[Command]) -> Future[list[list[Event]]]:
        """Run several commands as one batch; the Future resolves to each command's events,
        in order, once they are durable."""
        return self._request(tuple(commands), _MANY)

    def snapshot(self) -> Future[tuple[bytes, int]]:
        """The core's snapshot and last seq, taken after everything submitted before this
        call; resolves once all of that is durable."""
        return self._request((), _SNAPSHOT)

    def close(self, timeout_s: float | None = 60.0) -> None:
        """Commit everything already executed, deliver its results, close the journal, put
        back the switch interval ``bind_loop`` replaced. Later requests fail with
        ``EngineStopped``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        loop = self._loop
        timer, self._timer = self._timer, None
        if timer is not None and loop is not None and not loop.is_closed():
            if threading.get_ident() == self._loop_thread:
                timer.cancel()
            else:
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(timer.cancel)
        self._writer.close(timeout_s)
        if loop is None or loop.is_closed() or threading.get_ident() == self._loop_thread:
            self._drain()  # deliver now what the writer reported last
        self.engine.close()
        before = self._switch_interval_before_s
        lowered = self._switch_interval_s
        # the interpreter keeps it in whole microseconds: compare to within one
        if (
            before is not None
            and lowered is not None
            and abs(sys.getswitchinterval() - lowered) < 1e-6
        ):
            sys.setswitchinterval(before)

    # ------------------------------------------------------------------ requests
    def _request(self, commands: tuple[Any, ...], kind: int) -> Future[Any]:
        future: Future[Any] = Future()
        loop = self._loop
        if (
            loop is None
            or threading.get_ident() == self._loop_thread
            or loop.is_closed()
            or not self._marshal(loop, commands, future, kind)
        ):
            self._run(commands, future, kind)
        return future

    def _marshal(
        self, loop: asyncio.AbstractEventLoop, commands: tuple[Any, ...], future: Any, kind: int
    ) -> bool:
        try:
            loop.call_soon_threadsafe(self._run, commands, future, kind)
        except RuntimeError:  # the loop closed meanwhile: run unbound
            return False
        return True

    def _run(self, commands: tuple[Any, ...], future: Future[Any], kind: int) -> None:
        """Execute now, queue the batch for its commit (the Future resolves after it)."""
        if not future.set_running_or_notify_cancel():
            return  # cancelled before it ran: nothing executed
        engine = self.engine
        with self._lock:
            if self._closed:
                future.set_exception(EngineStopped("inline engine: expected open, got closed"))
                return
            snapshot: Any = None
            try:
                if kind == _SNAPSHOT:
                    core = engine.core
                    snapshot = (core.snapshot(), core.next_seq - 1)
                    batch = ExecutedBatch([], [], None)
                else:
                    batch = engine.execute(commands)
            except EngineStopped as exc:
                future.set_exception(exc)
                return
            except BaseException as exc:  # a broken invariant: the state may be half-applied
                engine.fail(exc)
                future.set_exception(EngineStopped(f"inline engine: expected a batch, got {exc!r}"))
                raise
            self._pending.append((batch, future, kind, snapshot))
            try:
                self._writer.enqueue(batch)
            except EngineStopped as exc:
                self._pending.pop()
                future.set_exception(exc)

    def _arm_timer(self) -> None:
        loop = self._loop
        if loop is not None and not self._closed:
            self._timer = loop.call_later(self.engine.config.tick_interval_ns / 1e9, self._tick)

    def _tick(self) -> None:
        # Idle time still drives funding and expiry; with traffic the batches tick already
        # (``Engine.execute`` ticks when the interval has passed) and this adds no events.
        with self._lock:
            if self._closed or self.engine.failure is not None:
                return
            batch = self.engine.execute([])
            if batch.events:
                self._pending.append((batch, None, _TICK, None))
                try:
                    self._writer.enqueue(batch)
                except EngineStopped:
                    self._pending.pop()
                    return
        self._arm_timer()

    # ------------------------------------------------------------------ commits
    def _on_report(self, batches: list[ExecutedBatch], error: BaseException | None) -> None:
        """Writer thread: a group commit's outcome; handled on the loop when bound."""
        if error is not None:
            self.engine.fail(error)  # no further execute, at once
        self._reports.append((len(batches), error))
        if self._drain_scheduled:  # a drain is due and will take this report too
            return
        loop = self._loop
        if loop is not None and not loop.is_closed():
            self._drain_scheduled = True
            try:
                loop.call_soon_threadsafe(self._drain)
                return
            except RuntimeError:  # the loop closed meanwhile
                self._drain_scheduled = False
        self._drain()

    def _drain(self) -> None:
        """Publish the reported batches' events and resolve their Futures, in order."""
        self._drain_scheduled = False  # before taking reports: later ones schedule anew
        reports = self._reports
        pending = self._pending
        publish = self.engine.publish
        with self._lock:
            while reports:
                count, error = reports.popleft()
                for _ in range(count):
                    batch, future, kind, snapshot = pending.popleft()
                    if future is None:
                        if error is None:
                            publish(batch.events)
                        continue
                    if error is not None:
                        stopped = EngineStopped(
                            f"inline engine: expected a durable batch, got {error!r}"
                        )
                        stopped.__cause__ = error
                        future.set_exception(stopped)
                        continue
                    publish(batch.events)
                    if kind == _ONE:
                        start, end = batch.bounds[0]
                        future.set_result(batch.events[start:end])
                    elif kind == _MANY:
                        future.set_result(batch.results())
                    else:
                        future.set_result(snapshot)
