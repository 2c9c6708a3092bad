"""Margin: position notional, unrealised PnL, worst-case base, and tiered requirements.

Units: base at ``BASE_PRECISION`` (signed: long > 0); prices at ``PRICE_PRECISION``; money at
``QUOTE_PRECISION``; ratios in ppm at ``RATIO_PRECISION``.

Requirements are marginal brackets, like income-tax brackets: each slice of notional inside a
tier is charged that tier's ratio. The requirement is therefore continuous and never falls
as a position grows, and larger positions pay a higher average ratio. A requirement is a
liability: it rounds up. See ``docs/PROTOCOL.md`` section "Margin".
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from exchange.core.units import BASE_PRECISION, RATIO_PRECISION, U64_MAX


class MarginKind(IntEnum):
    INITIAL = 0
    MAINTENANCE = 1


class MarginConfigError(ValueError):
    """A margin schedule violates its bounds."""

    code = "MARGIN_CONFIG"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarginTier:
    """Notional up to ``up_to_notional_quote`` (QUOTE_PRECISION; the last tier: ``U64_MAX``)
    is charged ``initial_ppm`` / ``maintenance_ppm`` (RATIO_PRECISION)."""

    up_to_notional_quote: int
    initial_ppm: int
    maintenance_ppm: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MarginSchedule:
    """Ordered tiers; bounds rise, ratios never fall, maintenance < initial <= 100 %."""

    tiers: tuple[MarginTier, ...]

    def __post_init__(self) -> None:
        if not self.tiers:
            raise MarginConfigError("tiers: expected at least one tier, got none")
        previous = MarginTier(up_to_notional_quote=0, initial_ppm=0, maintenance_ppm=0)
        for i, tier in enumerate(self.tiers):
            where = f"tiers[{i}]"
            if tier.up_to_notional_quote <= previous.up_to_notional_quote:
                raise MarginConfigError(
                    f"{where}.up_to_notional_quote: expected > "
                    f"{previous.up_to_notional_quote}, got {tier.up_to_notional_quote}"
                )
            if not 0 < tier.maintenance_ppm < tier.initial_ppm <= RATIO_PRECISION:
                raise MarginConfigError(
                    f"{where}: expected 0 < maintenance_ppm < initial_ppm <= "
                    f"{RATIO_PRECISION}, got {tier.maintenance_ppm} / {tier.initial_ppm}"
                )
            if (
                tier.initial_ppm < previous.initial_ppm
                or tier.maintenance_ppm < previous.maintenance_ppm
            ):
                raise MarginConfigError(
                    f"{where}: expected ratios no lower than the tier before, got "
                    f"{tier.initial_ppm}/{tier.maintenance_ppm} after "
                    f"{previous.initial_ppm}/{previous.maintenance_ppm}"
                )
            previous = tier
        if self.tiers[-1].up_to_notional_quote != U64_MAX:
            raise MarginConfigError(
                f"tiers[-1].up_to_notional_quote: expected {U64_MAX} (unbounded), got "
                f"{self.tiers[-1].up_to_notional_quote}"
            )

    @property
    def max_leverage_ppm(self) -> int:
        """Leverage the first tier allows, at RATIO_PRECISION (10x == 10_000_000)."""
        return RATIO_PRECISION * RATIO_PRECISION // self.tiers[0].initial_ppm


def notional_quote(base: int, price: int) -> int:
    """``|base| x price`` in quote units, rounded up (it sizes a requirement)."""
    return -(-abs(base) * price // BASE_PRECISION)


def unrealized_pnl_quote(base: int, entry_quote: int, mark_price: int) -> int:
    """PnL of a position marked at ``mark_price``, rounded down (toward -infinity).

    ``entry_quote`` is the signed quote the position cost (negative for a long: quote was
    paid), so ``pnl = base x mark / BASE_PRECISION + entry_quote``.
    """
    return (base * mark_price) // BASE_PRECISION + entry_quote


def worst_case_base(base: int, open_bid_base: int, open_ask_base: int) -> int:
    """Largest ``|position|`` if all resting bids, or all resting asks, filled."""
    if open_bid_base < 0 or open_ask_base < 0:
        raise ValueError(
            f"open order base: expected >= 0, got bids {open_bid_base}, asks {open_ask_base}"
        )
    return max(abs(base + open_bid_base), abs(base - open_ask_base))


def requirement_quote(notional: int, schedule: MarginSchedule, kind: MarginKind) -> int:
    """Margin required for ``notional`` (QUOTE_PRECISION): bracket by bracket, rounded up."""
    if notional < 0:
        raise ValueError(f"notional: expected >= 0, got {notional}")
    charged = 0  # quote x RATIO_PRECISION
    lower = 0
    for tier in schedule.tiers:
        if notional <= lower:
            break
        ratio = tier.initial_ppm if kind == MarginKind.INITIAL else tier.maintenance_ppm
        charged += (min(notional, tier.up_to_notional_quote) - lower) * ratio
        lower = tier.up_to_notional_quote
    return -(-charged // RATIO_PRECISION)
