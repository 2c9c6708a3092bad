"""The pre-trade risk gate compiled with numba, over flat int64 account state.

Same rules, codes and order as ``perp.risk_gate.check_order`` fed with
``perp.margin_check.order_margin_shortfall`` (tiered margin of ``perp.math.margin``): market
status, token buckets per second then per minute, order size, price band, order notional,
position limit, daily loss limit, margin after the fill. The margin input is computed lazily
(only for an order that reaches step 5), which cannot change the result.

Layout. One flat ``int64`` array ``S`` (the kernels get its address, as in
``exchange.core.fastbook``): a header, one record per account (collateral, day loss, the two
token buckets), one record per (account, market) (position base and entry quote, resting bid
and ask base: the worst-case exposure of open orders, realised PnL), one record per market
(status, mark, oracle, fees, limits, margin tiers). Callers keep the records current
incrementally (fills, rests, cancels), so a check is O(markets), never O(orders).

Exactness. Every product that can exceed int64 is split (``a x b / P`` as
``(a div P) x b + (a mod P) x (b div P) + (a mod P) x (b mod P) / P``), and every stored value
is bounded when it enters (``FastRiskRangeError`` otherwise):

* prices (mark, oracle) <= ``MAX_PRICE`` = 2**40 (1.1e6 quote per base unit);
* ``|position base|``, resting base per side <= ``MAX_BASE`` = 2**46 (7.0e4 whole units);
* collateral, entry quote, day loss, realised PnL: ``|x|`` <= ``MAX_QUOTE`` = 2**56;
* at most ``MAX_MARKETS`` = 8 markets and ``MAX_TIERS`` = 8 margin tiers;
* rate limits: ``limit x window_ns`` < 2**62 (the bucket's scaled capacity).

With these, a worst-case base is < 2**48, a notional < 2**58.2, the initial margin of 8
markets < 2**61.2 and an equity > -2**60.3, so the shortfall sum stays below 2**62. An order
whose own base or price is outside ``1..MAX_BASE`` / ``1..MAX_PRICE`` is checked by the exact
Python gate on the same state instead (``check`` does this transparently); a ``now_ns``
outside ``0..MAX_NOW_NS`` is refused with ``FastRiskRangeError`` (the buckets store it, and -1
marks a bucket never used). Limits above int64 are stored as ``I64_MAX`` (every compared value
is < 2**62, so no comparison changes).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from exchange.core.errors import RejectCode
from exchange.core.units import BASE_PRECISION, I64_MAX, NANOS_PER_SECOND, RATIO_PRECISION
from perp.margin_check import OpenOrders, order_margin_shortfall
from perp.math.margin import MarginSchedule
from perp.position import Position
from perp.risk_gate import (
    AccountRiskState,
    GateResult,
    MarketStatus,
    OrderIntent,
    RiskLimits,
    TokenBucket,
    check_order,
)

MAX_PRICE = 2**40
MAX_BASE = 2**46
MAX_QUOTE = 2**56
MAX_NOW_NS = 2**62
MAX_MARKETS = 8
MAX_TIERS = 8
MAX_BUCKET_CAPACITY = 2**62

FALLBACK = -1  # kernel result: an input is outside the compiled bounds, use the Python gate

# ---------------------------------------------------------------- layout (compile-time)
HDR = 16
H_NACC = 0
H_NMKT = 1
H_ACC = 2  # offset of the account records
H_POS = 3  # offset of the (account, market) records
H_MKT = 4  # offset of the market records
H_P1 = 8  # parameters of the last rejection (for its message): p1..p4
H_P2 = 9
H_P3 = 10
H_P4 = 11
H_PY = 12  # 1: the last rejection came from the Python fallback (its text is kept there)

AW = 8  # account record
A_COLLATERAL = 0  # quote
A_DAY_LOSS = 1  # quote, > 0 a loss since the day started
A_S_TOKENS = 2  # per-second bucket: tokens x window
A_S_UPDATED = 3  # ns; -1 = never used (the bucket starts full)
A_M_TOKENS = 4  # per-minute bucket
A_M_UPDATED = 5

PW = 8  # (account, market) record
Q_BASE = 0  # position base, signed
Q_ENTRY = 1  # position entry quote, signed cost basis
Q_BID = 2  # resting bid base (>= 0)
Q_ASK = 3  # resting ask base (>= 0)
Q_REALIZED = 4  # realised PnL (statistic)

MW = 48  # market record
M_STATUS = 0
M_MARK = 1
M_ORACLE = 2
M_TAKER_PPM = 3
M_MAKER_PPM = 4
M_INSURANCE_PPM = 5
M_OPS = 6  # max orders per second
M_OPM = 7  # max orders per minute
M_MAX_ORDER = 8
M_MAX_POS = 9
M_MAX_NOTIONAL = 10
M_LOSS_LIMIT = 11
M_BAND_PPM = 12
M_NTIERS = 13
M_TICK = 14  # tick_size / lot_size: used by engines that trade in ticks and lots
M_LOT = 15
M_TIERS = 16  # MAX_TIERS x (up_to_notional_quote, initial_ppm, maintenance_ppm)

ST_HALTED = int(MarketStatus.HALTED)
ST_CANCEL_ONLY = int(MarketStatus.CANCEL_ONLY)
ST_POST_ONLY = int(MarketStatus.POST_ONLY)
ST_REDUCE_ONLY = int(MarketStatus.REDUCE_ONLY)

C_STATUS = int(RejectCode.MARKET_NOT_ACCEPTING)
C_RATE_S = int(RejectCode.RATE_LIMITED_PER_SECOND)
C_RATE_M = int(RejectCode.RATE_LIMITED_PER_MINUTE)
C_SIZE = int(RejectCode.ORDER_SIZE_ABOVE_LIMIT)
C_BAND = int(RejectCode.PRICE_OUTSIDE_BAND)
C_NOTIONAL = int(RejectCode.NOTIONAL_ABOVE_LIMIT)
C_POSITION = int(RejectCode.POSITION_ABOVE_LIMIT)
C_LOSS = int(RejectCode.DAILY_LOSS_LIMIT)
C_MARGIN = int(RejectCode.INSUFFICIENT_MARGIN)

SECOND_NS = NANOS_PER_SECOND
MINUTE_NS = 60 * NANOS_PER_SECOND
BP = BASE_PRECISION
RP = RATIO_PRECISION


class FastRiskRangeError(ValueError):
    """A value does not fit the compiled gate's documented bounds."""

    code = "FAST_RISK_RANGE"


