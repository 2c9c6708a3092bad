"""The compiled order path of one market: risk gate -> match -> ledger -> durable journal.

``FastPipeline`` runs every order through

1. ``perp.fastrisk`` (the compiled pre-trade gate, margin after the fill included);
2. ``exchange.core.fastbook.FastMarket`` (the compiled book, through its public API, in
   ``events="last"`` mode: the command's event rows are read right after it);
3. ``k_after`` (compiled, here): the command's rows update both sides of every fill
   (position, entry quote and realised PnL as ``perp.position.apply_fill``, collateral, fees
   as ``perp.math.fees.fill_fees``, the fee pool and the insurance fund, exactly as
   ``perp.ledger.Ledger.trade``), the resting exposure per account and side that the gate's
   margin reads (``OrderRested`` adds, fills and cancels of resting orders remove), and each
   row is appended, compactly encoded, to the current journal group;
4. a group commit every ``group_orders`` commands: the group's bytes go to a writer thread
   that owns the ``Journal`` (SQLite WAL, ``synchronous=FULL``) and appends them as one
   batch; ``close`` waits until every group is durable.

A gate rejection is journaled as ``OrderRejected`` (the gate's code and message) and takes
the next sequence number, as the engine's sequencer records it. The journal reads every
group back as ``exchange.core.events`` tuples (``decode_payload``), the same events the
pure-Python path (``ExchangeCore`` + ``perp.risk_gate``) records for the same orders.

Binary group payload (``BINARY_MAGIC``): a 4-byte magic, a little-endian int64 header
(format version, market id, tick size, lot size, min / max lots, max ticks, max open orders
per account, the seq before the group, the row count), then per event row: a varint
``kind * 16 + ncols`` and ``ncols`` zig-zag varints of the row's columns 1.. (trailing zero
columns dropped): seq and ts as deltas from the row before, the rest as in ``FastMarket``'s
rows. Gate rejections use kind ``K_RISK_REJ`` with ``(0, 0, owner, sub, code, p1..p4)``.

Scope and bounds: one market, plain GTC limit orders and cancels (the benchmark's and the
sequencer's hot path); funding is settled by the engine's funding step, not here (the
cumulative index must not move while a ``FastPipeline`` trades). Amounts obey
``perp.fastrisk``'s bounds; ``lot_size >= MAX_BASE / 2**31`` keeps positions below 2**31
lots, so the basis share ``entry x closed / |base|`` is exact in int64 (computed in lots).
A value leaving the bounds stops the pipeline with ``FastPathError`` (a broken invariant).
"""

from __future__ import annotations

import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from exchange.core.commands import CancelOrder, CreateMarket
from exchange.core.errors import ExchangeError
from exchange.core.events import (
    OrderAccepted,
    OrderCanceled,
    OrderRejected,
    OrderRested,
    TradeExecuted,
)
from exchange.core.fastbook import (
    K_ACC,
    K_CANCEL,
    K_REJ,
    K_REST,
    K_TRADE,
    ROW_W,
    T_PYTHON,
    FastMarket,
)
from exchange.core.market import MarketSpec
from exchange.core.state import ExchangeCore
from exchange.core.units import BASE_PRECISION
from exchange.engine.journal import BINARY_MAGIC, Journal
from perp import fastrisk
from perp.fastrisk import (
    _E_CHECK,
    A_COLLATERAL,
    A_DAY_LOSS,
    AW,
    FALLBACK,
    H_ACC,
    H_MKT,
    H_NACC,
    H_P1,
    H_P2,
    H_P3,
    H_P4,
    H_POS,
    M_INSURANCE_PPM,
    M_LOT,
    M_MAKER_PPM,
    M_TAKER_PPM,
    M_TICK,
    MAX_BASE,
    MAX_PRICE,
    MAX_QUOTE,
    PW,
    Q_ASK,
    Q_BASE,
    Q_BID,
    Q_ENTRY,
    Q_REALIZED,
    FastRisk,
    entry_point,
    fee,
    mul_div_floor_pow,
    recompile_if_stale,
    risk_message,
    view,
)
from perp.ledger import Ledger
from perp.margin_check import OpenOrders, order_margin_shortfall
from perp.math.fees import FeeSchedule
from perp.math.margin import MarginSchedule
from perp.position import Position
from perp.risk_gate import AccountRiskState, MarketStatus, OrderIntent, RiskLimits, check_order

FORMAT_VERSION = 1
_HEADER = struct.Struct("<4s10q")
K_RISK_REJ = 15  # row kind of a gate rejection (FastMarket's kinds are below it)

