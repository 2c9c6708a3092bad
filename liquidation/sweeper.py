"""The margin sweeper: screen every account on each oracle/mark update, re-check exactly.

Accounts live in compact arrays: per account a row of position slots (CSR-like: ``row_start``,
``row_len``, with spare capacity so a fill rarely moves a row) holding market, base, entry
quote and funding snapshot, plus collateral. A numba kernel screens all rows; the
candidates it returns are re-checked with the exact integer maths of ``perp`` and
``liquidation.rules`` before a :class:`LiquidateIntent` is emitted. A pure-Python screen
(:meth:`Sweeper.screen_python`) runs the same integer formulas and returns the same set.

The screen is a bounded int64 over-approximation (never misses a liquidatable account):

* Screen unit ``u = 2^40 / 10^9`` quote units; ``x`` quote is ``floor(x x 5^9 / 2^31)`` u.
* Market ``m`` splits base at ``B_m`` bits: ``base = bs x 2^B + rb`` (``0 <= rb < 2^B``) and
  keeps prices at ``Q_m = 40 - B_m`` bits: the funding-adjusted price
  ``pe = floor((oracle x 10^9 - cumulative_funding) / (10^9 x 2^Q))`` folds unsettled funding
  in (with ``snapshot`` in the slot's constant ``entry_u``, see ``_entry_units``), and
  ``fe = ceil(|cumulative_funding| / (10^9 x 2^Q))`` bounds the gap to the plain oracle.
* Value ``v = bs x pe + ((rb x pe) >> B)`` differs from ``base x pe_exact / 2^40`` by less than
  ``|bs| + 2`` u; equity's lower bound subtracts ``|bs| + 4`` u per position (that error, the
  PnL floor, the funding payment's ceiling, and one spare).
* Notional's upper bound ``N = |v| + (|bs| + 1) x (fe + 1) + 2`` u (the funding gap, the
  value's error and the notional's ceiling). Maintenance is convex piecewise linear in
  notional (ratios never fall), so it is the max of its tier lines ``ratio_t x N - k_t``:
  slopes as ``ceil(ratio x 2^20 / 10^6)`` fixed point, intercepts floored, the product split
  at 2^20; plus 2 u per position for the roundings. Below the first tier's end (floored to u)
  the first line alone is the maximum, so the other lines are evaluated only above it.
* Bounds (checked in Python when a value enters the arrays): ``|bs| <= 2^28``,
  ``|pe| < 2^29``, ``fe < 2^27``, ``rb < 2^31``, ``|collateral u|, |entry u| < 2^57``,
  <= 16 markets. Then every product is < 2^62, a notional < 2^58, a line < 2^59, and each
  account's sums stay < 2^63: no int64 overflow.
  A value outside them marks its account (or market) "exact only": always a candidate.

Two levels, so most updates touch 16 bytes per account instead of every position: a rebase
screens everyone and keeps per account ``headroom = equity_lb - R_all - 3 x positions``
(``R_all`` the requirement bound taking every tier line, clamped to +-2^61; a sentinel for
exact-only or invalid-oracle accounts) and ``exposure = sum((|bs| + 1) x max(1, |pe_ref|))``
(< 2^61). Between rebases a position's equity bound falls by at most ``(|bs| + 1) |dpe| + 1``
and its notional bound rises by at most ``dN = (|bs| + 1)(|dpe| + |dfe|) + 1``, so its
requirement bound (the max of the tier lines) by at most ``dN x s / 2^20 + 1``, ``s`` the
market's steepest slope (<= 2^20). With the relative move ``delta = max over markets of
ceil((|dpe| (2^20 + s) + |dfe| s) / max(1, |pe_ref|))`` (at 2^-20), the per-position loss is
at most ``(|bs| + 1) max(1, |pe_ref|) x delta / 2^20 + 3``, so an
account with ``headroom - ceil(exposure x delta / 2^20) >= 0`` (the product split at 2^20)
is not a candidate of the full screen, and only the others are screened in full: the result
is exactly the full screen's (property-tested). An account changed since the rebase is always
screened in full. A new rebase comes with a market state change, ``delta >= 2^20`` (a 100 %
move), or a pass that had to screen more than 1/8 of the accounts in full.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numba import njit

from exchange.core.units import BASE_PRECISION, FUNDING_RATE_PRECISION, RATIO_PRECISION
from liquidation.errors import LiquidationInputError, ScreenRangeError
from liquidation.rules import Health, OracleReading, check_eligibility
from perp.math.margin import MarginSchedule
from perp.position import Position, settle_funding

SCREEN_BITS = 40  # one screen unit is 2^40 / 10^9 quote units (about 0.0011 USDC)
UNIT_NUM = 5**9  # x quote == x * 10^9 / 2^40 u == x * 5^9 / 2^31 u
UNIT_SHIFT = 31
MAX_BS_BITS = 28
MAX_PRICE_BITS = 29
MAX_FUNDING_BITS = 27
MAX_BASE_SHIFT = 31
RB_MASK = (1 << MAX_BASE_SHIFT) - 1
MAX_TERM = 1 << 57
MAX_MARKETS = 16
MAX_TIERS = 8
SLOPE_BITS = 20
MAX_DELTA = 1 << SLOPE_BITS  # a relative move of 100 % since the rebase forces a new one
HEADROOM_CLAMP = 1 << 61
HEADROOM_DIRTY = -(1 << 62)  # always screened in full (changed since the rebase, or exact)
HEADROOM_NEVER = 1 << 61  # holds an invalid oracle: never a candidate until the next rebase
SLOPE_MASK = (1 << SLOPE_BITS) - 1
FUNDING_SCALE = BASE_PRECISION * FUNDING_RATE_PRECISION  # base x index -> quote


@dataclass(frozen=True, slots=True, kw_only=True)
class SweeperMarket:
    """A market's margin schedule and the bounds the screen is sized for.

    ``max_position_base`` (BASE_PRECISION) and ``max_price`` (PRICE_PRECISION) choose the
    split ``B_m``; a position or price beyond them is still handled, by the exact path only.
    """

    schedule: MarginSchedule
    max_position_base: int
    max_price: int

    def __post_init__(self) -> None:
        for name in ("max_position_base", "max_price"):
            value = getattr(self, name)
            if type(value) is not int or value <= 0:
                raise LiquidationInputError(f"{name}: expected an int > 0, got {value!r}")
        if len(self.schedule.tiers) > MAX_TIERS:
            raise LiquidationInputError(
                f"schedule: expected <= {MAX_TIERS} tiers, got {len(self.schedule.tiers)}"
            )


class LiquidateIntent(NamedTuple):
    """An account the exact maths found below maintenance at valid oracles."""

    account_id: int
    equity_quote: int
    maintenance_quote: int


def _base_shift(market: SweeperMarket) -> int:
    """The largest split that keeps ``|pe| < 2^29`` up to twice ``max_price`` (room for
    funding), provided ``max_position_base`` still fits ``|bs| <= 2^28``."""
    price_shift = max(0, (2 * market.max_price).bit_length() - MAX_PRICE_BITS)
    shift = min(MAX_BASE_SHIFT, SCREEN_BITS - price_shift)
    if market.max_position_base.bit_length() - MAX_BS_BITS > shift:
        raise ScreenRangeError(
            f"market bounds: expected max_position_base < 2^{MAX_BS_BITS + shift} with "
            f"max_price {market.max_price}, got {market.max_position_base}"
        )
    return shift


def _tier_lines(schedule: MarginSchedule) -> list[tuple[int, int]]:
    """(slope at 2^-20 rounded up, intercept in u rounded down) of each maintenance line."""
    lines = []
    lower = 0
    below = 0  # sum of ratio x width of the tiers below, quote x ppm
    for tier in schedule.tiers:
        ratio = tier.maintenance_ppm
        k = ratio * lower - below  # quote x ppm
        k_units = k * 10**9 // (RATIO_PRECISION << SCREEN_BITS)  # floor, in u
        if k_units < 1 << 62:  # a larger intercept starts beyond any screenable notional
            slope = -(-ratio * (1 << SLOPE_BITS) // RATIO_PRECISION)
            lines.append((slope, k_units))
        below += ratio * (tier.up_to_notional_quote - lower)
        lower = tier.up_to_notional_quote
    return lines


def quote_to_units(amount_quote: int) -> int:
    """``floor(amount x 10^9 / 2^40)``: quote units to screen units, rounded down."""
    return (amount_quote * UNIT_NUM) >> UNIT_SHIFT


def _entry_units(entry_quote: int, base: int, snapshot: int) -> int:
    """``floor((entry + base x snapshot / 10^18) x 10^9 / 2^40)``: the slot's constant, so
    ``equity = collateral + base x pe + entry_u`` with funding settled at any later index."""
    return (
        (entry_quote * FUNDING_SCALE + base * snapshot) * UNIT_NUM // (FUNDING_SCALE << UNIT_SHIFT)
    )


# ------------------------------------------------------------------ kernels


@njit(cache=True, inline="always")
def _account_bounds(
    a: int,
    account_row: np.ndarray,
    collateral_u: np.ndarray,
    slot_packed: np.ndarray,
    slot_entry_u: np.ndarray,
    market_shift: np.ndarray,
    market_pe: np.ndarray,
    market_fe: np.ndarray,
    market_state: np.ndarray,
    first_tier_end: np.ndarray,
    tier_slope: np.ndarray,
    tier_k: np.ndarray,
    tier_count: np.ndarray,
    all_lines: bool,
) -> tuple[int, int, int, int, int]:
    """One account's screen: ``(verdict, equity_lb, requirement_ub, requirement_all_lines,
    exposure)``; verdict 0 screened, 1 holds an invalid oracle (skip), 2 exact only.
    ``account_row``: ``start << 6 | exact_only << 5 | length``; ``slot_packed``:
    ``bs << 35 | rb << 4 | market``. ``requirement_all_lines`` (only when asked) takes every
    tier line, with no first-tier shortcut; ``exposure`` is ``sum((|bs| + 1) x max(1, |pe|))``."""
    row = account_row[a]
    start = row >> 6
    verdict = 2 if (row >> 5) & 1 == 1 else 0
    equity = collateral_u[a]
    requirement = 0
    requirement_all = 0
    exposure = 0
    for i in range(start, start + (row & 31)):
        packed = slot_packed[i]
        m = packed & 15
        state = market_state[m]
        if state == 1:
            return 1, 0, 0, 0, 0
        if state == 2:
            verdict = 2
        bs = packed >> 35
        pe = market_pe[m]
        abs_bs = bs if bs >= 0 else -bs
        value = bs * pe + ((((packed >> 4) & RB_MASK) * pe) >> market_shift[m])
        equity += value + slot_entry_u[i] - abs_bs - 4
        notional = (value if value >= 0 else -value) + (abs_bs + 1) * (market_fe[m] + 1) + 2
        hi = notional >> 20
        lo = notional & 0xFFFFF
        slope = tier_slope[m, 0]
        best = hi * slope + ((lo * slope) >> 20) + 1
        if all_lines or notional >= first_tier_end[m]:
            top = best
            for t in range(1, tier_count[m]):
                slope = tier_slope[m, t]
                line = hi * slope + ((lo * slope) >> 20) + 1 - tier_k[m, t]
                if line > top:
                    top = line
            requirement_all += top + 1
            if notional >= first_tier_end[m]:
                best = top
        requirement += best + 1
        exposure += (abs_bs + 1) * (pe if pe > 0 else (1 if pe == 0 else -pe))
    return verdict, equity, requirement, requirement_all, exposure


@njit(cache=True)
def _screen_kernel(
    account_row: np.ndarray,
    collateral_u: np.ndarray,
    slot_packed: np.ndarray,
    slot_entry_u: np.ndarray,
    market_shift: np.ndarray,
    market_pe: np.ndarray,
    market_fe: np.ndarray,
    market_state: np.ndarray,
    first_tier_end: np.ndarray,
    tier_slope: np.ndarray,
    tier_k: np.ndarray,
    tier_count: np.ndarray,
    headroom: np.ndarray,
    exposure: np.ndarray,
    delta: int,
    full: bool,
    record: bool,
    out: np.ndarray,
) -> tuple[int, int]:
    """Write the accounts that may be below maintenance to ``out``; return ``(how many,
    accounts screened position by position)``.

    ``full``: screen every account; with ``record`` also keep its ``headroom`` (``equity_lb -
    requirement_all_lines - 2 x positions``, clamped, or a sentinel) and ``exposure`` at the
    current market values (a rebase). Otherwise first the cheap test: an account with
    ``headroom - exposure x delta / 2^20 >= 0`` (rounded up) cannot be a candidate (``delta``:
    the largest relative move since the rebase, see the module docstring); the rest get the
    full screen. Both give exactly the candidates of the full screen."""
    count = 0
    checked = 0
    for a in range(account_row.shape[0]):
        if not full:
            e = exposure[a]
            if headroom[a] - ((e >> 20) * delta + (((e & 0xFFFFF) * delta) >> 20) + 1) >= 0:
                continue
        checked += 1
        verdict, equity, requirement, requirement_all, k = _account_bounds(
            a, account_row, collateral_u, slot_packed, slot_entry_u, market_shift, market_pe,
            market_fe, market_state, first_tier_end, tier_slope, tier_k, tier_count, record,
        )  # fmt: skip
        if verdict == 2 or (verdict == 0 and equity < requirement):
            out[count] = a
            count += 1
        if record:
            exposure[a] = k
            if verdict == 1:
                headroom[a] = HEADROOM_NEVER  # the market states are fixed until a rebase
            elif verdict == 2 or equity <= -HEADROOM_CLAMP or requirement_all >= HEADROOM_CLAMP:
                headroom[a] = HEADROOM_DIRTY
            else:
                headroom[a] = (
                    min(equity, HEADROOM_CLAMP) - requirement_all - 3 * (account_row[a] & 31)
                )
    return count, checked


# ------------------------------------------------------------------ the sweeper


class Sweeper:
    """Compact account arrays, incrementally updated, screened on every price update.

    Accounts are dense ids ``0..n-1`` and markets ``0..len(markets)-1``. Exact values (base,
    entry quote, collateral: i64; funding snapshot: exact Python int, two int64 limbs) are
    kept alongside the screen fields so the re-check needs nothing else.
    """

    def __init__(self, *, markets: Sequence[SweeperMarket], row_capacity: int = 2) -> None:
        if not 0 < len(markets) <= MAX_MARKETS:
            raise LiquidationInputError(f"markets: expected 1..{MAX_MARKETS}, got {len(markets)}")
        if not 1 <= row_capacity <= MAX_MARKETS:
            raise LiquidationInputError(
                f"row_capacity: expected 1..{MAX_MARKETS}, got {row_capacity}"
            )
        self.markets = tuple(markets)
        self.row_capacity = row_capacity
        n_markets = len(markets)
        self.market_shift = np.array([_base_shift(m) for m in markets], dtype=np.int64)
        self.market_pe = np.zeros(n_markets, dtype=np.int64)
        self.market_fe = np.zeros(n_markets, dtype=np.int64)
        self.market_state = np.ones(n_markets, dtype=np.int8)  # no oracle yet: invalid
        self.market_price = [0] * n_markets
        self.market_funding = [0] * n_markets
        self._oracles: dict[int, OracleReading] = {}  # the exact check's view of the oracles
        self._schedules = {m: market.schedule for m, market in enumerate(markets)}
        self.tier_slope = np.zeros((n_markets, MAX_TIERS), dtype=np.int64)
        self.tier_k = np.zeros((n_markets, MAX_TIERS), dtype=np.int64)
        self.tier_count = np.zeros(n_markets, dtype=np.int64)
        self.first_tier_end = np.full(n_markets, 1 << 62, dtype=np.int64)
        self._max_slope = [max(slope for slope, _ in _tier_lines(m.schedule)) for m in markets]
        for m, market in enumerate(markets):
            if len(market.schedule.tiers) > 1:
                end = quote_to_units(market.schedule.tiers[0].up_to_notional_quote)
                self.first_tier_end[m] = min(end, 1 << 62)
            lines = _tier_lines(market.schedule)
            self.tier_count[m] = len(lines)
            for t, (slope, k) in enumerate(lines):
                self.tier_slope[m, t] = slope
                self.tier_k[m, t] = k
        self.n_accounts = 0
        self.n_slots = 0
        self._alloc_accounts(0)
        self._alloc_slots(0)
        self._out = np.zeros(0, dtype=np.int64)
        self._reference: tuple[list[int], list[int], bytes] | None = None  # pe, fe, states
        self._rebase_next = True
        self.last_screen_checked = 0  # accounts the last screen examined position by position
        self.last_screen_rebased = False

    # ---------------------------------------------------------------- storage
    def _alloc_accounts(self, n: int) -> None:
        self.account_row = np.zeros(n, dtype=np.int64)  # the kernel's packed copy of the row
        self.row_start = np.zeros(n, dtype=np.int64)
        self.row_len = np.zeros(n, dtype=np.int64)
        self.row_cap = np.zeros(n, dtype=np.int64)
        self.account_exact = np.zeros(n, dtype=np.bool_)
        self.exact_slots = np.zeros(n, dtype=np.int64)  # slots outside the screen's bounds
        self.headroom = np.full(n, HEADROOM_DIRTY, dtype=np.int64)  # u, at the last rebase
        self.exposure = np.zeros(n, dtype=np.int64)  # sum(|bs| + 1), at the last rebase
        self.collateral = np.zeros(n, dtype=np.int64)
        self.collateral_u = np.zeros(n, dtype=np.int64)

    def _alloc_slots(self, n: int) -> None:
        self.slot_market = np.zeros(n, dtype=np.int64)
        self.slot_base = np.zeros(n, dtype=np.int64)
        self.slot_entry = np.zeros(n, dtype=np.int64)
        self.slot_snap_hi = np.zeros(n, dtype=np.int64)
        self.slot_snap_lo = np.zeros(n, dtype=np.int64)
        self.slot_carry = np.zeros(n, dtype=np.int64)  # funding carry (< 1e18 < 2^63)
        self.slot_packed = np.zeros(n, dtype=np.int64)
        self.slot_entry_u = np.zeros(n, dtype=np.int64)
        self.slot_exact = np.zeros(n, dtype=np.bool_)

    _ACCOUNT_ARRAYS = (
        "account_row",
        "row_start",
        "row_len",
        "row_cap",
        "account_exact",
        "exact_slots",
        "headroom",
        "exposure",
        "collateral",
        "collateral_u",
    )
    _SLOT_ARRAYS = (
        "slot_market",
        "slot_base",
        "slot_entry",
        "slot_snap_hi",
        "slot_snap_lo",
        "slot_carry",
        "slot_packed",
        "slot_entry_u",
        "slot_exact",
    )

    def _grow(self, names: Iterable[str], size: int) -> None:
        for name in names:
            old = getattr(self, name)
            if old.shape[0] < size:
                new = np.zeros(max(size, 2 * old.shape[0], 16), dtype=old.dtype)
                new[: old.shape[0]] = old
                setattr(self, name, new)

    def _ensure_account(self, account_id: int) -> None:
        if type(account_id) is not int or account_id < 0:
            raise LiquidationInputError(f"account_id: expected an int >= 0, got {account_id!r}")
        if account_id < self.n_accounts:
            return
        self._grow(self._ACCOUNT_ARRAYS, account_id + 1)
        for a in range(self.n_accounts, account_id + 1):
            self.row_start[a] = self.n_slots
            self.row_cap[a] = self.row_capacity
            self.account_row[a] = self.n_slots << 6
            self.headroom[a] = HEADROOM_DIRTY
            self.n_slots += self.row_capacity
        self._grow(self._SLOT_ARRAYS, self.n_slots)
        self.n_accounts = account_id + 1

    def bulk_load(
        self,
        *,
        collateral_quote: np.ndarray,
        positions_per_account: np.ndarray,
        market_id: np.ndarray,
        base: np.ndarray,
        entry_quote: np.ndarray,
    ) -> None:
        """Fill an empty sweeper from int64 arrays in one vectorised pass: account ``a`` holds
        the next ``positions_per_account[a]`` entries (distinct markets). Positions are taken
        as opened at funding snapshot 0 (a fresh venue, replay from genesis, benchmarks)."""
        if self.n_accounts:
            raise LiquidationInputError(
                f"bulk_load: expected an empty sweeper, got {self.n_accounts} accounts"
            )
        counts = np.asarray(positions_per_account, dtype=np.int64)
        n, total = counts.shape[0], int(counts.sum())
        market = np.asarray(market_id, dtype=np.int64)
        if market.shape[0] != total or base.shape[0] != total or entry_quote.shape[0] != total:
            raise LiquidationInputError(f"bulk_load: expected {total} positions in every array")
        if n and (int(counts.min()) < 0 or int(counts.max()) > MAX_MARKETS):
            raise LiquidationInputError(f"positions_per_account: expected 0..{MAX_MARKETS} each")
        if total and (int(market.min()) < 0 or int(market.max()) >= len(self.markets)):
            raise LiquidationInputError("market_id: expected ids of configured markets")
        capacity = np.maximum(counts, 1)
        self._alloc_accounts(n)
        self.row_cap[:] = capacity
        self.row_start[1:] = np.cumsum(capacity)[:-1]
        self.row_len[:] = counts
        self.n_accounts = n
        self._rebase_next = True
        self.n_slots = int(capacity.sum())
        self._alloc_slots(self.n_slots)
        slot = np.repeat(self.row_start, counts) + (
            np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
        )
        shift = self.market_shift[market]
        bs = np.right_shift(base, shift)
        entry_u = _units_vector(entry_quote)
        exact = (
            (bs < -(1 << MAX_BS_BITS)) | (bs >= 1 << MAX_BS_BITS) | (np.abs(entry_u) >= MAX_TERM)
        )
        rb = base - np.left_shift(bs, shift)
        self.slot_market[slot] = market
        self.slot_base[slot] = base
        self.slot_entry[slot] = entry_quote
        self.slot_packed[slot] = np.where(
            exact, market, np.left_shift(bs, 35) | np.left_shift(rb, 4) | market
        )
        self.slot_entry_u[slot] = np.where(exact, 0, entry_u)
        self.slot_exact[slot] = exact
        self.collateral[:] = collateral_quote
        collateral_u = _units_vector(self.collateral)  # an i64 is < 2^53 u: always in bounds
        self.collateral_u[:] = collateral_u
        owner = np.repeat(np.arange(n), counts)
        self.exact_slots[:] = np.bincount(owner[exact], minlength=n)
        self.account_exact[:] = self.exact_slots > 0
        self.account_row[:] = (
            np.left_shift(self.row_start, 6)
            | np.left_shift(self.account_exact.astype(np.int64), 5)
            | self.row_len
        )

    # ---------------------------------------------------------------- updates
    def set_collateral(self, account_id: int, collateral_quote: int) -> None:
        """The account's collateral after a deposit, withdrawal, fee, or settlement (i64)."""
        self._ensure_account(account_id)
        _check_i64("collateral_quote", collateral_quote)
        self.collateral[account_id] = collateral_quote
        self.headroom[account_id] = HEADROOM_DIRTY
        self.collateral_u[account_id] = quote_to_units(collateral_quote)  # < 2^53 u for any i64

    def set_position(self, account_id: int, market_id: int, position: Position) -> None:
        """The account's position in ``market_id`` after a fill or settlement (base 0 removes)."""
        self._ensure_account(account_id)
        if not 0 <= market_id < len(self.markets):
            raise LiquidationInputError(
                f"market_id: expected 0..{len(self.markets) - 1}, got {market_id}"
            )
        _check_i64("base", position.base)
        _check_i64("entry_quote", position.entry_quote)
        self.headroom[account_id] = HEADROOM_DIRTY
        start = int(self.row_start[account_id])
        length = int(self.row_len[account_id])
        row = self.slot_market[start : start + length].tolist()
        slot = start + row.index(market_id) if market_id in row else -1
        if not position.base:
            if slot >= 0:  # move the row's last slot into the hole
                self._count_exact(account_id, -int(self.slot_exact[slot]))
                last = start + length - 1
                for name in self._SLOT_ARRAYS:
                    array = getattr(self, name)
                    array[slot] = array[last]
                self.row_len[account_id] = length - 1
                self._pack_row(account_id)
            return
        if slot < 0:
            if length == self.row_cap[account_id]:
                start = self._move_row(account_id)
            slot = start + length
            self.row_len[account_id] = length + 1
            self.slot_exact[slot] = False
        was_exact = int(self.slot_exact[slot])
        self._write_slot(slot, market_id, position)
        self._count_exact(account_id, int(self.slot_exact[slot]) - was_exact)

    def _move_row(self, account_id: int) -> int:
        """Give a full row twice the room at the end of the slot arrays (the old slots are
        left unused); returns the new start."""
        start = int(self.row_start[account_id])
        length = int(self.row_len[account_id])
        capacity = min(MAX_MARKETS, 2 * int(self.row_cap[account_id]))
        new_start = self.n_slots
        self.n_slots += capacity
        self._grow(self._SLOT_ARRAYS, self.n_slots)
        for name in self._SLOT_ARRAYS:
            array = getattr(self, name)
            array[new_start : new_start + length] = array[start : start + length]
        self.row_start[account_id] = new_start
        self.row_cap[account_id] = capacity
        self._pack_row(account_id)
        return new_start

    def _write_slot(self, slot: int, market_id: int, position: Position) -> None:
        base = position.base
        snapshot = position.funding_snapshot
        shift = int(self.market_shift[market_id])
        bs = base >> shift
        entry_u = _entry_units(position.entry_quote, base, snapshot)
        exact = not -(1 << MAX_BS_BITS) <= bs < 1 << MAX_BS_BITS or abs(entry_u) >= MAX_TERM
        rb = base - (bs << shift)
        self.slot_market[slot] = market_id
        self.slot_base[slot] = base
        self.slot_entry[slot] = position.entry_quote
        self.slot_snap_hi[slot], self.slot_snap_lo[slot] = _split_limbs(snapshot)
        self.slot_carry[slot] = position.funding_carry_numerator
        self.slot_packed[slot] = market_id if exact else (bs << 35) | (rb << 4) | market_id
        self.slot_entry_u[slot] = 0 if exact else entry_u
        self.slot_exact[slot] = exact

    def _count_exact(self, account_id: int, delta: int) -> None:
        if delta:
            self.exact_slots[account_id] += delta
            self.account_exact[account_id] = self.exact_slots[account_id] > 0
        self._pack_row(account_id)

    def _pack_row(self, account_id: int) -> None:
        self.account_row[account_id] = (
            int(self.row_start[account_id]) << 6
            | int(self.account_exact[account_id]) << 5
            | int(self.row_len[account_id])
        )

    def update_market(
        self,
        market_id: int,
        *,
        oracle_price: int,
        valid_for_liquidation: bool,
        cumulative_funding: int,
    ) -> None:
        """A new oracle price (and its liquidation validity) and the market's funding index."""
        if not 0 <= market_id < len(self.markets):
            raise LiquidationInputError(
                f"market_id: expected 0..{len(self.markets) - 1}, got {market_id}"
            )
        if type(oracle_price) is not int or oracle_price <= 0:
            raise LiquidationInputError(f"oracle_price: expected an int > 0, got {oracle_price!r}")
        price_shift = SCREEN_BITS - int(self.market_shift[market_id])
        pe = (oracle_price * FUNDING_RATE_PRECISION - cumulative_funding) // (
            FUNDING_RATE_PRECISION << price_shift
        )
        fe = -(-abs(cumulative_funding) // (FUNDING_RATE_PRECISION << price_shift))
        self.market_price[market_id] = oracle_price
        self.market_funding[market_id] = cumulative_funding
        self._oracles[market_id] = OracleReading(oracle_price, valid_for_liquidation)
        screenable = abs(pe) < 1 << MAX_PRICE_BITS and fe < 1 << MAX_FUNDING_BITS
        self.market_pe[market_id] = pe if screenable else 0
        self.market_fe[market_id] = fe if screenable else 0
        self.market_state[market_id] = 1 if not valid_for_liquidation else 0 if screenable else 2

    # ---------------------------------------------------------------- reading
    def position(self, account_id: int, market_id: int) -> Position:
        """The exact position stored for ``(account, market)`` (empty when none)."""
        if account_id >= self.n_accounts:
            return Position()
        start = int(self.row_start[account_id])
        for i in range(start, start + int(self.row_len[account_id])):
            if self.slot_market[i] == market_id:
                snapshot = (int(self.slot_snap_hi[i]) << 62) + int(self.slot_snap_lo[i])
                return Position(
                    int(self.slot_base[i]),
                    int(self.slot_entry[i]),
                    0,
                    snapshot,
                    int(self.slot_carry[i]),
                )
        return Position()

    def positions(self, account_id: int) -> dict[int, Position]:
        """Every exact position stored for the account, by market."""
        if account_id >= self.n_accounts:
            return {}
        start = int(self.row_start[account_id])
        end = start + int(self.row_len[account_id])
        return {
            market_id: Position(base, entry, 0, (hi << 62) + lo, carry)
            for market_id, base, entry, hi, lo, carry in zip(
                self.slot_market[start:end].tolist(),
                self.slot_base[start:end].tolist(),
                self.slot_entry[start:end].tolist(),
                self.slot_snap_hi[start:end].tolist(),
                self.slot_snap_lo[start:end].tolist(),
                self.slot_carry[start:end].tolist(),
            )
        }

    # ---------------------------------------------------------------- screening
    def _kernel_args(self) -> tuple[Any, ...]:
        n = self.n_accounts
        return (
            self.account_row[:n],
            self.collateral_u[:n],
            self.slot_packed,
            self.slot_entry_u,
            self.market_shift,
            self.market_pe,
            self.market_fe,
            self.market_state,
            self.first_tier_end,
            self.tier_slope,
            self.tier_k,
            self.tier_count,
        )

    def screen(self) -> np.ndarray:
        """Candidate account ids (ascending) from the compiled screen: the cheap per-account
        test against the last rebase, and the full screen for the accounts it cannot clear.
        Rebases (full screen of everyone) on the first call, when a market's state changed,
        when prices or funding moved too far, or when the last pass screened over 1/8 of the
        accounts (and over 1,024) in full. Same result as :meth:`screen_full`."""
        delta = self._delta()
        rebase = delta is None or self._rebase_next
        count, checked = self._run_kernel(0 if delta is None else delta, rebase, rebase)
        if rebase:
            self._reference = (
                self.market_pe.tolist(),
                self.market_fe.tolist(),
                self.market_state.tobytes(),
            )
        self._rebase_next = not rebase and checked > max(self.n_accounts >> 3, 1024)
        self.last_screen_checked = checked
        self.last_screen_rebased = rebase
        return self._out[:count].copy()

    def screen_full(self) -> np.ndarray:
        """Candidate account ids from the full compiled screen of every account (no cheap
        test, nothing recorded)."""
        count, _ = self._run_kernel(0, True, False)
        return self._out[:count].copy()

    def _delta(self) -> int | None:
        """The largest relative move since the rebase, at 2^-20, rounded up: over markets,
        ``ceil((|dpe| x (2^20 + s) + |dfe| x s) / max(1, |pe_ref|))`` with ``s`` the market's
        steepest tier slope (at 2^-20); None if a rebase is due."""
        if self._reference is None:
            return None
        pe_ref, fe_ref, states_ref = self._reference
        if self.market_state.tobytes() != states_ref:
            return None
        delta = max(
            -(
                -(abs(pe - ref) * ((1 << SLOPE_BITS) + slope) + abs(fe - ref_fe) * slope)
                // max(1, abs(ref))
            )
            for pe, ref, fe, ref_fe, slope in zip(
                self.market_pe.tolist(),
                pe_ref,
                self.market_fe.tolist(),
                fe_ref,
                self._max_slope,
            )
        )
        return delta if delta < MAX_DELTA else None

    def _run_kernel(self, delta: int, full: bool, record: bool) -> tuple[int, int]:
        if self._out.shape[0] < self.n_accounts:
            self._out = np.zeros(self.n_accounts, dtype=np.int64)
        n = self.n_accounts
        count, checked = _screen_kernel(  # type: ignore[call-arg]
            *self._kernel_args(),
            self.headroom[:n],
            self.exposure[:n],
            delta,
            full,
            record,
            self._out,
        )
        return int(count), int(checked)

    def screen_python(self) -> np.ndarray:
        """The same screen in plain Python integers (the reference for the kernel)."""
        candidates = []
        shift = [int(s) for s in self.market_shift]
        pe_m = [int(p) for p in self.market_pe]
        fe_m = [int(f) for f in self.market_fe]
        state_m = [int(s) for s in self.market_state]
        end_m = [int(e) for e in self.first_tier_end]
        lines = [
            [
                (int(self.tier_slope[m, t]), int(self.tier_k[m, t]))
                for t in range(int(self.tier_count[m]))
            ]
            for m in range(len(self.markets))
        ]
        for a in range(self.n_accounts):
            equity = int(self.collateral_u[a])
            requirement = 0
            exact = bool(self.account_exact[a])
            skip = False
            start = int(self.row_start[a])
            for i in range(start, start + int(self.row_len[a])):
                m = int(self.slot_market[i])
                if state_m[m] == 1:
                    skip = True
                    break
                exact = exact or state_m[m] == 2
                packed = int(self.slot_packed[i])
                bs, rb = packed >> 35, (packed >> 4) & RB_MASK
                value = bs * pe_m[m] + ((rb * pe_m[m]) >> shift[m])
                equity += value + int(self.slot_entry_u[i]) - abs(bs) - 4
                notional = abs(value) + (abs(bs) + 1) * (fe_m[m] + 1) + 2
                hi, lo = notional >> SLOPE_BITS, notional & SLOPE_MASK
                used = lines[m] if notional >= end_m[m] else lines[m][:1]
                requirement += max(hi * s + ((lo * s) >> SLOPE_BITS) + 1 - k for s, k in used) + 1
            if not skip and (exact or equity < requirement):
                candidates.append(a)
        return np.array(candidates, dtype=np.int64)

    def recheck(self, account_id: int) -> LiquidateIntent | None:
        """Exact check of one account at the stored oracles, funding settled on copies."""
        collateral = int(self.collateral[account_id])
        positions = {}
        for market_id, position in self.positions(account_id).items():
            settled = settle_funding(position, self.market_funding[market_id])
            collateral -= settled.payment_quote
            positions[market_id] = settled.position
        eligibility = check_eligibility(collateral, positions, self._oracles, self._schedules)
        if eligibility.health != Health.LIQUIDATABLE:
            return None
        return LiquidateIntent(account_id, eligibility.equity_quote, eligibility.maintenance_quote)

    def sweep(self) -> list[LiquidateIntent]:
        """Screen every account, then keep the candidates the exact maths confirms."""
        intents = []
        for account_id in self.screen().tolist():
            intent = self.recheck(account_id)
            if intent is not None:
                intents.append(intent)
        return intents


def _units_vector(amount_quote: np.ndarray) -> np.ndarray:
    """:func:`quote_to_units` on int64 arrays without overflow: split at 2^31."""
    amount = np.asarray(amount_quote, dtype=np.int64)
    high = np.right_shift(amount, UNIT_SHIFT)
    low = np.bitwise_and(amount, (1 << UNIT_SHIFT) - 1)
    units: np.ndarray = high * UNIT_NUM + np.right_shift(low * UNIT_NUM, UNIT_SHIFT)
    return units


def _check_i64(name: str, value: int) -> None:
    if type(value) is not int or not -(1 << 63) <= value < 1 << 63:
        raise LiquidationInputError(f"{name}: expected an i64 int, got {value!r}")


def _split_limbs(value: int) -> tuple[int, int]:
    """``value = hi x 2^62 + lo`` with ``0 <= lo < 2^62``; ``hi`` must fit an int64."""
    hi, lo = value >> 62, value & ((1 << 62) - 1)
    if not -(1 << 63) <= hi < 1 << 63:
        raise LiquidationInputError(f"funding snapshot: expected |value| < 2^124, got {value}")
    return hi, lo
