"""The engine in its own process: ``EngineProcess``, the cross-process ``EngineRunner``.

Why: in one process the API's event loop and the sequencer thread share one GIL, so their
CPU per order adds up, and every time the journal's thread comes back from SQLite (fsync,
each statement) it waits up to the interpreter's switch interval for the loop to let go.
A child process owns the ``Engine`` (and its journal) alone; the parent keeps the same
surface as ``EngineRunner``: ``submit`` / ``submit_many`` return ``concurrent.futures``
Futures, ``subscribe`` follows every durable batch, ``snapshot`` gives a consistent state
between two batches, ``close`` finishes what is queued.

IPC: one duplex ``multiprocessing`` pipe, pickled messages, batched both ways. Parent ->
child: a sender thread drains its queue into one message (a list of requests); the child
drains the pipe into one group commit (up to ``group_commit_max_commands``) exactly like
the sequencer thread drains its queue. Child -> parent, after ``Engine.process`` returned
(the batch is durable): one message with the batch's events as ``encode_events`` bytes
and each request's command count; a reader thread in the parent decodes them, publishes
to subscribers, then resolves the Futures (same order as ``EngineRunner``: a command's
events are published before its Future resolves).

Crash semantics are the engine's: an acknowledged command is in the journal. If the child
dies (killed, journal failure) every pending and every later request fails with
``EngineStopped`` naming the exit code; a new ``EngineProcess`` on the same data directory
recovers from the journal.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import multiprocessing
import pickle
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

from exchange.core.commands import Command
from exchange.core.errors import JournalError
from exchange.core.events import Event, decode_events
from exchange.engine.config import EngineConfig
from exchange.engine.sequencer import Engine, EngineStopped, RecoveryReport
from perp.clearinghouse import Clearinghouse

Subscriber = Callable[[Sequence[Event]], None]

START_TIMEOUT_S = 120.0  # recovery of a long journal happens before "ready"
_PICKLE = pickle.HIGHEST_PROTOCOL

# Request kinds (parent -> child), each a tuple in a pickled list.
_CMDS = 0  # (_CMDS, request_id, commands)
_SNAPSHOT = 1  # (_SNAPSHOT, request_id)
_STOP = 2  # (_STOP,)

# Reply kinds (child -> parent), one pickled tuple per message.
_READY = 0  # (_READY, RecoveryReport)
_DONE = 1  # (_DONE, payload, ((request_id, [events per command...]) ...)) see _child_flush
_EVENTS = 2  # (_EVENTS, payload): events of an idle tick, no request
_SNAPSHOT_TAKEN = 3  # (_SNAPSHOT_TAKEN, request_id, blob, seq)
_FAILED = 4  # (_FAILED, request_ids, message): the engine failed; the child exits
_STOPPED = 5  # (_STOPPED,)


def _child_main(config: EngineConfig, conn: Connection) -> None:
    """The child's whole life: recover, then group-commit whatever the pipe holds."""
    try:
        engine = Engine(config)
    except BaseException as exc:
        conn.send_bytes(pickle.dumps((_FAILED, (), f"engine start: {exc!r}"), _PICKLE))
        return
    # The recovered state lives as long as the child: out of the cyclic GC's walks (a full
    # pass over a large book and account set is a pause every queued order waits out).
    gc.freeze()
    conn.send_bytes(pickle.dumps((_READY, engine.recovery), _PICKLE))
    limit = config.group_commit_max_commands
    idle_s = config.tick_interval_ns / 1e9
    try:
        while True:
            if not conn.poll(idle_s):  # idle: the clock still drives funding and expiry
                if not _child_flush(engine, conn, []):
                    return
                continue
            requests: list[Any] = pickle.loads(conn.recv_bytes())
            count = sum(len(r[2]) for r in requests if r[0] == _CMDS)
            while count < limit and conn.poll(0):
                more = pickle.loads(conn.recv_bytes())
                requests.extend(more)
                count += sum(len(r[2]) for r in more if r[0] == _CMDS)
            group: list[Any] = []
            for request in requests:
                if request[0] == _CMDS:
                    group.append(request)
                    continue
                # a snapshot or a stop sees every command queued before it
                if group and not _child_flush(engine, conn, group):
                    return
                group = []
                if request[0] == _SNAPSHOT:
                    blob = engine.core.snapshot()
                    seq = engine.core.next_seq - 1
                    conn.send_bytes(pickle.dumps((_SNAPSHOT_TAKEN, request[1], blob, seq), _PICKLE))
                else:
                    engine.close()
                    conn.send_bytes(pickle.dumps((_STOPPED,), _PICKLE))
                    return
            if group and not _child_flush(engine, conn, group):
                return
    except (EOFError, BrokenPipeError, ConnectionResetError):
        engine.close()  # the parent is gone: nothing is pending that anyone could learn of


