"""Circuit breaker and kill switch of one market, as a pure state machine.

* The oracle moving more than ``max_move_ppm`` between the lowest and highest price seen
  inside ``window_ns``, or an invalid oracle, halts the market (reason ``ORACLE_MOVE`` /
  ``ORACLE_INVALID``). The window is kept in at most ``MAX_BREAKER_BUCKETS + 1`` entries
  whatever the feed rate: readings in one time bucket of ``ceil(window_ns /
  MAX_BREAKER_BUCKETS)`` share an entry (its newest time, lowest and highest price).
* An automatic halt resets to ``ACTIVE`` by itself once ``cooldown_ns`` has passed since the
  last breach and the oracle is valid and calm (no breach inside the window).
* The kill switch (per market or global) halts with no automatic reset; only an explicit
  ``release`` lifts it. Operators may also set POST_ONLY / REDUCE_ONLY / CANCEL_ONLY.

Every function returns the new state and the ``StatusChange`` it caused (or ``None``), which
the engine journals as an event. Time and prices are arguments. Prices at PRICE_PRECISION.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from exchange.core.units import RATIO_PRECISION
from perp.risk_gate import MarketStatus


class BreakerReason(IntEnum):
    OPERATOR = 0
    ORACLE_MOVE = 1
    ORACLE_INVALID = 2
    KILL_SWITCH = 3
    GLOBAL_KILL_SWITCH = 4
    COOLDOWN_ELAPSED = 5


class BreakerConfigError(ValueError):
    code = "BREAKER_CONFIG"


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerConfig:
    max_move_ppm: int  # 1..RATIO_PRECISION
    window_ns: int  # > 0
    cooldown_ns: int  # >= 0

    def __post_init__(self) -> None:
        if not 0 < self.max_move_ppm <= RATIO_PRECISION:
            raise BreakerConfigError(
                f"max_move_ppm: expected 1..{RATIO_PRECISION}, got {self.max_move_ppm}"
            )
        if self.window_ns <= 0 or self.cooldown_ns < 0:
            raise BreakerConfigError(
                f"window/cooldown: expected > 0 / >= 0, got {self.window_ns} / {self.cooldown_ns}"
            )


#: Time buckets per breaker window: at most this many + 1 sample entries per market.
MAX_BREAKER_BUCKETS = 512


class BreakerState(NamedTuple):
    status: MarketStatus = MarketStatus.ACTIVE
    reason: BreakerReason = BreakerReason.OPERATOR
    killed: bool = False  # a kill switch holds the halt until released
    last_breach_ns: int = -1  # -1: never
    # Inside the window, oldest first, one entry per time bucket: (ts_ns, price) for one
    # reading, (newest ts_ns, lowest, highest) once several readings share the bucket.
    samples: tuple[tuple[int, ...], ...] = ()


class StatusChange(NamedTuple):
    old: MarketStatus
    new: MarketStatus
    reason: BreakerReason


def _move(
    state: BreakerState, status: MarketStatus, reason: BreakerReason, **fields: object
) -> tuple[BreakerState, StatusChange | None]:
    new = state._replace(status=status, reason=reason, **fields)  # type: ignore[arg-type]
    change = StatusChange(state.status, status, reason) if status != state.status else None
    return new, change


def on_oracle(
    state: BreakerState, config: BreakerConfig, now_ns: int, price: int | None
) -> tuple[BreakerState, StatusChange | None]:
    """Feed one oracle observation (``None`` = invalid at this time)."""
    horizon = now_ns - config.window_ns
    samples = tuple(s for s in state.samples if s[0] > horizon)  # s[0]: the entry's newest
    breach: BreakerReason | None = None
    if price is None or price <= 0:
        breach = BreakerReason.ORACLE_INVALID
    else:
        samples = _add_sample(samples, config, now_ns, price)
        low = min(s[1] for s in samples)
        high = max(s[-1] for s in samples)
        if (high - low) * RATIO_PRECISION > config.max_move_ppm * low:
            breach = BreakerReason.ORACLE_MOVE
    if breach is not None:
        if state.status == MarketStatus.HALTED:
            return state._replace(samples=samples, last_breach_ns=now_ns), None
        return _move(state, MarketStatus.HALTED, breach, samples=samples, last_breach_ns=now_ns)
    state = state._replace(samples=samples)
    automatic = state.reason in (BreakerReason.ORACLE_MOVE, BreakerReason.ORACLE_INVALID)
    if (
        state.status == MarketStatus.HALTED
        and automatic
        and not state.killed
        and now_ns - state.last_breach_ns >= max(config.cooldown_ns, config.window_ns)
    ):
        return _move(state, MarketStatus.ACTIVE, BreakerReason.COOLDOWN_ELAPSED)
    return state, None


def _add_sample(
    samples: tuple[tuple[int, ...], ...], config: BreakerConfig, now_ns: int, price: int
) -> tuple[tuple[int, ...], ...]:
    """Append a reading, merged into the newest entry when both fall in one time bucket.

    Bounded: entries are newer than ``now - window`` and in distinct buckets of width
    ``ceil(window / MAX_BREAKER_BUCKETS)``, so there are at most ``MAX_BREAKER_BUCKETS + 1``.
    Exact while no bucket holds readings of two different times (a feed slower than one
    reading per bucket width: 117 ms for the default minute): the decisions are those of
    keeping every reading. Faster, a merged entry's older readings stay until its newest one
    leaves the window, at most one bucket width longer: the breaker can only be stricter.
    """
    width = -(-config.window_ns // MAX_BREAKER_BUCKETS)
    if samples and samples[-1][0] // width == now_ns // width:
        newest = samples[-1]
        low, high = min(newest[1], price), max(newest[-1], price)
        merged = (now_ns, price) if low == high else (now_ns, low, high)
        return (*samples[:-1], merged)
    return (*samples, (now_ns, price))


def kill(state: BreakerState, *, global_switch: bool) -> tuple[BreakerState, StatusChange | None]:
    """Pull the kill switch: halt until ``release`` (the engine also cancels resting orders)."""
    reason = BreakerReason.GLOBAL_KILL_SWITCH if global_switch else BreakerReason.KILL_SWITCH
    new, change = _move(state, MarketStatus.HALTED, reason, killed=True)
    if change is None and state.reason != reason:
        change = StatusChange(state.status, MarketStatus.HALTED, reason)
    return new, change


def release(state: BreakerState) -> tuple[BreakerState, StatusChange | None]:
    """Lift a kill switch; the market becomes ACTIVE (the oracle breaker still applies)."""
    if not state.killed:
        return state, None
    return _move(state, MarketStatus.ACTIVE, BreakerReason.OPERATOR, killed=False)


def set_status(
    state: BreakerState, status: MarketStatus
) -> tuple[BreakerState, StatusChange | None]:
    """An operator or governance decision; refused while a kill switch holds the market."""
    if state.killed:
        raise BreakerConfigError(
            f"status: expected no kill switch, got one holding {state.status.name}"
        )
    return _move(state, status, BreakerReason.OPERATOR)
