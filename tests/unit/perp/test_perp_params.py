"""perp.params: the parameter record's validation and the rules of a parameter change
(hard bounds and per-change limits, mirroring the clearing program's governance)."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.core.errors import GOVERNANCE_CODES, RejectCode
from exchange.core.units import BASE_PRECISION, U64_MAX
from liquidation.rules import LiquidationConfig
from perp.params import (
    MIN_FIRST_INITIAL_PPM,
    ParamsError,
    PerpMarketParams,
    check_params_change,
)

CURRENT = PerpMarketParams(daily_loss_limit_quote=1_000_000)
OUT = RejectCode.RISK_PARAMS_OUT_OF_BOUNDS
TOO_LARGE = RejectCode.RISK_PARAMS_CHANGE_TOO_LARGE


def changed(**values: Any) -> PerpMarketParams:
    return PerpMarketParams.from_mapping(values, base=CURRENT)


def tiers(*ratios: tuple[int, int], bounds: tuple[int, ...] = ()) -> list[list[int]]:
    bounds = bounds or tuple(t[0] for t in CURRENT.margin_tiers)
    return [[b, i, m] for b, (i, m) in zip(bounds, ratios, strict=True)]


def test_no_change_and_any_tightening_are_allowed() -> None:
    # Arrange: margins up 5x, caps halved, a daily loss limit halved
    stricter = changed(
        margin_tiers=tiers((250_000, 150_000), (500_000, 250_000), (1_000_000, 500_000)),
        max_position_base=CURRENT.max_position_base // 2,
        funding_cap_rate=0,
        price_band_ppm=1,
        daily_loss_limit_quote=1,
    )
    # Act / Assert
    assert check_params_change(CURRENT, CURRENT) is None
    assert check_params_change(CURRENT, stricter) is None


@pytest.mark.parametrize(
    ("values", "code", "words"),
    [
        # 20 % is the most a ratio may fall at once: 50,000 -> 40,000 passes, 39,999 does not
        (
            {"margin_tiers": tiers((39_999, 30_000), (100_000, 50_000), (200_000, 100_000))},
            TOO_LARGE,
            "margin_tiers[0] initial_ppm",
        ),
        (
            {"margin_tiers": tiers((50_000, 23_999), (100_000, 50_000), (200_000, 100_000))},
            TOO_LARGE,
            "margin_tiers[0] maintenance_ppm",
        ),
        (
            {"margin_tiers": tiers((50_000, 30_000), (100_000, 50_000), (200_000, 79_999))},
            TOO_LARGE,
            "margin_tiers[2] maintenance_ppm",
        ),
        (
            {"margin_tiers": [[U64_MAX, 50_000, 30_000]]},
            TOO_LARGE,
            "expected 3 tiers, got 1",
        ),
        (
            {
                "margin_tiers": tiers(
                    (50_000, 30_000),
                    (100_000, 50_000),
                    (200_000, 100_000),
                    bounds=(2_000_000_000_001, 10_000_000_000_000, U64_MAX),
                )
            },
            TOO_LARGE,
            "margin_tiers[0] up_to_notional_quote",
        ),
        ({"max_position_base": 20_000_000 * BASE_PRECISION + 1}, TOO_LARGE, "max_position_base"),
        ({"funding_cap_rate": 80_000_001}, TOO_LARGE, "funding_cap_rate"),
        ({"max_orders_per_second": 40_001}, TOO_LARGE, "max_orders_per_second"),
        ({"price_band_ppm": 100_001}, TOO_LARGE, "price_band_ppm"),
        ({"daily_loss_limit_quote": 0}, TOO_LARGE, "daily_loss_limit_quote"),
        ({"daily_loss_limit_quote": 2_000_001}, TOO_LARGE, "daily_loss_limit_quote"),
    ],
)
def test_each_loosening_beyond_its_limit_is_refused(
    values: dict[str, Any], code: RejectCode, words: str
) -> None:
    # Act
    refusal = check_params_change(CURRENT, changed(**values))
    # Assert
    assert refusal is not None
    assert refusal.code == code and refusal.code in GOVERNANCE_CODES
    assert words in refusal.message and "expected" in refusal.message


def test_loosening_up_to_the_limit_is_allowed() -> None:
    # Arrange: every ratio -20 %, every bound and cap doubled
    loosest = changed(
        margin_tiers=tiers(
            (40_000, 24_000),
            (80_000, 40_000),
            (160_000, 80_000),
            bounds=(2_000_000_000_000, 20_000_000_000_000, U64_MAX),
        ),
        max_position_base=2 * CURRENT.max_position_base,
        funding_cap_rate=2 * CURRENT.funding_cap_rate,
        max_order_base=2 * CURRENT.max_order_base,
        price_band_ppm=2 * CURRENT.price_band_ppm,
        daily_loss_limit_quote=2_000_000,
    )
    # Act / Assert
    assert check_params_change(CURRENT, loosest) is None


def test_leverage_above_100x_is_out_of_bounds_at_any_pace() -> None:
    # Arrange: a market already at 100x; 99x -> 100x is fine, 101x never
    at_100x = PerpMarketParams(
        margin_tiers=((U64_MAX, MIN_FIRST_INITIAL_PPM, 5_000),), liquidation_fee_ppm=2_500
    )
    above = PerpMarketParams(
        margin_tiers=((U64_MAX, MIN_FIRST_INITIAL_PPM - 1, 5_000),), liquidation_fee_ppm=2_500
    )
    # Act
    refusal = check_params_change(at_100x, above)
    # Assert
    assert refusal is not None and refusal.code == OUT
    assert "leverage <= 100" in refusal.message


def test_a_change_is_a_valid_record_first() -> None:
    with pytest.raises(ParamsError, match="maintenance"):
        changed(margin_tiers=tiers((50_000, 50_000), (100_000, 50_000), (200_000, 100_000)))
    with pytest.raises(ParamsError, match="unknown keys"):
        changed(max_leverage=5)


# ---------------------------------------------------------------- liquidation parameters


def test_liquidation_parameters_default_to_the_program_constants_and_journal() -> None:
    # Arrange: a record journaled before the liquidation keys existed
    legacy = {k: v for k, v in CURRENT.to_dict().items() if "liquid" not in k}
    # Act
    params = PerpMarketParams.from_mapping(legacy)
    # Assert: the venue-wide values it ran with; the three keys travel in the JSON
    assert (params.liquidation_fee_ppm, params.liquidator_share_ppm) == (10_000, 500_000)
    assert params.liquidation_buffer_ppm == 10_000
    assert params.liquidation == LiquidationConfig(
        liquidation_fee_ppm=10_000, liquidator_share_ppm=500_000, buffer_ppm=10_000
    )
    custom = changed(liquidation_fee_ppm=7, liquidator_share_ppm=8, liquidation_buffer_ppm=9)
    assert PerpMarketParams.from_json(custom.to_json()) == custom
    assert custom.liquidation.liquidation_fee_ppm == 7 and custom.liquidation.buffer_ppm == 9


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"liquidation_fee_ppm": -1}, "liquidation_fee_ppm: expected 0..100000, got -1"),
        ({"liquidator_share_ppm": 1_000_001}, "liquidator_share_ppm: expected 0..1000000"),
        ({"liquidation_buffer_ppm": 100_001}, "liquidation_buffer_ppm: expected 0..100000"),
        ({"liquidation_fee_ppm": "1"}, "liquidation_fee_ppm: expected an int"),
        # the first tier's maintenance is 30,000: the fee must stay below it (program bound)
        ({"liquidation_fee_ppm": 30_000}, "expected < margin_tiers[0] maintenance_ppm 30000"),
        (
            {"margin_tiers": [[U64_MAX, 20_000, 10_000]]},
            "expected < margin_tiers[0] maintenance_ppm 10000, got 10000",
        ),
    ],
)
def test_liquidation_parameters_out_of_bounds_are_refused(
    values: dict[str, Any], words: str
) -> None:
    with pytest.raises(ParamsError) as info:
        changed(**values)
    assert words in str(info.value)


def test_liquidation_parameters_change_within_bounds_at_any_pace() -> None:
    # Arrange: the program limits no pace for these (only the bounds)
    proposed = changed(
        liquidation_fee_ppm=29_999, liquidator_share_ppm=1_000_000, liquidation_buffer_ppm=100_000
    )
    # Act / Assert
    assert check_params_change(CURRENT, proposed) is None
    assert check_params_change(proposed, CURRENT) is None
