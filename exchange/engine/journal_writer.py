"""The journal's writer thread: group commits of executed batches, off the caller's thread.

Why: an engine that executes on an event loop (``exchange.engine.inline``) must not block
the loop for a commit's fsync. The loop executes a batch (``Engine.execute``) and enqueues
it here; this thread owns every append to the journal. Whatever is queued when the thread
comes round is concatenated into ONE transaction (``Journal.append``: one fsync for all of
them), so the loop keeps executing the next orders while a commit is in flight and the
commits grow with load. sqlite3 releases the GIL while it runs a statement (the commit's
fsync included), so the loop runs during the commit.

Reports: after each group commit ``report(batches, None)`` is called on this thread with
the committed batches in enqueue order; the snapshots they carry are stored after that
(they are only ever of durable state). On a failed write ``report(batches, exc)`` gets
that group and every batch queued behind it, and from then on ``enqueue`` raises
``EngineStopped``: the caller's in-memory state is ahead of the journal, so it must stop
(a restart recovers from the journal).

Wake-ups: the thread is woken only when it is idle; a busy writer picks up what was queued
meanwhile when its commit returns, so a stream of orders costs one wake-up per commit, not
one per order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from exchange.core.events import Event
from exchange.engine.journal import Journal
from exchange.engine.sequencer import EngineStopped, ExecutedBatch

Report = Callable[[list[ExecutedBatch], BaseException | None], None]


class JournalWriter:
    """One thread committing enqueued batches to ``journal`` in order (see the module)."""

    def __init__(self, journal: Journal, report: Report, *, name: str = "journal-writer") -> None:
        self._journal = journal
        self._report = report
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[ExecutedBatch] = []
        self._idle = False  # the thread waits on the condition: the next enqueue wakes it
        self._closing = False
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def failure(self) -> BaseException | None:
        """The write that stopped the writer, ``None`` while healthy."""
        return self._failure

    def enqueue(self, batch: ExecutedBatch) -> None:
        """Queue ``batch`` for the next group commit (batches commit in enqueue order).

        Raises ``EngineStopped`` after a failed write or once closed: nothing is queued.
        """
        with self._cond:
            if self._failure is not None:
                raise EngineStopped(
                    f"journal writer: expected a healthy journal, got failure {self._failure!r}"
                )
            if self._closing:
                raise EngineStopped("journal writer: expected an open writer, got closed")
            self._queue.append(batch)
            if self._idle:
                self._idle = False
                self._cond.notify()

    def close(self, timeout_s: float | None = None) -> None:
        """Commit everything already queued, then stop the thread (idempotent)."""
        with self._cond:
            self._closing = True
            if self._idle:
                self._idle = False
                self._cond.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def _run(self) -> None:
        cond = self._cond
        journal = self._journal
        while True:
            with cond:
                while not self._queue and not self._closing:
                    self._idle = True
                    cond.wait()
                batches, self._queue = self._queue, []
                if not batches:  # closing with nothing left
                    return
            if len(batches) == 1:
                events: list[Event] = batches[0].events
            else:
                events = [event for batch in batches for event in batch.events]
            try:
                journal.append(events)
            except BaseException as exc:
                self._fail(batches, exc)
                return
            try:
                self._report(batches, None)
                for batch in batches:
                    if batch.snapshot is not None:
                        journal.save_snapshot(*batch.snapshot)
            except BaseException as exc:  # these are durable and reported; no later one may be
                self._fail([], exc)
                return

    def _fail(self, batches: list[ExecutedBatch], exc: BaseException) -> None:
        with self._cond:
            self._failure = exc
            later, self._queue = self._queue, []
        self._report(batches + later, exc)
