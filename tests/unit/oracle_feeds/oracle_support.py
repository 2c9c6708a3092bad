"""The guard limits and the reading builder the oracle feed and guard tests share."""

from __future__ import annotations

from oracle_feeds.guards import GuardLimits, OracleGuards
from oracle_feeds.price import OraclePrice, OracleSource

USD = 1_000_000
LOOSE = GuardLimits(
    max_age_slots=50, max_age_seconds=30, max_confidence_ppm=20_000, max_twap_deviation_ppm=50_000
)
STRICT = GuardLimits(
    max_age_slots=10, max_age_seconds=5, max_confidence_ppm=5_000, max_twap_deviation_ppm=10_000
)
GUARDS = OracleGuards(trading=LOOSE, funding=LOOSE, withdrawal=LOOSE, liquidation=STRICT)


def reading(
    p: int = 100 * USD, *, slot: int = 1_000, t: int = 500, conf: int = 100_000, ok: bool = True
) -> OraclePrice:
    """A Pyth pull reading of ``p`` (PRICE_PRECISION, exponent -6) at ``slot`` / ``t`` seconds."""
    return OraclePrice(
        price=p,
        confidence=conf,
        slot=slot,
        publish_time_s=t,
        source=OracleSource.PYTH_PULL,
        raw_mantissa=p,
        raw_exponent=-6,
        raw_confidence=conf,
        raw_confidence_exponent=-6,
        status_ok=ok,
    )