# ---------------------------------------------------------------- raw memory view
@intrinsic
def _i2p(typingctx, a):  # type: ignore[no-untyped-def]
    sig = types.CPointer(types.int64)(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))

    return sig, codegen


@njit(cache=True, inline="always")
def view(addr):  # type: ignore[no-untyped-def]
    """The int64 array at address ``addr`` as a raw pointer (plain loads and stores)."""
    return _i2p(addr)  # type: ignore[call-arg]


# ---------------------------------------------------------------- exact arithmetic
@njit(cache=True, inline="always")
def mul_div_floor_pow(a, b, p):  # type: ignore[no-untyped-def]
    """``floor(a x b / p)`` for ``a, b >= 0``, exact when ``(a // p) x b`` and
    ``(a % p) x (b % p)`` fit int64 (with ``p`` = 1e6 or 1e9 and the module's bounds)."""
    a1 = a // p
    a0 = a - a1 * p
    b1 = b // p
    b0 = b - b1 * p
    return a1 * b + a0 * b1 + (a0 * b0) // p


@njit(cache=True, inline="always")
def mul_div_ceil_pow(a, b, p):  # type: ignore[no-untyped-def]
    """``ceil(a x b / p)`` for ``a, b >= 0`` (same bounds as ``mul_div_floor_pow``)."""
    a1 = a // p
    a0 = a - a1 * p
    b1 = b // p
    b0 = b - b1 * p
    low = a0 * b0
    q = low // p
    return a1 * b + a0 * b1 + q + (1 if low - q * p else 0)


