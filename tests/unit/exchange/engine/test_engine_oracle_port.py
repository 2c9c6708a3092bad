"""The oracle port: OraclePrice + trading and liquidation verdicts -> UpdateOraclePrice ->
clearinghouse."""

from __future__ import annotations

import pytest

from exchange.core.commands import CreateMarket, check_command
from exchange.core.events import MarketStatusChanged, OraclePriceUpdated
from exchange.engine.oracle_port import oracle_command
from oracle_feeds.guards import Verdict
from oracle_feeds.price import OraclePrice, OracleSource
from perp.clearinghouse import Clearinghouse
from perp.risk_gate import MarketStatus

USD = 1_000_000
OK = Verdict.VALID


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
    cmd = oracle_command(0, reading(), OK, OK)
    check_command(cmd)
    events = ch.execute(cmd, 2)
    # Assert
    assert cmd == (0, 150 * USD, 20_000, 321, 1_700_000_000, True, True)
    assert type(events[0]) is OraclePriceUpdated
    assert events[0].valid and events[0].liquidation_valid
    assert ch.markets[0].index_price == 150 * USD
    assert ch.markets[0].oracle_liquidation_valid


@pytest.mark.parametrize(
    "liquidation_verdict",
    [Verdict.STALE_SECONDS, Verdict.CONFIDENCE_TOO_WIDE, Verdict.TWAP_DEVIATION],
)
def test_a_reading_failing_only_the_liquidation_guard_is_traded_on_not_liquidated_at(
    liquidation_verdict: Verdict,
) -> None:
    # Arrange
    ch = Clearinghouse()
    ch.execute(CreateMarket(0, "SOL-PERP", 1_000, 10**7), 1)
    # Act
    cmd = oracle_command(0, reading(), OK, liquidation_verdict)
    event = ch.execute(cmd, 2)[0]
    # Assert
    assert cmd.valid is True and cmd.liquidation_valid is False
    assert type(event) is OraclePriceUpdated and event.valid and not event.liquidation_valid
    m = ch.markets[0]
    assert m.index_price == 150 * USD and m.breaker.status == MarketStatus.ACTIVE
    assert not m.oracle_liquidation_valid


def test_a_guarded_or_missing_reading_halts_the_market() -> None:
    ch = Clearinghouse()
    ch.execute(CreateMarket(0, "SOL-PERP", 1_000, 10**7), 1)
    stale = oracle_command(0, reading(), Verdict.STALE_SLOTS, Verdict.STALE_SLOTS)
    assert stale.valid is False and stale.liquidation_valid is False
    events = ch.execute(stale, 2)
    assert [type(e) for e in events] == [OraclePriceUpdated, MarketStatusChanged]
    assert ch.markets[0].breaker.status == MarketStatus.HALTED
    assert ch.markets[0].index_price == 0
    assert oracle_command(0, None, Verdict.NO_PRICE, Verdict.NO_PRICE) == (
        0,
        0,
        0,
        0,
        0,
        False,
        False,
    )
    before_epoch = oracle_command(0, reading(t=-5), OK, OK)
    assert before_epoch.valid is False and before_epoch.liquidation_valid is False


def test_never_liquidation_valid_without_the_trading_verdict() -> None:
    # the guards keep liquidation's limits strictest; the port does not trust that alone
    cmd = oracle_command(0, reading(), Verdict.TWAP_DEVIATION, OK)
    assert (cmd.valid, cmd.liquidation_valid) == (False, False)