# aux array (int64): header, then two words per order id (account*2 + side, resting lots)
X_SEQ = 0  # next seq expected in the rows
X_JLEN = 1  # journal bytes used in the current group
X_JCAP = 2
X_PSEQ = 3  # delta bases of the group's encoding
X_PTS = 4
X_NROWS = 5  # rows in the current group
X_FEE_POOL = 6  # quote
X_INSURANCE = 7  # quote
X_OIDCAP = 8  # order ids the table holds
X_TRADES = 9  # statistics: fills, lots
X_LOTS = 10
X_RADDR = 11  # addresses: the gate's state, the book's event rows, the group's bytes
X_EADDR = 12
X_JADDR = 13
X_OID = 16

ROW_BYTES_MAX = 1 + 15 * 10  # the longest encoded row

ERR_STALE = -1  # the rows read are not this command's (the event buffer moved)
ERR_JOURNAL_FULL = -2  # flush the group and call again (nothing was applied)
ERR_UNSUPPORTED = -3  # a row kind this path does not handle
ERR_RANGE = -4  # a value left the compiled bounds
ERR_OID_TABLE = -5  # more order ids than the table holds

_MAX_LOTS_SPAN = 2**31


class FastPathError(ExchangeError):
    """The compiled path met a state it cannot apply exactly (a broken invariant)."""

    code = "FAST_PATH"


@intrinsic
def _u8p(typingctx, a):  # type: ignore[no-untyped-def]
    sig = types.CPointer(types.uint8)(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.uint8)))

    return sig, codegen


@njit(cache=True, inline="always")
def _bytes(addr):  # type: ignore[no-untyped-def]
    """The uint8 buffer at address ``addr`` as a raw pointer."""
    return _u8p(addr)  # type: ignore[call-arg]


@njit(cache=True, inline="always")
def _put(J, pos, v):  # type: ignore[no-untyped-def]
    """Zig-zag varint of int64 ``v`` at ``J[pos]``; returns the next position."""
    z = (v << 1) ^ (v >> 63)
    while z < 0 or z >= 128:
        J[pos] = (z & 127) | 128
        z = (z >> 7) & 0x01FFFFFFFFFFFFFF  # logical shift
        pos += 1
    J[pos] = z
    return pos + 1


@njit(cache=True, inline="always")
def _encode_row(A, J, R, b):  # type: ignore[no-untyped-def]
    """Append row ``R[b : b + ROW_W]`` to the group's bytes (seq and ts as deltas)."""
    seq = R[b + 1]
    ts = R[b + 2]
    ncols = ROW_W - 1
    while ncols > 2 and R[b + ncols] == 0:
        ncols -= 1
    pos = A[X_JLEN]
    pos = _put(J, pos, R[b] * 16 + ncols)
    pos = _put(J, pos, seq - A[X_PSEQ])
    pos = _put(J, pos, ts - A[X_PTS])
    for c in range(3, ncols + 1):
        pos = _put(J, pos, R[b + c])
    A[X_PSEQ] = seq
    A[X_PTS] = ts
    A[X_JLEN] = pos
    A[X_NROWS] += 1


@njit(cache=True, inline="always")
def _released(entry, closed_lots, base_lots):  # type: ignore[no-untyped-def]
    """``trunc(entry x closed / |base|)`` (``perp.position``'s basis share), in lots:
    ``closed <= |base| < 2**31`` keeps every product in int64."""
    a = entry if entry >= 0 else -entry
    q1 = a // base_lots
    r = a - q1 * base_lots
    share = q1 * closed_lots + (r * closed_lots) // base_lots
    return share if entry >= 0 else -share


@njit(cache=True, inline="always")
def _fill(S, q, a, lot, base_delta_lots, quote_delta):  # type: ignore[no-untyped-def]
    """``perp.position.apply_fill`` on record ``q`` with the realised quote into account
    record ``a``'s collateral. Returns False when a value would leave the bounds."""
    base = S[q + Q_BASE]
    entry = S[q + Q_ENTRY]
    base_lots = base // lot
    if base == 0 or (base > 0) == (base_delta_lots > 0):
        new_base = base + base_delta_lots * lot
        new_entry = entry + quote_delta
        realized = 0
    else:
        bl = base_lots if base_lots > 0 else -base_lots
        dl = base_delta_lots if base_delta_lots > 0 else -base_delta_lots
        closed = dl if dl < bl else bl
        released = _released(entry, closed, bl)
        # the fill's quote is linear in its lots: its closing share is exact
        closing_quote = quote_delta // dl * closed
        realized = released + closing_quote
        new_base = base + base_delta_lots * lot
        new_entry = entry - released + (quote_delta - closing_quote)
    collateral = S[a + A_COLLATERAL] + realized
    if not (
        -MAX_BASE <= new_base <= MAX_BASE
        and -MAX_QUOTE <= new_entry <= MAX_QUOTE
        and -MAX_QUOTE <= collateral <= MAX_QUOTE
    ):
        return False
    S[q + Q_BASE] = new_base
    S[q + Q_ENTRY] = new_entry
    S[q + Q_REALIZED] += realized
    S[a + A_COLLATERAL] = collateral
    S[a + A_DAY_LOSS] -= realized
    return True


