"""The sweeper in a real engine (SQLite journal): the backstop liquidates only what keepers
left for the grace period, a keeper inside the grace period wins alone, and the journal folds
back to the same state after a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchange.core.commands import (
    CreateMarket,
    Deposit,
    Liquidate,
    PlaceOrder,
    UpdateOraclePrice,
)
from exchange.core.events import AccountLiquidated, OrderRejected
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
    def __init__(self) -> None:
        self.now = 1_000 * S

    def __call__(self) -> int:
        return self.now


def _engine(tmp_path: Path, clock: Clock) -> tuple[Engine, LiquidationService, list[Any]]:
    engine = Engine(EngineConfig(data_dir=tmp_path, tick_interval_ns=3600 * S), clock=clock)
    queued: list[Any] = []
    service = LiquidationService(
        engine, queued.append, liquidator_owner_id=BACKSTOP, grace_period_ns=2 * S
    )
    return engine, service, queued


def _a_long_at_ten_x(engine: Engine) -> None:
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


def test_the_backstop_acts_only_after_the_grace_period(tmp_path: Path) -> None:
    # Arrange: the oracle falls to 92: TRADER is below maintenance.
    clock = Clock()
    engine, service, queued = _engine(tmp_path, clock)
    _a_long_at_ten_x(engine)
    clock.now += S
    engine.process([UpdateOraclePrice(0, 92 * TICK, 0, 2, 2, True)])
    assert [c.owner_id for c in service.candidates] == [TRADER]
    assert queued == []  # first seen now: keepers have the grace period
    # Act: 1 s later nothing yet; 2 s later the backstop's Liquidate is queued and runs.
    clock.now += S
    engine.process([UpdateOraclePrice(0, 92 * TICK, 0, 3, 3, True)])
    assert queued == []
    clock.now += S
    engine.process([UpdateOraclePrice(0, 92 * TICK, 0, 4, 4, True)])
    assert queued == [Liquidate(BACKSTOP, 0, TRADER, 0)]
    [events] = engine.process(queued)
    # Assert
    assert any(type(e) is AccountLiquidated for e in events)
    assert position_base(engine, BACKSTOP) > 0
    assert service.candidates == []  # re-checked after the liquidation
    hash_before = engine.core.state_hash()
    engine.close()
    restarted = Engine(EngineConfig(data_dir=tmp_path, tick_interval_ns=3600 * S), clock=clock)
    assert restarted.core.state_hash() == hash_before
    restarted.close()


def test_a_keeper_inside_the_grace_period_wins_and_the_backstop_stays_out(
    tmp_path: Path,
) -> None:
    clock = Clock()
    engine, service, queued = _engine(tmp_path, clock)
    _a_long_at_ten_x(engine)
    clock.now += S
    engine.process([UpdateOraclePrice(0, 92 * TICK, 0, 2, 2, True)])
    clock.now += S
    [won, lost] = engine.process([Liquidate(KEEPER, 0, TRADER, 0), Liquidate(5, 0, TRADER, 0)])
    assert any(type(e) is AccountLiquidated for e in won)
    assert [type(e) for e in lost] == [OrderRejected]
    clock.now += 5 * S
    engine.process([UpdateOraclePrice(0, 92 * TICK, 0, 3, 3, True)])
    assert queued == [] and service.sent == 0
    engine.close()


def position_base(engine: Engine, owner_id: int) -> int:
    position = engine.core.account(owner_id, 0).positions.get(0)
    return position.base if position is not None else 0
