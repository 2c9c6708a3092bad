"""The engine-with-backstop setup the keeper backstop tests share: a real engine (SQLite
journal), its LiquidationService with a 2 s grace period, and a 10x long below maintenance
once the oracle falls to 92."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchange.core.commands import CreateMarket, Deposit, PlaceOrder, UpdateOraclePrice
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from exchange.engine.config import EngineConfig
from exchange.engine.liquidation_service import LiquidationService
from exchange.engine.sequencer import Engine

TICK = 1_000_000
LOT = 1_000_000_000
USDC = 1_000_000
S = NANOS_PER_SECOND
TRADER, MAKER, KEEPER, BACKSTOP = 1, 3, 4, 9


class Clock:
    """A settable clock, starting at t = 1,000 s."""

    def __init__(self) -> None:
        self.now = 1_000 * S

    def __call__(self) -> int:
        return self.now


def open_engine(data_dir: Path, clock: Clock) -> Engine:
    """An engine on ``data_dir``'s journal (hourly ticks: none fire in these tests)."""
    return Engine(EngineConfig(data_dir=data_dir, tick_interval_ns=3600 * S), clock=clock)


def engine_with_a_ten_x_long(
    data_dir: Path, clock: Clock
) -> tuple[Engine, LiquidationService, list[Any]]:
    """(engine, backstop service, its queued commands): TRADER long 10 lots at 100 on 100 USDC
    (10x) against MAKER; KEEPER and BACKSTOP funded."""
    engine = open_engine(data_dir, clock)
    queued: list[Any] = []
    service = LiquidationService(
        engine.core, queued.append, liquidator_owner_id=BACKSTOP, grace_period_ns=2 * S
    )
    engine.subscribe(service.on_batch)  # on the engine's own core, after each durable batch
    engine.process(
        [
            CreateMarket(0, "BTC-PERP", TICK, LOT),
            UpdateOraclePrice(0, 100 * TICK, 0, 1, 1, True),
            Deposit(TRADER, 0, 100 * USDC),
            Deposit(MAKER, 0, 100_000 * USDC),
            Deposit(KEEPER, 0, 100_000 * USDC),
            Deposit(BACKSTOP, 0, 100_000 * USDC),
            PlaceOrder(0, MAKER, 0, Side.ASK, 100 * TICK, 10 * LOT),
            PlaceOrder(0, TRADER, 0, Side.BID, 100 * TICK, 10 * LOT, time_in_force=TimeInForce.IOC),
        ]
    )
    return engine, service, queued


def reopened_with_the_same_state(engine: Engine, data_dir: Path, clock: Clock) -> Engine:
    """Close ``engine``, reopen its journal and check the fold gives the same state hash."""
    hash_before = engine.core.state_hash()
    engine.close()
    restarted = open_engine(data_dir, clock)
    assert restarted.core.state_hash() == hash_before
    return restarted