@njit(cache=True, inline="always")
def _charge(S, a, amount):  # type: ignore[no-untyped-def]
    c = S[a + A_COLLATERAL] - amount
    if not -MAX_QUOTE <= c <= MAX_QUOTE:
        return False
    S[a + A_COLLATERAL] = c
    S[a + A_DAY_LOSS] += amount
    return True


@njit(cache=True)
def _after(aaddr, n):  # type: ignore[no-untyped-def]
    A = view(aaddr)
    S = view(A[X_RADDR])
    R = view(A[X_EADDR])
    J = _bytes(A[X_JADDR])
    seq = A[X_SEQ]
    for r in range(n):
        if R[r * ROW_W + 1] != seq + r:
            return ERR_STALE
    if A[X_JLEN] + n * ROW_BYTES_MAX > A[X_JCAP]:
        return ERR_JOURNAL_FULL
    m = S[H_MKT]  # market record 0
    lot = S[m + M_LOT]
    qptl = S[m + M_TICK] * lot // BASE_PRECISION
    nacc = S[H_NACC]
    pos0 = S[H_POS]
    acc0 = S[H_ACC]
    cap = A[X_OIDCAP]
    accepted = 0
    for r in range(n):
        b = r * ROW_W
        kind = R[b]
        if kind == K_ACC:
            oid = R[b + 3]
            acct = R[b + 5] - 1
            if oid >= cap or not 0 <= acct < nacc:
                return ERR_OID_TABLE
            A[X_OID + 2 * oid] = acct * 2 + R[b + 7]
            A[X_OID + 2 * oid + 1] = 0
            accepted = oid
        elif kind == K_REST:
            oid = R[b + 3]
            lots = R[b + 5]
            packed = A[X_OID + 2 * oid]
            q = pos0 + (packed >> 1) * PW
            col = Q_BID if packed & 1 == 0 else Q_ASK
            A[X_OID + 2 * oid + 1] = lots
            S[q + col] += lots * lot
            if S[q + col] > MAX_BASE:
                return ERR_RANGE
        elif kind == K_TRADE:
            maker_oid = R[b + 3]
            maker = R[b + 5] - 1
            taker = R[b + 7] - 1
            taker_side = R[b + 9]
            price = R[b + 10]
            lots = R[b + 11]
            if not (0 <= maker < nacc and 0 <= taker < nacc):
                return ERR_RANGE
            # the maker's resting exposure shrinks by the fill
            qm = pos0 + maker * PW
            qt = pos0 + taker * PW
            A[X_OID + 2 * maker_oid + 1] -= lots
            S[qm + (Q_ASK if taker_side == 0 else Q_BID)] -= lots * lot
            notional = price * lots * qptl
            sign = 1 if taker_side == 0 else -1
            if not _fill(S, qt, acc0 + taker * AW, lot, sign * lots, -sign * notional):
                return ERR_RANGE
            if not _fill(S, qm, acc0 + maker * AW, lot, -sign * lots, sign * notional):
                return ERR_RANGE
            maker_fee = fee(notional, S[m + M_MAKER_PPM])
            taker_fee = fee(notional, S[m + M_TAKER_PPM])
            net = maker_fee + taker_fee
            insurance = mul_div_floor_pow(net, S[m + M_INSURANCE_PPM], 1_000_000)
            if not _charge(S, acc0 + maker * AW, maker_fee):
                return ERR_RANGE
            if not _charge(S, acc0 + taker * AW, taker_fee):
                return ERR_RANGE
            A[X_FEE_POOL] += net - insurance
            A[X_INSURANCE] += insurance
            A[X_TRADES] += 1
            A[X_LOTS] += lots
        elif kind == K_CANCEL:
            oid = R[b + 3]
            if 0 < oid < cap:
                resting = A[X_OID + 2 * oid + 1]
                if resting > 0:
                    packed = A[X_OID + 2 * oid]
                    q = pos0 + (packed >> 1) * PW
                    S[q + (Q_BID if packed & 1 == 0 else Q_ASK)] -= resting * lot
                    A[X_OID + 2 * oid + 1] = 0
        elif kind == K_REJ:
            if R[b + 8] == T_PYTHON:
                return ERR_UNSUPPORTED
        else:  # K_STD, K_AMEND, K_EXP: never produced by plain GTC limits and cancels
            return ERR_UNSUPPORTED
        _encode_row(A, J, R, b)
    A[X_SEQ] = seq + n
    return accepted


_SIG_AFTER = types.int64(types.int64, types.int64)


