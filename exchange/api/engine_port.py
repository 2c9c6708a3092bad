"""The API's one door into the engine: submit commands, read state, follow events.

Everything the API knows about the engine goes through here, so when the engine grows (the
perp clearinghouse: accounts, collateral, positions, funding) only this module and the
read model change.

Threads: the engine runs on its sequencer thread (``EngineRunner``) or in a child process
(``EngineProcess``), whose pipe ``start`` binds to this loop (``bind_loop``: no pipe
threads). A runner calls the subscriber with each durable batch on its thread, and the
subscriber hands it to the event loop with ``call_soon_threadsafe`` (a runner bound to the
loop calls on the loop: folded at once); the loop folds it into the ``ReadModel`` and fans
it out to listeners. A command's Future is resolved *after* its batch was published, and
the hand-over to the waiting request goes through the same FIFO (or runs directly on the
loop), so by the time ``submit`` returns, the read model already holds that command's
events.

Start-up without a gap or an overlap: subscribe first (batches queue up), then ask the
runner for a snapshot of the core taken between two batches (``runner.snapshot()``);
queued batches at or below the snapshot's sequence number are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import partial
from typing import Any, Protocol

from exchange.api.read_model import ReadModel, ReadUpdate
from exchange.core.commands import Command
from exchange.core.events import Event
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER

Listener = Callable[[list[Event], ReadUpdate], None]
#: Called on the loop with each command's events once durable, or with the exception that
#: stopped the engine.
Then = Callable[[list[list[Event]] | BaseException], None]


def freeze_heap() -> None:
    """Move every object alive now (modules, the app, the read model's mirror) out of the
    cyclic GC's reach (``gc.freeze``).

    Why: a full collection walks every tracked object; with the mirror built, the API
    process holds ~110k of them and one gen-2 pass took 35-80 ms on the event loop (under
    load), the whole p99 of single orders at 10k/s (``bench.api_timeline``). What start-up
    built lives for the process's life anyway; objects made later are still collected.
    """
    gc.freeze()


class Runner(Protocol):
    """What the port needs of an engine: ``exchange.engine.sequencer.EngineRunner`` (a
    thread) or ``exchange.engine.process.EngineProcess`` (a child process)."""

    @property
    def core_type(self) -> Any: ...

    def subscribe(self, subscriber: Callable[[Sequence[Event]], None]) -> None: ...

    def snapshot(self) -> Future[tuple[bytes, int]]: ...

    def submit(self, command: Command) -> Future[list[Event]]: ...

    def submit_many(self, commands: Sequence[Command]) -> Future[list[list[Event]]]: ...


def _register(callbacks: list[Any], callback: Any) -> Callable[[], None]:
    """Append ``callback`` to ``callbacks``; a function that removes it (once, if there)."""
    callbacks.append(callback)

    def remove() -> None:
        if callback in callbacks:
            callbacks.remove(callback)

    return remove


def _settle(
    waiter: asyncio.Future[list[list[Event]]], outcome: list[list[Event]] | BaseException
) -> None:
    if waiter.cancelled():
        return
    if isinstance(outcome, BaseException):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)


class EnginePort:
    """Async access to an engine ``Runner`` plus a read model kept in step with it."""

    def __init__(
        self,
        runner: Runner,
        *,
        recent_trades_kept: int = 1_000,
        history_kept_per_owner: int = 1_000,
    ) -> None:
        self._runner = runner
        self._recent_trades_kept = recent_trades_kept
        self._history_kept_per_owner = history_kept_per_owner
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0  # the loop's thread id (callbacks already on it skip a hop)
        self._pending: list[list[Event]] = []
        # commands submitted in this turn of the loop and who to tell, for the next _flush
        self._outgoing: list[tuple[Sequence[Command], Then]] = []
        self._listeners: list[Listener] = []
        self._delivering = False  # submit_then callbacks of a hand-off are running
        self._delivered_hooks: list[Callable[[], None]] = []
        self._model: ReadModel | None = None
        self._subscribed = False
        self._closed = False

    @property
    def model(self) -> ReadModel:
        """The read model (after ``start``)."""
        if self._model is None:
            raise RuntimeError("engine port: expected start() first, got no read model")
        return self._model

    async def start(self) -> None:
        """Subscribe to the engine and build the read model from a consistent snapshot."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._loop_thread = threading.get_ident()
        bind_loop = getattr(self._runner, "bind_loop", None)
        if bind_loop is not None:  # an engine process: its pipe served by this loop
            bind_loop(loop)
        if not self._subscribed:
            self._runner.subscribe(self._on_engine_batch)
            self._subscribed = True
        blob, snapshot_seq = await self._snapshot_between_batches()
        # The mirror is the engine's own state class, so it folds events exactly as the
        # engine does, whatever the engine runs (matching core or clearinghouse).
        core = self._runner.core_type.from_snapshot(blob)
        self._model = ReadModel(
            core,
            recent_trades_kept=self._recent_trades_kept,
            history_kept_per_owner=self._history_kept_per_owner,
        )
        pending, self._pending = self._pending, []
        for events in pending:
            if events[-1].seq > snapshot_seq:
                self._fold([e for e in events if e.seq > snapshot_seq])
        freeze_heap()

    async def _snapshot_between_batches(self) -> tuple[bytes, int]:
        snapshot: Future[tuple[bytes, int]] = self._runner.snapshot()
        return await asyncio.wrap_future(snapshot)

    def close(self) -> None:
        """Stop folding (the engine itself is owned and closed by the caller)."""
        self._closed = True
        self._listeners.clear()

    # ------------------------------------------------------------------ events
    def _on_engine_batch(self, events: Sequence[Event]) -> None:
        # Sequencer thread: hand over to the loop, never touch loop state here.
        loop = self._loop
        if threading.get_ident() == self._loop_thread:  # a runner bound to the loop
            self._on_loop_batch(list(events))
            return
        if loop is not None and not self._closed:
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(self._on_loop_batch, list(events))

    def _on_loop_batch(self, events: list[Event]) -> None:
        if self._closed:
            return
        if self._model is None:
            self._pending.append(events)
            return
        self._fold(events)

    def _fold(self, events: list[Event]) -> None:
        update = self.model.apply(events)
        for listener in list(self._listeners):
            listener(events, update)

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener(events, update)`` on the loop after every folded batch.

        Returns a function that removes the listener.
        """
        return _register(self._listeners, listener)

    @property
    def delivering(self) -> bool:
        """``True`` while the ``submit_then`` callbacks of one hand-off run (on the loop)."""
        return self._delivering

    def after_delivery(self, hook: Callable[[], None]) -> Callable[[], None]:
        """Call ``hook()`` on the loop right after the callbacks of every hand-off ran (a
        writer sends what they produced at once, not in a later turn of the loop).

        Returns a function that removes the hook.
        """
        return _register(self._delivered_hooks, hook)

    # ------------------------------------------------------------------ commands
    def submit_then(self, commands: Sequence[Command], then: Then) -> None:
        """Queue ``commands`` (not empty) for the next hand-off to the engine; once they are
        durable and folded, ``then(events of each command)`` runs on the loop (or
        ``then(exception)`` if the engine failed them).

        Everything submitted in one turn of the event loop goes to the engine as ONE
        ``submit_many`` (one queue item or pipe message, one engine Future, one wake-up of
        the loop when the batch is durable), in submission order, so single orders arriving
        together share a group commit and a request's place in the order is kept across
        ``submit`` and ``submit_many``. The callbacks of one hand-off run one after the
        other in one step: no Future or scheduled callback per request.
        """
        if not commands:
            raise ValueError("engine port: expected at least one command, got none")
        outgoing = self._outgoing
        if not outgoing:
            loop = self._loop
            if loop is None:
                loop = asyncio.get_running_loop()
            loop.call_soon(self._flush)
        outgoing.append((commands, then))

    def _flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        loop = self._loop
        if loop is None:
            loop = asyncio.get_running_loop()

        # ``done`` reaches ``deliver`` as an argument, never through a closure: a
        # concurrent Future keeps its done-callbacks after running them, so a closure over
        # it would make a cycle (Future -> hand_over -> deliver -> Future) holding every
        # batch's commands and events until a full GC pass walked them all.
        def deliver(done: Future[list[list[Event]]]) -> None:  # on the loop, after the fold
            exc = done.exception()
            results = done.result() if exc is None else []
            at = 0
            self._delivering = True
            try:
                for cmds, then in outgoing:
                    n = len(cmds)
                    try:
                        then(results[at : at + n] if exc is None else exc)
                    except Exception as err:  # one caller's failure must not starve the others
                        loop.call_exception_handler(
                            {"message": "engine port: a submit callback failed", "exception": err}
                        )
                    at += n
            finally:
                self._delivering = False
                for hook in list(self._delivered_hooks):
                    try:
                        hook()
                    except Exception as err:
                        loop.call_exception_handler(
                            {"message": "engine port: a delivery hook failed", "exception": err}
                        )

        def hand_over(done: Future[list[list[Event]]]) -> None:
            if threading.get_ident() == self._loop_thread:  # after the fold, on the loop
                deliver(done)
                return
            with contextlib.suppress(RuntimeError):  # loop closed during shutdown
                loop.call_soon_threadsafe(deliver, done)

        commands = [cmd for cmds, _ in outgoing for cmd in cmds]
        self._runner.submit_many(commands).add_done_callback(hand_over)

    def submit_nowait(self, commands: Sequence[Command]) -> asyncio.Future[list[list[Event]]]:
        """``submit_many`` without a coroutine: a Future of each command's events.
        Cancelling it (caller gone) leaves the commands queued: they run anyway."""
        waiter: asyncio.Future[list[list[Event]]] = asyncio.get_running_loop().create_future()
        if commands:
            self.submit_then(commands, partial(_settle, waiter))
        else:
            waiter.set_result([])
        return waiter

    async def submit(self, command: Command) -> list[Event]:
        """Run one command; its events once durable (and folded into the read model)."""
        return (await self.submit_nowait((command,)))[0]

    async def submit_many(self, commands: Sequence[Command]) -> list[list[Event]]:
        """Run several commands (queued together, so usually one group commit)."""
        if not commands:
            return []
        return await self.submit_nowait(commands)

    # ------------------------------------------------------------------ reads
    def markets(self) -> list[dict[str, Any]]:
        """Every market's spec."""
        out = []
        for market_id in sorted(self.model.core.books):
            spec = self.model.core.books[market_id].spec
            out.append(
                {
                    "market_id": spec.market_id,
                    "symbol": spec.symbol,
                    "tick_size": spec.tick_size,
                    "lot_size": spec.lot_size,
                    "min_size_lots": spec.min_size_lots,
                    "max_size_lots": spec.max_size_lots,
                    "max_price_ticks": spec.max_price_ticks,
                    "max_open_orders_per_account": spec.max_open_orders_per_account,
                }
            )
        return out

    def has_market(self, market_id: int) -> bool:
        return market_id in self.model.core.books

    def tick_lot(self, market_id: int) -> tuple[int, int]:
        """``(tick_size, lot_size)`` of a market (it must exist)."""
        spec = self.model.core.books[market_id].spec
        return spec.tick_size, spec.lot_size

    # ------------------------------------------------------------------ accounts and prices
    # The clearinghouse's read models (accounts, margin, perp market state). An engine
    # running the bare matching core has none: these return ``None``.
    def _clearinghouse(self) -> Any:
        core = self.model.core
        return core if hasattr(core, "accounts") and hasattr(core, "margin") else None

    def _sub_accounts(self, ch: Any, owner_id: int) -> list[int]:
        lo = owner_id * SUB_ACCOUNTS_PER_OWNER
        return sorted(a - lo for a in ch.accounts if lo <= a < lo + SUB_ACCOUNTS_PER_OWNER)

    def balances(self, owner_id: int) -> list[dict[str, Any]] | None:
        """Collateral and cumulative statistics per sub-account (QUOTE_PRECISION)."""
        ch = self._clearinghouse()
        if ch is None:
            return None
        out = []
        for sub in self._sub_accounts(ch, owner_id):
            acct = ch.account(owner_id, sub)
            out.append(
                {
                    "sub_account_id": sub,
                    "collateral_quote": acct.collateral_quote,
                    "realized_pnl_quote": acct.realized_pnl_quote,
                    "fees_paid_quote": acct.fees_paid_quote,
                    "funding_paid_quote": acct.funding_paid_quote,
                }
            )
        return out

    def margin_summaries(self, owner_id: int) -> list[dict[str, Any]] | None:
        """Cross-margin summary per sub-account at the current marks (QUOTE_PRECISION)."""
        ch = self._clearinghouse()
        if ch is None:
            return None
        out = []
        for sub in self._sub_accounts(ch, owner_id):
            summary = ch.margin(owner_id, sub)
            out.append(
                {
                    "sub_account_id": sub,
                    "equity_quote": summary.equity_quote,
                    "initial_margin_quote": summary.initial_quote,
                    "maintenance_margin_quote": summary.maintenance_quote,
                    "free_collateral_quote": summary.free_collateral_quote,
                    "below_maintenance": summary.below_maintenance,
                }
            )
        return out

    def positions(self, owner_id: int) -> list[dict[str, Any]]:
        """Open positions per sub-account and market: the clearinghouse's (signed base at
        ``BASE_PRECISION`` and cost basis), or the matching core's fill-derived lots."""
        ch = self._clearinghouse()
        if ch is None:
            lo = owner_id * SUB_ACCOUNTS_PER_OWNER
            return [
                {"sub_account_id": a - lo, "market_id": m, "position_lots": lots}
                for (a, m), lots in sorted(self.model.matching.positions.items())
                if lots and lo <= a < lo + SUB_ACCOUNTS_PER_OWNER
            ]
        out = []
        for sub in self._sub_accounts(ch, owner_id):
            for market_id, pos in sorted(ch.account(owner_id, sub).positions.items()):
                out.append(
                    {
                        "sub_account_id": sub,
                        "market_id": market_id,
                        "base": pos.base,
                        "entry_quote": pos.entry_quote,
                        "realized_pnl_quote": pos.realized_pnl,
                        "funding_snapshot": pos.funding_snapshot,
                    }
                )
        return out

    def funding_payments(self, owner_id: int) -> list[dict[str, Any]]:
        """The owner's settled funding (``FundingSettled``), oldest first, bounded."""
        return list(self.model.owner_funding.get(owner_id, ()))

    def market_prices(self, market_id: int) -> dict[str, Any] | None:
        """Index (oracle), mark and funding state of a market (``PRICE_PRECISION``)."""
        ch = self._clearinghouse()
        if ch is None or market_id not in ch.markets:
            return None
        m = ch.markets[market_id]
        last = self.model.last_funding.get(market_id)
        return {
            "market_id": market_id,
            "index_price": m.index_price,
            "index_confidence": m.index_confidence,
            "index_publish_time_s": m.index_publish_time_s,
            "oracle_valid": m.oracle_valid,
            "mark_price": m.mark_price,
            "cumulative_funding": m.cumulative_funding,
            "last_funding_rate": last["funding_rate"] if last else 0,
            "last_funding_ts_ns": last["ts_ns"] if last else 0,
            "status": m.breaker.status.name,
            "kill_switch": m.breaker.killed,
        }
