"""Unit tests for the clearinghouse's liquidation-grade oracle flag: a reading valid for
trading but not for the liquidation guard (``UpdateOraclePrice.liquidation_valid`` False)
keeps the market trading and refuses every ``Liquidate`` until a liquidation-valid reading
arrives; the flag is folded and hashed (replay and snapshots give the same state).

Every command goes through ``Run``: invariants hold after each step and the fold of the
journal (through the codec) and a snapshot round trip reproduce the live state hash.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from exchange.core.commands import (
    CreateMarket,
    Deposit,
    Liquidate,
    PlaceOrder,
    UpdateOraclePrice,
    parse_command,
)
from exchange.core.errors import InvariantViolation, RejectCode
from exchange.core.events import (
    AccountLiquidated,
    FillSettled,
    OraclePriceUpdated,
    OrderRejected,
    decode_events,
    encode_events,
)
from exchange.core.orders import Side, TimeInForce
from exchange.core.units import NANOS_PER_SECOND
from liquidation.rules import Health
from perp.clearinghouse import Clearinghouse
from perp.params import PerpMarketParams
from perp.risk_gate import MarketStatus

TICK = 1_000_000
LOT = 1_000_000_000
USDC = 1_000_000
S = NANOS_PER_SECOND
M, M2 = 0, 1
TRADER, MAKER, KEEPER, OTHER = 1, 3, 4, 5

PARAMS = PerpMarketParams(
    maker_fee_ppm=0,
    taker_fee_ppm=500,
    insurance_share_ppm=0,
    funding_interest_rate=0,
    funding_interest_band=0,
)


class Run:
    """A clearinghouse plus its journal; fold, snapshot and invariants checked every step."""

    def __init__(self) -> None:
        self.ch = Clearinghouse(default_params=PARAMS)
        self.journal: list[Any] = []
        self.ts = 1 * S

    def __call__(self, cmd: Any, at: int | None = None) -> list[Any]:
        if at is not None:
            self.ts = at
        events = self.ch.execute(cmd, self.ts)
        self.journal += events
        self.ch.check_invariants()
        folded = Clearinghouse()
        for e in decode_events(encode_events(self.journal)):
            folded.apply(e)
        assert folded.state_hash() == self.ch.state_hash()
        assert Clearinghouse.from_snapshot(self.ch.snapshot()).state_hash() == folded.state_hash()
        return events


def reading(
    market_id: int, price_ticks: int, at_s: int, *, liquidation_valid: bool
) -> UpdateOraclePrice:
    return UpdateOraclePrice(
        market_id, price_ticks * TICK, 1_000, 10 + at_s, at_s, True, liquidation_valid
    )


def trade(run: Run, maker: int, taker: int, taker_side: Side, base_lots: int, price: int) -> list:
    maker_side = Side.ASK if taker_side == Side.BID else Side.BID
    run(PlaceOrder(M, maker, 0, maker_side, price * TICK, base_lots * LOT))
    return run(
        PlaceOrder(
            M, taker, 0, taker_side, price * TICK, base_lots * LOT, time_in_force=TimeInForce.IOC
        )
    )


def long_trader() -> Run:
    """TRADER long 10 at 100 with 100 USDC (10x); MAKER short 10; the keeper funded."""
    run = Run()
    run(CreateMarket(M, "T-PERP", TICK, LOT))
    run(reading(M, 100, 1, liquidation_valid=True))
    run(Deposit(TRADER, 0, 100 * USDC))
    for owner in (MAKER, KEEPER, OTHER):
        run(Deposit(owner, 0, 100_000 * USDC))
    trade(run, MAKER, TRADER, Side.BID, 10, 100)
    return run


def test_a_reading_not_valid_for_liquidation_keeps_trading_but_refuses_liquidate() -> None:
    # Arrange: the index falls to 92 (TRADER below maintenance) on a reading the trading guard
    # accepts and the liquidation guard does not (too wide / off its TWAP / too old for it).
    run = long_trader()
    [updated, *_] = run(reading(M, 92, 2, liquidation_valid=False), at=2 * S)
    assert type(updated) is OraclePriceUpdated
    assert updated.valid and not updated.liquidation_valid
    m = run.ch.markets[M]
    assert m.index_price == 92 * TICK and m.breaker.status == MarketStatus.ACTIVE
    # Act: trading goes on; Liquidate is refused and changes nothing but the sequence.
    fills = trade(run, OTHER, KEEPER, Side.BID, 1, 92)
    before = run.ch.canonical()
    refused = run(Liquidate(KEEPER, 0, TRADER, 0))
    # Assert
    assert [type(e) for e in fills].count(FillSettled) == 1
    assert [type(e) for e in refused] == [OrderRejected]
    assert refused[0].code == RejectCode.LIQUIDATION_ORACLE_INVALID
    assert "[0]" in refused[0].message
    after = run.ch.canonical()
    after["core"]["next_seq"] -= 1
    assert after == before
    assert run.ch.liquidation_health(TRADER, 0, run.ts) == Health.ORACLE_INVALID


def test_the_next_liquidation_valid_reading_allows_liquidate_again() -> None:
    run = long_trader()
    run(reading(M, 92, 2, liquidation_valid=False), at=2 * S)
    run(reading(M, 92, 3, liquidation_valid=True), at=3 * S)
    assert run.ch.liquidation_health(TRADER, 0, run.ts) == Health.LIQUIDATABLE
    events = run(Liquidate(KEEPER, 0, TRADER, 0))
    assert [type(e) for e in events][-1] is AccountLiquidated


def test_one_held_market_without_a_liquidation_valid_reading_refuses_the_whole_account() -> None:
    # Arrange: TRADER also holds M2, whose reading is fine for trading only.
    run = long_trader()
    run(CreateMarket(M2, "U-PERP", TICK, LOT))
    run(reading(M2, 100, 1, liquidation_valid=True))
    run(PlaceOrder(M2, MAKER, 0, Side.ASK, 100 * TICK, 1 * LOT))
    run(PlaceOrder(M2, TRADER, 0, Side.BID, 100 * TICK, 1 * LOT, time_in_force=TimeInForce.IOC))
    run(reading(M, 90, 2, liquidation_valid=True), at=2 * S)
    run(reading(M2, 100, 2, liquidation_valid=False), at=2 * S)
    # Act
    [refused] = run(Liquidate(KEEPER, 0, TRADER, 0))
    # Assert
    assert refused.code == RejectCode.LIQUIDATION_ORACLE_INVALID
    assert "[1]" in refused.message


def test_an_invalid_reading_is_never_liquidation_valid() -> None:
    run = long_trader()
    cmd = UpdateOraclePrice(M, 92 * TICK, 1_000, 12, 2, False, True)
    [updated, *_] = run(cmd, at=2 * S)
    assert not updated.valid and not updated.liquidation_valid
    assert not run.ch.markets[M].oracle_liquidation_valid


def test_the_fold_refuses_a_liquidation_valid_reading_that_is_not_valid() -> None:
    run = long_trader()
    bad = OraclePriceUpdated(run.ch.next_seq, 2 * S, M, 92 * TICK, 1_000, 12, 2, False, True)
    with pytest.raises(InvariantViolation, match="liquidation_valid only with valid"):
        run.ch.apply(bad)


def test_the_flag_is_in_the_state_hash_and_survives_a_snapshot() -> None:
    # Arrange: two histories that differ only in the liquidation verdict.
    valid, not_valid = long_trader(), long_trader()
    valid(reading(M, 99, 2, liquidation_valid=True), at=2 * S)
    not_valid(reading(M, 99, 2, liquidation_valid=False), at=2 * S)
    # Act
    restored = Clearinghouse.from_snapshot(not_valid.ch.snapshot())
    # Assert
    assert valid.ch.state_hash() != not_valid.ch.state_hash()
    assert restored.markets[M].oracle_liquidation_valid is False
    assert restored.state_hash() == not_valid.ch.state_hash()


def test_a_snapshot_from_before_the_flag_takes_the_trading_verdict() -> None:
    run = long_trader()
    data = json.loads(run.ch.snapshot())
    for market in data["perp_markets"]:
        del market["index"][6:]  # written before the liquidation verdict existed
    restored = Clearinghouse.from_snapshot(json.dumps(data).encode())
    assert restored.markets[M].oracle_liquidation_valid is True
    assert restored.state_hash() == run.ch.state_hash()


def test_the_command_defaults_to_no_stricter_verdict_than_trading() -> None:
    wire = {
        "type": "oracle_price",
        "market_id": 1,
        "price": 150_000_000,
        "confidence": 20_000,
        "slot": 300,
        "publish_time_s": 1_700_000_000,
        "valid": True,
    }
    assert parse_command(wire).liquidation_valid is True
    assert parse_command({**wire, "liquidation_valid": False}).liquidation_valid is False
    with pytest.raises(ValueError, match="liquidation_valid: expected true or false"):
        parse_command({**wire, "liquidation_valid": 0})