@njit(_SIG_AFTER, cache=True)
def k_after(aaddr, n):  # type: ignore[no-untyped-def]
    """Apply and journal the last command's ``n`` event rows; returns the accepted order
    id (0: none) or an ``ERR_*`` status (only ``ERR_JOURNAL_FULL`` and ``ERR_STALE`` leave
    nothing applied)."""
    return _after(aaddr, n)


_SIG_RISK_ROW = types.int64(*([types.int64] * 7))


@njit(_SIG_RISK_ROW, cache=True)
def k_risk_row(raddr, aaddr, jaddr, ts, owner, sub, code):  # type: ignore[no-untyped-def]
    """Journal a gate rejection as the next seq (parameters from the gate's scratch)."""
    S = view(raddr)
    A = view(aaddr)
    J = _bytes(jaddr)
    if A[X_JLEN] + ROW_BYTES_MAX > A[X_JCAP]:
        return ERR_JOURNAL_FULL
    row = np.zeros(ROW_W, np.int64)
    row[0] = K_RISK_REJ
    row[1] = A[X_SEQ]
    row[2] = ts
    row[5] = owner
    row[6] = sub
    row[7] = code
    row[8] = S[H_P1]
    row[9] = S[H_P2]
    row[10] = S[H_P3]
    row[11] = S[H_P4]
    _encode_row(A, J, row, 0)
    A[X_SEQ] += 1
    return A[X_SEQ]


@njit(cache=True, inline="always")
def _get(payload, pos, end):  # type: ignore[no-untyped-def]
    """One zig-zag varint at ``payload[pos]``: (value, next position), position -1 if cut."""
    z = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            return 0, -1
        byte = np.int64(payload[pos])
        pos += 1
        z |= (byte & 127) << shift  # type: ignore[assignment]
        shift += 7
        if byte < 128:
            break
    return ((z >> 1) & 0x7FFFFFFFFFFFFFFF) ^ -(z & 1), pos


@njit(cache=True)
def k_decode(payload, pos, n_rows, prev_seq, out):  # type: ignore[no-untyped-def]
    """Decode ``n_rows`` rows from ``payload[pos:]`` into ``out``; returns the end position
    or -1 on malformed input."""
    prev_ts = 0
    end = payload.shape[0]
    for r in range(n_rows):
        head, pos = _get(payload, pos, end)
        ncols = head & 15
        if pos < 0 or head < 0 or ncols < 2:
            return -1
        out[r, 0] = head >> 4
        for c in range(1, ncols + 1):
            v, pos = _get(payload, pos, end)
            if pos < 0:
                return -1
            if c == 1:
                prev_seq += v
                v = prev_seq
            elif c == 2:
                prev_ts += v
                v = prev_ts
            out[r, c] = v
    return pos


# The kernels inline perp.fastrisk's helpers: a change there must recompile them too.
_FASTRISK_CRC = zlib.crc32(Path(fastrisk.__file__).read_bytes())
_IMPORTED = (
    _FASTRISK_CRC,
    K_ACC,
    K_REJ,
    K_REST,
    K_TRADE,
    K_CANCEL,
    ROW_W,
    T_PYTHON,
    AW,
    PW,
    A_COLLATERAL,
    A_DAY_LOSS,
    Q_BASE,
    Q_ENTRY,
    Q_BID,
    Q_ASK,
    Q_REALIZED,
    H_MKT,
    H_POS,
    H_ACC,
    H_NACC,
    M_LOT,
    M_TICK,
    M_MAKER_PPM,
    M_TAKER_PPM,
    M_INSURANCE_PPM,
    H_P1,
    H_P4,
    MAX_QUOTE,
)


@njit(cache=True)
def k_imported():  # type: ignore[no-untyped-def]
    """The imported constants these kernels were compiled with (see ``recompile_if_stale``):
    numba freezes the global tuple into the cached machine code."""
    return _IMPORTED


recompile_if_stale(k_imported, _IMPORTED, (k_after, k_risk_row, k_decode))
_E_AFTER = entry_point(k_after)
_E_RISK_ROW = entry_point(k_risk_row)

_DECODERS: dict[tuple[int, ...], FastMarket] = {}


def encode_header(spec: MarketSpec, prev_seq: int, n_rows: int) -> bytes:
    return _HEADER.pack(
        BINARY_MAGIC,
        FORMAT_VERSION,
        spec.market_id,
        spec.tick_size,
        spec.lot_size,
        spec.min_size_lots,
        spec.max_size_lots,
        spec.max_price_ticks,
        spec.max_open_orders_per_account,
        prev_seq,
        n_rows,
    )


