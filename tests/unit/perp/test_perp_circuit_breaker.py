"""Circuit breaker: automatic halts, cooldown reset, kill switch."""

from __future__ import annotations

import random

import pytest

from perp.circuit_breaker import (
    MAX_BREAKER_BUCKETS,
    BreakerConfig,
    BreakerConfigError,
    BreakerReason,
    BreakerState,
    StatusChange,
    kill,
    on_oracle,
    release,
    set_status,
)
from perp.risk_gate import MarketStatus

S = 1_000_000_000  # one second in ns
USD = 1_000_000
CONFIG = BreakerConfig(max_move_ppm=100_000, window_ns=60 * S, cooldown_ns=120 * S)  # 10 %/min


def feed(state: BreakerState, *points: tuple[int, int | None]) -> tuple[BreakerState, list]:
    changes = []
    for t, price in points:
        state, change = on_oracle(state, CONFIG, t * S, price)
        if change:
            changes.append(change)
    return state, changes


def test_moves_inside_the_band_do_nothing() -> None:
    state, changes = feed(BreakerState(), (0, 100 * USD), (30, 109 * USD), (59, 100 * USD))
    assert state.status == MarketStatus.ACTIVE and changes == []


def test_a_move_beyond_the_band_inside_the_window_halts() -> None:
    # 100 -> 110.000001 within a minute: more than 10 %
    _, changes = feed(BreakerState(), (0, 100 * USD), (30, 110 * USD + 1))
    assert changes == [
        StatusChange(MarketStatus.ACTIVE, MarketStatus.HALTED, BreakerReason.ORACLE_MOVE)
    ]


def test_the_same_move_spread_over_more_than_the_window_does_not() -> None:
    _, changes = feed(BreakerState(), (0, 100 * USD), (61, 115 * USD))
    assert changes == []


def test_invalid_oracle_halts_and_the_halt_resets_after_cooldown_when_calm() -> None:
    state, changes = feed(BreakerState(), (0, 100 * USD), (10, None))
    assert changes[-1].reason == BreakerReason.ORACLE_INVALID
    state, changes = feed(state, (100, 100 * USD))  # valid, but cooldown (120 s) not over
    assert state.status == MarketStatus.HALTED and changes == []
    state, changes = feed(state, (131, 100 * USD))
    assert changes == [
        StatusChange(MarketStatus.HALTED, MarketStatus.ACTIVE, BreakerReason.COOLDOWN_ELAPSED)
    ]


def test_a_breach_during_the_halt_restarts_the_cooldown() -> None:
    state, _ = feed(BreakerState(), (0, 100 * USD), (1, 120 * USD))
    state, _ = feed(state, (100, 100 * USD))  # 100 vs nothing old in window: calm again
    state, _ = feed(state, (110, 130 * USD))  # new breach at 110
    state, changes = feed(state, (200, 130 * USD))  # 90 s after the breach: still halted
    assert state.status == MarketStatus.HALTED and changes == []
    state, changes = feed(state, (231, 130 * USD))
    assert state.status == MarketStatus.ACTIVE


def test_kill_switch_holds_until_released() -> None:
    state, change = kill(BreakerState(), global_switch=False)
    assert change == StatusChange(
        MarketStatus.ACTIVE, MarketStatus.HALTED, BreakerReason.KILL_SWITCH
    )
    state, changes = feed(state, (0, 100 * USD), (1000, 100 * USD))  # calm for long: stays
    assert state.status == MarketStatus.HALTED and changes == []
    with pytest.raises(BreakerConfigError, match="kill switch"):
        set_status(state, MarketStatus.ACTIVE)
    state, change = release(state)
    assert change == StatusChange(MarketStatus.HALTED, MarketStatus.ACTIVE, BreakerReason.OPERATOR)


def test_global_kill_over_an_automatic_halt_is_reported() -> None:
    state, _ = feed(BreakerState(), (0, None))
    state, change = kill(state, global_switch=True)
    assert change == StatusChange(
        MarketStatus.HALTED, MarketStatus.HALTED, BreakerReason.GLOBAL_KILL_SWITCH
    )
    assert state.killed


def test_operator_statuses() -> None:
    state, change = set_status(BreakerState(), MarketStatus.REDUCE_ONLY)
    assert state.status == MarketStatus.REDUCE_ONLY
    assert change == StatusChange(
        MarketStatus.ACTIVE, MarketStatus.REDUCE_ONLY, BreakerReason.OPERATOR
    )


def test_config_bounds() -> None:
    with pytest.raises(BreakerConfigError, match="max_move_ppm"):
        BreakerConfig(max_move_ppm=0, window_ns=1, cooldown_ns=0)


# ---------------------------------------------------------------- bounded window
def _exact_range(readings: list[tuple[int, int]], now_ns: int, window_ns: int) -> tuple[int, int]:
    """The reference rule: every reading kept while ``ts > now - window``."""
    inside = [p for t, p in readings if t > now_ns - window_ns]
    return min(inside), max(inside)


def _kept_range(state: BreakerState) -> tuple[int, int]:
    return min(s[1] for s in state.samples), max(s[-1] for s in state.samples)


def test_a_fast_feed_keeps_at_most_one_entry_per_bucket() -> None:
    # Arrange: a one-second window fed 5,000 times a second for 2.5 windows, a sawtooth
    config = BreakerConfig(max_move_ppm=100_000, window_ns=S, cooldown_ns=S)
    width = -(-config.window_ns // MAX_BREAKER_BUCKETS)
    state, readings = BreakerState(), []
    # Act
    for i in range(12_500):
        t = i * 200_000
        price = 100 * USD + (i % 400) * 10_000
        readings.append((t, price))
        state, _ = on_oracle(state, config, t, price)
        # Assert: bounded, and the kept range covers the exact window's, with readings at
        # most one bucket width older than the window
        assert len(state.samples) <= MAX_BREAKER_BUCKETS + 1
        if i % 97 == 0:
            low, high = _kept_range(state)
            exact_low, exact_high = _exact_range(readings, t, config.window_ns)
            wide_low, wide_high = _exact_range(readings, t, config.window_ns + width)
            assert wide_low <= low <= exact_low and exact_high <= high <= wide_high
            del readings[: -2 * 5_000]  # older than two windows never matter
    assert len(state.samples) >= MAX_BREAKER_BUCKETS and state.status == MarketStatus.ACTIVE


@pytest.mark.parametrize("interval_ms", [400, 1_000, 3_000])
def test_at_real_feed_rates_the_decisions_are_those_of_the_exact_rule(interval_ms: int) -> None:
    # Arrange: a seeded random walk with jumps, one reading per Pyth slot (or slower)
    rng = random.Random(interval_ms)
    state, price, readings = BreakerState(), 100 * USD, []
    # Act / Assert
    for i in range(3_000):
        t = i * interval_ms * 1_000_000 + rng.randrange(50_000_000)
        price = max(USD, price + rng.choice((-1, 1)) * rng.randrange(USD // 2))
        if rng.random() < 0.01:
            price = price * rng.choice((85, 115)) // 100  # a jump that halts
        readings.append((t, price))
        del readings[: -2 * 60_000 // interval_ms]  # older than two windows never matter
        state, _ = on_oracle(state, CONFIG, t, price)
        low, high = _kept_range(state)
        exact_low, exact_high = _exact_range(readings, t, CONFIG.window_ns)
        assert (low, high) == (exact_low, exact_high)
        assert all(len(s) == 2 for s in state.samples)  # one reading per entry: as before
