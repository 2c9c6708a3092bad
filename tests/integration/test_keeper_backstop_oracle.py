"""The engine's sweeper and backstop (real engine, SQLite journal) never act at a price the
liquidation guard refused: not on a reading valid for trading only, and not once the last
valid reading has aged past the liquidation bound even with no new price event."""

from __future__ import annotations

from pathlib import Path

from backstop_support import (
    BACKSTOP,
    KEEPER,
    TICK,
    TRADER,
    USDC,
    Clock,
    S,
    engine_with_a_ten_x_long,
    reopened_with_the_same_state,
)

from exchange.core.commands import Deposit, Liquidate, UpdateOraclePrice
from exchange.core.errors import RejectCode
from exchange.core.events import AccountLiquidated, OrderRejected


def test_readings_valid_for_trading_only_never_reach_the_backstop(tmp_path: Path) -> None:
    # Arrange: the oracle falls to 92 (TRADER below maintenance) on readings the liquidation
    # guard refuses, for longer than the grace period.
    clock = Clock()
    engine, service, queued = engine_with_a_ten_x_long(tmp_path, clock)
    for slot in range(2, 7):
        clock.now += S
        engine.process([UpdateOraclePrice(0, 92 * TICK, 0, slot, slot, True, False)])
        # Assert: no candidate, nothing queued, and a keeper's Liquidate is refused.
        assert service.candidates == [] and queued == []
    [[refused]] = engine.process([Liquidate(KEEPER, 0, TRADER, 0)])
    assert type(refused) is OrderRejected and refused.code == RejectCode.LIQUIDATION_ORACLE_INVALID
    # Act: the first liquidation-valid reading starts the grace period; 2 s later the backstop.
    clock.now += S
    engine.process([UpdateOraclePrice(0, 92 * TICK, 0, 7, 7, True, True)])
    assert [c.owner_id for c in service.candidates] == [TRADER] and queued == []
    clock.now += 2 * S
    engine.process([UpdateOraclePrice(0, 92 * TICK, 0, 8, 8, True, True)])
    assert queued == [Liquidate(BACKSTOP, 0, TRADER, 0)]
    [events] = engine.process(queued)
    assert any(type(e) is AccountLiquidated for e in events)
    # the journal folds back to the same state (the flag replays)
    restarted = reopened_with_the_same_state(engine, tmp_path, clock)
    assert restarted.core.markets[0].oracle_liquidation_valid is True
    restarted.close()


def test_a_reading_aging_past_the_liquidation_bound_clears_the_candidates(
    tmp_path: Path,
) -> None:
    # Arrange: a candidate at a valid 92; then the feed goes silent.
    clock = Clock()
    engine, service, queued = engine_with_a_ten_x_long(tmp_path, clock)
    clock.now += S
    engine.process([UpdateOraclePrice(0, 92 * TICK, 0, 2, 2, True, True)])
    assert [c.owner_id for c in service.candidates] == [TRADER]
    screens = service.screens
    # Act: a batch with no price event after the reading is older than the bound (30 s).
    clock.now += engine.core.liquidation_max_oracle_age_ns + S
    engine.process([Deposit(KEEPER, 0, 1 * USDC)])
    # Assert: the validity change re-screened: no candidate, no backstop Liquidate.
    assert service.screens == screens + 1
    assert service.candidates == [] and queued == [] and service.sent == 0
    engine.close()
