"""The engine running the clearinghouse on a real SQLite journal: trading, funding driven by
the engine's clock, a restart that folds back to the same hash, and `perpdex replay`."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from exchange.cli import main as perpdex
from exchange.core.commands import (
    CreateMarket,
    Deposit,
    PlaceOrder,
    UpdateOraclePrice,
    Withdraw,
)
from exchange.core.events import (
    FillSettled,
    FundingRateApplied,
    FundingSampled,
    FundingSettled,
)
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.sequencer import Engine, EngineRunner

TICK = 1_000_000
LOT = 1_000_000_000
USDC = 1_000_000
S = NANOS_PER_SECOND


class Clock:
    """Engine time we move by hand (the engine reads it once per command)."""

    def __init__(self) -> None:
        self.now = 1_000 * S

    def __call__(self) -> int:
        return self.now


def _trade_through_an_hour(engine: Engine, clock: Clock) -> None:
    engine.process(
        [
            CreateMarket(0, "BTC-PERP", TICK, LOT),
            UpdateOraclePrice(0, 100 * TICK, 0, 1, 1, True),
            Deposit(1, 0, 10_000 * USDC),
            Deposit(2, 0, 10_000 * USDC),
            Deposit(3, 0, 100_000 * USDC),
            PlaceOrder(0, 1, 0, Side.ASK, 100 * TICK, 3 * LOT),
            PlaceOrder(0, 2, 0, Side.BID, 100 * TICK, 3 * LOT, time_in_force=TimeInForce.IOC),
            # a book above the index: longs pay
            PlaceOrder(0, 3, 0, Side.BID, 101 * TICK, 10 * LOT),
            PlaceOrder(0, 3, 0, Side.ASK, 102 * TICK, 10 * LOT),
        ]
    )
    for _ in range(4):  # samples every ~20 minutes, then the hour closes
        clock.now += 1_200 * S
        engine.process([UpdateOraclePrice(0, 100 * TICK, 0, 2, 2, True)])
    engine.process([Withdraw(2, 0, USDC), Withdraw(1, 0, USDC)])


def test_funding_from_the_engine_clock_survives_restart_and_replay(
    tmp_path: Path, capsys: Any
) -> None:
    # Arrange
    clock = Clock()
    engine = Engine(EngineConfig(data_dir=tmp_path, snapshot_every_events=9), clock=clock)
    # Act
    _trade_through_an_hour(engine, clock)
    expected = engine.core.state_hash()
    long_collateral = engine.core.account(2, 0).collateral_quote
    engine.close()
    restarted = Engine(EngineConfig(data_dir=tmp_path), clock=clock)
    # Assert: the journal holds the whole story and folds back to the same state
    events = list(Journal.for_data_dir(tmp_path).read())
    kinds = {type(e) for e in events}
    assert {FillSettled, FundingSampled, FundingRateApplied, FundingSettled} <= kinds
    [rate] = [e for e in events if type(e) is FundingRateApplied]
    assert rate.funding_rate > 0  # impact bid 101 above the index 100
    paid = [e.payment_quote for e in events if type(e) is FundingSettled]
    assert paid[0] > 0 and paid[1] < 0  # the long paid, the short received
    assert restarted.recovery.snapshot_seq > 0
    assert restarted.core.state_hash() == expected
    assert restarted.core.account(2, 0).collateral_quote == long_collateral
    restarted.core.check_invariants()
    restarted.close()
    assert perpdex(["replay", str(tmp_path)]) == 0
    assert f"state hash {expected}" in capsys.readouterr().out


def test_an_idle_runner_still_ticks_from_the_clock(tmp_path: Path) -> None:
    # Arrange: a market with a two-sided book, then no commands at all
    clock = Clock()
    engine = Engine(EngineConfig(data_dir=tmp_path, tick_interval_ns=10_000_000), clock=clock)
    engine.process(
        [
            CreateMarket(0, "BTC-PERP", TICK, LOT),
            UpdateOraclePrice(0, 100 * TICK, 0, 1, 1, True),
            Deposit(3, 0, 100_000 * USDC),
            PlaceOrder(0, 3, 0, Side.BID, 99 * TICK, 10 * LOT),
            PlaceOrder(0, 3, 0, Side.ASK, 101 * TICK, 10 * LOT),
        ]
    )
    sampled = threading.Event()

    def on_events(events: Any) -> None:
        if any(type(e) is FundingSampled for e in events):
            sampled.set()

    engine.subscribe(on_events)
    runner = EngineRunner(engine)
    # Act: time passes with nothing submitted
    clock.now += 60 * S
    # Assert
    assert sampled.wait(timeout=10)
    runner.close()
    engine.close()
