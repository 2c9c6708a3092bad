"""A perpetual market's parameters: fees, margin tiers, risk limits, circuit breaker,
funding, mark price and liquidation, in one frozen, typed, keyword-only record.

The clearinghouse journals them with the market (``MarketParamsSet``, canonical JSON), so a
replay needs no config file. Units are in every name: ``*_ppm`` at ``RATIO_PRECISION``,
``*_rate`` at ``FUNDING_RATE_PRECISION``, ``*_ns`` nanoseconds, ``*_quote`` at
``QUOTE_PRECISION``, ``*_base`` at ``BASE_PRECISION``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from exchange.core.errors import RejectCode
from exchange.core.units import (
    BASE_PRECISION,
    FUNDING_RATE_PRECISION,
    NANOS_PER_SECOND,
    QUOTE_PRECISION,
    RATIO_PRECISION,
    U64_MAX,
)
from liquidation.rules import LiquidationConfig
from perp.circuit_breaker import BreakerConfig
from perp.math.fees import FeeSchedule
from perp.math.margin import MarginSchedule, MarginTier
from perp.risk_gate import RiskLimits


class ParamsError(ValueError):
    """A market parameter is missing, unknown, mistyped or out of range."""

    code = "PERP_PARAMS"


#: Hard bounds of the liquidation parameters (the clearing program's
#: MAX_LIQUIDATION_FEE_PPM; the buffer as liquidation.rules.LiquidationConfig allows).
MAX_LIQUIDATION_FEE_PPM = RATIO_PRECISION // 10
MAX_LIQUIDATION_BUFFER_PPM = RATIO_PRECISION // 10

#: Default tiers: (up to notional, initial, maintenance): 20x up to 1M, 10x to 10M, 5x above.
DEFAULT_MARGIN_TIERS: tuple[tuple[int, int, int], ...] = (
    (1_000_000 * QUOTE_PRECISION, 50_000, 30_000),
    (10_000_000 * QUOTE_PRECISION, 100_000, 50_000),
    (U64_MAX, 200_000, 100_000),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PerpMarketParams:
    """Everything the clearinghouse needs to run one perpetual market."""

    # fees (perp.math.fees)
    maker_fee_ppm: int = -20  # a 0.2 bp rebate
    taker_fee_ppm: int = 450  # 4.5 bp
    insurance_share_ppm: int = 200_000  # 20 % of net fees
    # margin (perp.math.margin): (up_to_notional_quote, initial_ppm, maintenance_ppm)
    margin_tiers: tuple[tuple[int, int, int], ...] = DEFAULT_MARGIN_TIERS
    # pre-trade limits (perp.risk_gate), per account and market
    max_orders_per_second: int = 20_000
    max_orders_per_minute: int = 1_200_000
    max_order_base: int = 1_000_000 * BASE_PRECISION
    max_position_base: int = 10_000_000 * BASE_PRECISION
    max_order_notional_quote: int = 10_000_000 * QUOTE_PRECISION
    daily_loss_limit_quote: int = 0  # 0 disables
    price_band_ppm: int = 50_000  # limit prices within oracle +- 5 %
    # circuit breaker (perp.circuit_breaker)
    breaker_max_move_ppm: int = 100_000  # halt on a 10 % oracle move ...
    breaker_window_ns: int = 60 * NANOS_PER_SECOND  # ... inside one minute
    breaker_cooldown_ns: int = 300 * NANOS_PER_SECOND
    # funding (perp.math.funding)
    funding_interval_ns: int = 3600 * NANOS_PER_SECOND
    funding_sample_interval_ns: int = 5 * NANOS_PER_SECOND
    funding_interest_rate: int = 12_500  # 0.00125 % per hour (0.01 % per 8 h)
    funding_interest_band: int = 500_000  # 0.05 %
    funding_cap_rate: int = 40_000_000  # 4 % per interval
    impact_notional_quote: int = 200 * QUOTE_PRECISION
    # mark price (perp.math.mark)
    mark_ema_window_ns: int = 150 * NANOS_PER_SECOND
    mark_band_ppm: int = 50_000  # mark within oracle +- 5 %
    # liquidation (liquidation.rules; the clearing program's Market holds the same three).
    # A market journaled before these existed reads the venue-wide values it was run with.
    liquidation_fee_ppm: int = 10_000  # 1 % of the closed notional, paid by the target ...
    liquidator_share_ppm: int = 500_000  # ... half of it to the liquidator, half to the fund
    liquidation_buffer_ppm: int = 10_000  # sizing target: maintenance + 1 % of notional

    # Derived, validated views (built in __post_init__, not parameters).
    fees: FeeSchedule = field(init=False, repr=False, compare=False)
    margin: MarginSchedule = field(init=False, repr=False, compare=False)
    limits: RiskLimits = field(init=False, repr=False, compare=False)
    breaker: BreakerConfig = field(init=False, repr=False, compare=False)
    liquidation: LiquidationConfig = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in _PARAM_NAMES:
            value = getattr(self, name)
            if name == "margin_tiers":
                continue
            if type(value) is not int:
                raise ParamsError(f"{name}: expected an int, got {value!r}")
        tiers = self.margin_tiers
        if not isinstance(tiers, tuple) or not all(
            isinstance(t, tuple) and len(t) == 3 and all(type(v) is int for v in t) for t in tiers
        ):
            raise ParamsError(
                f"margin_tiers: expected (up_to_notional_quote, initial_ppm, "
                f"maintenance_ppm) int triples, got {tiers!r}"
            )
        for name, lo, hi in (
            ("funding_interval_ns", 1, 7 * 86_400 * NANOS_PER_SECOND),
            ("funding_sample_interval_ns", 1, 7 * 86_400 * NANOS_PER_SECOND),
            ("funding_interest_band", 0, FUNDING_RATE_PRECISION),
            ("funding_cap_rate", 0, FUNDING_RATE_PRECISION),
            ("impact_notional_quote", 1, U64_MAX),
            ("mark_ema_window_ns", 1, 86_400 * NANOS_PER_SECOND),
            ("mark_band_ppm", 0, RATIO_PRECISION - 1),
            ("liquidation_fee_ppm", 0, MAX_LIQUIDATION_FEE_PPM),
            ("liquidator_share_ppm", 0, RATIO_PRECISION),
            ("liquidation_buffer_ppm", 0, MAX_LIQUIDATION_BUFFER_PPM),
        ):
            value = getattr(self, name)
            if not lo <= value <= hi:
                raise ParamsError(f"{name}: expected {lo}..{hi}, got {value}")
        if abs(self.funding_interest_rate) > FUNDING_RATE_PRECISION:
            raise ParamsError(
                f"funding_interest_rate: expected |rate| <= {FUNDING_RATE_PRECISION}, got "
                f"{self.funding_interest_rate}"
            )
        if self.funding_sample_interval_ns > self.funding_interval_ns:
            raise ParamsError(
                f"funding_sample_interval_ns: expected <= funding_interval_ns "
                f"{self.funding_interval_ns}, got {self.funding_sample_interval_ns}"
            )
        try:
            fees = FeeSchedule(
                maker_ppm=self.maker_fee_ppm,
                taker_ppm=self.taker_fee_ppm,
                insurance_share_ppm=self.insurance_share_ppm,
            )
            margin = MarginSchedule(
                tiers=tuple(
                    MarginTier(up_to_notional_quote=u, initial_ppm=i, maintenance_ppm=m)
                    for u, i, m in tiers
                )
            )
            limits = RiskLimits(
                max_orders_per_second=self.max_orders_per_second,
                max_orders_per_minute=self.max_orders_per_minute,
                max_order_base=self.max_order_base,
                max_position_base=self.max_position_base,
                max_order_notional_quote=self.max_order_notional_quote,
                daily_loss_limit_quote=self.daily_loss_limit_quote,
                price_band_ppm=self.price_band_ppm,
            )
            breaker = BreakerConfig(
                max_move_ppm=self.breaker_max_move_ppm,
                window_ns=self.breaker_window_ns,
                cooldown_ns=self.breaker_cooldown_ns,
            )
        except ValueError as exc:  # each schedule's own error, with its expected/got text
            raise ParamsError(str(exc)) from exc
        # The clearing program's bound (create_market, governance): the fee stays below the
        # first tier's maintenance ratio, so closing always helps (rules: mr + buffer > fee).
        first_maintenance = tiers[0][2]
        if self.liquidation_fee_ppm >= first_maintenance:
            raise ParamsError(
                f"liquidation_fee_ppm: expected < margin_tiers[0] maintenance_ppm "
                f"{first_maintenance}, got {self.liquidation_fee_ppm}"
            )
        liquidation = LiquidationConfig(
            liquidation_fee_ppm=self.liquidation_fee_ppm,
            liquidator_share_ppm=self.liquidator_share_ppm,
            buffer_ppm=self.liquidation_buffer_ppm,
        )
        object.__setattr__(self, "fees", fees)
        object.__setattr__(self, "margin", margin)
        object.__setattr__(self, "limits", limits)
        object.__setattr__(self, "breaker", breaker)
        object.__setattr__(self, "liquidation", liquidation)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-ready form (tiers as lists)."""
        out: dict[str, Any] = {name: getattr(self, name) for name in _PARAM_NAMES}
        out["margin_tiers"] = [list(t) for t in self.margin_tiers]
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces): what ``MarketParamsSet`` carries."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_mapping(
        cls, data: Mapping[str, Any], *, base: PerpMarketParams | None = None
    ) -> PerpMarketParams:
        """Build from a mapping (config table or journaled JSON); keys not given keep
        ``base``'s values (the defaults if none); unknown keys are an error."""
        if not isinstance(data, Mapping):
            raise ParamsError(f"market params: expected a table, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_PARAM_NAMES))
        if unknown:
            raise ParamsError(f"market params: unknown keys {unknown}, expected {_PARAM_NAMES}")
        merged = base.to_dict() if base is not None else {}
        merged.update(data)
        if "margin_tiers" in merged:
            raw = merged["margin_tiers"]
            if not isinstance(raw, list | tuple) or not all(
                isinstance(t, list | tuple) for t in raw
            ):
                raise ParamsError(f"margin_tiers: expected a list of triples, got {raw!r}")
            merged["margin_tiers"] = tuple(tuple(t) for t in raw)
        return cls(**merged)

    @classmethod
    def from_json(cls, text: str) -> PerpMarketParams:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ParamsError(f"market params: expected JSON, got {text[:60]!r}") from exc
        return cls.from_mapping(data)


_PARAM_NAMES = [f.name for f in fields(PerpMarketParams) if f.init]


# ---------------------------------------------------------------- changes (governance)
#: Hard bound on leverage: the first tier's initial ratio is at least 1 / MAX_LEVERAGE (the
#: clearing program's ``1 <= max_leverage <= 100`` with ``max_leverage x initial <= 1e6``).
MAX_LEVERAGE = 100
MIN_FIRST_INITIAL_PPM = RATIO_PRECISION // MAX_LEVERAGE
#: A margin ratio falls by at most 20 % in one change (the program's MAX_MARGIN_FALL_PPM).
MAX_MARGIN_FALL_PPM = 200_000
#: Caps that may at most double in one change (``new <= old + max(old, 1)``): the program's
#: position and funding caps, and the engine's other loosening limits by the same rule.
_DOUBLING_CAPS = (
    "max_position_base",
    "funding_cap_rate",
    "max_order_base",
    "max_order_notional_quote",
    "max_orders_per_second",
    "max_orders_per_minute",
    "price_band_ppm",
    "mark_band_ppm",
    "breaker_max_move_ppm",
)


class ParamsChangeRefusal(NamedTuple):
    """Why a parameter change is refused: the ``RejectCode`` and an expected/got message."""

    code: RejectCode
    message: str


def _at_most_doubles(old: int, new: int) -> bool:
    return new <= old + max(old, 1)


def check_params_change(
    current: PerpMarketParams, proposed: PerpMarketParams
) -> ParamsChangeRefusal | None:
    """Whether a listed market may move from ``current`` to ``proposed`` in one change.

    ``proposed`` is already a valid record (tiers monotone, ``0 < maintenance < initial``,
    fees in range, ...). On top of that, mirroring the clearing program's ``execute``:
    the hard bound ``first initial_ppm >= 10^6 / MAX_LEVERAGE`` (``RISK_PARAMS_OUT_OF_BOUNDS``)
    and the rate limits against the values in force, only in the riskier direction
    (``RISK_PARAMS_CHANGE_TOO_LARGE``): the number of tiers stays, each tier's initial and
    maintenance ratio falls by at most 20 %, each tier bound and each cap in
    ``_DOUBLING_CAPS`` at most doubles, and a daily loss limit in force is neither lifted
    (0) nor more than doubled. Tightening is never limited. The liquidation fee, liquidator
    share and buffer have hard bounds only (the record's: the fee below the first tier's
    maintenance ratio), as in the program.
    """
    first_initial = proposed.margin_tiers[0][1]
    if first_initial < MIN_FIRST_INITIAL_PPM:
        return ParamsChangeRefusal(
            RejectCode.RISK_PARAMS_OUT_OF_BOUNDS,
            f"margin_tiers[0] initial_ppm: expected >= {MIN_FIRST_INITIAL_PPM} (leverage <= "
            f"{MAX_LEVERAGE}), got {first_initial}",
        )
    too_large = RejectCode.RISK_PARAMS_CHANGE_TOO_LARGE
    old_tiers, new_tiers = current.margin_tiers, proposed.margin_tiers
    if len(new_tiers) != len(old_tiers):
        return ParamsChangeRefusal(
            too_large, f"margin_tiers: expected {len(old_tiers)} tiers, got {len(new_tiers)}"
        )
    floor_ppm = RATIO_PRECISION - MAX_MARGIN_FALL_PPM
    for i, (old, new) in enumerate(zip(old_tiers, new_tiers, strict=True)):
        for j, name in ((1, "initial_ppm"), (2, "maintenance_ppm")):
            if new[j] * RATIO_PRECISION < old[j] * floor_ppm:
                return ParamsChangeRefusal(
                    too_large,
                    f"margin_tiers[{i}] {name}: expected >= {old[j]} x {floor_ppm} / "
                    f"{RATIO_PRECISION} (a fall of at most {MAX_MARGIN_FALL_PPM} ppm), got "
                    f"{new[j]}",
                )
        if not _at_most_doubles(old[0], new[0]):
            return ParamsChangeRefusal(
                too_large,
                f"margin_tiers[{i}] up_to_notional_quote: expected <= "
                f"{old[0] + max(old[0], 1)} (at most double), got {new[0]}",
            )
    for name in _DOUBLING_CAPS:
        old_value, new_value = getattr(current, name), getattr(proposed, name)
        if not _at_most_doubles(old_value, new_value):
            return ParamsChangeRefusal(
                too_large,
                f"{name}: expected <= {old_value + max(old_value, 1)} (at most double), got "
                f"{new_value}",
            )
    old_loss, new_loss = current.daily_loss_limit_quote, proposed.daily_loss_limit_quote
    if old_loss and not 0 < new_loss <= 2 * old_loss:
        return ParamsChangeRefusal(
            too_large,
            f"daily_loss_limit_quote: expected 1..{2 * old_loss} while a limit is in force, "
            f"got {new_loss}",
        )
    return None
