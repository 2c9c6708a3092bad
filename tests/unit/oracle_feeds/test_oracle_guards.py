"""Oracle guards per action, the TWAP, and the fallback rule."""

from __future__ import annotations

import pytest
from oracle_support import GUARDS, LOOSE, STRICT, USD, reading

from oracle_feeds.guards import (
    GuardConfigError,
    OracleAction,
    OracleGuards,
    Verdict,
    check,
    choose_source,
    time_weighted_average,
    validity,
)


@pytest.mark.parametrize(
    ("kwargs", "now", "twap", "verdict"),
    [
        ({}, (1_000, 500), None, Verdict.VALID),
        ({"ok": False}, (1_000, 500), None, Verdict.STATUS_NOT_OK),
        ({}, (1_011, 500), None, Verdict.STALE_SLOTS),  # 11 slots > 10
        ({}, (1_010, 506), None, Verdict.STALE_SECONDS),  # 6 s > 5
        ({"conf": 500_001}, (1_000, 500), None, Verdict.CONFIDENCE_TOO_WIDE),  # > 0.5 %
        ({}, (1_000, 500), 98_900_000, Verdict.TWAP_DEVIATION),  # 1.11 % > 1 %
        ({}, (1_000, 500), 99_000_000, Verdict.TWAP_DEVIATION),  # 1 / 99 = 1.0101 % > 1 %
        ({}, (1_000, 500), 99_010_000, Verdict.VALID),  # 0.99 / 99.01 = 0.9999 % <= 1 %
    ],
)
def test_each_guard_under_the_strict_limits(
    kwargs: dict, now: tuple[int, int], twap: int | None, verdict: Verdict
) -> None:
    assert check(reading(**kwargs), STRICT, now_slot=now[0], now_s=now[1], twap=twap) == verdict


def test_confidence_exactly_at_the_limit_passes() -> None:
    assert (
        check(reading(conf=500_000), STRICT, now_slot=1_000, now_s=500, twap=None) == Verdict.VALID
    )


def test_a_price_can_trade_but_not_liquidate() -> None:
    verdicts = validity(reading(), GUARDS, now_slot=1_020, now_s=510, twap=None)
    assert verdicts[OracleAction.TRADING] == Verdict.VALID
    assert verdicts[OracleAction.LIQUIDATION] == Verdict.STALE_SLOTS


def test_liquidation_must_be_the_strictest() -> None:
    with pytest.raises(GuardConfigError, match="liquidation: expected limits no looser"):
        OracleGuards(trading=STRICT, funding=LOOSE, withdrawal=LOOSE, liquidation=LOOSE)


def test_missing_price() -> None:
    assert check(None, LOOSE, now_slot=0, now_s=0, twap=None) == Verdict.NO_PRICE


def test_twap_weights_by_time() -> None:
    # 100 for 30 s, then 110 for 30 s: 105; only the last 60 s count
    samples = [(0, 90 * USD), (30, 100 * USD), (60, 110 * USD)]
    assert time_weighted_average(samples, 90, 60) == 105 * USD
    assert time_weighted_average(samples, 75, 30) == (100 * 15 + 110 * 15) * USD // 30
    assert time_weighted_average([], 10, 5) is None


def test_fallback_rule() -> None:
    assert choose_source(Verdict.VALID, Verdict.VALID) == "primary"
    assert choose_source(Verdict.STALE_SLOTS, Verdict.VALID) == "fallback"
    assert choose_source(Verdict.STALE_SLOTS, Verdict.STALE_SECONDS) is None
    assert choose_source(Verdict.STALE_SLOTS, None) is None
