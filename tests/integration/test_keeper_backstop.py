"""The sweeper in a real engine (SQLite journal): the backstop liquidates only what keepers
left for the grace period, a keeper inside the grace period wins alone, and the journal folds
back to the same state after a restart."""

from __future__ import annotations

from pathlib import Path

from backstop_support import (
    BACKSTOP,
    KEEPER,
    TICK,
    TRADER,
    Clock,
    S,
    engine_with_a_ten_x_long,
    reopened_with_the_same_state,
)

from exchange.core.commands import Liquidate, UpdateOraclePrice
from exchange.core.events import AccountLiquidated, OrderRejected
from exchange.engine.sequencer import Engine


def test_the_backstop_acts_only_after_the_grace_period(tmp_path: Path) -> None:
    # Arrange: the oracle falls to 92: TRADER is below maintenance.
    clock = Clock()
    engine, service, queued = engine_with_a_ten_x_long(tmp_path, clock)
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
    restarted = reopened_with_the_same_state(engine, tmp_path, clock)
    restarted.close()


def test_a_keeper_inside_the_grace_period_wins_and_the_backstop_stays_out(
    tmp_path: Path,
) -> None:
    clock = Clock()
    engine, service, queued = engine_with_a_ten_x_long(tmp_path, clock)
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
