"""The engine in its own process: ``EngineProcess``, the cross-process ``EngineRunner``.

Why: in one process the API's event loop and the sequencer thread share one GIL, so their
CPU per order adds up, and every time the journal's thread comes back from SQLite (fsync,
each statement) it waits up to the interpreter's switch interval for the loop to let go.
A child process owns the ``Engine`` (and its journal) alone; the parent keeps the same
surface as ``EngineRunner``: ``submit`` / ``submit_many`` return ``concurrent.futures``
Futures, ``subscribe`` follows every durable batch, ``snapshot`` gives a consistent state
between two batches, ``close`` finishes what is queued.

IPC: one duplex pipe (a socket pair) carrying length-prefixed frames (``_Frames``), batched
both ways. Parent -> child: a list of requests per frame; commands travel compactly
(``encode_requests``: each command as ``[type index, *fields]`` in one ``orjson`` array,
pickle only for what that cannot carry exactly). The child drains the pipe into one group
commit (up to ``group_commit_max_commands``) as soon as anything is there: nothing is held
back to make batches bigger. Child -> parent, after ``Engine.process`` returned (the batch
is durable): the journal's own ``encode_events`` bytes and each request's command counts
(``encode_reply``); the parent decodes them, publishes to subscribers, then resolves the
Futures (same order as ``EngineRunner``: a command's events are published before its
Future resolves).

The parent's side runs in one of two ways. Bound to an event loop (``bind_loop``, what the
API's ``EnginePort`` does): the pipe is non-blocking, replies are read by a
``loop.add_reader`` callback and requests written at once from the loop (``add_writer`` only
while the socket buffer is full), so the API process has no extra thread taking turns on
the GIL with its loop; subscribers and done-callbacks then run on the loop's thread.
Otherwise (no loop, or once the loop is closed) a sender and a reader thread do the same
with blocking I/O.

Crash semantics are the engine's: an acknowledged command is in the journal. If the child
dies (killed, journal failure) every pending and every later request fails with
``EngineStopped`` naming the exit code; a new ``EngineProcess`` on the same data directory
recovers from the journal. The child ignores SIGINT and SIGTERM (a terminal's Ctrl+C and a
service manager's stop signal the whole group): its parent stops it after draining, and it
also ends when the pipe closes or on SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import multiprocessing
import os
import pickle
import queue
import select
import signal
import struct
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

import orjson

from exchange.core.commands import COMMAND_TYPES, Command
from exchange.core.errors import JournalError
from exchange.core.events import Event, decode_events
from exchange.engine.config import EngineConfig
from exchange.engine.cpu_latency import CpuLatencyRequest, CpuLatencyStatus, released, status_of
from exchange.engine.sequencer import Engine, EngineStopped, RecoveryReport
from perp.clearinghouse import Clearinghouse

Subscriber = Callable[[Sequence[Event]], None]

START_TIMEOUT_S = 120.0  # recovery of a long journal happens before "ready"
_PICKLE = pickle.HIGHEST_PROTOCOL
_READ_CHUNK = 1 << 18  # bytes per read of the pipe

# Request kinds (parent -> child), each a tuple in a list per frame.
_CMDS = 0  # (_CMDS, request_id, commands)
_SNAPSHOT = 1  # (_SNAPSHOT, request_id)
_STOP = 2  # (_STOP,)

# Reply kinds (child -> parent), one tuple per frame.
_READY = 0  # (_READY, RecoveryReport, CpuLatencyStatus)
_DONE = 1  # (_DONE, payload, [[request_id, events of each command...], ...]) _child_flush
_EVENTS = 2  # (_EVENTS, payload): events of an idle tick, no request
_SNAPSHOT_TAKEN = 3  # (_SNAPSHOT_TAKEN, request_id, blob, seq)
_FAILED = 4  # (_FAILED, request_ids, message): the engine failed; the child exits
_STOPPED = 5  # (_STOPPED,)

# ---------------------------------------------------------------------- wire format
_HEADER = struct.Struct("<Q")  # every frame: its length in bytes, then the bytes
_META_LEN = struct.Struct("<I")
_TAG_PICKLE = ord("P")  # the rest is a pickle (rare messages, or what JSON cannot carry)
_TAG_REQUESTS = ord("R")  # the rest is encode_requests' JSON array
_TAG_DONE = ord("D")  # u32 length, JSON counts, then the journal payload
_TAG_EVENTS = ord("E")  # the rest is a journal payload

_COMMAND_CLASSES: tuple[Any, ...] = tuple(COMMAND_TYPES.values())
_COMMAND_INDEX: dict[Any, int] = {cls: i for i, cls in enumerate(_COMMAND_CLASSES)}
# Field values JSON gives back with their exact type (not floats: NaN would come back null).
_EXACT_TYPES = frozenset((int, bool, str))
_new_tuple = tuple.__new__


def encode_requests(requests: Sequence[tuple[Any, ...]]) -> bytes:
    """One frame's requests: compact JSON when every command is a known command type of
    plain ints, bools and strings that fit JSON's integers; a pickle otherwise (a malformed
    command must reach the engine exactly as given, to be refused there)."""
    body: list[Any] = []
    for request in requests:
        if request[0] != _CMDS:
            body.append(list(request))
            continue
        item: list[Any] = [_CMDS, request[1]]
        for cmd in request[2]:
            index = _COMMAND_INDEX.get(type(cmd))
            if index is None or not _EXACT_TYPES.issuperset(map(type, cmd)):
                return _pickled(requests)
            item.append([index, *cmd])
        body.append(item)
    try:
        return b"R" + orjson.dumps(body)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits
        return _pickled(requests)


def _pickled(obj: Any) -> bytes:
    return b"P" + pickle.dumps(obj, _PICKLE)


def decode_requests(data: bytes) -> list[tuple[Any, ...]]:
    """The requests of one frame (``encode_requests``' inverse)."""
    if data[0] != _TAG_REQUESTS:
        requests: list[tuple[Any, ...]] = pickle.loads(memoryview(data)[1:])
        return requests
    classes = _COMMAND_CLASSES
    out: list[tuple[Any, ...]] = []
    for item in orjson.loads(memoryview(data)[1:]):
        if item[0] == _CMDS:
            # tuple.__new__: the fields are complete and already of their exact types
            cmds = tuple([_new_tuple(classes[c[0]], c[1:]) for c in item[2:]])
            out.append((_CMDS, item[1], cmds))
        else:
            out.append(tuple(item))
    return out


def encode_reply(reply: tuple[Any, ...]) -> bytes:
    """One reply frame: a batch's outcome as the journal payload plus JSON counts."""
    kind = reply[0]
    if kind == _DONE:
        meta = orjson.dumps(reply[2])
        payload: bytes = reply[1]
        return b"D" + _META_LEN.pack(len(meta)) + meta + payload
    if kind == _EVENTS:
        events_payload: bytes = reply[1]
        return b"E" + events_payload
    return _pickled(reply)


def decode_reply(data: bytes) -> tuple[Any, ...]:
    """``encode_reply``'s inverse."""
    tag = data[0]
    if tag == _TAG_DONE:
        (meta_len,) = _META_LEN.unpack_from(data, 1)
        end = 5 + meta_len
        return (_DONE, data[end:], orjson.loads(memoryview(data)[5:end]))
    if tag == _TAG_EVENTS:
        return (_EVENTS, data[1:])
    if tag != _TAG_PICKLE:
        raise EngineStopped(f"engine process: expected a reply frame tag, got {tag}")
    reply: tuple[Any, ...] = pickle.loads(memoryview(data)[1:])
    return reply


def frame(data: bytes) -> bytes:
    """``data`` with its length header, as it goes on the pipe."""
    return _HEADER.pack(len(data)) + data


class _Frames:
    """Length-prefixed frames put back together from whatever pieces reads return."""

    __slots__ = ("_buf", "ready")

    def __init__(self) -> None:
        self._buf = bytearray()
        self.ready: deque[bytes] = deque()  # complete frames, oldest first

    @property
    def partial(self) -> bool:
        """Bytes of an incomplete frame are buffered (the rest is still in the pipe)."""
        return bool(self._buf)

    def feed(self, data: bytes) -> None:
        """Add bytes read from the pipe; every frame they complete goes to ``ready``."""
        buf = self._buf
        buf += data
        at = 0
        end = len(buf)
        while end - at >= 8:
            (n,) = _HEADER.unpack_from(buf, at)
            if end - at - 8 < n:
                break
            self.ready.append(bytes(buf[at + 8 : at + 8 + n]))
            at += 8 + n
        if at:
            del buf[:at]


def _write_all(fd: int, data: bytes | bytearray) -> None:
    """Blocking write of every byte (a pipe write may take only part)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _recv(fd: int, frames: _Frames, poller: Any, timeout_s: float | None) -> bytes | None:
    """The next frame from a blocking ``fd``, waiting up to ``timeout_s`` (``None``: as
    long as it takes); ``None`` if nothing complete came in time; ``EOFError`` at the end."""
    while not frames.ready:
        if timeout_s is not None and not poller.poll(timeout_s * 1000):
            return None
        data = os.read(fd, _READ_CHUNK)
        if not data:
            raise EOFError("engine process: the other end closed the pipe")
        frames.feed(data)
    return frames.ready.popleft()


def _poller(fd: int) -> Any:
    poller = select.poll()  # not select.select: a server's fds may pass FD_SETSIZE
    poller.register(fd, select.POLLIN)
    return poller


# ---------------------------------------------------------------------- child
def _child_main(config: EngineConfig, conn: Connection) -> None:
    """The child's whole life: recover, then group-commit whatever the pipe holds."""
    # The parent owns the child's life: it stops it with a stop request after draining, or
    # the child ends when the pipe closes (SIGKILL still ends it at once). Ctrl+C in a
    # terminal signals the whole foreground process group, and a service manager's stop
    # sends SIGTERM to every process of the service; either killed the child mid-batch while
    # the parent was still shutting down in order (its last requests failed, no final
    # snapshot).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    fd = conn.fileno()
    frames = _Frames()
    poller = _poller(fd)

    def send(reply: tuple[Any, ...]) -> None:
        _write_all(fd, frame(encode_reply(reply)))

    try:
        engine = Engine(config)
    except BaseException as exc:
        send((_FAILED, (), f"engine start: {exc!r}"))
        return
    # The recovered state lives as long as the child: out of the cyclic GC's walks (a full
    # pass over a large book and account set is a pause every queued order waits out).
    gc.freeze()
    # Held for the child's life (its exit releases it too): idle CPUs poll, so a request
    # or a reply wakes the other side in microseconds (exchange.engine.cpu_latency).
    cpu_latency = CpuLatencyRequest.for_config(config.hold_cpu_latency, config.cpu_latency_us)
    try:
        send((_READY, engine.recovery, status_of(cpu_latency)))
        _child_serve(config, engine, fd, frames, poller, send)
    finally:
        if cpu_latency is not None:
            cpu_latency.close()


def _child_serve(
    config: EngineConfig,
    engine: Engine,
    fd: int,
    frames: _Frames,
    poller: Any,
    send: Callable[[tuple[Any, ...]], None],
) -> None:
    """Group-commit whatever the pipe holds until a stop request, a failure or the pipe's end."""
    limit = config.group_commit_max_commands
    idle_s = config.tick_interval_ns / 1e9
    try:
        while True:
            data = _recv(fd, frames, poller, idle_s)
            if data is None:  # idle: the clock still drives funding and expiry
                if not _child_flush(engine, send, []):
                    return
                continue
            # Whatever is in the pipe now runs now, as one group commit: no waiting for more.
            requests = decode_requests(data)
            count = sum(len(r[2]) for r in requests if r[0] == _CMDS)
            # No second look at the pipe (a poll per commit): what was read is taken; more
            # is read only to complete a frame cut by the read.
            while count < limit and (frames.ready or frames.partial):
                data = _recv(fd, frames, poller, 0)
                if data is None:
                    break
                more = decode_requests(data)
                requests.extend(more)
                count += sum(len(r[2]) for r in more if r[0] == _CMDS)
            group: list[Any] = []
            for request in requests:
                if request[0] == _CMDS:
                    group.append(request)
                    continue
                # a snapshot or a stop sees every command queued before it
                if group and not _child_flush(engine, send, group):
                    return
                group = []
                if request[0] == _SNAPSHOT:
                    blob = engine.core.snapshot()
                    send((_SNAPSHOT_TAKEN, request[1], blob, engine.core.next_seq - 1))
                else:
                    engine.close()
                    send((_STOPPED,))
                    return
            if group and not _child_flush(engine, send, group):
                return
    except (EOFError, OSError):
        engine.close()  # the parent is gone: nothing is pending that anyone could learn of


def _child_flush(engine: Engine, send: Callable[[tuple[Any, ...]], None], group: list[Any]) -> bool:
    """Run one group commit and send its outcome; ``False`` once the engine has failed."""
    commands = [cmd for _, _, cmds in group for cmd in cmds]
    try:
        results = engine.process(commands)
    except BaseException as exc:
        send((_FAILED, tuple(r[1] for r in group), repr(exc)))
        engine.close()
        return False
    payload = engine.last_batch_payload  # the journal's bytes: the events encoded once
    if not group:
        if payload:
            send((_EVENTS, payload))
        return True
    # Each command's events are a slice of the batch: send their counts, not the events
    # twice. Events before the first command's (a Tick of this batch) belong to no one.
    counts: list[list[int]] = []
    at = 0
    for _, request_id, cmds in group:
        n = len(cmds)
        counts.append([request_id, *[len(r) for r in results[at : at + n]]])
        at += n
    send((_DONE, payload, counts))
    return True


# ---------------------------------------------------------------------- parent
_UNSTARTED = 0  # nothing sent yet: the first request or bind_loop picks the mode
_THREADS = 1  # a sender and a reader thread, blocking I/O
_LOOP = 2  # callbacks of one event loop, non-blocking I/O


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
        self._fd = self._conn.fileno()
        self._frames = _Frames()
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[Future[Any], bool]] = {}  # id -> (future, many)
        self._ids = itertools.count(1)
        self._subscribers: list[Subscriber] = []
        self._failure: str | None = None
        self._failed_with: str | None = None  # the child's own failure message, if it sent one
        self._mode = _UNSTARTED
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._wbuf = bytearray()  # loop mode: framed requests the socket did not take yet
        self._writing = False  # loop mode: an add_writer callback is registered
        self._outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._reader: threading.Thread | None = None
        self._sender: threading.Thread | None = None
        try:
            data = _recv(self._fd, self._frames, _poller(self._fd), start_timeout_s)
        except (EOFError, OSError):
            self._process.join(5)
            first: tuple[Any, ...] = (_FAILED, (), f"exit code {self._process.exitcode}")
        else:
            if data is None:
                self._process.kill()
                raise EngineStopped(
                    f"engine process: expected ready within {start_timeout_s} s, got silence"
                )
            first = decode_reply(data)
        if first[0] != _READY:
            self._process.join(5)
            raise EngineStopped(f"engine process: expected ready, got failure {first[2]}")
        self.recovery: RecoveryReport = first[1]
        #: the child's PM QoS CPU-latency request (``exchange.engine.cpu_latency``)
        self.cpu_latency: CpuLatencyStatus = first[2]

    @property
    def pid(self) -> int | None:
        """The child's process id."""
        return self._process.pid

    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Serve the pipe from ``loop`` (call on the loop's thread, before any request):
        replies are read by a reader callback, requests written at once, subscribers and
        done-callbacks run on the loop. ``False`` (threads kept) if requests already went
        out some other way."""
        with self._lock:
            if self._mode != _UNSTARTED:
                return self._mode == _LOOP and self._loop is loop
            self._mode = _LOOP
            self._loop = loop
            self._loop_thread = threading.get_ident()
        os.set_blocking(self._fd, False)
        loop.add_reader(self._fd, self._on_readable)
        if self._frames.ready:  # replies (an idle tick's events) that came before
            loop.call_soon(self._handle_ready)
        return True

    # ------------------------------------------------------------------ EngineRunner surface
    def subscribe(self, subscriber: Subscriber) -> None:
        """Call ``subscriber(events)`` after every durable batch (on the reader thread, or
        on the loop once bound)."""
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
        loop = self._loop
        if loop is not None and loop.is_closed():
            self._leave_loop()  # the loop is gone: threads carry on
        with self._lock:
            if self._failure is not None:
                future.set_exception(EngineStopped(self._failure))
                return future
            if self._mode == _UNSTARTED:
                self._start_threads()
            request_id = next(self._ids)
            self._pending[request_id] = (future, many)
            mode = self._mode
        request = (kind, request_id, commands) if kind == _CMDS else (kind, request_id)
        if mode == _THREADS:
            self._outbox.put(request)
        elif threading.get_ident() == self._loop_thread:
            self._write((request,))
        else:
            assert loop is not None
            loop.call_soon_threadsafe(self._write, (request,))
        return future

    def close(self, timeout_s: float = 60.0) -> None:
        """Finish everything already queued, close the journal, stop the child."""
        if self._mode == _LOOP:
            self._leave_loop(timeout_s)
        with self._lock:
            if self._mode == _UNSTARTED:
                self._start_threads()
        self._outbox.put((_STOP,))
        assert self._sender is not None and self._reader is not None
        self._sender.join(timeout_s)
        self._reader.join(timeout_s)
        self._process.join(timeout_s)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._conn.close()
        self.cpu_latency = released(self.cpu_latency)  # ended with the child

    # ------------------------------------------------------------------ threads
    def _start_threads(self) -> None:  # under self._lock
        self._mode = _THREADS
        self._reader = threading.Thread(target=self._read, name="engine-reader", daemon=True)
        self._sender = threading.Thread(target=self._send, name="engine-sender", daemon=True)
        self._reader.start()
        self._sender.start()

    def _send(self) -> None:
        outbox = self._outbox
        while True:
            batch = [outbox.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(outbox.get_nowait())
            stop = [i for i, item in enumerate(batch) if item[0] == _STOP]
            if stop:
                batch = batch[: stop[0] + 1]
            try:
                _write_all(self._fd, frame(encode_requests(batch)))
            except OSError:
                return  # the child is gone; the reader fails what is pending
            if stop:
                return

    def _read(self) -> None:
        reason = "stopped"
        while True:
            try:
                data = _recv(self._fd, self._frames, None, None)
            except (EOFError, OSError):
                reason = self._exit_reason()
                break
            assert data is not None  # no timeout: a frame or EOFError
            if self._handle(decode_reply(data)):
                break
        self._finish(reason)

    # ------------------------------------------------------------------ event loop
    def _write(self, requests: tuple[tuple[Any, ...], ...]) -> None:
        """On the loop: frame ``requests`` and write what the socket takes now."""
        if self._mode != _LOOP:  # closed in between: the threads carry it
            self._outbox.put(requests[0])
            return
        data = encode_requests(requests)
        self._wbuf += _HEADER.pack(len(data))
        self._wbuf += data
        if not self._writing:
            self._on_writable()

    def _on_writable(self) -> None:
        buf = self._wbuf
        loop = self._loop
        assert loop is not None
        try:
            while buf:
                del buf[: os.write(self._fd, buf)]
        except BlockingIOError:  # the socket's buffer is full: go on when it drains
            if not self._writing:
                loop.add_writer(self._fd, self._on_writable)
                self._writing = True
            return
        except OSError:  # the child is gone: the reader callback fails what is pending
            buf.clear()
        if self._writing:
            loop.remove_writer(self._fd)
            self._writing = False

    def _on_readable(self) -> None:
        frames = self._frames
        try:
            while True:
                data = os.read(self._fd, _READ_CHUNK)
                if not data:
                    self._on_eof()
                    return
                frames.feed(data)
                if len(data) < _READ_CHUNK:
                    break
        except BlockingIOError:
            pass
        except OSError:
            self._on_eof()
            return
        self._handle_ready()

    def _handle_ready(self) -> None:
        ready = self._frames.ready
        while ready:
            if self._handle(decode_reply(ready.popleft())):
                self._detach()
                self._finish("stopped")
                return

    def _on_eof(self) -> None:
        self._detach()
        self._finish(self._exit_reason())

    def _detach(self) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.remove_reader(self._fd)
            if self._writing:
                loop.remove_writer(self._fd)
        self._writing = False

    def _leave_loop(self, timeout_s: float = 60.0) -> None:
        """Hand the pipe from the loop to the threads (for ``close``, or a closed loop)."""
        loop = self._loop
        assert loop is not None

        def leave() -> None:
            if self._mode != _LOOP:
                return
            self._detach()
            os.set_blocking(self._fd, True)
            with contextlib.suppress(OSError):  # a dead child: the reader will say so
                _write_all(self._fd, self._wbuf)
            self._wbuf.clear()
            with self._lock:
                self._start_threads()

        if loop.is_closed() or not loop.is_running() or threading.get_ident() == self._loop_thread:
            leave()
            return
        left: Future[None] = Future()

        def leave_on_loop() -> None:
            try:
                leave()
            finally:
                left.set_result(None)

        loop.call_soon_threadsafe(leave_on_loop)
        left.result(timeout_s)

    # ------------------------------------------------------------------ replies
    def _handle(self, msg: tuple[Any, ...]) -> bool:
        """Act on one reply; ``True`` once the child said it stopped."""
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
            self._failed_with = msg[2]
            for request_id in msg[1]:
                future = self._take(request_id)
                if future is not None:
                    future.set_exception(
                        JournalError(f"engine process: expected a durable batch, got {msg[2]}")
                    )
        elif kind == _STOPPED:
            return True
        return False

    def _exit_reason(self) -> str:
        self._process.join(5)  # the pipe closes as the child exits: the join is short
        reason = f"exit code {self._process.exitcode}"
        if self._failed_with is not None:
            reason += f" after failure {self._failed_with}"
        return reason

    def _finish(self, reason: str) -> None:
        """Fail everything pending and every later request."""
        with self._lock:
            if self._failure is None:
                self._failure = f"engine process: expected a running engine, got {reason}"
            failure = self._failure
            pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            future.set_exception(EngineStopped(failure))

    def _take(self, request_id: int) -> Future[Any] | None:
        with self._lock:
            entry = self._pending.pop(request_id, None)
        return None if entry is None else entry[0]

    def _publish(self, events: list[Event]) -> None:
        if events:
            for subscriber in list(self._subscribers):
                subscriber(events)

    def _done(self, payload: bytes, counts: list[list[int]]) -> None:
        events = decode_events(payload) if payload else []
        self._publish(events)
        # a Tick's events come first and belong to no request
        at = len(events) - sum(sum(per_request) - per_request[0] for per_request in counts)
        with self._lock:
            entries = [self._pending.pop(per_request[0], None) for per_request in counts]
        for entry, per_request in zip(entries, counts, strict=True):
            results = []
            for n in per_request[1:]:
                results.append(events[at : at + n])
                at += n
            if entry is not None:
                future, many = entry
                future.set_result(results if many else results[0])
