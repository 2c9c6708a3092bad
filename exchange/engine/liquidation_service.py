"""The engine's sweeper and backstop: after every durable batch, keep the sweeper's arrays in
step (only the accounts the batch touched are re-read), screen on every oracle / mark /
funding update, re-check exactly, and send the engine's backstop ``Liquidate`` for the
accounts no keeper liquidated within the grace period (``docs/PROTOCOL.md``, "Engine
liquidation flow"). A market's liquidation validity (the last reading passed the liquidation
guard and is fresh) can also change with time alone: a batch that flips it screens too, so
the backstop never acts on candidates found at a price liquidation may no longer use.

It reads a ``Clearinghouse`` that the caller folds the engine's batches into and is called
with each batch right after that fold (``on_batch``), so it sees a state between two batches
with no lock: in ``perpdex run`` the API's mirror (an ``EnginePort`` listener, on the event
loop, whichever runner the engine is on), or an ``Engine``'s own core (an ``Engine``
subscriber, on its thread). It only queues commands (``submit`` must not wait on the
engine). The backstop account is an ordinary sub-account the operator funds: it takes the
positions over like any liquidator and is paid the liquidator's share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from exchange.core.commands import Command, Liquidate
from exchange.core.events import (
    Event,
    FundingRateApplied,
    MarkPriceUpdated,
    OraclePriceUpdated,
)
from exchange.core.units import NANOS_PER_SECOND
from liquidation.keeper import BackstopPolicy, Candidate, LiquidationWatch
from perp.clearinghouse import Clearinghouse

_PRICE_EVENTS = (OraclePriceUpdated, MarkPriceUpdated, FundingRateApplied)


class LiquidationService:
    """Sweeper + backstop over ``core``, the engine's state folded up to the batch
    ``on_batch`` is called with. ``submit`` queues a command without waiting for it."""

    def __init__(
        self,
        core: Clearinghouse,
        submit: Callable[[Command], Any],
        *,
        liquidator_owner_id: int,
        liquidator_sub_account_id: int = 0,
        grace_period_ns: int = 2 * NANOS_PER_SECOND,
        retry_ns: int = 1 * NANOS_PER_SECOND,
    ) -> None:
        self.core = core
        self.submit = submit
        self.liquidator = (liquidator_owner_id, liquidator_sub_account_id)
        self.watch = LiquidationWatch(core)
        self.policy = BackstopPolicy(grace_period_ns=grace_period_ns, retry_ns=retry_ns)
        self.candidates: list[Candidate] = []
        self.screens = 0
        self.sent = 0
        self._liquidation_valid: dict[int, bool] = {}  # market -> validity at the last screen

    def on_batch(self, events: Sequence[Event]) -> None:
        """After ``events`` were folded into ``core``: sync, screen when a price moved,
        re-check the known candidates otherwise, then send what the backstop rule makes due."""
        if not events:
            return
        self.watch.sync(events)
        ts_ns = events[-1].ts_ns
        validity = {
            market_id: reading.valid_for_liquidation
            for market_id, reading in self.core._liquidation_oracles(ts_ns).items()
        }
        if validity != self._liquidation_valid or any(type(e) in _PRICE_EVENTS for e in events):
            self._liquidation_valid = validity
            self.candidates = self.watch.candidates(ts_ns)
            self.screens += 1
        elif self.candidates:
            still = []
            for c in self.candidates:
                intent = self.watch.recheck(c.owner_id, c.sub_account_id)
                if intent is not None:
                    still.append(c._replace(equity_quote=intent.equity_quote))
            self.candidates = still
        for c in self.policy.due(self.candidates, ts_ns):
            owner_id, sub = self.liquidator
            if c.owner_id == owner_id:
                continue  # the backstop never liquidates its own owner's accounts
            self.submit(Liquidate(owner_id, sub, c.owner_id, c.sub_account_id))
            self.sent += 1