def _child_flush(engine: Engine, conn: Connection, group: list[Any]) -> bool:
    """Run one group commit and send its outcome; ``False`` once the engine has failed."""
    commands = [cmd for _, _, cmds in group for cmd in cmds]
    try:
        results = engine.process(commands)
    except BaseException as exc:
        conn.send_bytes(pickle.dumps((_FAILED, tuple(r[1] for r in group), repr(exc)), _PICKLE))
        engine.close()
        return False
    payload = engine.last_batch_payload  # the journal's bytes: the events encoded once
    if not group:
        if payload:
            conn.send_bytes(pickle.dumps((_EVENTS, payload), _PICKLE))
        return True
    # Each command's events are a slice of the batch: send their counts, not the events
    # twice. Events before the first command's (a Tick of this batch) belong to no one.
    counts: list[tuple[int, tuple[int, ...]]] = []
    at = 0
    for _, request_id, cmds in group:
        n = len(cmds)
        counts.append((request_id, tuple(len(r) for r in results[at : at + n])))
        at += n
    conn.send_bytes(pickle.dumps((_DONE, payload, counts), _PICKLE))
    return True


class EngineProcess:
    """An ``Engine`` over ``config`` running in a child process; thread-safe ``submit``."""

    #: the engine's state class (``EnginePort`` builds its read model from a snapshot)
    core_type = Clearinghouse

    def __init__(self, config: EngineConfig, *, start_timeout_s: float = START_TIMEOUT_S) -> None:
        self.config = config
        ctx = multiprocessing.get_context("spawn")  # the parent has threads: never fork
        self._conn, child_conn = ctx.Pipe(duplex=True)
        self._process = ctx.Process(
            target=_child_main, args=(config, child_conn), name="perpdex-engine", daemon=True
        )
        self._process.start()
        child_conn.close()
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[Future[Any], bool]] = {}  # id -> (future, many)
        self._ids = itertools.count(1)
        self._subscribers: list[Subscriber] = []
        self._failure: str | None = None
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        if not self._conn.poll(start_timeout_s):
            self._process.kill()
            raise EngineStopped(
                f"engine process: expected ready within {start_timeout_s} s, got silence"
            )
        try:
            first = pickle.loads(self._conn.recv_bytes())
        except EOFError:
            self._process.join(5)
            first = (_FAILED, (), f"exit code {self._process.exitcode}")
        if first[0] != _READY:
            self._process.join(5)
            raise EngineStopped(f"engine process: expected ready, got failure {first[2]}")
        self.recovery: RecoveryReport = first[1]
        self._reader = threading.Thread(target=self._read, name="engine-reader", daemon=True)
        self._sender = threading.Thread(target=self._send, name="engine-sender", daemon=True)
        self._reader.start()
        self._sender.start()

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._process.pid

    # ------------------------------------------------------------------ EngineRunner surface
    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(events)`` (on the reader thread) after every durable batch."""
        self._subscribers.append(subscriber)

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop calling ``subscriber``; unknown subscribers are ignored."""
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    def submit(self, command: Command) -> Future[list[Event]]:
        """Queue a command; the Future resolves to its events once they are durable."""
        return self._request(_CMDS, (command,), many=False)

    def submit_many(self, commands: Sequence[Command]) -> Future[list[list[Event]]]:
        """Queue several commands as one request; they run in one group commit and the
        Future resolves to each command's events, in order, once they are durable."""
        return self._request(_CMDS, tuple(commands), many=True)

    def snapshot(self) -> Future[tuple[bytes, int]]:
        """The core's snapshot and last seq, taken between two batches (after everything
        submitted before this call)."""
        return self._request(_SNAPSHOT, (), many=False)

    def _request(self, kind: int, commands: tuple[Any, ...], *, many: bool) -> Future[Any]:
        future: Future[Any] = Future()
        future.set_running_or_notify_cancel()  # once sent, a request runs: not cancellable
        with self._lock:
            if self._failure is not None:
                future.set_exception(EngineStopped(self._failure))
                return future
            request_id = next(self._ids)
            self._pending[request_id] = (future, many)
        self._outbox.put((kind, request_id, commands) if kind == _CMDS else (kind, request_id))
        return future

    def close(self, timeout_s: float = 60.0) -> None:
        """Finish everything already queued, close the journal, stop the child."""
        self._outbox.put((_STOP,))
        self._sender.join(timeout_s)
        self._reader.join(timeout_s)
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()

    # ------------------------------------------------------------------ threads
    def _send(self) -> None:
        outbox = self._outbox
        conn = self._conn
        while True:
            batch = [outbox.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(outbox.get_nowait())
            try:
                conn.send_bytes(pickle.dumps(batch, _PICKLE))
            except (BrokenPipeError, ConnectionResetError, OSError):
                return  # the child is gone; the reader fails what is pending
            if batch[-1][0] == _STOP or any(item[0] == _STOP for item in batch):
                return

    def _read(self) -> None:
        conn = self._conn
        reason = "stopped"
        while True:
            try:
                msg = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                self._process.join(5)
                reason = f"exit code {self._process.exitcode}"
                break
            kind = msg[0]
            if kind == _DONE:
                self._done(msg[1], msg[2])
            elif kind == _EVENTS:
                self._publish(decode_events(msg[1]))
            elif kind == _SNAPSHOT_TAKEN:
                future = self._take(msg[1])
                if future is not None:
                    future.set_result((msg[2], msg[3]))
            elif kind == _FAILED:
                reason = f"failure {msg[2]}"
                for request_id in msg[1]:
                    future = self._take(request_id)
                    if future is not None:
                        future.set_exception(
                            JournalError(f"engine process: expected a durable batch, got {msg[2]}")
                        )
            elif kind == _STOPPED:
                break
        with self._lock:
            self._failure = f"engine process: expected a running engine, got {reason}"
            pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            future.set_exception(EngineStopped(self._failure))

    def _take(self, request_id: int) -> Future[Any] | None:
        with self._lock:
            entry = self._pending.pop(request_id, None)
        return None if entry is None else entry[0]

    def _publish(self, events: list[Event]) -> None:
        if events:
            for subscriber in list(self._subscribers):
                subscriber(events)

    def _done(self, payload: bytes, counts: list[tuple[int, tuple[int, ...]]]) -> None:
        events = decode_events(payload) if payload else []
        self._publish(events)
        at = len(events) - sum(sum(per_cmd) for _, per_cmd in counts)  # a Tick's events first
        with self._lock:
            entries = [self._pending.pop(request_id, None) for request_id, _ in counts]
        for entry, (_, per_cmd) in zip(entries, counts, strict=True):
            results = []
            for n in per_cmd:
                results.append(events[at : at + n])
                at += n
            if entry is not None:
                future, many = entry
                future.set_result(results if many else results[0])
