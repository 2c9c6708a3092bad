"""The oracle port: OraclePrice + trading verdict -> UpdateOraclePrice -> clearinghouse."""

from __future__ import annotations

from exchange.core.commands import CreateMarket, check_command
from exchange.core.events import MarketStatusChanged, OraclePriceUpdated
from exchange.engine.oracle_port import oracle_command
from oracle_feeds.guards import Verdict
from oracle_feeds.price import OraclePrice, OracleSource
from perp.clearinghouse import Clearinghouse
from perp.risk_gate import MarketStatus

USD = 1_000_000


def reading(p: int = 150 * USD, t: int = 1_700_000_000) -> OraclePrice:
    return OraclePrice(
        price=p,
        confidence=20_000,
        slot=321,
        publish_time_s=t,
        source=OracleSource.PYTH_PULL,
        raw_mantissa=p,
        raw_exponent=-6,
        raw_confidence=20_000,
        raw_confidence_exponent=-6,
        status_ok=True,
    )


def test_a_valid_reading_becomes_the_index() -> None:
    # Arrange
    ch = Clearinghouse()
    ch.execute(CreateMarket(0, "SOL-PERP", 1_000, 10**7), 1)
    # Act
    cmd = oracle_command(0, reading(), Verdict.VALID)
    check_command(cmd)
    events = ch.execute(cmd, 2)
    # Assert
    assert cmd == (0, 150 * USD, 20_000, 321, 1_700_000_000, True)
    assert type(events[0]) is OraclePriceUpdated and events[0].valid
    assert ch.markets[0].index_price == 150 * USD


def test_a_guarded_or_missing_reading_halts_the_market() -> None:
    ch = Clearinghouse()
    ch.execute(CreateMarket(0, "SOL-PERP", 1_000, 10**7), 1)
    stale = oracle_command(0, reading(), Verdict.STALE_SLOTS)
    assert stale.valid is False
    events = ch.execute(stale, 2)
    assert [type(e) for e in events] == [OraclePriceUpdated, MarketStatusChanged]
    assert ch.markets[0].breaker.status == MarketStatus.HALTED
    assert ch.markets[0].index_price == 0
    assert oracle_command(0, None, Verdict.NO_PRICE) == (0, 0, 0, 0, 0, False)
    assert oracle_command(0, reading(t=-5), Verdict.VALID).valid is False
