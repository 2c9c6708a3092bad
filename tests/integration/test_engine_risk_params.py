"""The engine applies an executed parameter change (issue 8, engine side) at one point of its
journaled sequence: the next margin check uses it, and a restart folds it back."""

from __future__ import annotations

import json
from pathlib import Path

from exchange.core.commands import CreateMarket, Deposit, PlaceOrder, SetRiskParams
from exchange.core.commands import UpdateOraclePrice as Oracle
from exchange.core.errors import RejectCode
from exchange.core.events import OrderAccepted, OrderRejected, RiskParamsChanged
from exchange.core.orders import Side
from exchange.core.units import NANOS_PER_SECOND, U64_MAX
from exchange.engine.config import EngineConfig
from exchange.engine.journal import Journal
from exchange.engine.sequencer import Engine
from perp.params import PerpMarketParams

TICK = 1_000_000
LOT = 1_000_000_000
USDC = 1_000_000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000 * NANOS_PER_SECOND

    def __call__(self) -> int:
        self.now += 1_000_000
        return self.now


def test_an_executed_change_is_in_the_next_margin_check_and_survives_restart(
    tmp_path: Path,
) -> None:
    # Arrange: 10x on one tier; account 1 bids 40 units at 100 on 1,000 USDC (400 initial)
    config = EngineConfig(
        data_dir=tmp_path,
        market_params=PerpMarketParams(margin_tiers=((U64_MAX, 100_000, 50_000),)),
    )
    clock = Clock()
    engine = Engine(config, clock=clock)
    engine.process(
        [
            CreateMarket(0, "BTC-PERP", TICK, LOT),
            Oracle(0, 100 * TICK, 0, 1, 1, True),
            Deposit(1, 0, 1_000 * USDC),
            PlaceOrder(0, 1, 0, Side.BID, 100 * TICK, 40 * LOT),
        ]
    )
    before = engine.core.margin(1, 0)
    # Act: the executed proposal 3 raises margin to 4x, then the same bid again
    [[changed], second] = engine.process(
        [
            SetRiskParams(0, json.dumps({"margin_tiers": [[U64_MAX, 250_000, 125_000]]}), 3),
            PlaceOrder(0, 1, 0, Side.BID, 100 * TICK, 40 * LOT),
        ]
    )
    # Assert: journaled with its proposal; the next check ran on the new margin
    assert type(changed) is RiskParamsChanged and changed.proposal_id == 3
    after = engine.core.margin(1, 0)
    assert 2 * after.initial_quote == 5 * before.initial_quote == 2_000 * USDC
    assert [type(e) for e in second] == [OrderRejected]
    assert second[0].code == RejectCode.INSUFFICIENT_MARGIN
    # an ask that does not raise the worst case needs no margin check: still accepted
    [ask] = engine.process([PlaceOrder(0, 1, 0, Side.ASK, 101 * TICK, 10 * LOT)])
    assert type(ask[0]) is OrderAccepted
    expected = engine.core.state_hash()
    engine.close()
    # Assert: the journal folds back to the same state, new parameters included
    restarted = Engine(config, clock=clock)
    assert restarted.core.state_hash() == expected
    assert restarted.core.markets[0].params.margin_tiers == ((U64_MAX, 250_000, 125_000),)
    assert any(type(e) is RiskParamsChanged for e in Journal.for_data_dir(tmp_path).read())
    restarted.close()