def decode_payload(payload: bytes) -> list[Any]:
    """A binary group payload -> its ``exchange.core.events`` tuples, in seq order."""
    if len(payload) < _HEADER.size:
        raise ValueError(f"binary batch: expected >= {_HEADER.size} bytes, got {len(payload)}")
    magic, version, mid, tick, lot, min_l, max_l, max_t, max_open, prev_seq, n_rows = (
        _HEADER.unpack_from(payload)
    )
    if magic != BINARY_MAGIC or version != FORMAT_VERSION:
        raise ValueError(f"binary batch: expected {BINARY_MAGIC!r} v1, got {magic!r} v{version}")
    key = (mid, tick, lot, min_l, max_l, max_t, max_open)
    market = _DECODERS.get(key)
    if market is None:
        spec = MarketSpec(
            market_id=mid,
            symbol="decode",
            tick_size=tick,
            lot_size=lot,
            min_size_lots=min_l,
            max_size_lots=max_l,
            max_price_ticks=max_t,
            max_open_orders_per_account=max_open,
        )
        market = _DECODERS[key] = FastMarket(spec, capacity=2, accounts=2)
    rows = np.zeros((n_rows, ROW_W), np.int64)
    end = k_decode(np.frombuffer(payload, np.uint8), _HEADER.size, n_rows, prev_seq, rows)
    if end != len(payload):
        raise ValueError(f"binary batch: expected {n_rows} well-formed rows filling the payload")
    risk = np.flatnonzero(rows[:, 0] == K_RISK_REJ).tolist()
    out: list[Any] = []
    start = 0
    for i in [*risk, n_rows]:
        if i > start:
            out.extend(market.decode(rows[start:i]))
        if i < n_rows:
            r = rows[i].tolist()
            code = r[7]
            out.append(
                OrderRejected(r[1], r[2], mid, 0, 0, r[5], r[6], code, risk_message(code, *r[8:12]))
            )
        start = i + 1
    return out


class _Writer(threading.Thread):
    """Owns the journal: appends each queued group as one durable batch (group commit)."""

    def __init__(self, url: str) -> None:
        super().__init__(name="fastpath-journal", daemon=True)
        self.url = url
        self.jobs: queue.Queue[tuple[bytes, int] | None] = queue.Queue()
        self.busy_ns = 0  # wall time inside commits
        self.cpu_ns = 0  # this thread's CPU time inside commits
        self.batches = 0
        self.bytes = 0
        self.error: BaseException | None = None
        self.ready = threading.Event()

    def run(self) -> None:
        try:
            journal = Journal(self.url)
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        self.ready.set()
        try:
            while True:
                job = self.jobs.get()
                if job is None:
                    self.jobs.task_done()
                    return
                t0 = time.perf_counter_ns()
                c0 = time.thread_time_ns()
                try:
                    journal.append_encoded(job[0], job[1])
                finally:
                    self.jobs.task_done()
                self.busy_ns += time.perf_counter_ns() - t0
                self.cpu_ns += time.thread_time_ns() - c0
                self.batches += 1
                self.bytes += len(job[0])
        except BaseException as exc:  # reported by close()
            self.error = exc
        finally:
            journal.close()