@njit(cache=True, inline="always")
def notional(base, price):  # type: ignore[no-untyped-def]
    """``perp.math.margin.notional_quote``: ``ceil(|base| x price / 1e9)``."""
    return mul_div_ceil_pow(base if base >= 0 else -base, price, BP)


@njit(cache=True, inline="always")
def unrealized_pnl(base, entry, mark):  # type: ignore[no-untyped-def]
    """``perp.math.margin.unrealized_pnl_quote``: ``floor(base x mark / 1e9) + entry``."""
    if base >= 0:
        return mul_div_floor_pow(base, mark, BP) + entry
    return entry - mul_div_ceil_pow(-base, mark, BP)


@njit(cache=True, inline="always")
def fee(notional_q, rate_ppm):  # type: ignore[no-untyped-def]
    """``perp.math.fees.fee_quote``: owed rounds up, a rebate rounds toward zero."""
    if rate_ppm >= 0:
        return mul_div_ceil_pow(notional_q, rate_ppm, RP)
    return -mul_div_floor_pow(notional_q, -rate_ppm, RP)


@njit(cache=True, inline="always")
def requirement(S, m, notional_q, col):  # type: ignore[no-untyped-def]
    """``perp.math.margin.requirement_quote`` of market record ``m`` (col 1 = initial,
    2 = maintenance): bracket by bracket, the ppm part summed apart, rounded up once."""
    whole = 0
    frac = 0
    lower = 0
    n = S[m + M_NTIERS]
    for t in range(n):
        if notional_q <= lower:
            break
        up = S[m + M_TIERS + 3 * t]
        ratio = S[m + M_TIERS + 3 * t + col]
        part = (notional_q if notional_q < up else up) - lower
        q = part // RP
        whole += q * ratio
        frac += (part - q * RP) * ratio
        lower = up
    return whole + -(-frac // RP)


@njit(cache=True, inline="always")
def _take(S, a, tok, upd, now, limit, window):  # type: ignore[no-untyped-def]
    """``perp.risk_gate.take_token`` on the bucket at ``S[a + tok]`` / ``S[a + upd]``."""
    cap = limit * window
    last = S[a + upd]
    if last < 0:
        tokens = cap
    else:
        elapsed = now - last
        if elapsed < 0:
            elapsed = 0
        tokens = S[a + tok]
        if elapsed >= window:  # elapsed x limit >= capacity: full (and no overflow)
            tokens = cap
        else:
            tokens += elapsed * limit
            if tokens > cap:
                tokens = cap
    S[a + upd] = now
    if tokens < window:
        S[a + tok] = tokens
        return False
    S[a + tok] = tokens - window
    return True


@njit(cache=True, inline="always")
def shortfall(S, acct, mkt, is_bid, base, price):  # type: ignore[no-untyped-def]
    """``perp.margin_check.order_margin_shortfall`` for the account's state in ``S``."""
    nm = S[H_NMKT]
    q0 = S[H_POS] + acct * nm * PW
    equity = S[S[H_ACC] + acct * AW + A_COLLATERAL]
    initial = 0
    for j in range(nm):
        q = q0 + j * PW
        pb = S[q + Q_BASE]
        bid = S[q + Q_BID]
        ask = S[q + Q_ASK]
        if j == mkt:
            if is_bid:
                bid += base
            else:
                ask += base
        if pb == 0 and bid == 0 and ask == 0:
            continue
        m = S[H_MKT] + j * MW
        mark = S[m + M_MARK]
        equity += unrealized_pnl(pb, S[q + Q_ENTRY], mark)
        w1 = pb + bid
        w2 = pb - ask
        if w1 < 0:
            w1 = -w1
        if w2 < 0:
            w2 = -w2
        initial += requirement(S, m, notional(w1 if w1 > w2 else w2, mark), 1)
    m = S[H_MKT] + mkt * MW
    mark = S[m + M_MARK]
    gap = (price - mark) if is_bid else (mark - price)
    adverse = mul_div_ceil_pow(gap, base, BP) if gap > 0 else 0
    f = fee(notional(base, price), S[m + M_TAKER_PPM])
    short = initial - (equity - adverse - f)
    return short if short > 0 else 0


@njit(cache=True, inline="always")
def _reject(S, code, p1, p2, p3, p4):  # type: ignore[no-untyped-def]
    S[H_PY] = 0
    S[H_P1] = p1
    S[H_P2] = p2
    S[H_P3] = p3
    S[H_P4] = p4
    return code


@njit(cache=True, inline="always")
def gate(addr, acct, mkt, is_bid, base, price, reduce_only, post_only, now):  # type: ignore[no-untyped-def]
    """The gate: 0 = accepted, a ``RejectCode`` value, or ``FALLBACK``. Rejection
    parameters for the message go to ``S[H_P1..H_P4]``; rate-limit state is updated."""
    S = view(addr)
    if not (0 <= acct < S[H_NACC] and 0 <= mkt < S[H_NMKT]):
        return FALLBACK
    if not (0 < base <= MAX_BASE and 0 < price <= MAX_PRICE and 0 <= now <= MAX_NOW_NS):
        return FALLBACK
    m = S[H_MKT] + mkt * MW
    q = S[H_POS] + (acct * S[H_NMKT] + mkt) * PW
    a = S[H_ACC] + acct * AW
    pos = S[q + Q_BASE]
    # the side's worst case: this order and every open order on its side filled
    if is_bid:
        extent = pos + S[q + Q_BID] + base
        reduces = pos < 0 and extent <= 0
    else:
        extent = S[q + Q_ASK] + base - pos
        reduces = pos > 0 and extent <= 0
    # 1. market status
    status = S[m + M_STATUS]
    if status == ST_HALTED or status == ST_CANCEL_ONLY:  # noqa: SIM109 (numba: no tuple)
        return _reject(S, C_STATUS, status, 0, 0, 0)
    if status == ST_POST_ONLY and not post_only:
        return _reject(S, C_STATUS, status, 0, 0, 0)
    if status == ST_REDUCE_ONLY and not (reduce_only or reduces):
        return _reject(S, C_STATUS, status, 0, 0, 0)
    # 2. rate limits: both buckets spend (or record) this request
    ok_s = _take(S, a, A_S_TOKENS, A_S_UPDATED, now, S[m + M_OPS], SECOND_NS)
    ok_m = _take(S, a, A_M_TOKENS, A_M_UPDATED, now, S[m + M_OPM], MINUTE_NS)
    if not ok_s:
        return _reject(S, C_RATE_S, S[m + M_OPS], 0, 0, 0)
    if not ok_m:
        return _reject(S, C_RATE_M, S[m + M_OPM], 0, 0, 0)
    # 3. static size and price
    if base > S[m + M_MAX_ORDER]:
        return _reject(S, C_SIZE, S[m + M_MAX_ORDER], base, 0, 0)
    oracle = S[m + M_ORACLE]
    band = oracle * S[m + M_BAND_PPM] // RP
    if not (oracle - band <= price <= oracle + band):
        return _reject(S, C_BAND, oracle - band, oracle + band, S[m + M_BAND_PPM], price)
    nq = notional(base, price)
    if nq > S[m + M_MAX_NOTIONAL]:
        return _reject(S, C_NOTIONAL, S[m + M_MAX_NOTIONAL], nq, 0, 0)
    # 4. position (the side's worst case) and loss, only for orders that can add risk
    if not reduces:
        if extent > S[m + M_MAX_POS]:
            return _reject(S, C_POSITION, S[m + M_MAX_POS], extent, 0, 0)
        limit = S[m + M_LOSS_LIMIT]
        loss = S[a + A_DAY_LOSS]
        if limit and loss >= limit:
            return _reject(S, C_LOSS, limit, loss, 0, 0)
    # 5. margin after the fill
    short = shortfall(S, acct, mkt, is_bid, base, price)
    if short > 0:
        return _reject(S, C_MARGIN, short, 0, 0, 0)
    return 0


_I64 = types.int64
_SIG_GATE = _I64(_I64, _I64, _I64, types.boolean, _I64, _I64, types.boolean, types.boolean, _I64)


@njit(_SIG_GATE, cache=True)
def k_check(addr, acct, mkt, is_bid, base, price, reduce_only, post_only, now):  # type: ignore[no-untyped-def]
    return gate(addr, acct, mkt, is_bid, base, price, reduce_only, post_only, now)


@njit(_I64(_I64, _I64, _I64, _I64, _I64, _I64), cache=True)
def k_shortfall(addr, acct, mkt, is_bid, base, price):  # type: ignore[no-untyped-def]
    return shortfall(view(addr), acct, mkt, is_bid != 0, base, price)


def entry_point(dispatcher: Any) -> Any:
    """The compiled CPython wrapper of a single-signature kernel (skips type dispatch)."""
    try:
        return dispatcher.overloads[dispatcher.signatures[0]].entry_point
    except (AttributeError, IndexError, KeyError):  # numba internals moved: dispatch normally
        return dispatcher


# numba's cache keys on this file only: constants imported from other modules (reject codes,
# statuses) are frozen into cached machine code. Recompile when they no longer match.
_IMPORTED = (
    ST_HALTED,
    ST_CANCEL_ONLY,
    ST_POST_ONLY,
    ST_REDUCE_ONLY,
    C_STATUS,
    C_RATE_S,
    C_RATE_M,
    C_SIZE,
    C_BAND,
    C_NOTIONAL,
    C_POSITION,
    C_LOSS,
    C_MARGIN,
    BP,
    RP,
)


@njit(cache=True)
def k_imported():  # type: ignore[no-untyped-def]
    """The imported constants these kernels were compiled with (see ``recompile_if_stale``):
    numba freezes the global tuple into the cached machine code."""
    return _IMPORTED


def recompile_if_stale(probe: Any, expected: tuple[int, ...], kernels: tuple[Any, ...]) -> None:
    """Recompile ``kernels`` (and ``probe``) when ``probe()``, a cached kernel returning the
    imported constants it was compiled with, disagrees with their current ``expected``."""
    if tuple(probe()) != expected:
        for kernel in (probe, *kernels):
            kernel.recompile()


recompile_if_stale(k_imported, _IMPORTED, (k_check, k_shortfall))
_E_CHECK = entry_point(k_check)


# ---------------------------------------------------------------- Python API
def _bounded(name: str, value: int, lo: int, hi: int) -> int:
    if type(value) is not int or not lo <= value <= hi:
        raise FastRiskRangeError(f"{name}: expected an int in {lo}..{hi}, got {value!r}")
    return value


class FastRisk:
    """Pre-trade gate state for ``accounts`` x ``markets`` (account and market indexes are
    0-based), and the compiled check. All setters check the module's bounds."""

    def __init__(self, *, accounts: int, markets: int) -> None:
        _bounded("accounts", accounts, 1, 2**31)
        _bounded("markets", markets, 1, MAX_MARKETS)
        acc_off = HDR
        pos_off = acc_off + accounts * AW
        mkt_off = pos_off + accounts * markets * PW
        total = mkt_off + markets * MW
        buf = np.zeros(total + 8, np.int64)
        shift = (-buf.ctypes.data % 64) // 8
        self.S = buf[shift : shift + total]
        S = self.S
        S[H_NACC], S[H_NMKT] = accounts, markets
        S[H_ACC], S[H_POS], S[H_MKT] = acc_off, pos_off, mkt_off
        self.accounts, self.markets = accounts, markets
        self.acct = S[acc_off:pos_off].reshape(accounts, AW)
        self.acct[:, A_S_UPDATED] = -1
        self.acct[:, A_M_UPDATED] = -1
        self.pos = S[pos_off:mkt_off].reshape(accounts, markets, PW)
        self.mkt = S[mkt_off:total].reshape(markets, MW)
        self.addr = S.ctypes.data
        self.limits: list[RiskLimits | None] = [None] * markets
        self.schedules: list[MarginSchedule | None] = [None] * markets
        self._buf = buf
        self._python_message = ""

    # ------------------------------------------------------------ configuration
    def set_market(
        self,
        market: int,
        *,
        limits: RiskLimits,
        schedule: MarginSchedule,
        taker_fee_ppm: int,
        mark_price: int,
        oracle_price: int,
        status: MarketStatus = MarketStatus.ACTIVE,
        maker_fee_ppm: int = 0,
        insurance_share_ppm: int = 0,
        tick_size: int = 1,
        lot_size: int = 1,
    ) -> None:
        """Configure market index ``market``: limits, margin tiers, fees, prices, status."""
        _bounded("market", market, 0, self.markets - 1)
        if len(schedule.tiers) > MAX_TIERS:
            raise FastRiskRangeError(
                f"schedule: expected <= {MAX_TIERS} tiers, got {len(schedule.tiers)}"
            )
        for name, limit, window in (
            ("max_orders_per_second", limits.max_orders_per_second, SECOND_NS),
            ("max_orders_per_minute", limits.max_orders_per_minute, MINUTE_NS),
        ):
            if limit * window >= MAX_BUCKET_CAPACITY:
                raise FastRiskRangeError(
                    f"{name}: expected limit x {window} ns < 2**62, got {limit}"
                )
        _bounded("taker_fee_ppm", taker_fee_ppm, -RP, RP)
        _bounded("maker_fee_ppm", maker_fee_ppm, -RP, RP)
        _bounded("insurance_share_ppm", insurance_share_ppm, 0, RP)
        _bounded("tick_size", tick_size, 1, MAX_PRICE)
        _bounded("lot_size", lot_size, 1, MAX_BASE)
        row = self.mkt[market]
        row[:] = 0
        row[M_TAKER_PPM] = taker_fee_ppm
        row[M_MAKER_PPM] = maker_fee_ppm
        row[M_INSURANCE_PPM] = insurance_share_ppm
        row[M_OPS] = limits.max_orders_per_second
        row[M_OPM] = limits.max_orders_per_minute
        row[M_MAX_ORDER] = min(limits.max_order_base, I64_MAX)
        row[M_MAX_POS] = min(limits.max_position_base, I64_MAX)
        row[M_MAX_NOTIONAL] = min(limits.max_order_notional_quote, I64_MAX)
        row[M_LOSS_LIMIT] = min(limits.daily_loss_limit_quote, I64_MAX)
        row[M_BAND_PPM] = limits.price_band_ppm
        row[M_NTIERS] = len(schedule.tiers)
        row[M_TICK] = tick_size
        row[M_LOT] = lot_size
        for t, tier in enumerate(schedule.tiers):
            row[M_TIERS + 3 * t] = min(tier.up_to_notional_quote, I64_MAX)
            row[M_TIERS + 3 * t + 1] = tier.initial_ppm
            row[M_TIERS + 3 * t + 2] = tier.maintenance_ppm
        self.limits[market] = limits
        self.schedules[market] = schedule
        self.set_prices(market, mark_price=mark_price, oracle_price=oracle_price)
        self.set_status(market, status)

    def set_prices(self, market: int, *, mark_price: int, oracle_price: int) -> None:
        self.mkt[market, M_MARK] = _bounded("mark_price", mark_price, 1, MAX_PRICE)
        self.mkt[market, M_ORACLE] = _bounded("oracle_price", oracle_price, 1, MAX_PRICE)

    def set_status(self, market: int, status: MarketStatus) -> None:
        self.mkt[market, M_STATUS] = int(MarketStatus(status))

    # ------------------------------------------------------------ account state
    def set_collateral(self, account: int, amount_quote: int) -> None:
        self.acct[account, A_COLLATERAL] = _bounded(
            "collateral_quote", amount_quote, -MAX_QUOTE, MAX_QUOTE
        )

    def set_day_loss(self, account: int, day_loss_quote: int) -> None:
        self.acct[account, A_DAY_LOSS] = _bounded(
            "day_loss_quote", day_loss_quote, -MAX_QUOTE, MAX_QUOTE
        )

    def set_position(self, account: int, market: int, base: int, entry_quote: int) -> None:
        self.pos[account, market, Q_BASE] = _bounded("position base", base, -MAX_BASE, MAX_BASE)
        self.pos[account, market, Q_ENTRY] = _bounded(
            "entry_quote", entry_quote, -MAX_QUOTE, MAX_QUOTE
        )

    def set_open_orders(self, account: int, market: int, bid_base: int, ask_base: int) -> None:
        self.pos[account, market, Q_BID] = _bounded("resting bid base", bid_base, 0, MAX_BASE)
        self.pos[account, market, Q_ASK] = _bounded("resting ask base", ask_base, 0, MAX_BASE)

    def rate_state(self, account: int) -> AccountRiskState:
        """The account's token buckets as ``perp.risk_gate`` keeps them."""
        r = self.acct[account]

        def bucket(tok: int, upd: int) -> TokenBucket | None:
            return None if r[upd] < 0 else TokenBucket(int(r[tok]), int(r[upd]))

        return AccountRiskState(bucket(A_S_TOKENS, A_S_UPDATED), bucket(A_M_TOKENS, A_M_UPDATED))

    # ------------------------------------------------------------ checks
    def check(
        self,
        account: int,
        market: int,
        is_bid: bool,
        base: int,
        price: int,
        reduce_only: bool = False,
        post_only: bool = False,
        now_ns: int = 0,
    ) -> int:
        """Run the gate: 0 = accepted, else the ``RejectCode`` value (``message`` explains
        it). Rate-limit state is spent as the Python gate spends it."""
        try:
            code = _E_CHECK(
                self.addr, account, market, is_bid, base, price, reduce_only, post_only, now_ns
            )
        except OverflowError:  # an argument beyond int64
            code = FALLBACK
        if code == FALLBACK:
            return self._check_python(
                account, market, is_bid, base, price, reduce_only, post_only, now_ns
            )
        return code  # type: ignore[no-any-return]

    def margin_shortfall(
        self, account: int, market: int, is_bid: bool, base: int, price: int
    ) -> int:
        """``order_margin_shortfall`` of the stored state (compiled; inputs in bounds)."""
        _bounded("account", account, 0, self.accounts - 1)
        _bounded("market", market, 0, self.markets - 1)
        _bounded("base", base, 1, MAX_BASE)
        _bounded("price", price, 1, MAX_PRICE)
        return int(k_shortfall(self.addr, account, market, int(is_bid), base, price))

    def python_inputs(self, account: int) -> dict[str, Any]:
        """The account's state as the Python gate and margin check take it."""
        positions, orders, marks, schedules = {}, {}, {}, {}
        for j in range(self.markets):
            q = self.pos[account, j]
            positions[j] = Position(int(q[Q_BASE]), int(q[Q_ENTRY]))
            orders[j] = OpenOrders(int(q[Q_BID]), int(q[Q_ASK]))
            marks[j] = int(self.mkt[j, M_MARK])
            schedules[j] = self.schedules[j]
        return {
            "collateral_quote": int(self.acct[account, A_COLLATERAL]),
            "positions": positions,
            "open_orders": orders,
            "marks": marks,
            "schedules": schedules,
        }

    def _check_python(
        self,
        account: int,
        market: int,
        is_bid: bool,
        base: int,
        price: int,
        reduce_only: bool,
        post_only: bool,
        now_ns: int,
    ) -> int:
        """The exact Python gate on this state (inputs beyond the compiled bounds)."""
        _bounded("account", account, 0, self.accounts - 1)
        _bounded("market", market, 0, self.markets - 1)
        limits = self.limits[market]
        if limits is None:
            raise FastRiskRangeError(f"market {market}: expected set_market first, got none")
        if type(now_ns) is not int or not 0 <= now_ns <= MAX_NOW_NS:
            raise FastRiskRangeError(f"now_ns: expected an int in 0..{MAX_NOW_NS}, got {now_ns!r}")
        inputs = self.python_inputs(account)
        result = self._python_gate(
            account,
            market,
            OrderIntent(is_bid, base, price, reduce_only, post_only),
            now_ns,
            inputs,
        )
        for bucket, tok, upd in (
            (result.state.per_second, A_S_TOKENS, A_S_UPDATED),
            (result.state.per_minute, A_M_TOKENS, A_M_UPDATED),
        ):
            if bucket is not None:
                self.acct[account, tok] = bucket.tokens
                self.acct[account, upd] = bucket.updated_ns
        self._python_message = result.message
        self.S[H_PY] = 1
        return 0 if result.code is None else int(result.code)

    def _python_gate(
        self, account: int, market: int, order: OrderIntent, now_ns: int, inputs: dict[str, Any]
    ) -> GateResult:
        limits = self.limits[market]
        assert limits is not None
        m = self.mkt[market]
        positions = inputs["positions"]

        def shortfall_of() -> int:
            return order_margin_shortfall(
                **inputs,
                market_id=market,
                is_bid=order.is_bid,
                base=order.base,
                price=order.price,
                taker_fee_ppm=int(m[M_TAKER_PPM]),
            )

        # The margin input only matters when every earlier check passes: run the gate once
        # with no shortfall, and again with the real one only if it accepted.
        args: dict[str, Any] = dict(
            now_ns=now_ns,
            status=MarketStatus(int(m[M_STATUS])),
            limits=limits,
            state=self.rate_state(account),
            position_base=positions[market].base,
            open_bid_base=inputs["open_orders"][market].bid_base,
            open_ask_base=inputs["open_orders"][market].ask_base,
            oracle_price=int(m[M_ORACLE]),
            day_loss_quote=int(self.acct[account, A_DAY_LOSS]),
        )
        first = check_order(order, margin_shortfall_quote=0, **args)
        if first.code is not None:
            return first
        return check_order(order, margin_shortfall_quote=shortfall_of(), **args)

    def message(self, code: int) -> str:
        """The Python gate's text for the last rejection (``code`` as ``check`` returned)."""
        S = self.S
        if S[H_PY]:
            return self._python_message
        p1, p2, p3, p4 = (int(S[H_P1]), int(S[H_P2]), int(S[H_P3]), int(S[H_P4]))
        return risk_message(code, p1, p2, p3, p4)


def risk_message(code: int, p1: int, p2: int, p3: int, p4: int) -> str:
    """``perp.risk_gate.check_order``'s message, rebuilt from a rejection's parameters
    (``p1..p4`` as the compiled gate records them)."""
    if code == C_STATUS:
        status = MarketStatus(p1)
        if status == MarketStatus.POST_ONLY:
            return "market status: expected a post-only order, market is POST_ONLY"
        if status == MarketStatus.REDUCE_ONLY:
            return "market status: expected a reducing order, market is REDUCE_ONLY"
        return f"market status: expected ACTIVE, got {status.name}"
    if code == C_RATE_S:
        return f"rate: expected <= {p1} orders per second"
    if code == C_RATE_M:
        return f"rate: expected <= {p1} orders per minute"
    if code == C_SIZE:
        return f"size: expected <= {p1}, got {p2}"
    if code == C_BAND:
        return f"price: expected within {p1}..{p2} (oracle +- {p3} ppm), got {p4}"
    if code == C_NOTIONAL:
        return f"notional: expected <= {p1}, got {p2}"
    if code == C_POSITION:
        return (
            f"position: expected |position| <= {p1} with this and every open order on its "
            f"side filled, got {p2}"
        )
    if code == C_LOSS:
        return f"daily loss: expected < {p1}, got {p2}; only reducing orders until the day resets"
    if code == C_MARGIN:
        return f"margin: expected equity >= initial margin after the fill, short by {p1}"
    raise ValueError(f"risk rejection: expected a risk gate code 22..30, got {code}")


__all__ = [
    "FALLBACK",
    "MAX_BASE",
    "MAX_MARKETS",
    "MAX_PRICE",
    "MAX_QUOTE",
    "FastRisk",
    "FastRiskRangeError",
    "risk_message",
]
