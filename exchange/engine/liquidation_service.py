"""The sweeper in the engine: after every durable batch, keep the sweeper's arrays in step
(only the accounts the batch touched are re-read), screen on every oracle / mark / funding
update, re-check exactly, and send the engine's backstop ``Liquidate`` for the accounts no
keeper liquidated within the grace period (``docs/PROTOCOL.md``, "Engine liquidation flow").
A market's liquidation validity (the last reading passed the liquidation guard and is fresh)
can also change with time alone: a batch that flips it screens too, so the backstop never
acts on candidates found at a price liquidation may no longer use.

It runs on the sequencer thread as an ``Engine`` subscriber, so it reads the engine's own
state between two batches with no lock; it only queues commands (``submit`` must not wait on
the engine). The backstop account is an ordinary sub-account the operator funds: it takes the
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
from exchange.engine.sequencer import Engine
from liquidation.keeper import BackstopPolicy, Candidate, LiquidationWatch

_PRICE_EVENTS = (OraclePriceUpdated, MarkPriceUpdated, FundingRateApplied)


class LiquidationService:
    """Sweeper + backstop over one engine. ``submit`` queues a command (``EngineRunner.submit``)."""

    def __init__(
        self,
        engine: Engine,
        submit: Callable[[Command], Any],
        *,
        liquidator_owner_id: int,
        liquidator_sub_account_id: int = 0,
        grace_period_ns: int = 2 * NANOS_PER_SECOND,
        retry_ns: int = 1 * NANOS_PER_SECOND,
    ) -> None:
        self.engine = engine
        self.submit = submit
        self.liquidator = (liquidator_owner_id, liquidator_sub_account_id)
        self.watch = LiquidationWatch(engine.core)
        self.policy = BackstopPolicy(grace_period_ns=grace_period_ns, retry_ns=retry_ns)
        self.candidates: list[Candidate] = []
        self.screens = 0
        self.sent = 0
        self._liquidation_valid: dict[int, bool] = {}  # market -> validity at the last screen
        engine.subscribe(self.on_batch)

    def on_batch(self, events: Sequence[Event]) -> None:
        """Subscriber: sync, screen when a price moved, re-check the known candidates
        otherwise, then send what the backstop rule makes due."""
        if not events:
            return
        self.watch.sync(events)
        ts_ns = events[-1].ts_ns
        validity = {
            market_id: reading.valid_for_liquidation
            for market_id, reading in self.engine.core._liquidation_oracles(ts_ns).items()
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