class FastPipeline:
    """One market's compiled order path over ``accounts`` accounts (owner ``i + 1``,
    sub-account 0, is account ``i``), journaled to ``journal_url``.

    ``place(account, side, price_ticks, lots, ts_ns)`` -> order id or minus the gate's code;
    ``cancel(account, order_id, ts_ns)``; ``flush()`` ends a group; ``sync()`` waits until
    every group so far is durable; ``close()``. A result is provisional until its group is
    durable: an engine acknowledges a command only after ``sync()`` covers it."""

    place: Callable[[int, int, int, int, int], int]
    cancel: Callable[[int, int, int], None]

    def __init__(
        self,
        spec: MarketSpec,
        *,
        accounts: int,
        limits: RiskLimits,
        schedule: MarginSchedule,
        fees: FeeSchedule,
        mark_price: int,
        oracle_price: int,
        journal_url: str,
        max_orders: int,
        group_orders: int = 4096,
        book_capacity: int = 1 << 16,
        start_seq: int = 1,
    ) -> None:
        if spec.lot_size * _MAX_LOTS_SPAN < MAX_BASE:
            raise FastPathError(
                f"lot_size: expected >= {MAX_BASE // _MAX_LOTS_SPAN} (positions below 2**31 "
                f"lots), got {spec.lot_size}"
            )
        for what, value, bound in (
            ("max_price_ticks x tick_size", spec.max_price_ticks * spec.tick_size, MAX_PRICE),
            ("max_size_lots x lot_size", spec.max_size_lots * spec.lot_size, MAX_BASE),
            (
                "the largest fill's notional",
                spec.max_price_ticks * spec.max_size_lots * spec.quote_per_tick_lot,
                MAX_QUOTE,
            ),
        ):
            if value > bound:
                raise FastPathError(f"{spec.symbol}: expected {what} <= {bound}, got {value}")
        self.spec = spec
        self.accounts = accounts
        self.group_orders = group_orders
        self.fees = fees
        self.risk = FastRisk(accounts=accounts, markets=1)
        self.risk.set_market(
            0,
            limits=limits,
            schedule=schedule,
            taker_fee_ppm=fees.taker_ppm,
            maker_fee_ppm=fees.maker_ppm,
            insurance_share_ppm=fees.insurance_share_ppm,
            mark_price=mark_price,
            oracle_price=oracle_price,
            tick_size=spec.tick_size,
            lot_size=spec.lot_size,
        )
        self.market = FastMarket(spec, capacity=book_capacity, accounts=accounts, events="last")
        self.aux = np.zeros(X_OID + 2 * (max_orders + 2), np.int64)
        self.aux[X_OIDCAP] = max_orders + 2
        self.aux[X_SEQ] = self.market.seq
        cap = group_orders * 64 * ROW_BYTES_MAX // 8 + 16 * ROW_BYTES_MAX
        self.jbuf = np.zeros(cap, np.uint8)
        self.aux[X_JCAP] = cap
        self.writer = _Writer(journal_url)
        self.writer.start()
        self.writer.ready.wait()
        if self.writer.error is not None:
            raise FastPathError(f"journal: expected an open journal, got {self.writer.error}")
        if start_seq != 1:
            self.market.seq = start_seq
            self.aux[X_SEQ] = start_seq
        self._group_first = self.market.seq
        self._new_group()
        self._rows_addr = self._rows_address()
        self.aux[X_EADDR] = self._rows_addr
        self.aux[X_RADDR] = self.risk.addr
        self.aux[X_JADDR] = int(self.jbuf.ctypes.data)
        self._raddr = self.risk.addr
        self._aaddr = int(self.aux.ctypes.data)
        self._jaddr = int(self.jbuf.ctypes.data)
        self._lot = spec.lot_size
        self._tick = spec.tick_size
        self._place_limit = self.market.place_limit
        self._cancel = self.market.cancel
        self.flush_ns = 0
        self._bind()

    # ------------------------------------------------------------ plumbing
    def _rows_address(self) -> int:
        """Address of the book's event rows. The view is kept: when the book grows it moves
        its rows to a new buffer, and the old one must stay readable (``k_after`` then sees
        old seqs, reports ``ERR_STALE`` and is called again with the new address)."""
        self._rows_view = self.market.rows()
        return int(self._rows_view.ctypes.data)

    def _new_group(self) -> None:
        a = self.aux
        a[X_JLEN] = 0
        a[X_NROWS] = 0
        a[X_PSEQ] = a[X_SEQ] - 1
        a[X_PTS] = 0
        self._group_first = int(a[X_SEQ])

    def flush(self) -> None:
        """Hand the current group to the journal writer (one durable batch)."""
        t0 = time.perf_counter_ns()
        a = self.aux
        n_rows = int(a[X_NROWS])
        if n_rows:
            header = encode_header(self.spec, self._group_first - 1, n_rows)
            self.writer.jobs.put((header + self.jbuf[: int(a[X_JLEN])].tobytes(), n_rows))
        self._new_group()
        self.flush_ns += time.perf_counter_ns() - t0
        if self.writer.error is not None:
            raise FastPathError(f"journal: expected durable appends, got {self.writer.error}")

    def sync(self) -> None:
        """Flush the current group and wait until every group so far is durable."""
        self.flush()
        if self.writer.is_alive():
            self.writer.jobs.join()
        if self.writer.error is not None:
            raise FastPathError(f"journal: expected durable appends, got {self.writer.error}")

    def close(self) -> None:
        """Flush the last group, wait until every group is durable, stop the writer."""
        self.sync()
        self.writer.jobs.put(None)
        self.writer.join()
        if self.writer.error is not None:
            raise FastPathError(f"journal: expected durable appends, got {self.writer.error}")

    def _settle(self, status: int, n: int) -> int:
        """Resolve a non-final ``k_after`` status for the command's ``n`` rows."""
        while status in (ERR_STALE, ERR_JOURNAL_FULL):
            if status == ERR_STALE:
                addr = self._rows_address()
                if addr == self._rows_addr:
                    raise FastPathError("event rows: expected this command's seqs, got others")
                self._rows_addr = addr
                self.aux[X_EADDR] = addr
            else:
                self.flush()
            status = _E_AFTER(self._aaddr, n)
        if status < 0:
            raise FastPathError(f"event rows: expected rows this path applies, got status {status}")
        return status

    # ------------------------------------------------------------ commands
    def deposit(self, account: int, amount_quote: int) -> None:
        """Credit collateral (setup; not journaled by this path)."""
        c = int(self.risk.acct[account, A_COLLATERAL]) + amount_quote
        self.risk.set_collateral(account, c)

    def _bind(self) -> None:
        """Build ``place`` and ``cancel`` as closures over the kernels' addresses: the hot
        loop then pays no attribute lookups and no bound-method frames."""
        raddr, aaddr = self._raddr, self._aaddr
        lot, tick = self._lot, self._tick
        place_limit, book_cancel, after, check = self._place_limit, self._cancel, _E_AFTER, _E_CHECK
        refused, settle = self._refused, self._settle

        def place(account: int, side: int, price_ticks: int, lots: int, ts_ns: int) -> int:
            """One GTC limit order: the order id (> 0, 0 if it was refused by the book), or
            minus the gate's reject code."""
            base = lots * lot
            price = price_ticks * tick
            code = check(raddr, account, 0, side == 0, base, price, False, False, ts_ns)
            if code:
                return -refused(account, code, ts_ns)
            n = place_limit(account + 1, 0, side, price, base, ts_ns)
            status = after(aaddr, n)
            if status < 0:
                status = settle(status, n)
            return status  # type: ignore[no-any-return]

        def cancel(account: int, order_id: int, ts_ns: int) -> None:
            """Cancel ``order_id`` of ``account`` (an unknown id is journaled as rejected)."""
            n = book_cancel(account + 1, 0, order_id, 0, ts_ns)
            status = after(aaddr, n)
            if status < 0:
                settle(status, n)

        self.place = place
        self.cancel = cancel

    def _refused(self, account: int, code: int, ts_ns: int) -> int:
        """Journal the gate's rejection ``code`` (its parameters are in the gate's state)."""
        if code == FALLBACK:
            raise FastPathError("order: expected values within the compiled gate's bounds")
        if _E_RISK_ROW(self._raddr, self._aaddr, self._jaddr, ts_ns, account + 1, 0, code) < 0:
            self.flush()
            _E_RISK_ROW(self._raddr, self._aaddr, self._jaddr, ts_ns, account + 1, 0, code)
        self.market.seq = int(self.aux[X_SEQ])
        return code

    # ------------------------------------------------------------ state
    def collateral(self) -> list[int]:
        return [int(x) for x in self.risk.acct[:, A_COLLATERAL]]

    def positions(self) -> list[tuple[int, int]]:
        """(base, entry quote) per account."""
        p = self.risk.pos[:, 0]
        return list(zip(p[:, Q_BASE].tolist(), p[:, Q_ENTRY].tolist()))

    def exposures(self) -> list[tuple[int, int]]:
        p = self.risk.pos[:, 0]
        return list(zip(p[:, Q_BID].tolist(), p[:, Q_ASK].tolist()))

    def state(self) -> dict[str, Any]:
        """As ``ReferencePipeline.state``."""
        return {
            "collateral": self.collateral(),
            "positions": self.positions(),
            "exposure": self.exposures(),
            "fee_pool": self.fee_pool_quote,
            "insurance": self.insurance_fund_quote,
        }

    @property
    def fee_pool_quote(self) -> int:
        return int(self.aux[X_FEE_POOL])

    @property
    def insurance_fund_quote(self) -> int:
        return int(self.aux[X_INSURANCE])

    @property
    def fills(self) -> tuple[int, int]:
        return int(self.aux[X_TRADES]), int(self.aux[X_LOTS])


