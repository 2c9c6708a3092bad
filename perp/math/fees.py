"""Trading fees: maker/taker rates, rebates, and the insurance fund's share.

Rates are ppm of the fill's notional (``RATIO_PRECISION``); a negative maker rate is a rebate.
A fee owed rounds up; a rebate paid rounds down (in magnitude); the insurance share of a fee
rounds down and the venue keeps the rest, so fee == insurance share + venue share exactly.
See ``docs/PROTOCOL.md`` section "Fees".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from exchange.core.units import RATIO_PRECISION

MAX_FEE_PPM = 10_000  # 1 %: a hard bound governance cannot exceed


class FeeConfigError(ValueError):
    code = "FEE_CONFIG"


@dataclass(frozen=True, slots=True, kw_only=True)
class FeeSchedule:
    """``taker_ppm`` >= 0; ``maker_ppm`` may be negative (a rebate) but never pays out more
    than the taker fee brings in; ``insurance_share_ppm`` of every fee goes to the fund."""

    maker_ppm: int
    taker_ppm: int
    insurance_share_ppm: int

    def __post_init__(self) -> None:
        if not 0 <= self.taker_ppm <= MAX_FEE_PPM:
            raise FeeConfigError(f"taker_ppm: expected 0..{MAX_FEE_PPM}, got {self.taker_ppm}")
        if not -self.taker_ppm <= self.maker_ppm <= MAX_FEE_PPM:
            raise FeeConfigError(
                f"maker_ppm: expected {-self.taker_ppm}..{MAX_FEE_PPM} (a rebate no larger "
                f"than the taker fee), got {self.maker_ppm}"
            )
        if not 0 <= self.insurance_share_ppm <= RATIO_PRECISION:
            raise FeeConfigError(
                f"insurance_share_ppm: expected 0..{RATIO_PRECISION}, got "
                f"{self.insurance_share_ppm}"
            )


def fee_quote(notional: int, rate_ppm: int) -> int:
    """Fee on a fill of ``notional`` (QUOTE_PRECISION): owed (> 0) rounds up, a rebate
    (< 0) rounds toward zero."""
    if notional < 0:
        raise ValueError(f"notional: expected >= 0, got {notional}")
    if rate_ppm >= 0:
        return -(-notional * rate_ppm // RATIO_PRECISION)
    return -(notional * -rate_ppm // RATIO_PRECISION)


class FillFees(NamedTuple):
    maker_fee_quote: int  # > 0 paid by the maker, < 0 rebate paid to it
    taker_fee_quote: int  # >= 0
    insurance_quote: int  # to the insurance fund
    venue_quote: int  # to the venue's fee pool (after paying the rebate)


def fill_fees(notional: int, schedule: FeeSchedule) -> FillFees:
    """Split one fill's fees. ``maker + taker == insurance + venue`` exactly."""
    maker = fee_quote(notional, schedule.maker_ppm)
    taker = fee_quote(notional, schedule.taker_ppm)
    net = maker + taker  # >= 0 because a rebate never exceeds the taker fee
    insurance = net * schedule.insurance_share_ppm // RATIO_PRECISION
    return FillFees(maker, taker, insurance, net - insurance)
