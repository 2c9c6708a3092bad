"""Oracle guards: is this price good enough for this action, now?

Validity is decided per action, because the cost of a bad price differs: trading and funding
tolerate a little staleness, withdrawals less, liquidation least (a stale or wide price must
never liquidate anyone). ``OracleGuards`` enforces that ordering on its limits.

Checks, in order: publisher/aggregate status, age in slots, age in seconds, confidence /
price, deviation from a short TWAP. Prices at ``PRICE_PRECISION``; ratios in ppm.

Source choice per market: the primary source while it is valid for trading; otherwise the
fallback if that is valid for trading; otherwise none (the market's circuit breaker halts).
See ``docs/PROTOCOL.md`` section "Oracle guards".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from exchange.core.units import RATIO_PRECISION
from oracle_feeds.price import OraclePrice


class OracleAction(IntEnum):
    TRADING = 0
    FUNDING = 1
    WITHDRAWAL = 2
    LIQUIDATION = 3


class Verdict(IntEnum):
    VALID = 0
    STATUS_NOT_OK = 1
    STALE_SLOTS = 2
    STALE_SECONDS = 3
    CONFIDENCE_TOO_WIDE = 4
    TWAP_DEVIATION = 5
    NO_PRICE = 6


class GuardConfigError(ValueError):
    code = "ORACLE_GUARD_CONFIG"


@dataclass(frozen=True, slots=True, kw_only=True)
class GuardLimits:
    max_age_slots: int
    max_age_seconds: int
    max_confidence_ppm: int  # confidence / price
    max_twap_deviation_ppm: int  # |price - twap| / twap

    def __post_init__(self) -> None:
        for name in (
            "max_age_slots",
            "max_age_seconds",
            "max_confidence_ppm",
            "max_twap_deviation_ppm",
        ):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise GuardConfigError(f"{name}: expected an int >= 0, got {value!r}")

    def at_most(self, other: GuardLimits) -> bool:
        """Whether these limits are no looser than ``other`` in every respect."""
        return (
            self.max_age_slots <= other.max_age_slots
            and self.max_age_seconds <= other.max_age_seconds
            and self.max_confidence_ppm <= other.max_confidence_ppm
            and self.max_twap_deviation_ppm <= other.max_twap_deviation_ppm
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class OracleGuards:
    trading: GuardLimits
    funding: GuardLimits
    withdrawal: GuardLimits
    liquidation: GuardLimits

    def __post_init__(self) -> None:
        for name in ("trading", "funding", "withdrawal"):
            if not self.liquidation.at_most(getattr(self, name)):
                raise GuardConfigError(
                    f"liquidation: expected limits no looser than {name}'s, got "
                    f"{self.liquidation} vs {getattr(self, name)}"
                )

    def limits(self, action: OracleAction) -> GuardLimits:
        return (self.trading, self.funding, self.withdrawal, self.liquidation)[action]


def check(
    price: OraclePrice | None,
    limits: GuardLimits,
    *,
    now_slot: int,
    now_s: int,
    twap: int | None,
) -> Verdict:
    """The first guard ``price`` fails under ``limits``, or ``VALID``."""
    if price is None:
        return Verdict.NO_PRICE
    if not price.status_ok:
        return Verdict.STATUS_NOT_OK
    if now_slot - price.slot > limits.max_age_slots:
        return Verdict.STALE_SLOTS
    if now_s - price.publish_time_s > limits.max_age_seconds:
        return Verdict.STALE_SECONDS
    if price.confidence * RATIO_PRECISION > limits.max_confidence_ppm * price.price:
        return Verdict.CONFIDENCE_TOO_WIDE
    if (
        twap is not None
        and abs(price.price - twap) * RATIO_PRECISION > limits.max_twap_deviation_ppm * twap
    ):
        return Verdict.TWAP_DEVIATION
    return Verdict.VALID


def validity(
    price: OraclePrice | None,
    guards: OracleGuards,
    *,
    now_slot: int,
    now_s: int,
    twap: int | None,
) -> dict[OracleAction, Verdict]:
    """The verdict for every action at once."""
    return {
        action: check(price, guards.limits(action), now_slot=now_slot, now_s=now_s, twap=twap)
        for action in OracleAction
    }


def time_weighted_average(
    samples: Sequence[tuple[int, int]], now_ns: int, window_ns: int
) -> int | None:
    """TWAP over ``(now - window, now]`` of ``(ts_ns, price)`` samples (oldest first), each
    price holding until the next sample; rounded toward zero. ``None`` with no sample."""
    if window_ns <= 0:
        raise ValueError(f"window_ns: expected > 0, got {window_ns}")
    start = now_ns - window_ns
    weighted = covered = 0
    for i, (ts, price) in enumerate(samples):
        end = samples[i + 1][0] if i + 1 < len(samples) else now_ns
        lo, hi = max(ts, start), min(end, now_ns)
        if hi > lo:
            weighted += price * (hi - lo)
            covered += hi - lo
    if not covered:
        return samples[-1][1] if samples and samples[-1][0] <= now_ns else None
    return weighted // covered


def choose_source(primary: Verdict, fallback: Verdict | None) -> str | None:
    """``"primary"`` while it is valid for trading, else ``"fallback"`` if valid, else None."""
    if primary == Verdict.VALID:
        return "primary"
    if fallback == Verdict.VALID:
        return "fallback"
    return None
