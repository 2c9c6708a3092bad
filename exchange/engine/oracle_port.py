"""The oracle port: an ``oracle_feeds`` reading and its guard verdicts become the
clearinghouse's plain-integer ``UpdateOraclePrice`` command.

The clearinghouse never sees account bytes, sources or guard limits: it gets the price, the
confidence, the slot, the publish time and two bits: whether the reading may be traded on
(``oracle_feeds.guards`` verdict for ``OracleAction.TRADING``) and whether it may be
liquidated at (the verdict for ``OracleAction.LIQUIDATION``, the strictest guard). An invalid
reading (or no reading at all) still goes in: it halts the market through the circuit breaker.
"""

from __future__ import annotations

from exchange.core.commands import UpdateOraclePrice
from oracle_feeds.guards import Verdict
from oracle_feeds.price import OraclePrice


def oracle_command(
    market_id: int,
    reading: OraclePrice | None,
    trading_verdict: Verdict,
    liquidation_verdict: Verdict,
) -> UpdateOraclePrice:
    """The command for one reading of ``market_id``'s index (``None``: no usable reading).

    Liquidation-valid only when valid for trading too (the guards order their limits so, and
    a reading nobody may trade on must never liquidate anyone)."""
    if reading is None:
        return UpdateOraclePrice(market_id, 0, 0, 0, 0, False, False)
    # A publish time before the epoch is not a time the clearinghouse can order: invalid.
    valid = trading_verdict == Verdict.VALID and reading.publish_time_s >= 0
    return UpdateOraclePrice(
        market_id,
        reading.price,
        reading.confidence,
        reading.slot,
        max(0, reading.publish_time_s),
        valid,
        valid and liquidation_verdict == Verdict.VALID,
    )
