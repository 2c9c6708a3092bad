"""Helpers shared by the engine's unit tests."""

from __future__ import annotations

from typing import Any

from exchange.core.commands import CreateMarket, Deposit, UpdateOraclePrice

TICK = 1_000_000
LOT = 1_000_000_000

#: BTC-PERP (market 0) at an oracle price of 100, and collateral for owners 0..3
ONE_MARKET_SETUP: list[Any] = [
    CreateMarket(0, "BTC-PERP", TICK, LOT),
    UpdateOraclePrice(0, 100 * TICK, 0, 1, 1, True),
    *[Deposit(owner, 0, 10**12) for owner in range(4)],
]


class StepClock:
    """An engine clock (ns) that moves 1 ns forward on every reading, from 1,001."""

    def __init__(self) -> None:
        self.now = 1_000

    def __call__(self) -> int:
        self.now += 1
        return self.now