class ReferencePipeline:
    """The pure-Python pipeline ``FastPipeline`` must equal: ``ExchangeCore`` (which records
    ``MarketCreated`` first), ``perp.margin_check`` + ``perp.risk_gate``, ``perp.ledger.Ledger``
    and ``Journal.append`` of the events, one group per ``flush``. The day loss is the
    account's deposits minus its collateral (fills and fees are all that move it here)."""

    def __init__(
        self,
        spec: MarketSpec,
        *,
        accounts: int,
        limits: RiskLimits,
        schedule: MarginSchedule,
        fees: FeeSchedule,
        mark_price: int,
        oracle_price: int,
        journal_url: str,
        deposits: Sequence[int],
    ) -> None:
        self.spec, self.limits, self.schedule, self.fees = spec, limits, schedule, fees
        self.mark, self.oracle = mark_price, oracle_price
        self.core = ExchangeCore()
        self.out: list[Any] = []
        self.core.execute(
            CreateMarket(
                spec.market_id,
                spec.symbol,
                spec.tick_size,
                spec.lot_size,
                spec.min_size_lots,
                spec.max_size_lots,
                spec.max_price_ticks,
                spec.max_open_orders_per_account,
            ),
            0,
            self.out,
        )
        self.journal = Journal(journal_url)
        self.flush()
        self.ledger = Ledger()
        self.deposited = list(deposits)
        for account, amount in enumerate(self.deposited):
            if amount:
                self.ledger.deposit(account, amount)
        self.rate = [AccountRiskState()] * accounts
        self.resting: dict[int, list[int]] = {}  # order id -> [account, side, lots]
        self.exposure = [[0, 0] for _ in range(accounts)]

    def place(self, account: int, side: int, price_ticks: int, lots: int, ts_ns: int) -> int:
        """As ``FastPipeline.place``: the order id, or minus the gate's reject code."""
        spec, led = self.spec, self.ledger
        base, price = lots * spec.lot_size, price_ticks * spec.tick_size
        position = led.position(account, spec.market_id)
        bid, ask = self.exposure[account]
        shortfall = order_margin_shortfall(
            led.collateral.get(account, 0),
            {0: Position(position.base, position.entry_quote)},
            {0: OpenOrders(bid, ask)},
            {0: self.mark},
            {0: self.schedule},
            market_id=0,
            is_bid=side == 0,
            base=base,
            price=price,
            taker_fee_ppm=self.fees.taker_ppm,
        )
        result = check_order(
            OrderIntent(side == 0, base, price, False, False),
            now_ns=ts_ns,
            status=MarketStatus.ACTIVE,
            limits=self.limits,
            state=self.rate[account],
            position_base=position.base,
            open_bid_base=bid,
            open_ask_base=ask,
            oracle_price=self.oracle,
            day_loss_quote=self.deposited[account] - led.collateral.get(account, 0),
            margin_shortfall_quote=shortfall,
        )
        self.rate[account] = result.state
        out = self.out
        if result.code is not None:
            self.core.reject(
                out, ts_ns, spec.market_id, 0, 0, account + 1, 0, result.code, result.message
            )
            return -int(result.code)
        start = len(out)
        self.core.place_order(
            spec.market_id, account + 1, 0, side, price, base, ts_ns=ts_ns, out=out
        )
        return self._apply(start)

    def cancel(self, account: int, order_id: int, ts_ns: int) -> None:
        start = len(self.out)
        self.core.cancel_order(
            CancelOrder(self.spec.market_id, account + 1, 0, order_id), ts_ns, self.out
        )
        self._apply(start)

    def _apply(self, start: int) -> int:
        accepted = 0
        lot, mid, qptl = self.spec.lot_size, self.spec.market_id, self.spec.quote_per_tick_lot
        for e in self.out[start:]:
            kind = type(e)
            if kind is OrderAccepted:
                accepted = e.order_id
                self.resting[e.order_id] = [e.owner_id - 1, e.side, 0]
            elif kind is OrderRested:
                r = self.resting[e.order_id]
                r[2] = e.num_base_lots
                self.exposure[r[0]][r[1]] += e.num_base_lots * lot
            elif kind is TradeExecuted:
                r = self.resting[e.maker_order_id]
                r[2] -= e.num_base_lots
                self.exposure[r[0]][r[1]] -= e.num_base_lots * lot
                self.ledger.trade(
                    mid,
                    e.maker_owner_id - 1,
                    e.taker_owner_id - 1,
                    e.taker_side == 0,
                    e.num_base_lots * lot,
                    e.price_ticks * e.num_base_lots * qptl,
                    self.fees,
                )
            elif kind is OrderCanceled:
                gone = self.resting.get(e.order_id)
                if gone is not None and gone[2] > 0:
                    self.exposure[gone[0]][gone[1]] -= gone[2] * lot
                    gone[2] = 0
        return accepted

    def flush(self) -> None:
        """Journal the events since the last flush as one durable batch."""
        if self.out:
            self.journal.append(self.out)
            self.out = []

    def close(self) -> None:
        self.flush()
        self.journal.close()

    def state(self) -> dict[str, Any]:
        """Collateral, (base, entry quote), resting (bid, ask) base per account; pools."""
        led, mid = self.ledger, self.spec.market_id
        n = len(self.exposure)
        return {
            "collateral": [led.collateral.get(a, 0) for a in range(n)],
            "positions": [
                (led.position(a, mid).base, led.position(a, mid).entry_quote) for a in range(n)
            ],
            "exposure": [tuple(x) for x in self.exposure],
            "fee_pool": led.fee_pool_quote,
            "insurance": led.insurance_fund_quote,
        }


def events_of(batches: Sequence[bytes]) -> list[Any]:
    """Decode several binary payloads (tests and tools)."""
    out: list[Any] = []
    for payload in batches:
        out.extend(decode_payload(payload))
    return out


__all__ = [
    "BINARY_MAGIC",
    "FastPathError",
    "FastPipeline",
    "ReferencePipeline",
    "decode_payload",
    "events_of",
]
