"""``FastMarket``: one market's book, matcher and order validation compiled with numba.

Same commands, same semantics and byte-for-byte the same events as ``ExchangeCore`` +
``OrderBook`` (the pure-Python reference) for one market: limit and market orders with every
time in force, reduce-only, the three self-trade-prevention modes, client order ids, the
open-order limit, good-till expiry, cancel (by id or client id), cancel-all and amend, and
stop / take-profit trigger orders (``UpdateTriggerPrice`` fires them, oldest first, at the
exact supplied price; a fired order then runs as a market or limit order with every check).

Layout. All state lives in ONE flat ``int64`` numpy array ``S`` (header, order pool, price
levels, hash tables, expiry heap, account table, event buffer). The compiled kernels get its
address as a plain ``int64`` (unboxing one int is far cheaper than unboxing an array) and are
called through their compiled entry points, which skips numba's type dispatch. Measured on
the anchor machine that halves the per-call overhead.

* order pool: ``NF`` int64 fields per slot, free list through ``P_NEXT``.
* levels: a pool of levels plus, per side, a sorted array of level keys (bids: price, asks:
  -price) with the best level at the END, so a level near the touch is found, added or
  removed with a short scan / memmove; a direct-mapped level cache (price mod ``LCN`` ->
  live level) lets a resting order skip the search.
* hashes (open addressing, linear probing, backward-shift deletion): order id -> slot,
  (account, client id) -> slot; account -> account record index in 32-bit slots (a tag
  and the index; a tag match is confirmed against the record's key), so the table that
  every new account dirties at a random place is small enough to stay mostly cached.
* accounts: dense 32-byte records (position, newest live order, key, and one word of
  live / reduce-only counts and the recheck flag) in creation order, so the records of
  recent accounts (those of resting orders, mostly) share warm cache lines.
* expiry: an indexed binary heap of slots keyed by (expire_at_ns, order_id), entries removed
  eagerly when an order leaves (the reference keeps stale entries; the events are the same).
* triggers: pending stop / take-profit orders are live (indexed like resting ones, counted
  by the open-order limit) but on no level (``P_LEVEL`` = -1); they sit in two indexed
  binary heaps by trigger price (fire on a rise / on a fall), O(log n) to arm, cancel or
  expire. Only ``UpdateTriggerPrice`` reads the heaps, so the other commands cost the same.
* events: rows of ``ROW_W`` int64 ``[KIND, seq, ts_ns, fields...]`` (``decode`` puts the
  market id, the same for every row, back after ``ts_ns``); rejections
  carry ``(code, template, p1, p2)`` and ``decode`` rebuilds the reference message text.

Arithmetic bounds: lots <= max_size_lots <= 2**48 and ticks <= max_price_ticks <= 2**32;
the constructor checks ``max_size_lots * capacity < 2**62`` (a level's total) and that every
valid price and size fits int64. Arguments outside int64 are handled in Python (a client
order id in 2**63..2**64-1 is stored as its int64 bit pattern; an out-of-range price or size
is rejected exactly as the reference does; anything else raises ``ValueError``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from exchange.core.errors import ExchangeError, RejectCode
from exchange.core.events import (
    OrderAccepted,
    OrderAmended,
    OrderCanceled,
    OrderExpired,
    OrderRejected,
    OrderRested,
    OrderTriggered,
    SelfTradeDecremented,
    TradeExecuted,
)
from exchange.core.market import MarketSpec
from exchange.core.orders import SUB_ACCOUNTS_PER_OWNER, OrderType, TimeInForce

_I64 = types.int64

# ---------------------------------------------------------------- constants (compile-time)
ROW_W = 16  # event row width: 128 bytes, rows start on 64-byte boundaries
HDR = 72

H_SEQ = 0
H_NOID = 1
H_MID = 2
H_TICK = 3
H_LOT = 4
H_MINL = 5
H_MAXL = 6
H_MAXT = 7
H_MAXOPEN = 8
H_EVMODE = 9  # 0 = append until drained, 1 = each command overwrites (last command only)
H_EVN = 10
H_EVCAP = 11
H_EVOFF = 12
H_CAP = 13
H_POOL = 14
H_FREE = 15
H_LIVE = 16
H_LVL = 17
H_LFREE = 18
H_K0 = 19  # +side: level keys
H_L0 = 21  # +side: level ids
H_N0 = 23  # +side: number of levels
H_OIDH = 25
H_OIDMASK = 26
H_CIDH = 27
H_CIDMASK = 28
H_ACCH = 29  # account hash: 32-bit slots (tag, record index + 1), see ``_acc_find``
H_ACCMASK = 30
H_ACC = 31  # account records, dense, in creation order
H_ACCCAP = 32
H_NACC = 33
H_HEAP = 34
H_NHEAP = 35
H_TOTAL = 36
H_STATUS = 37
H_BROWS = 38
H_NTRADES = 39  # statistics only: maker fills and lots traded since construction
H_TRADED = 40
H_TOUCH = 41  # accounts whose resting reduce-only orders need a recheck
H_NTOUCH = 42
H_ACCIB = 43  # account hash: bits of a slot's record index (log2 of the slot count)
H_TICKM = 44  # tick_size and lot_size as (multiplier, shifts) for ``_udiv``
H_TICKSH = 45
H_LOTM = 46
H_LOTSH = 47
# (words 48..63: the batch path's prefetch ring, H_RING)
H_LC = 64  # level cache: per side, LCN words of (level id + 1) at price mod LCN, 0 = none
LCN = 512
H_TRIG = 65  # trigger heaps: direction d's heap of slots at S[H_TRIG] + d * capacity
H_NTR0 = 66  # +direction: pending trigger orders (0: fire on a rise, 1: on a fall)

NF = 24  # order fields, in three 64-byte lines: cancels and fills touch only the first two
P_NEXT = 0
P_PREV = 1
P_REM = 2
P_OWNER = 3
P_OID = 4
P_ACC = 5
P_LEVEL = 6
P_SUB = 7
P_FILLED = 8
P_ANEXT = 9
P_APREV = 10
P_ACCOUNT = 11
P_RO = 12
P_CID = 13
P_HPOS = 14
P_SIDE = 15
P_PRICE = 16
P_OTYPE = 17
P_TIF = 18
P_TRIG = 19
P_STP = 20
P_EXP = 21
P_TPOS = 22  # index in its trigger heap while the order is pending (P_LEVEL is then -1)
P_CANCELED = 23  # taker ended by self-trade prevention

LF = 8  # level fields
L_PRICE = 0
L_HEAD = 1
L_TAIL = 2
L_TOTAL = 3
L_COUNT = 4
L_NEXTFREE = 5

AF = 4  # account record, 32 bytes
A_POS = 0
A_HEAD = 1  # newest live order; the list runs to older ones
A_KEY1 = 2  # account + 1
A_CNT = 3  # live orders | live reduce-only orders << CNT_RO | touched flag << CNT_TOUCHED
CNT_RO = 31  # counts are < capacity < 2**30 (checked at allocation)
CNT_MASK = (1 << 31) - 1
CNT_RO1 = 1 << CNT_RO
CNT_TOUCHED = 62  # listed in the reduce-only recheck of this command
ACC_MAX_IB = 28  # account hash slots <= 2**28: a slot keeps >= 4 tag bits

# event kinds (events.py KIND values)
K_ACC = 2
K_REJ = 3
K_REST = 4
K_TRADE = 5
K_CANCEL = 6
K_EXP = 7
K_AMEND = 8
K_TRIG = 9
K_STD = 10
TRADE_LOTS_COL = 11  # a TradeExecuted row's num_base_lots column

# kernel statuses (negative: nothing happened, the Python wrapper acts and retries)
ST_GROW = -1
ST_SPACE = -2
ST_EVGROW = -3  # the command may write more rows than the event buffer holds
ST_BADOP = -4

# enum values
BID = 0
LIMIT = 0
MARKET = 1
STOP_MARKET = 2
STOP_LIMIT = 3
TAKE_PROFIT_MARKET = 4
TAKE_PROFIT_LIMIT = 5
GTC = 0
IOC = 1
FOK = 2
PO = 3
POS = 4
STP_CANCEL_TAKING = 0
STP_CANCEL_RESTING = 1
R_USER = 0
R_CANCEL_ALL = 1
R_IOC = 2
R_STP_TAKING = 3
R_STP_RESTING = 4
R_STP_DECREMENT = 5
R_REDUCE_ONLY = 6

# reject codes
C_NON_POS_PRICE = int(RejectCode.NON_POSITIVE_PRICE)
C_OFF_TICK = int(RejectCode.OFF_TICK_PRICE)
C_PRICE_RANGE = int(RejectCode.PRICE_OUT_OF_RANGE)
C_NON_POS_SIZE = int(RejectCode.NON_POSITIVE_SIZE)
C_OFF_LOT = int(RejectCode.OFF_LOT_SIZE)
C_SIZE_MIN = int(RejectCode.SIZE_BELOW_MINIMUM)
C_SIZE_MAX = int(RejectCode.SIZE_ABOVE_MAXIMUM)
C_UNKNOWN_ORDER = int(RejectCode.UNKNOWN_ORDER)
C_DUP_CID = int(RejectCode.DUPLICATE_CLIENT_ORDER_ID)
C_TOO_MANY = int(RejectCode.TOO_MANY_OPEN_ORDERS)
C_PO_CROSS = int(RejectCode.POST_ONLY_WOULD_CROSS)
C_FOK = int(RejectCode.FOK_NOT_FILLABLE)
C_REDUCE = int(RejectCode.REDUCE_ONLY_WOULD_INCREASE)
C_EXPIRED = int(RejectCode.EXPIRED_ON_ARRIVAL)
C_BAD_TYPE = int(RejectCode.INVALID_ORDER_TYPE)
C_BAD_TRIGGER = int(RejectCode.INVALID_TRIGGER_PRICE)
C_AMEND = int(RejectCode.AMEND_NOT_ALLOWED)

# message templates (one per distinct reference message)
T_NON_POS_PRICE = 1
T_OFF_TICK = 2
T_PRICE_MAX = 3
T_NON_POS_SIZE = 4
T_OFF_LOT = 5
T_SIZE_MIN = 6
T_SIZE_MAX = 7
T_EXPIRED = 8
T_BAD_TYPE = 9
T_BAD_TRIGGER = 10
T_DUP_CID = 11
T_TOO_MANY = 12
T_REDUCE = 13
T_FOK = 14
T_PO_CROSS = 15
T_SLIDE_RANGE = 16
T_CANCEL_UNKNOWN = 17
T_AMEND_UNKNOWN = 18
T_AMEND_SAME = 21
T_PYTHON = 22  # message kept on the Python side (arguments beyond int64)
T_TRIG_TIF = 23
T_TRIG_PRICE = 24
T_AMEND_TRIGGER = 25

MIX = -7046029254386353131  # 0x9E3779B97F4A7C15 as int64

OP_PLACE = 0
OP_CANCEL = 1
OP_CANCEL_ALL = 2
OP_AMEND = 3
OP_EXPIRE = 4
OP_TRIGGER = 5
OP_W = 16  # batch op row width: [op, ts_ns, args...]


# ---------------------------------------------------------------- raw memory view
@intrinsic
def _i2p(typingctx, a):  # type: ignore[no-untyped-def]
    sig = types.CPointer(types.int64)(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.int64)))

    return sig, codegen


@intrinsic
def _i2p32(typingctx, a):  # type: ignore[no-untyped-def]
    sig = types.CPointer(types.uint32)(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], context.get_value_type(types.CPointer(types.uint32)))

    return sig, codegen


def _prefetch_codegen(write: int):  # type: ignore[no-untyped-def]
    """LLVM ``prefetch`` of the cache line at an int64 address (``write``: 1 = for writing,
    0 = for reading), locality high, data cache. It never changes results."""

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        builder.call(fn, [builder.inttoptr(args[0], i8p), i32(write), i32(3), i32(1)])
        return context.get_dummy_value()

    return codegen


@intrinsic
def _prefetch(typingctx, a):  # type: ignore[no-untyped-def]
    """Hint the CPU to pull the cache line at address ``a`` for writing."""
    return types.void(types.int64), _prefetch_codegen(1)


@intrinsic
def _prefetch_r(typingctx, a):  # type: ignore[no-untyped-def]
    """``_prefetch`` for reading only (no request for ownership)."""
    return types.void(types.int64), _prefetch_codegen(0)


@intrinsic
def _umulhi(typingctx, a, b):  # type: ignore[no-untyped-def]
    """High 64 bits of the 128-bit product of two int64 bit patterns read as unsigned."""
    sig = types.int64(types.int64, types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        i128 = ir.IntType(128)
        p = builder.mul(builder.zext(args[0], i128), builder.zext(args[1], i128))
        return builder.trunc(builder.lshr(p, ir.Constant(i128, 64)), ir.IntType(64))

    return sig, codegen


def _magic(d: int) -> tuple[int, int]:
    """(multiplier as an int64 bit pattern, shifts) with which ``_udiv(n, ...) == n // d``
    for every 0 <= n < 2**63 and 1 <= d < 2**63: Granlund and Montgomery, "Division by
    invariant integers using multiplication" (1994), figure 4.1."""
    if not 1 <= d < 2**63:
        raise ValueError(f"divisor: expected 1..2**63-1, got {d}")
    bits = (d - 1).bit_length()  # ceil(log2(d))
    m = (2**64 * (2**bits - d)) // d + 1  # < 2**64
    return (m - 2**64 if m >= 2**63 else m), min(bits, 1) | max(bits - 1, 0) << 8


@njit(cache=True, inline="always")
def _udiv(n, m, sh):  # type: ignore[no-untyped-def]
    """``n // d`` for 0 <= n < 2**63 with ``(m, sh) = _magic(d)``: a multiply and shifts
    instead of a 64-bit divide (two per order, on the hot path). Exact integer maths."""
    t = _umulhi(n, m)  # type: ignore[call-arg,var-annotated]
    return (t + ((n - t) >> (sh & 0xFF))) >> (sh >> 8)


@njit(cache=True, inline="always")
def _view(addr):  # type: ignore[no-untyped-def]
    """The state as a raw ``int64*``: indexing is a plain load / store (a ``carray`` view
    would add a negative-index wraparound to every access; every index here is >= 0)."""
    return _i2p(addr)  # type: ignore[call-arg]


# ---------------------------------------------------------------- small helpers
@njit(cache=True, inline="always")
def _mix(x):  # type: ignore[no-untyped-def]
    h = x * MIX
    return h ^ (h >> 29)


@njit(cache=True, inline="always")
def _emit(addr, kind, ts):  # type: ignore[no-untyped-def]
    S = _view(addr)
    n = S[H_EVN]
    b = S[H_EVOFF] + n * ROW_W
    S[H_EVN] = n + 1
    seq = S[H_SEQ]
    S[H_SEQ] = seq + 1
    S[b] = kind
    S[b + 1] = seq
    S[b + 2] = ts
    return b


@njit(cache=True)
def _reject(addr, ts, oid, cid, owner, sub, code, tmpl, p1, p2):  # type: ignore[no-untyped-def]
    S = _view(addr)
    b = _emit(addr, K_REJ, ts)
    S[b + 3] = oid
    S[b + 4] = cid
    S[b + 5] = owner
    S[b + 6] = sub
    S[b + 7] = code
    S[b + 8] = tmpl
    S[b + 9] = p1
    S[b + 10] = p2


@njit(cache=True, inline="always")
def _ev_cancel(addr, ts, p, lots, reason):  # type: ignore[no-untyped-def]
    S = _view(addr)
    b = _emit(addr, K_CANCEL, ts)
    S[b + 3] = S[p + P_OID]
    S[b + 4] = S[p + P_OWNER]
    S[b + 5] = S[p + P_SUB]
    S[b + 6] = lots
    S[b + 7] = reason


# ---------------------------------------------------------------- hashes
@njit(cache=True, inline="always")
def _oid_get(addr, key):  # type: ignore[no-untyped-def]
    S = _view(addr)
    if key <= 0:
        return -1
    T = S[H_OIDH]
    mask = S[H_OIDMASK]
    i = _mix(key) & mask
    while True:
        k = S[T + 2 * i]
        if k == key:
            return S[T + 2 * i + 1]
        if k == 0:
            return -1
        i = (i + 1) & mask


@njit(cache=True, inline="always")
def _oid_put(addr, key, v):  # type: ignore[no-untyped-def]
    S = _view(addr)
    T = S[H_OIDH]
    mask = S[H_OIDMASK]
    i = _mix(key) & mask
    while S[T + 2 * i] != 0:
        i = (i + 1) & mask
    S[T + 2 * i] = key
    S[T + 2 * i + 1] = v


@njit(cache=True)
def _oid_del(addr, key):  # type: ignore[no-untyped-def]
    S = _view(addr)
    T = S[H_OIDH]
    mask = S[H_OIDMASK]
    i = _mix(key) & mask
    while S[T + 2 * i] != key:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        k = S[T + 2 * j]
        if k == 0:
            break
        h = _mix(k) & mask
        if (j > i and (h <= i or h > j)) or (j < i and h <= i and h > j):
            S[T + 2 * i] = k
            S[T + 2 * i + 1] = S[T + 2 * j + 1]
            i = j
    S[T + 2 * i] = 0


@njit(cache=True, inline="always")
def _cid_home(acct, cid, mask):  # type: ignore[no-untyped-def]
    return _mix(acct ^ _mix(cid)) & mask


@njit(cache=True)
def _cid_get(addr, acct, cid):  # type: ignore[no-untyped-def]
    S = _view(addr)
    T = S[H_CIDH]
    mask = S[H_CIDMASK]
    i = _cid_home(acct, cid, mask)
    while True:
        c = S[T + 3 * i + 1]
        if c == 0:
            return -1
        if c == cid and S[T + 3 * i] == acct:
            return S[T + 3 * i + 2]
        i = (i + 1) & mask


@njit(cache=True)
def _cid_put(addr, acct, cid, v):  # type: ignore[no-untyped-def]
    S = _view(addr)
    T = S[H_CIDH]
    mask = S[H_CIDMASK]
    i = _cid_home(acct, cid, mask)
    while S[T + 3 * i + 1] != 0:
        i = (i + 1) & mask
    S[T + 3 * i] = acct
    S[T + 3 * i + 1] = cid
    S[T + 3 * i + 2] = v


@njit(cache=True)
def _cid_del(addr, acct, cid):  # type: ignore[no-untyped-def]
    S = _view(addr)
    T = S[H_CIDH]
    mask = S[H_CIDMASK]
    i = _cid_home(acct, cid, mask)
    while not (S[T + 3 * i + 1] == cid and S[T + 3 * i] == acct):
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        c = S[T + 3 * j + 1]
        if c == 0:
            break
        h = _cid_home(S[T + 3 * j], c, mask)
        if (j > i and (h <= i or h > j)) or (j < i and h <= i and h > j):
            S[T + 3 * i] = S[T + 3 * j]
            S[T + 3 * i + 1] = c
            S[T + 3 * i + 2] = S[T + 3 * j + 2]
            i = j
    S[T + 3 * i + 1] = 0


# The account hash has 32-bit slots: 0 = empty, else ``tag << ib | (record index + 1)``
# (``ib`` = log2 of the slot count; the tag is other bits of the same hash). Half the bytes
# of (key, index) pairs keeps the table, whose every new account dirties one random line,
# mostly in the last-level cache; a tag match is confirmed against the record's key.
@njit(cache=True, inline="always")
def _view32(a):  # type: ignore[no-untyped-def]
    return _i2p32(a)  # type: ignore[call-arg]


@njit(cache=True, inline="always")
def _acc_tag(addr, h):  # type: ignore[no-untyped-def]
    S = _view(addr)
    ib = S[H_ACCIB]
    return ((h >> 32) & ((1 << (32 - ib)) - 1)) << ib


@njit(cache=True, inline="always")
def _acc_probe(addr, acct):  # type: ignore[no-untyped-def]
    """(index of the account's record or -1, its slot or the empty slot ending the probe)."""
    S = _view(addr)
    T = _view32(addr + 8 * S[H_ACCH])
    mask = S[H_ACCMASK]
    h = _mix(acct)
    tag = _acc_tag(addr, h)
    key1 = acct + 1
    A = S[H_ACC]
    i = h & mask
    while True:
        v = np.int64(T[i])
        if v == 0:
            return -1, i
        if v & ~mask == tag:
            a = (v & mask) - 1
            if S[A + a * AF + A_KEY1] == key1:
                return a, i
        i = (i + 1) & mask


@njit(cache=True, inline="always")
def _acc_find(addr, acct):  # type: ignore[no-untyped-def]
    """Index of the account's record, or -1."""
    a, _i = _acc_probe(addr, acct)
    return a


@njit(cache=True, inline="always")
def _acc_get(addr, acct):  # type: ignore[no-untyped-def]
    """Index of the account's record, created (zero) if needed."""
    a, i = _acc_probe(addr, acct)
    if a >= 0:
        return a
    return _acc_new(addr, acct, i)


@njit(cache=True, inline="always")
def _acc_new(addr, acct, i):  # type: ignore[no-untyped-def]
    """A zero record for an account ``_acc_probe`` did not find; ``i``: its empty slot
    (no account may have been added in between)."""
    S = _view(addr)
    a = S[H_NACC]
    S[H_NACC] = a + 1
    T = _view32(addr + 8 * S[H_ACCH])
    T[i] = np.uint32(_acc_tag(addr, _mix(acct)) | (a + 1))
    q = S[H_ACC] + a * AF
    S[q + A_POS] = 0
    S[q + A_HEAD] = -1
    S[q + A_KEY1] = acct + 1
    S[q + A_CNT] = 0
    return a


@njit(cache=True, inline="always")
def _acc_guess(addr, acct):  # type: ignore[no-untyped-def]
    """The record ``_acc_get`` will most likely return, without reading any record (for a
    prefetch: the first slot with the account's tag, else the next new record)."""
    S = _view(addr)
    T = _view32(addr + 8 * S[H_ACCH])
    mask = S[H_ACCMASK]
    h = _mix(acct)
    tag = _acc_tag(addr, h)
    i = h & mask
    while True:
        v = np.int64(T[i])
        if v == 0:
            return S[H_NACC]
        if v & ~mask == tag:
            return (v & mask) - 1
        i = (i + 1) & mask


@njit(cache=True)
def _position(addr, acct):  # type: ignore[no-untyped-def]
    S = _view(addr)
    a = _acc_find(addr, acct)
    if a < 0:
        return 0
    return S[S[H_ACC] + a * AF + A_POS]


# ---------------------------------------------------------------- expiry heap
@njit(cache=True, inline="always")
def _hless(addr, P, a, b):  # type: ignore[no-untyped-def]
    S = _view(addr)
    ea = S[P + a * NF + P_EXP]
    eb = S[P + b * NF + P_EXP]
    return ea < eb or (ea == eb and S[P + a * NF + P_OID] < S[P + b * NF + P_OID])


@njit(cache=True)
def _heap_place(addr, i, s):  # type: ignore[no-untyped-def]
    """Put slot ``s`` into the hole at ``i`` and restore the heap order."""
    S = _view(addr)
    H = S[H_HEAP]
    P = S[H_POOL]
    n = S[H_NHEAP]
    while i > 0:
        up = (i - 1) >> 1
        ps = S[H + up]
        if _hless(addr, P, s, ps):
            S[H + i] = ps
            S[P + ps * NF + P_HPOS] = i
            i = up
        else:
            break
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        cs = S[H + c]
        if c + 1 < n and _hless(addr, P, S[H + c + 1], cs):
            c += 1
            cs = S[H + c]
        if _hless(addr, P, cs, s):
            S[H + i] = cs
            S[P + cs * NF + P_HPOS] = i
            i = c
        else:
            break
    S[H + i] = s
    S[P + s * NF + P_HPOS] = i


@njit(cache=True)
def _heap_push(addr, s):  # type: ignore[no-untyped-def]
    S = _view(addr)
    n = S[H_NHEAP]
    S[H_NHEAP] = n + 1
    _heap_place(addr, n, s)


@njit(cache=True)
def _heap_remove(addr, s):  # type: ignore[no-untyped-def]
    S = _view(addr)
    P = S[H_POOL]
    i = S[P + s * NF + P_HPOS]
    S[P + s * NF + P_HPOS] = -1
    n = S[H_NHEAP] - 1
    S[H_NHEAP] = n
    if i != n:
        _heap_place(addr, i, S[S[H_HEAP] + n])


# ---------------------------------------------------------------- trigger heaps
# Pending stop / take-profit orders wait in two indexed binary heaps of slots (position in
# ``P_TPOS``): direction 0 fires when the price rises to the trigger (lowest trigger on
# top), direction 1 when it falls to it (highest on top); ties by order id. Arming, a cancel
# or an expiry is O(log n); a price that fires k of n pending orders costs O(k log n) plus
# sorting the k by order id. Commands without pending triggers never touch the heaps.
@njit(cache=True, inline="always")
def _tdir(stop_or_tp, side):  # type: ignore[no-untyped-def]
    """0 if a trigger of ``order_type`` (2..5) and ``side`` fires on a rise, else 1:
    stops buy on a rise and sell on a fall, take-profits the other way round."""
    stop = stop_or_tp <= STOP_LIMIT  # 2, 3: stops; 4, 5: take-profits
    return 0 if stop == (side == BID) else 1


@njit(cache=True, inline="always")
def _tless(addr, P, d, a, b):  # type: ignore[no-untyped-def]
    S = _view(addr)
    ta = S[P + a * NF + P_TRIG]
    tb = S[P + b * NF + P_TRIG]
    if ta != tb:
        return ta < tb if d == 0 else ta > tb
    return S[P + a * NF + P_OID] < S[P + b * NF + P_OID]


@njit(cache=True)
def _theap_place(addr, d, i, s):  # type: ignore[no-untyped-def]
    """Put slot ``s`` into the hole at ``i`` of trigger heap ``d`` and restore its order."""
    S = _view(addr)
    H = S[H_TRIG] + d * S[H_CAP]
    P = S[H_POOL]
    n = S[H_NTR0 + d]
    while i > 0:
        up = (i - 1) >> 1
        ps = S[H + up]
        if _tless(addr, P, d, s, ps):
            S[H + i] = ps
            S[P + ps * NF + P_TPOS] = i
            i = up
        else:
            break
    while True:
        c = 2 * i + 1
        if c >= n:
            break
        cs = S[H + c]
        if c + 1 < n and _tless(addr, P, d, S[H + c + 1], cs):
            c += 1
            cs = S[H + c]
        if _tless(addr, P, d, cs, s):
            S[H + i] = cs
            S[P + cs * NF + P_TPOS] = i
            i = c
        else:
            break
    S[H + i] = s
    S[P + s * NF + P_TPOS] = i


@njit(cache=True)
def _theap_push(addr, s):  # type: ignore[no-untyped-def]
    """Arm the pending trigger order in slot ``s`` (not on a level: ``P_LEVEL`` = -1)."""
    S = _view(addr)
    p = S[H_POOL] + s * NF
    S[p + P_LEVEL] = -1
    d = _tdir(S[p + P_OTYPE], S[p + P_SIDE])
    n = S[H_NTR0 + d]
    S[H_NTR0 + d] = n + 1
    _theap_place(addr, d, n, s)


@njit(cache=True)
def _arm_trigger(addr, s):  # type: ignore[no-untyped-def]
    """A newly accepted trigger order becomes live and pending (not inlined into the place
    kernels: it would compile one more copy of the live-order index code)."""
    _register(addr, s)
    _theap_push(addr, s)


@njit(cache=True)
def _theap_remove(addr, s):  # type: ignore[no-untyped-def]
    S = _view(addr)
    p = S[H_POOL] + s * NF
    d = _tdir(S[p + P_OTYPE], S[p + P_SIDE])
    i = S[p + P_TPOS]
    S[p + P_TPOS] = -1
    n = S[H_NTR0 + d] - 1
    S[H_NTR0 + d] = n
    if i != n:
        _theap_place(addr, d, i, S[S[H_TRIG] + d * S[H_CAP] + n])


# ---------------------------------------------------------------- pool, levels
@njit(cache=True, inline="always")
def _free(addr, s):  # type: ignore[no-untyped-def]
    S = _view(addr)
    p = S[H_POOL] + s * NF
    S[p + P_NEXT] = S[H_FREE]
    S[H_FREE] = s


@njit(cache=True, inline="always")
def _best(addr, sidx):  # type: ignore[no-untyped-def]
    S = _view(addr)
    n = S[H_N0 + sidx]
    if n == 0:
        return 0
    k = S[S[H_K0 + sidx] + n - 1]
    return k if sidx == 0 else -k


@njit(cache=True)
def _find_key(addr, ko, n, key):  # type: ignore[no-untyped-def]
    """First index in the ascending keys ``S[ko:ko+n]`` whose key is >= ``key``: a short
    scan from the best end (orders mostly arrive near the touch), then a binary search."""
    S = _view(addr)
    stop = n - 8 if n > 8 else 0
    i = n
    while i > stop:
        if S[ko + i - 1] < key:
            return i
        i -= 1
    lo = 0
    hi = i
    while lo < hi:
        mid = (lo + hi) >> 1
        if S[ko + mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _find_level(addr, sidx, price, key):  # type: ignore[no-untyped-def]
    """The level of ``price`` on side ``sidx`` (``key``: its sort key), created if needed."""
    S = _view(addr)
    ko = S[H_K0 + sidx]
    lo = S[H_L0 + sidx]
    n = S[H_N0 + sidx]
    if n == 0 or key > S[ko + n - 1]:
        i = n
    elif key == S[ko + n - 1]:
        i = n - 1
    else:
        i = _find_key(addr, ko, n, key)
    if i < n and S[ko + i] == key:
        return S[lo + i]
    lv = S[H_LFREE]
    L = S[H_LVL] + lv * LF
    S[H_LFREE] = S[L + L_NEXTFREE]
    S[L + L_PRICE] = price
    S[L + L_HEAD] = -1
    S[L + L_TAIL] = -1
    S[L + L_TOTAL] = 0
    S[L + L_COUNT] = 0
    j = n
    while j > i:
        S[ko + j] = S[ko + j - 1]
        S[lo + j] = S[lo + j - 1]
        j -= 1
    S[ko + i] = key
    S[lo + i] = lv
    S[H_N0 + sidx] = n + 1
    return lv


@njit(cache=True, inline="always")
def _lc_forget(addr, sidx, price, lv):  # type: ignore[no-untyped-def]
    """Clear the level cache's entry of a level being freed."""
    S = _view(addr)
    c = S[H_LC] + sidx * LCN + (price & (LCN - 1))
    if S[c] == lv + 1:
        S[c] = 0


@njit(cache=True, inline="always")
def _link(addr, s):  # type: ignore[no-untyped-def]
    """Append a live order at the back of its price level (created if needed)."""
    S = _view(addr)
    P = S[H_POOL]
    p = P + s * NF
    sidx = 0 if S[p + P_SIDE] == BID else 1
    price = S[p + P_PRICE]
    # The level cache finds a live level without searching the sorted keys (the entry of
    # a level is cleared when it is freed, so a hit with the right price is live).
    c = S[H_LC] + sidx * LCN + (price & (LCN - 1))
    lv = S[c] - 1
    if lv < 0 or S[S[H_LVL] + lv * LF + L_PRICE] != price:
        lv = _find_level(addr, sidx, price, price if sidx == 0 else -price)
        S[c] = lv + 1
    L = S[H_LVL] + lv * LF
    tail = S[L + L_TAIL]
    S[p + P_PREV] = tail
    S[p + P_NEXT] = -1
    if tail < 0:
        S[L + L_HEAD] = s
    else:
        S[P + tail * NF + P_NEXT] = s
    S[L + L_TAIL] = s
    S[L + L_TOTAL] += S[p + P_REM]
    S[L + L_COUNT] += 1
    S[p + P_LEVEL] = lv


@njit(cache=True, inline="always")
def _unlink(addr, s):  # type: ignore[no-untyped-def]
    """Take a resting order off its level (an emptied level stays; see ``_drop_level``)."""
    S = _view(addr)
    P = S[H_POOL]
    p = P + s * NF
    lv = S[p + P_LEVEL]
    L = S[H_LVL] + lv * LF
    prev = S[p + P_PREV]
    nxt = S[p + P_NEXT]
    if prev < 0:
        S[L + L_HEAD] = nxt
    else:
        S[P + prev * NF + P_NEXT] = nxt
    if nxt < 0:
        S[L + L_TAIL] = prev
    else:
        S[P + nxt * NF + P_PREV] = prev
    S[L + L_TOTAL] -= S[p + P_REM]
    S[L + L_COUNT] -= 1
    S[p + P_LEVEL] = -1
    return lv


@njit(cache=True)
def _drop_level(addr, sidx, lv):  # type: ignore[no-untyped-def]
    """Remove the empty level ``lv`` from its side and free it."""
    S = _view(addr)
    L = S[H_LVL] + lv * LF
    price = S[L + L_PRICE]
    key = price if sidx == 0 else -price
    ko = S[H_K0 + sidx]
    lo = S[H_L0 + sidx]
    n = S[H_N0 + sidx]
    if S[lo + n - 1] == lv:
        i = n - 1
    else:
        i = _find_key(addr, ko, n, key)
        while i + 1 < n:
            S[ko + i] = S[ko + i + 1]
            S[lo + i] = S[lo + i + 1]
            i += 1
    S[H_N0 + sidx] = n - 1
    _lc_forget(addr, sidx, price, lv)
    S[L + L_NEXTFREE] = S[H_LFREE]
    S[H_LFREE] = lv


@njit(cache=True, inline="always")
def _unlink_clean(addr, s):  # type: ignore[no-untyped-def]
    S = _view(addr)
    lv = _unlink(addr, s)
    if S[S[H_LVL] + lv * LF + L_COUNT] == 0:
        sidx = 0 if S[S[H_POOL] + s * NF + P_SIDE] == BID else 1
        _drop_level(addr, sidx, lv)


@njit(cache=True, inline="always")
def _take_off(addr, s):  # type: ignore[no-untyped-def]
    """Take a live order off the book: off its level, or out of its trigger heap when it
    is a pending trigger order (no level)."""
    S = _view(addr)
    if S[S[H_POOL] + s * NF + P_LEVEL] < 0:
        _theap_remove(addr, s)
    else:
        _unlink_clean(addr, s)


# ---------------------------------------------------------------- live-order index
@njit(cache=True, inline="always")
def _register(addr, s):  # type: ignore[no-untyped-def]
    S = _view(addr)
    P = S[H_POOL]
    p = P + s * NF
    a = S[p + P_ACC]
    q = S[H_ACC] + a * AF
    head = S[q + A_HEAD]
    S[p + P_APREV] = -1
    S[p + P_ANEXT] = head
    if head >= 0:
        S[P + head * NF + P_APREV] = s
    S[q + A_HEAD] = s
    S[q + A_CNT] += CNT_RO1 + 1 if S[p + P_RO] != 0 else 1
    _oid_put(addr, S[p + P_OID], s)
    if S[p + P_CID] != 0:
        _cid_put(addr, S[p + P_ACCOUNT], S[p + P_CID], s)
    if S[p + P_EXP] != 0:
        _heap_push(addr, s)
    S[H_LIVE] += 1


@njit(cache=True, inline="always")
def _forget(addr, s):  # type: ignore[no-untyped-def]
    S = _view(addr)
    P = S[H_POOL]
    p = P + s * NF
    q = S[H_ACC] + S[p + P_ACC] * AF
    prev = S[p + P_APREV]
    nxt = S[p + P_ANEXT]
    if prev < 0:
        S[q + A_HEAD] = nxt
    else:
        S[P + prev * NF + P_ANEXT] = nxt
    if nxt >= 0:
        S[P + nxt * NF + P_APREV] = prev
    S[q + A_CNT] -= CNT_RO1 + 1 if S[p + P_RO] != 0 else 1
    _oid_del(addr, S[p + P_OID])
    if S[p + P_CID] != 0:
        _cid_del(addr, S[p + P_ACCOUNT], S[p + P_CID])
    if S[p + P_HPOS] >= 0:
        _heap_remove(addr, s)
    S[H_LIVE] -= 1


@njit(cache=True, inline="always")
def _find_live(addr, acct, oid, cid):  # type: ignore[no-untyped-def]
    S = _view(addr)
    if oid == 0 and cid != 0:
        s = _cid_get(addr, acct, cid)
        return s  # a client id is indexed per account
    s = _oid_get(addr, oid)
    if s >= 0 and S[S[H_POOL] + s * NF + P_ACCOUNT] != acct:
        return -1
    return s


# ---------------------------------------------------------------- expiry
@njit(cache=True)
def _expire_due(addr, ts):  # type: ignore[no-untyped-def]
    S = _view(addr)
    P = S[H_POOL]
    H = S[H_HEAP]
    while S[H_NHEAP] > 0:
        s = S[H]
        p = P + s * NF
        if S[p + P_EXP] > ts:
            break
        lots = S[p + P_REM]
        _take_off(addr, s)
        b = _emit(addr, K_EXP, ts)
        S[b + 3] = S[p + P_OID]
        S[b + 4] = S[p + P_OWNER]
        S[b + 5] = S[p + P_SUB]
        S[b + 6] = lots
        _forget(addr, s)
        _free(addr, s)


# ---------------------------------------------------------------- matching
@njit(cache=True)
def _fillable(addr, sidx, limit, owner, stp, want):  # type: ignore[no-untyped-def]
    """Lots a taker would fill before stopping (STP-aware); stops once ``want`` is reached."""
    S = _view(addr)
    P = S[H_POOL]
    osd = 1 - sidx
    ko = S[H_K0 + osd]
    lo = S[H_L0 + osd]
    lim_key = -limit if sidx == 0 else limit
    got = 0
    i = S[H_N0 + osd] - 1
    while i >= 0 and S[ko + i] >= lim_key:
        m = S[S[H_LVL] + S[lo + i] * LF + L_HEAD]
        while m >= 0:
            q = P + m * NF
            if S[q + P_OWNER] == owner:
                if stp != STP_CANCEL_RESTING:
                    return got
            else:
                got += S[q + P_REM]
                if got >= want:
                    return got
            m = S[q + P_NEXT]
        i -= 1
    return got


@njit(cache=True, inline="always")
def _post_only_rest_price(addr, ts, oid, cid, owner, sub, tif, sidx, price_ticks):  # type: ignore[no-untyped-def]
    """Where a crossing post-only order rests: one tick inside the opposite best for slide
    (POS); 0 after emitting the rejection (PO refuses a cross; a slide leaving the price range)."""
    S = _view(addr)
    if tif == PO:
        _reject(
            addr,
            ts,
            oid,
            cid,
            owner,
            sub,
            C_PO_CROSS,
            T_PO_CROSS,
            price_ticks,
            _best(addr, 1 - sidx),
        )
        return 0
    if sidx == 0:
        slid = _best(addr, 1) - 1
    else:
        slid = _best(addr, 0) + 1
    if slid < 1 or slid > S[H_MAXT]:
        _reject(addr, ts, oid, cid, owner, sub, C_PRICE_RANGE, T_SLIDE_RANGE, slid, 0)
        return 0
    return slid


@njit(cache=True, inline="always")
def _crosses(addr, sidx, price):  # type: ignore[no-untyped-def]
    S = _view(addr)
    osd = 1 - sidx
    n = S[H_N0 + osd]
    if n == 0:
        return False
    k = S[S[H_K0 + osd] + n - 1]
    return k >= (-price if sidx == 0 else price)


@njit(cache=True)
def _match(addr, t, ts):  # type: ignore[no-untyped-def]
    S = _view(addr)
    P = S[H_POOL]
    LV = S[H_LVL]
    A = S[H_ACC]
    pt = P + t * NF
    side = S[pt + P_SIDE]
    sidx = 0 if side == BID else 1
    osd = 1 - sidx
    ko = S[H_K0 + osd]
    lo = S[H_L0 + osd]
    limit = S[pt + P_PRICE]
    lim_key = -limit if sidx == 0 else limit
    owner = S[pt + P_OWNER]
    tsub = S[pt + P_SUB]
    toid = S[pt + P_OID]
    stp = S[pt + P_STP]
    tq = A + S[pt + P_ACC] * AF
    rem = S[pt + P_REM]
    tfilled = S[pt + P_FILLED]
    done = False
    while rem > 0 and not done:
        n = S[H_N0 + osd]
        if n == 0:
            break
        key = S[ko + n - 1]
        if key < lim_key:
            break
        lv = S[lo + n - 1]
        L = LV + lv * LF
        price = key if osd == 0 else -key
        m = S[L + L_HEAD]
        while m >= 0 and rem > 0:
            q = P + m * NF
            nxt = S[q + P_NEXT]
            if S[q + P_OWNER] == owner:
                if stp == STP_CANCEL_RESTING:
                    lots = S[q + P_REM]
                    _unlink(addr, m)
                    _forget(addr, m)
                    _ev_cancel(addr, ts, q, lots, R_STP_RESTING)
                    _free(addr, m)
                elif stp == STP_CANCEL_TAKING:
                    S[pt + P_CANCELED] = 1
                    b = _emit(addr, K_CANCEL, ts)
                    S[b + 3] = toid
                    S[b + 4] = owner
                    S[b + 5] = tsub
                    S[b + 6] = rem
                    S[b + 7] = R_STP_TAKING
                    done = True
                    break
                else:  # decrement both
                    mrem = S[q + P_REM]
                    qty = rem if rem < mrem else mrem
                    b = _emit(addr, K_STD, ts)
                    S[b + 3] = S[q + P_OID]
                    S[b + 4] = toid
                    S[b + 5] = qty
                    rem -= qty
                    if qty == mrem:
                        _unlink(addr, m)
                        S[q + P_REM] = 0
                        _forget(addr, m)
                        _ev_cancel(addr, ts, q, 0, R_STP_DECREMENT)
                        _free(addr, m)
                    else:
                        S[L + L_TOTAL] -= qty
                        S[q + P_REM] = mrem - qty
                    if rem == 0:
                        S[pt + P_CANCELED] = 1
                        b = _emit(addr, K_CANCEL, ts)
                        S[b + 3] = toid
                        S[b + 4] = owner
                        S[b + 5] = tsub
                        S[b + 6] = 0
                        S[b + 7] = R_STP_DECREMENT
                        done = True
                        break
                m = nxt
                continue
            mrem = S[q + P_REM]
            if rem >= mrem:
                qty = mrem
                rem -= qty
                S[L + L_HEAD] = nxt
                if nxt < 0:
                    S[L + L_TAIL] = -1
                else:
                    S[P + nxt * NF + P_PREV] = -1
                S[L + L_TOTAL] -= qty
                S[L + L_COUNT] -= 1
                S[q + P_LEVEL] = -1
                S[q + P_REM] = 0
                S[q + P_FILLED] += qty
                after = 0
            else:
                qty = rem
                rem = 0
                after = mrem - qty
                S[q + P_REM] = after
                S[q + P_FILLED] += qty
                S[L + L_TOTAL] -= qty
            tfilled += qty
            S[H_NTRADES] += 1
            S[H_TRADED] += qty
            b = _emit(addr, K_TRADE, ts)
            S[b + 3] = S[q + P_OID]
            S[b + 4] = toid
            S[b + 5] = S[q + P_OWNER]
            S[b + 6] = S[q + P_SUB]
            S[b + 7] = owner
            S[b + 8] = tsub
            S[b + 9] = side
            S[b + 10] = price
            S[b + 11] = qty
            S[b + 12] = after
            S[b + 13] = rem
            if after == 0:
                _forget(addr, m)  # before the fill hook, as the reference does
            signed = qty if side == BID else -qty
            mq = A + S[q + P_ACC] * AF
            S[mq + A_POS] -= signed
            S[tq + A_POS] += signed
            if (S[mq + A_CNT] >> CNT_RO) & CNT_MASK != 0:
                _touch(addr, S[q + P_ACC])
            if (S[tq + A_CNT] >> CNT_RO) & CNT_MASK != 0:
                _touch(addr, S[pt + P_ACC])
            if after == 0:
                _free(addr, m)
            m = nxt
        if S[L + L_COUNT] == 0:
            S[H_N0 + osd] = n - 1
            _lc_forget(addr, osd, price, lv)
            S[L + L_NEXTFREE] = S[H_LFREE]
            S[H_LFREE] = lv
    S[pt + P_REM] = rem
    S[pt + P_FILLED] = tfilled


@njit(cache=True, inline="always")
def _run_taker(addr, t, registered, ts):  # type: ignore[no-untyped-def]
    """Match an accepted order, then rest it or end what is left of it."""
    S = _view(addr)
    pt = S[H_POOL] + t * NF
    S[pt + P_CANCELED] = 0
    # (the touch check first: a passive order, most orders, skips the call into the matcher)
    if _crosses(addr, 0 if S[pt + P_SIDE] == BID else 1, S[pt + P_PRICE]):
        _match(addr, t, ts)
    if S[pt + P_CANCELED] != 0:
        if registered:
            _forget(addr, t)
        _free(addr, t)
        return
    rem = S[pt + P_REM]
    if rem == 0:
        if registered:
            _forget(addr, t)
        _free(addr, t)
        return
    tif = S[pt + P_TIF]
    if (tif == GTC or tif == PO or tif == POS) and S[pt + P_OTYPE] != MARKET:  # noqa: SIM109 (numba hot path)
        if not registered:
            _register(addr, t)
        if S[pt + P_RO] != 0:
            _touch(addr, S[pt + P_ACC])
        _link(addr, t)
        b = _emit(addr, K_REST, ts)
        S[b + 3] = S[pt + P_OID]
        S[b + 4] = S[pt + P_PRICE]
        S[b + 5] = rem
        return
    if registered:
        _forget(addr, t)
    _ev_cancel(addr, ts, pt, rem, R_IOC)
    _free(addr, t)


# ---------------------------------------------------------------- commands
@njit(cache=True)
def _ev_begin(addr):  # type: ignore[no-untyped-def]
    S = _view(addr)
    if S[H_EVMODE] == 1:
        S[H_EVN] = 0
        return True
    return S[H_EVCAP] - S[H_EVN] >= 2 * S[H_LIVE] + 8


@njit(cache=True)
def _price_size_problem(addr, price, size, price_ticks, lots):  # type: ignore[no-untyped-def]
    """``state.price_size_problem``: (code, template, offending value) or (0, 0, 0)."""
    S = _view(addr)
    tick = S[H_TICK]
    lot = S[H_LOT]
    if price <= 0:
        return C_NON_POS_PRICE, T_NON_POS_PRICE, price
    if price - price_ticks * tick != 0:
        return C_OFF_TICK, T_OFF_TICK, price
    if price_ticks > S[H_MAXT]:
        return C_PRICE_RANGE, T_PRICE_MAX, price
    if size <= 0:
        return C_NON_POS_SIZE, T_NON_POS_SIZE, size
    if size - lots * lot != 0:
        return C_OFF_LOT, T_OFF_LOT, size
    if lots < S[H_MINL]:
        return C_SIZE_MIN, T_SIZE_MIN, size
    if lots > S[H_MAXL]:
        return C_SIZE_MAX, T_SIZE_MAX, size
    return 0, 0, 0


@njit(cache=True)
def _order_kind_problem(addr, otype, tif, trig):  # type: ignore[no-untyped-def]
    """``ExchangeCore._check_order_kind``: (code, template, p1, p2) or zeros."""
    S = _view(addr)
    is_trigger = otype >= STOP_MARKET and otype <= TAKE_PROFIT_LIMIT
    # MARKET, STOP_MARKET and TAKE_PROFIT_MARKET (the even trigger types) are market-like
    market_like = otype == MARKET or (is_trigger and otype % 2 == 0)
    if market_like and tif != IOC and tif != FOK:
        return C_BAD_TYPE, T_BAD_TYPE, otype, tif
    if is_trigger:
        if tif == FOK or tif == PO or tif == POS:  # noqa: SIM109 (numba)
            return C_BAD_TYPE, T_TRIG_TIF, tif, 0
        tick = S[H_TICK]
        if trig <= 0 or trig % tick != 0 or trig // tick > S[H_MAXT]:
            return C_BAD_TRIGGER, T_TRIG_PRICE, trig, 0
    elif trig != 0:
        return C_BAD_TRIGGER, T_BAD_TRIGGER, otype, trig
    return 0, 0, 0, 0


@njit(cache=True, inline="always")
def _touch(addr, a):  # type: ignore[no-untyped-def]
    """Note account record ``a`` for the reduce-only recheck at the end of the command."""
    S = _view(addr)
    q = S[H_ACC] + a * AF + A_CNT
    if (S[q] >> CNT_TOUCHED) & 1 == 0:
        S[q] |= 1 << CNT_TOUCHED
        n = S[H_NTOUCH]
        S[S[H_TOUCH] + n] = a
        S[H_NTOUCH] = n + 1


@njit(cache=True)
def _enforce_reduce_only(addr, ts):  # type: ignore[no-untyped-def]
    """``ExchangeCore._enforce_reduce_only``: per touched account (in account order), its
    resting reduce-only orders oldest first: cancel one that would increase the position,
    let the reducing ones total at most |position| (shrink the first past it in place,
    cancel the later ones)."""
    S = _view(addr)
    P = S[H_POOL]
    A = S[H_ACC]
    n = S[H_NTOUCH]
    S[H_NTOUCH] = 0
    keys = np.empty(n, np.int64)
    recs = np.empty(n, np.int64)
    for j in range(n):
        a = S[S[H_TOUCH] + j]
        S[A + a * AF + A_CNT] &= ~(1 << CNT_TOUCHED)
        keys[j] = S[A + a * AF + A_KEY1] - 1
        recs[j] = a
    order = np.argsort(keys)
    for j in range(n):
        q = A + recs[order[j]] * AF
        live = S[q + A_CNT] & CNT_MASK
        if live == 0:
            continue
        position = S[q + A_POS]
        allowed = -position if position < 0 else position
        ros = np.empty(live, np.int64)
        k = 0
        s = S[q + A_HEAD]
        while s >= 0:  # resting ones only: a pending trigger order is checked as it fires
            if S[P + s * NF + P_RO] != 0 and S[P + s * NF + P_LEVEL] >= 0:
                ros[k] = s
                k += 1
            s = S[P + s * NF + P_ANEXT]
        for i in range(k - 1, -1, -1):  # oldest first
            s = ros[i]
            p = P + s * NF
            rem = S[p + P_REM]
            increases = position >= 0 if S[p + P_SIDE] == BID else position <= 0
            if not increases and rem <= allowed:
                allowed -= rem
            elif not increases and allowed != 0:
                S[S[H_LVL] + S[p + P_LEVEL] * LF + L_TOTAL] -= rem - allowed
                S[p + P_REM] = allowed
                b = _emit(addr, K_AMEND, ts)
                S[b + 3] = S[p + P_OID]
                S[b + 4] = S[p + P_PRICE]
                S[b + 5] = allowed
                S[b + 6] = 1
                allowed = 0
            else:
                _unlink_clean(addr, s)
                _forget(addr, s)
                _ev_cancel(addr, ts, p, rem, R_REDUCE_ONLY)
                _free(addr, s)


@njit(cache=True)
def _place(addr, owner, sub, side, price, size, otype, tif, cid, trig, ro, stp, exp, ts):  # type: ignore[no-untyped-def]
    S = _view(addr)
    if S[H_FREE] < 0 or S[H_NACC] >= S[H_ACCCAP]:
        return ST_GROW
    if not _ev_begin(addr):
        return ST_SPACE
    start = S[H_EVN]
    if S[H_NHEAP] > 0:
        _expire_due(addr, ts)
    tick = S[H_TICK]
    # (a non-positive price or size is rejected before its quotient is looked at)
    price_ticks = _udiv(price, S[H_TICKM], S[H_TICKSH]) if price > 0 else 0
    lots = _udiv(size, S[H_LOTM], S[H_LOTSH]) if size > 0 else 0
    code, tmpl, p1 = _price_size_problem(addr, price, size, price_ticks, lots)
    p2 = 0
    if code == 0 and exp != 0 and exp <= ts:
        code, tmpl, p1 = C_EXPIRED, T_EXPIRED, exp
    if code == 0 and (otype != LIMIT or tif > FOK or trig != 0):
        code, tmpl, p1, p2 = _order_kind_problem(addr, otype, tif, trig)
    acct = owner * SUB_ACCOUNTS_PER_OWNER + sub
    if code == 0 and cid != 0:
        d = _cid_get(addr, acct, cid)
        if d >= 0:
            code, tmpl, p1, p2 = C_DUP_CID, T_DUP_CID, cid, S[S[H_POOL] + d * NF + P_OID]
    a, aslot = _acc_probe(addr, acct)  # one probe: an accepted order's record is made below
    # (a pending trigger order counts as open whatever its time in force)
    trig_type = otype >= STOP_MARKET and otype <= TAKE_PROFIT_LIMIT
    if code == 0 and a >= 0 and (tif == GTC or tif == PO or tif == POS or trig_type):  # noqa: SIM109
        live = S[S[H_ACC] + a * AF + A_CNT] & CNT_MASK
        if live >= S[H_MAXOPEN]:
            code, tmpl, p1 = C_TOO_MANY, T_TOO_MANY, live
    if code == 0 and ro != 0:
        pos = S[S[H_ACC] + a * AF + A_POS] if a >= 0 else 0
        if (side == BID and pos >= 0) or (side != BID and pos <= 0):
            code, tmpl, p1, p2 = C_REDUCE, T_REDUCE, side, pos
        else:
            apos = -pos if pos < 0 else pos
            if apos < lots:
                lots = apos
    if code != 0:
        _reject(addr, ts, 0, cid, owner, sub, code, tmpl, p1, p2)
        return S[H_EVN] - start
    sidx = 0 if side == BID else 1
    rest_price = price_ticks
    if tif >= FOK:
        if tif == FOK:
            got = _fillable(addr, sidx, price_ticks, owner, stp, lots)
            if got < lots:
                _reject(addr, ts, 0, cid, owner, sub, C_FOK, T_FOK, lots, got)
                return S[H_EVN] - start
        elif _crosses(addr, sidx, price_ticks):
            rest_price = _post_only_rest_price(addr, ts, 0, cid, owner, sub, tif, sidx, price_ticks)
            if rest_price == 0:
                return S[H_EVN] - start
    trig_ticks = trig // tick if trig != 0 else 0
    oid = S[H_NOID]
    S[H_NOID] = oid + 1
    b = _emit(addr, K_ACC, ts)
    S[b + 3] = oid
    S[b + 4] = cid
    S[b + 5] = owner
    S[b + 6] = sub
    S[b + 7] = side
    S[b + 8] = otype
    S[b + 9] = tif
    S[b + 10] = price_ticks
    S[b + 11] = lots
    S[b + 12] = trig_ticks
    S[b + 13] = ro
    S[b + 14] = stp
    S[b + 15] = exp
    t = S[H_FREE]
    P = S[H_POOL]
    p = P + t * NF
    S[H_FREE] = S[p + P_NEXT]
    S[p + P_REM] = lots
    S[p + P_OWNER] = owner
    S[p + P_OID] = oid
    S[p + P_SUB] = sub
    S[p + P_FILLED] = 0
    S[p + P_ACC] = a if a >= 0 else _acc_new(addr, acct, aslot)
    S[p + P_PRICE] = rest_price
    S[p + P_SIDE] = side
    S[p + P_CID] = cid
    S[p + P_OTYPE] = otype
    S[p + P_TIF] = tif
    S[p + P_TRIG] = trig_ticks
    S[p + P_RO] = ro
    S[p + P_STP] = stp
    S[p + P_EXP] = exp
    S[p + P_HPOS] = -1
    S[p + P_ACCOUNT] = acct
    if trig_type:  # a stop / take-profit waits for its trigger price
        _arm_trigger(addr, t)
        return S[H_EVN] - start
    _run_taker(addr, t, False, ts)
    if S[H_NTOUCH] > 0:
        _enforce_reduce_only(addr, ts)
    return S[H_EVN] - start


@njit(cache=True)
def _cancel(addr, owner, sub, oid, cid, ts):  # type: ignore[no-untyped-def]
    S = _view(addr)
    if not _ev_begin(addr):
        return ST_SPACE
    start = S[H_EVN]
    if S[H_NHEAP] > 0:
        _expire_due(addr, ts)
    acct = owner * SUB_ACCOUNTS_PER_OWNER + sub
    s = _find_live(addr, acct, oid, cid)
    if s < 0:
        _reject(addr, ts, oid, cid, owner, sub, C_UNKNOWN_ORDER, T_CANCEL_UNKNOWN, oid, cid)
    else:
        p = S[H_POOL] + s * NF
        lots = S[p + P_REM]
        _take_off(addr, s)
        _forget(addr, s)
        _ev_cancel(addr, ts, p, lots, R_USER)
        _free(addr, s)
    return S[H_EVN] - start


@njit(cache=True)
def _cancel_all(addr, owner, sub, ts):  # type: ignore[no-untyped-def]
    S = _view(addr)
    if not _ev_begin(addr):
        return ST_SPACE
    start = S[H_EVN]
    if S[H_NHEAP] > 0:
        _expire_due(addr, ts)
    a = _acc_find(addr, owner * SUB_ACCOUNTS_PER_OWNER + sub)
    if a >= 0:
        P = S[H_POOL]
        q = S[H_ACC] + a * AF
        n = S[q + A_CNT] & CNT_MASK
        slots = np.empty(n, np.int64)
        s = S[q + A_HEAD]  # newest first: cancel from the back, in order-id order
        for j in range(n):
            slots[n - 1 - j] = s
            s = S[P + s * NF + P_ANEXT]
        for j in range(n):
            s = slots[j]
            p = P + s * NF
            lots = S[p + P_REM]
            _take_off(addr, s)
            _forget(addr, s)
            _ev_cancel(addr, ts, p, lots, R_CANCEL_ALL)
            _free(addr, s)
    return S[H_EVN] - start


@njit(cache=True)
def _amend(addr, owner, sub, oid, new_price, new_size, ts):  # type: ignore[no-untyped-def]
    S = _view(addr)
    if not _ev_begin(addr):
        return ST_SPACE
    start = S[H_EVN]
    if S[H_NHEAP] > 0:
        _expire_due(addr, ts)
    acct = owner * SUB_ACCOUNTS_PER_OWNER + sub
    s = _find_live(addr, acct, oid, 0)
    if s < 0:
        _reject(addr, ts, oid, 0, owner, sub, C_UNKNOWN_ORDER, T_AMEND_UNKNOWN, oid, 0)
        return S[H_EVN] - start
    if S[S[H_POOL] + s * NF + P_LEVEL] < 0:  # a pending trigger order
        _reject(addr, ts, oid, 0, owner, sub, C_AMEND, T_AMEND_TRIGGER, 0, 0)
        return S[H_EVN] - start
    price_ticks = _udiv(new_price, S[H_TICKM], S[H_TICKSH]) if new_price > 0 else 0
    lots = _udiv(new_size, S[H_LOTM], S[H_LOTSH]) if new_size > 0 else 0
    code, tmpl, bad = _price_size_problem(addr, new_price, new_size, price_ticks, lots)
    if code != 0:
        _reject(addr, ts, oid, 0, owner, sub, code, tmpl, bad, 1)
        return S[H_EVN] - start
    P = S[H_POOL]
    p = P + s * NF
    side = S[p + P_SIDE]
    if S[p + P_RO] != 0:
        pos = _position(addr, acct)
        if (side == BID and pos >= 0) or (side != BID and pos <= 0):
            _reject(addr, ts, oid, 0, owner, sub, C_REDUCE, T_REDUCE, side, pos)
            return S[H_EVN] - start
        apos = -pos if pos < 0 else pos
        if apos < lots:
            lots = apos
    cur_price = S[p + P_PRICE]
    cur_lots = S[p + P_REM]
    if price_ticks == cur_price and lots == cur_lots:
        _reject(addr, ts, oid, 0, owner, sub, C_AMEND, T_AMEND_SAME, 0, 0)
        return S[H_EVN] - start
    if price_ticks == cur_price and lots < cur_lots:
        S[S[H_LVL] + S[p + P_LEVEL] * LF + L_TOTAL] -= cur_lots - lots
        S[p + P_REM] = lots
        b = _emit(addr, K_AMEND, ts)
        S[b + 3] = S[p + P_OID]
        S[b + 4] = price_ticks
        S[b + 5] = lots
        S[b + 6] = 1
        if S[p + P_RO] != 0:
            _touch(addr, S[p + P_ACC])
            _enforce_reduce_only(addr, ts)
        return S[H_EVN] - start
    sidx = 0 if side == BID else 1
    new_rest = price_ticks
    tif = S[p + P_TIF]
    if (tif == PO or tif == POS) and _crosses(addr, sidx, price_ticks):  # noqa: SIM109 (numba hot path)
        new_rest = _post_only_rest_price(addr, ts, oid, 0, owner, sub, tif, sidx, price_ticks)
        if new_rest == 0:
            return S[H_EVN] - start
    _unlink_clean(addr, s)
    S[p + P_REM] = lots
    b = _emit(addr, K_AMEND, ts)
    S[b + 3] = S[p + P_OID]
    S[b + 4] = price_ticks
    S[b + 5] = lots
    S[b + 6] = 0
    S[p + P_PRICE] = new_rest
    _run_taker(addr, s, True, ts)
    if S[H_NTOUCH] > 0:
        _enforce_reduce_only(addr, ts)
    return S[H_EVN] - start


@njit(cache=True)
def _run_fired(addr, t, ts):  # type: ignore[no-untyped-def]
    """``_run_taker`` for a fired trigger order (live already), after the reference's
    reduce-only re-check, with one copy of the end-of-life code (compile time). A trigger
    order's time in force is GTC (limit kinds only) or IOC."""
    S = _view(addr)
    pt = S[H_POOL] + t * NF
    rem = S[pt + P_REM]
    reason = -1
    if S[pt + P_RO] != 0:
        # The position moved since placement: a reduce-only order that would no longer
        # only reduce (or would need resizing) is cancelled whole.
        pos = S[S[H_ACC] + S[pt + P_ACC] * AF + A_POS]
        apos = -pos if pos < 0 else pos
        bid = S[pt + P_SIDE] == BID
        if (bid and pos >= 0) or (not bid and pos <= 0) or apos < rem:
            reason = R_REDUCE_ONLY
    if reason < 0:
        S[pt + P_CANCELED] = 0
        if _crosses(addr, 0 if S[pt + P_SIDE] == BID else 1, S[pt + P_PRICE]):
            _match(addr, t, ts)
        rem = S[pt + P_REM]
        if S[pt + P_CANCELED] == 0 and rem != 0:
            if S[pt + P_TIF] == GTC:
                if S[pt + P_RO] != 0:
                    _touch(addr, S[pt + P_ACC])
                _link(addr, t)
                b = _emit(addr, K_REST, ts)
                S[b + 3] = S[pt + P_OID]
                S[b + 4] = S[pt + P_PRICE]
                S[b + 5] = rem
                return
            reason = R_IOC
    if reason >= 0:
        _ev_cancel(addr, ts, pt, rem, reason)
    _forget(addr, t)
    _free(addr, t)


@njit(cache=True)
def _update_trigger(addr, price, wide, ts):  # type: ignore[no-untyped-def]
    """``UpdateTriggerPrice``: fire every pending order ``price`` reaches (``wide`` = 1: a
    price above int64, which reaches every rising trigger and no falling one), oldest
    (lowest order id) first; each is placed as it fired, with the reference's checks.

    Rows: a fired order writes at most 5 (triggered, its own end, and 2 more if it rests
    and a later fired order consumes it), any other live order at most 2 (as in a place),
    so ``2 * live + 3 * pending + 8`` bounds the command."""
    S = _view(addr)
    need = 2 * S[H_LIVE] + 3 * (S[H_NTR0] + S[H_NTR0 + 1]) + 8
    if need > S[H_EVCAP]:
        return ST_EVGROW
    if S[H_EVMODE] == 1:
        S[H_EVN] = 0
    elif S[H_EVCAP] - S[H_EVN] < need:
        return ST_SPACE
    start = S[H_EVN]
    if S[H_NHEAP] > 0:
        _expire_due(addr, ts)
    if price <= 0 and wide == 0:
        _reject(addr, ts, 0, 0, 0, 0, C_NON_POS_PRICE, T_NON_POS_PRICE, price, 0)
        return S[H_EVN] - start
    npend = S[H_NTR0] + S[H_NTR0 + 1]
    if npend == 0:
        return S[H_EVN] - start
    P = S[H_POOL]
    tick = S[H_TICK]
    fired = np.empty(npend, np.int64)
    k = 0
    # exact comparisons against the supplied price (trigger * tick <= max price < 2**63)
    while S[H_NTR0] > 0:
        s = S[S[H_TRIG]]
        if wide == 0 and S[P + s * NF + P_TRIG] * tick > price:
            break
        _theap_remove(addr, s)
        fired[k] = s
        k += 1
    while S[H_NTR0 + 1] > 0 and wide == 0:
        s = S[S[H_TRIG] + S[H_CAP]]
        if S[P + s * NF + P_TRIG] * tick < price:
            break
        _theap_remove(addr, s)
        fired[k] = s
        k += 1
    ids = np.empty(k, np.int64)
    for j in range(k):
        ids[j] = S[P + fired[j] * NF + P_OID]
    order = np.argsort(ids)
    for j in range(k):
        t = fired[order[j]]
        b = _emit(addr, K_TRIG, ts)
        S[b + 3] = S[P + t * NF + P_OID]
        S[b + 4] = price
        _run_fired(addr, t, ts)
    if S[H_NTOUCH] > 0:
        _enforce_reduce_only(addr, ts)
    return S[H_EVN] - start


@njit(cache=True)
def _expire_cmd(addr, ts):  # type: ignore[no-untyped-def]
    S = _view(addr)
    if not _ev_begin(addr):
        return ST_SPACE
    start = S[H_EVN]
    _expire_due(addr, ts)
    return S[H_EVN] - start


# ---------------------------------------------------------------- compiled entry points
_SIG_PLACE = _I64(*([_I64] * 14))


@njit(_SIG_PLACE, cache=True)
def k_place(addr, owner, sub, side, price, size, otype, tif, cid, trig, ro, stp, exp, ts):  # type: ignore[no-untyped-def]
    return _place(addr, owner, sub, side, price, size, otype, tif, cid, trig, ro, stp, exp, ts)


@njit(_I64(_I64, _I64, _I64, _I64, _I64, _I64, _I64), cache=True)
def k_limit(addr, owner, sub, side, price, size, ts):  # type: ignore[no-untyped-def]
    return _place(addr, owner, sub, side, price, size, 0, 0, 0, 0, 0, 0, 0, ts)


@njit(_I64(_I64, _I64, _I64, _I64, _I64, _I64), cache=True)
def k_cancel(addr, owner, sub, oid, cid, ts):  # type: ignore[no-untyped-def]
    return _cancel(addr, owner, sub, oid, cid, ts)


@njit(_I64(_I64, _I64, _I64, _I64), cache=True)
def k_cancel_all(addr, owner, sub, ts):  # type: ignore[no-untyped-def]
    return _cancel_all(addr, owner, sub, ts)


@njit(_I64(_I64, _I64, _I64, _I64, _I64, _I64, _I64), cache=True)
def k_amend(addr, owner, sub, oid, new_price, new_size, ts):  # type: ignore[no-untyped-def]
    return _amend(addr, owner, sub, oid, new_price, new_size, ts)


@njit(_I64(_I64, _I64), cache=True)
def k_expire(addr, ts):  # type: ignore[no-untyped-def]
    return _expire_cmd(addr, ts)


@njit(_I64(_I64, _I64, _I64, _I64), cache=True)
def k_trigger(addr, price, wide, ts):  # type: ignore[no-untyped-def]
    return _update_trigger(addr, price, wide, ts)


@njit(_I64(_I64, _I64, _I64, _I64, _I64, _I64, _I64, _I64), cache=True)
def k_reject(addr, ts, oid, cid, owner, sub, code, tmpl):  # type: ignore[no-untyped-def]
    """Write one rejection row (used for arguments that do not fit int64)."""
    S = _view(addr)
    if S[H_EVN] >= S[H_EVCAP]:
        return ST_SPACE
    _reject(addr, ts, oid, cid, owner, sub, code, tmpl, 0, 0)
    return 1


# The batch path's copies of the hot commands, inlined into ``k_batch`` (the per-call entry
# points keep calling the shared ones: inlining everywhere would multiply the compile time).
_place_b = njit(cache=True, inline="always")(_place.py_func)
_cancel_b = njit(cache=True, inline="always")(_cancel.py_func)


# Look-ahead (in ops) of the batch path's prefetches. Each stage only issues loads that an
# earlier stage has already pulled into the cache, so a prefetch never waits on a miss:
# FAR: the account-hash line of a place, the order-id hash line of a cancel / amend;
# MID: the place's account record, the order's row (hash now cached); NEAR: the order's
# account record (row now cached).
PF_FAR = 12
PF_MID = 6
PF_NEAR = 2
PF_OPS = 24  # the op rows themselves
H_RING = 48  # header words 48..63: slots found by the MID stage, for the NEAR stage
PF_RING = 16  # (a power of two > PF_MID)


@njit(cache=True, inline="always")
def _prefetch_far(addr, ops, j):  # type: ignore[no-untyped-def]
    S = _view(addr)
    R = _view(ops)
    r = j * OP_W
    op = R[r]
    if op == OP_PLACE or op == OP_CANCEL_ALL:  # noqa: SIM109 (numba hot path)
        acct = R[r + 2] * SUB_ACCOUNTS_PER_OWNER + R[r + 3]
        _prefetch(addr + 8 * S[H_ACCH] + 4 * (_mix(acct) & S[H_ACCMASK]))  # type: ignore[call-arg]
    elif op == OP_CANCEL or op == OP_AMEND:  # noqa: SIM109 (numba hot path)
        _prefetch_r(addr + 8 * (S[H_OIDH] + 2 * (_mix(R[r + 4]) & S[H_OIDMASK])))  # type: ignore[call-arg]


@njit(cache=True, inline="always")
def _prefetch_mid(addr, ops, j):  # type: ignore[no-untyped-def]
    S = _view(addr)
    R = _view(ops)
    op = R[j * OP_W]
    s = -1
    if op == OP_CANCEL or op == OP_AMEND:  # noqa: SIM109 (numba hot path)
        s = _oid_get(addr, R[j * OP_W + 4])
        if s >= 0:
            p = addr + 8 * (S[H_POOL] + s * NF)
            _prefetch(p)  # type: ignore[call-arg]
            _prefetch(p + 64)
    elif op == OP_PLACE:  # the account record (its hash line is cached now)
        a = _acc_guess(addr, R[j * OP_W + 2] * SUB_ACCOUNTS_PER_OWNER + R[j * OP_W + 3])
        _prefetch(addr + 8 * (S[H_ACC] + a * AF))  # type: ignore[call-arg]
    S[H_RING + (j & (PF_RING - 1))] = s


@njit(cache=True, inline="always")
def _prefetch_near(addr, j):  # type: ignore[no-untyped-def]
    """The account record of the order a cancel / amend found at the MID stage. (A
    taker's first makers are not prefetched: that walk from the touch costs more loads
    than the misses it saves, measured on the anchor workload.)"""
    S = _view(addr)
    s = S[H_RING + (j & (PF_RING - 1))]
    if s >= 0:
        a = S[S[H_POOL] + s * NF + P_ACC]
        _prefetch(addr + 8 * (S[H_ACC] + a * AF))  # type: ignore[call-arg]


@njit(_I64(_I64, types.Array(_I64, 2, "C"), _I64, _I64), cache=True)
def k_batch(addr, ops, start, keep):  # type: ignore[no-untyped-def]
    """Run ``ops[start:]``; stop early on a status the wrapper must handle (kept in
    ``S[H_STATUS]``). Returns the index of the first op not done; rows in ``S[H_BROWS]``."""
    S = _view(addr)
    mode = S[H_EVMODE]
    S[H_EVMODE] = 0 if keep != 0 else 1
    S[H_STATUS] = 0
    rows = 0
    i = start
    n = ops.shape[0]
    base = ops.ctypes.data
    for j in range(start, min(start + PF_MID, n)):  # the stages the loop below skips
        _prefetch_far(addr, base, j)
        _prefetch_mid(addr, base, j)
    for j in range(min(start + PF_MID, n), min(start + PF_FAR, n)):
        _prefetch_far(addr, base, j)
    while i < n:
        if i + PF_OPS < n:
            _prefetch_r(base + (i + PF_OPS) * (OP_W * 8))  # type: ignore[call-arg]
            _prefetch_r(base + (i + PF_OPS) * (OP_W * 8) + 64)
        if i + PF_FAR < n:
            _prefetch_far(addr, base, i + PF_FAR)
        if i + PF_MID < n:
            _prefetch_mid(addr, base, i + PF_MID)
        if i + PF_NEAR < n:
            _prefetch_near(addr, i + PF_NEAR)
        # the order-id hash line of an order id a few commands from now
        _prefetch(addr + 8 * (S[H_OIDH] + 2 * (_mix(S[H_NOID] + 4) & S[H_OIDMASK])))  # type: ignore[call-arg]
        op = ops[i, 0]
        ts = ops[i, 1]
        if op == OP_PLACE:
            r = _place_b(
                addr,
                ops[i, 2],
                ops[i, 3],
                ops[i, 4],
                ops[i, 5],
                ops[i, 6],
                ops[i, 7],
                ops[i, 8],
                ops[i, 9],
                ops[i, 10],
                ops[i, 11],
                ops[i, 12],
                ops[i, 13],
                ts,
            )
        elif op == OP_CANCEL:
            r = _cancel_b(addr, ops[i, 2], ops[i, 3], ops[i, 4], ops[i, 5], ts)
        elif op == OP_CANCEL_ALL:
            r = _cancel_all(addr, ops[i, 2], ops[i, 3], ts)
        elif op == OP_AMEND:
            r = _amend(addr, ops[i, 2], ops[i, 3], ops[i, 4], ops[i, 5], ops[i, 6], ts)
        elif op == OP_EXPIRE:
            r = _expire_cmd(addr, ts)
        elif op == OP_TRIGGER:
            r = _update_trigger(addr, ops[i, 2], 0, ts)
        else:
            r = ST_BADOP
        if r < 0:
            S[H_STATUS] = r
            break
        rows += r
        i += 1
    S[H_EVMODE] = mode
    S[H_BROWS] = rows
    return i


@njit(_I64(_I64, _I64), cache=True)
def k_copy(src, dst):  # type: ignore[no-untyped-def]
    """Move every live order and non-zero position of ``src`` into the empty ``dst``."""
    S = _view(src)
    D = _view(dst)
    D[H_SEQ] = S[H_SEQ]
    D[H_NOID] = S[H_NOID]
    D[H_NTRADES] = S[H_NTRADES]
    D[H_TRADED] = S[H_TRADED]
    A = S[H_ACC]
    for a in range(S[H_NACC]):
        q = A + a * AF
        if S[q + A_POS] != 0 or S[q + A_CNT] & CNT_MASK != 0:
            na = _acc_get(dst, S[q + A_KEY1] - 1)
            D[D[H_ACC] + na * AF + A_POS] = S[q + A_POS]
    P = S[H_POOL]
    cap = S[H_CAP]
    ids = np.empty(S[H_LIVE], np.int64)
    slots = np.empty(S[H_LIVE], np.int64)
    k = 0
    T = S[H_OIDH]
    for i in range(S[H_OIDMASK] + 1):  # the live orders are exactly the order-id hash's keys
        if S[T + 2 * i] != 0:
            ids[k] = S[T + 2 * i]
            slots[k] = S[T + 2 * i + 1]
            k += 1
    order = np.argsort(ids[:k])
    newslot = np.full(cap, -1, np.int64)
    DP = D[H_POOL]
    for j in range(k):
        s = slots[order[j]]
        ns = D[H_FREE]
        d = DP + ns * NF
        D[H_FREE] = D[d + P_NEXT]
        for f in range(NF):
            D[d + f] = S[P + s * NF + f]
        D[d + P_ACC] = _acc_get(dst, S[P + s * NF + P_ACCOUNT])
        D[d + P_HPOS] = -1
        _register(dst, ns)
        newslot[s] = ns
    for sidx in range(2):
        lo = S[H_L0 + sidx]
        for i in range(S[H_N0 + sidx]):
            m = S[S[H_LVL] + S[lo + i] * LF + L_HEAD]
            while m >= 0:
                _link(dst, newslot[m])
                m = S[P + m * NF + P_NEXT]
    for d in range(2):
        H = S[H_TRIG] + d * cap
        for i in range(S[H_NTR0 + d]):
            _theap_push(dst, newslot[S[H + i]])
    return k


@njit(_I64(_I64, types.Array(_I64, 2, "C")), cache=True)
def k_export(addr, out):  # type: ignore[no-untyped-def]
    """Resting orders in price-time priority (bids best first, then asks best first):
    per row ``[side_index, level_price, level_total, 15 canonical order fields]``."""
    S = _view(addr)
    P = S[H_POOL]
    r = 0
    for sidx in range(2):
        lo = S[H_L0 + sidx]
        for i in range(S[H_N0 + sidx] - 1, -1, -1):
            L = S[H_LVL] + S[lo + i] * LF
            m = S[L + L_HEAD]
            while m >= 0:
                p = P + m * NF
                out[r, 0] = sidx
                out[r, 1] = S[L + L_PRICE]
                out[r, 2] = S[L + L_TOTAL]
                out[r, 3] = S[p + P_OID]
                out[r, 4] = S[p + P_CID]
                out[r, 5] = S[p + P_OWNER]
                out[r, 6] = S[p + P_SUB]
                out[r, 7] = S[p + P_SIDE]
                out[r, 8] = S[p + P_OTYPE]
                out[r, 9] = S[p + P_TIF]
                out[r, 10] = S[p + P_PRICE]
                out[r, 11] = S[p + P_TRIG]
                out[r, 12] = S[p + P_REM]
                out[r, 13] = S[p + P_FILLED]
                out[r, 14] = S[p + P_RO]
                out[r, 15] = S[p + P_STP]
                out[r, 16] = S[p + P_EXP]
                out[r, 17] = 4 if S[p + P_FILLED] != 0 else 3  # PARTIALLY_FILLED / OPEN
                r += 1
                m = S[p + P_NEXT]
    return r


@njit(_I64(_I64, types.Array(_I64, 2, "C")), cache=True)
def k_export_triggers(addr, out):  # type: ignore[no-untyped-def]
    """Pending trigger orders (heap order): per row the 15 canonical order fields."""
    S = _view(addr)
    P = S[H_POOL]
    r = 0
    for d in range(2):
        H = S[H_TRIG] + d * S[H_CAP]
        for i in range(S[H_NTR0 + d]):
            p = P + S[H + i] * NF
            out[r, 0] = S[p + P_OID]
            out[r, 1] = S[p + P_CID]
            out[r, 2] = S[p + P_OWNER]
            out[r, 3] = S[p + P_SUB]
            out[r, 4] = S[p + P_SIDE]
            out[r, 5] = S[p + P_OTYPE]
            out[r, 6] = S[p + P_TIF]
            out[r, 7] = S[p + P_PRICE]
            out[r, 8] = S[p + P_TRIG]
            out[r, 9] = S[p + P_REM]
            out[r, 10] = S[p + P_FILLED]
            out[r, 11] = S[p + P_RO]
            out[r, 12] = S[p + P_STP]
            out[r, 13] = S[p + P_EXP]
            out[r, 14] = 1  # TRIGGER_PENDING
            r += 1
    return r


def _entry(dispatcher: Any) -> Any:
    """The compiled CPython wrapper of a single-signature kernel (skips type dispatch)."""
    try:
        return dispatcher.overloads[dispatcher.signatures[0]].entry_point
    except (AttributeError, IndexError, KeyError):  # numba internals moved: dispatch normally
        return dispatcher


_E_PLACE = _entry(k_place)
_E_LIMIT = _entry(k_limit)
_E_CANCEL = _entry(k_cancel)
_E_CANCEL_ALL = _entry(k_cancel_all)
_E_AMEND = _entry(k_amend)
_E_EXPIRE = _entry(k_expire)
_E_TRIGGER = _entry(k_trigger)


# ---------------------------------------------------------------- Python API
class CapacityError(ExchangeError):
    """The fast core cannot hold this market within its int64 bounds."""

    code = "CAPACITY_ERROR"


_I64_MIN = -(2**63)
_I64_MAX = 2**63 - 1
_U64 = 2**64
_TIF_NAMES = {t.value: t.name for t in TimeInForce}
_TYPE_NAMES = {t.value: t.name for t in OrderType}


def _pow2(n: int) -> int:
    p = 1
    while p < n:
        p <<= 1
    return p


def _u64(x: int) -> int:
    return x + _U64 if x < 0 else x


def _fits(*xs: Any) -> bool:
    return all(_I64_MIN <= int(x) <= _I64_MAX for x in xs)


class FastMarket:
    """One market's book and matcher (numba). Events are identical to ``ExchangeCore``'s.

    ``events="append"`` keeps every command's event rows until ``drain_events()``;
    ``events="last"`` keeps only the last command's rows (the fastest mode for hot loops that
    read rows right away or not at all). Command methods return the number of rows written.
    """

    def __init__(
        self, spec: MarketSpec, capacity: int = 4096, accounts: int = 1024, events: str = "append"
    ) -> None:
        if events not in ("append", "last"):
            raise ValueError(f"events: expected 'append' or 'last', got {events!r}")
        self.spec = spec
        self.market_id = spec.market_id
        if (
            spec.tick_size * spec.max_price_ticks > _I64_MAX
            or spec.lot_size * spec.max_size_lots > _I64_MAX
        ):
            raise CapacityError(
                f"{spec.symbol}: expected every valid price and size to fit "
                f"int64, got tick*max_ticks {spec.tick_size * spec.max_price_ticks}"
                f" and lot*max_lots {spec.lot_size * spec.max_size_lots}"
            )
        self._mode = 0 if events == "append" else 1
        self._spill: list[np.ndarray] = []  # rows moved out of a full buffer
        self._py_msgs: dict[int, str] = {}  # seq -> message for T_PYTHON rejections
        self._py_prices: dict[int, int] = {}  # seq -> fired_at_price beyond int64
        self._alloc(max(2, capacity), max(2, accounts), 1, 1)

    # ------------------------------------------------------------ memory
    def _alloc(self, cap: int, acc_cap: int, seq: int, next_order_id: int) -> None:
        spec = self.spec
        if spec.max_size_lots * cap >= 2**62:
            raise CapacityError(
                f"{spec.symbol}: expected max_size_lots * capacity < 2**62, "
                f"got {spec.max_size_lots} * {cap}"
            )
        oid_slots = _pow2(2 * cap)
        acc_slots = _pow2(-(-4 * acc_cap // 3))  # load factor <= 3/4
        acc_cap = acc_slots * 3 // 4
        if acc_slots > 1 << ACC_MAX_IB or cap >= 1 << 30:
            raise CapacityError(
                f"{spec.symbol}: expected <= {(3 << ACC_MAX_IB) // 4} accounts and < 2**30 "
                f"orders, got {acc_cap} and {cap}"
            )
        ev_rows = 2 * cap + 16
        off = HDR
        layout = {}
        for name, size in (
            ("pool", cap * NF),
            ("lvl", cap * LF),
            ("acc", acc_cap * AF),
            ("acch", acc_slots // 2),  # 32-bit slots
            ("k0", cap),
            ("k1", cap),
            ("l0", cap),
            ("l1", cap),
            ("oidh", 2 * oid_slots),
            ("cidh", 3 * oid_slots),
            ("heap", cap),
            ("trig", 2 * cap),
            ("touch", cap + 2),
            ("lc", 2 * LCN),
        ):
            layout[name] = off
            off += -(-size // 8) * 8  # regions start on 64-byte boundaries
        buf = np.empty(off + 8, np.int64)
        shift = (-buf.ctypes.data % 64) // 8
        S = buf[shift : shift + off]
        S.fill(0)  # touch every page now, not inside the first commands
        S[H_SEQ] = seq
        S[H_NOID] = next_order_id
        S[H_MID] = spec.market_id
        S[H_TICK] = spec.tick_size
        S[H_LOT] = spec.lot_size
        S[H_TICKM], S[H_TICKSH] = _magic(spec.tick_size)
        S[H_LOTM], S[H_LOTSH] = _magic(spec.lot_size)
        S[H_MINL] = spec.min_size_lots
        S[H_MAXL] = spec.max_size_lots
        S[H_MAXT] = spec.max_price_ticks
        S[H_MAXOPEN] = spec.max_open_orders_per_account
        S[H_EVMODE] = self._mode
        S[H_EVCAP] = ev_rows
        S[H_CAP] = cap
        S[H_POOL] = layout["pool"]
        S[H_LVL] = layout["lvl"]
        S[H_K0], S[H_K0 + 1] = layout["k0"], layout["k1"]
        S[H_L0], S[H_L0 + 1] = layout["l0"], layout["l1"]
        S[H_OIDH], S[H_OIDMASK] = layout["oidh"], oid_slots - 1
        S[H_CIDH], S[H_CIDMASK] = layout["cidh"], oid_slots - 1
        S[H_ACC], S[H_ACCMASK], S[H_ACCCAP] = layout["acc"], acc_slots - 1, acc_cap
        S[H_ACCH], S[H_ACCIB] = layout["acch"], acc_slots.bit_length() - 1
        S[H_HEAP] = layout["heap"]
        S[H_TRIG] = layout["trig"]
        S[H_TOUCH] = layout["touch"]
        S[H_LC] = layout["lc"]
        S[H_TOTAL] = off
        pool = S[layout["pool"] : layout["pool"] + cap * NF].reshape(cap, NF)
        pool[:, P_NEXT] = np.arange(1, cap + 1)
        pool[-1, P_NEXT] = -1
        pool[:, P_HPOS] = -1
        pool[:, P_TPOS] = -1
        pool[:, P_LEVEL] = -1
        lvl = S[layout["lvl"] : layout["lvl"] + cap * LF].reshape(cap, LF)
        lvl[:, L_NEXTFREE] = np.arange(1, cap + 1)
        lvl[-1, L_NEXTFREE] = -1
        S[H_FREE] = 0
        S[H_LFREE] = 0
        self._S = S
        self._addr = S.ctypes.data
        self._new_rows(ev_rows)

    def _new_rows(self, ev_rows: int) -> None:
        """A fresh event buffer, outside ``S``: ``S[H_EVOFF]`` is its word offset from ``S``
        (negative when it lies below). A full buffer is handed to the spill list as it is."""
        buf = np.empty(ev_rows * ROW_W + 8, np.int64)
        shift = (-buf.ctypes.data % 64) // 8  # 128-byte rows on 64-byte boundaries
        E = buf[shift : shift + ev_rows * ROW_W].reshape(ev_rows, ROW_W)
        self._E = E
        self._S[H_EVCAP] = ev_rows
        gap = E.ctypes.data - self._addr
        assert gap % 8 == 0
        self._S[H_EVOFF] = gap // 8

    def _grow(self) -> None:
        """Double the order and account capacity (rare; the state is copied, not replayed)."""
        old = self._S
        self._spill_rows()
        cap, acc_cap = int(old[H_CAP]), int(old[H_ACCCAP])
        if old[H_FREE] < 0:
            cap *= 2
        if old[H_NACC] >= acc_cap:
            acc_cap *= 2
        self._alloc(cap, acc_cap, int(old[H_SEQ]), int(old[H_NOID]))
        k_copy(old.ctypes.data, self._addr)
        del old

    def _spill_rows(self) -> None:
        n = int(self._S[H_EVN])
        if n and self._mode == 0:
            if 2 * n >= len(self._E):  # mostly full: keep the rows where they are
                self._spill.append(self._E[:n])
                self._new_rows(len(self._E))
            else:  # few rows (the buffer is mostly reserved for a big book): copy them
                self._spill.append(self._E[:n].copy())
        self._S[H_EVN] = 0

    def _handle(self, status: int) -> None:
        if status == ST_GROW:
            self._grow()
        elif status == ST_SPACE:
            self._spill_rows()
        elif status == ST_EVGROW:  # room for a trigger command's worst case
            S = self._S
            need = 2 * int(S[H_LIVE]) + 3 * int(S[H_NTR0] + S[H_NTR0 + 1]) + 8
            self._spill_rows()
            self._new_rows(max(need, 2 * len(self._E)))
        else:
            raise ValueError(f"FastMarket: expected a known op, got status {status}")

    # ------------------------------------------------------------ commands
    def place(
        self,
        owner_id: int,
        sub_account_id: int,
        side: int,
        price: int,
        size: int,
        order_type: int = 0,
        time_in_force: int = 0,
        client_order_id: int = 0,
        trigger_price: int = 0,
        reduce_only: bool = False,
        stp_mode: int = 0,
        expire_at_ns: int = 0,
        ts_ns: int = 0,
    ) -> int:
        """``PlaceOrder`` (same field order, without ``market_id``) at ``ts_ns``."""
        try:
            n = _E_PLACE(
                self._addr,
                owner_id,
                sub_account_id,
                side,
                price,
                size,
                order_type,
                time_in_force,
                client_order_id,
                trigger_price,
                reduce_only,
                stp_mode,
                expire_at_ns,
                ts_ns,
            )
        except OverflowError:
            return self._place_wide(
                owner_id,
                sub_account_id,
                side,
                price,
                size,
                order_type,
                time_in_force,
                client_order_id,
                trigger_price,
                reduce_only,
                stp_mode,
                expire_at_ns,
                ts_ns,
            )
        if n < 0:
            return self._retry(
                _E_PLACE,
                owner_id,
                sub_account_id,
                side,
                price,
                size,
                order_type,
                time_in_force,
                client_order_id,
                trigger_price,
                reduce_only,
                stp_mode,
                expire_at_ns,
                ts_ns,
                status=n,
            )
        return n  # type: ignore[no-any-return]

    def place_limit(
        self, owner_id: int, sub_account_id: int, side: int, price: int, size: int, ts_ns: int = 0
    ) -> int:
        """``place`` of a plain GTC limit order (every other field at its default): the
        same kernel with half the arguments to unbox, for hot loops."""
        try:
            n = _E_LIMIT(self._addr, owner_id, sub_account_id, side, price, size, ts_ns)
        except OverflowError:
            return self._place_wide(
                owner_id, sub_account_id, side, price, size, 0, 0, 0, 0, False, 0, 0, ts_ns
            )
        if n < 0:
            return self._retry(
                _E_LIMIT, owner_id, sub_account_id, side, price, size, ts_ns, status=n
            )
        return n  # type: ignore[no-any-return]

    def cancel(
        self,
        owner_id: int,
        sub_account_id: int,
        order_id: int = 0,
        client_order_id: int = 0,
        ts_ns: int = 0,
    ) -> int:
        """``CancelOrder`` by order id, or by client order id when ``order_id`` is 0."""
        try:
            n = _E_CANCEL(self._addr, owner_id, sub_account_id, order_id, client_order_id, ts_ns)
        except OverflowError:
            client_order_id = self._wrap_cid(client_order_id)
            if not _fits(owner_id, sub_account_id, order_id, ts_ns):
                raise ValueError("FastMarket.cancel: arguments must fit int64") from None
            n = _E_CANCEL(self._addr, owner_id, sub_account_id, order_id, client_order_id, ts_ns)
        if n < 0:
            return self._retry(
                _E_CANCEL,
                owner_id,
                sub_account_id,
                order_id,
                self._wrap_cid(client_order_id),
                ts_ns,
                status=n,
            )
        return n  # type: ignore[no-any-return]

    def cancel_all(self, owner_id: int, sub_account_id: int, ts_ns: int = 0) -> int:
        n = _E_CANCEL_ALL(self._addr, owner_id, sub_account_id, ts_ns)
        if n < 0:
            return self._retry(_E_CANCEL_ALL, owner_id, sub_account_id, ts_ns, status=n)
        return n  # type: ignore[no-any-return]

    def amend(
        self,
        owner_id: int,
        sub_account_id: int,
        order_id: int,
        new_price: int,
        new_size: int,
        ts_ns: int = 0,
    ) -> int:
        n = _E_AMEND(self._addr, owner_id, sub_account_id, order_id, new_price, new_size, ts_ns)
        if n < 0:
            return self._retry(
                _E_AMEND, owner_id, sub_account_id, order_id, new_price, new_size, ts_ns, status=n
            )
        return n  # type: ignore[no-any-return]

    def expire(self, ts_ns: int) -> int:
        """``ExpireOrders``: expire every order whose good-till time is <= ``ts_ns``."""
        n = _E_EXPIRE(self._addr, ts_ns)
        if n < 0:
            return self._retry(_E_EXPIRE, ts_ns, status=n)
        return n  # type: ignore[no-any-return]

    def _retry(self, fn: Any, *args: Any, status: int) -> int:
        while status < 0:
            self._handle(status)
            status = fn(self._addr, *args)
        return status

    @staticmethod
    def _wrap_cid(cid: int) -> int:
        if _I64_MAX < cid < _U64:
            return cid - _U64  # stored as the u64's int64 bit pattern
        return cid

    def _place_wide(
        self,
        owner: int,
        sub: int,
        side: int,
        price: int,
        size: int,
        otype: int,
        tif: int,
        cid: int,
        trig: int,
        ro: Any,
        stp: int,
        exp: int,
        ts: int,
    ) -> int:
        """``place`` with an argument outside int64."""
        cid = self._wrap_cid(cid)
        if not _fits(owner, sub, side, otype, tif, cid, ro, stp, ts):
            raise ValueError(
                "FastMarket.place: owner, sub-account, enums, client order id "
                "and ts_ns must fit int64 (u64 for the client order id)"
            )
        if _fits(price, size, trig, exp):
            return self.place(
                owner, sub, side, price, size, otype, tif, cid, trig, ro, stp, exp, ts
            )
        spec = self.spec
        tick, lot = spec.tick_size, spec.lot_size
        problem = None
        if price <= 0:
            problem = (RejectCode.NON_POSITIVE_PRICE, f"price: expected > 0, got {price}")
        elif price % tick:
            problem = (
                RejectCode.OFF_TICK_PRICE,
                f"price: expected a multiple of tick_size {tick}, got {price}",
            )
        elif price // tick > spec.max_price_ticks:
            problem = (
                RejectCode.PRICE_OUT_OF_RANGE,
                f"price: expected <= {spec.max_price_ticks * tick}, got {price}",
            )
        elif size <= 0:
            problem = (RejectCode.NON_POSITIVE_SIZE, f"size: expected > 0, got {size}")
        elif size % lot:
            problem = (
                RejectCode.OFF_LOT_SIZE,
                f"size: expected a multiple of lot_size {lot}, got {size}",
            )
        elif size // lot < spec.min_size_lots:
            problem = (
                RejectCode.SIZE_BELOW_MINIMUM,
                f"size: expected >= {spec.min_size_lots * lot}, got {size}",
            )
        elif size // lot > spec.max_size_lots:
            problem = (
                RejectCode.SIZE_ABOVE_MAXIMUM,
                f"size: expected <= {spec.max_size_lots * lot}, got {size}",
            )
        elif exp and exp <= ts:
            problem = (
                RejectCode.EXPIRED_ON_ARRIVAL,
                f"expire_at_ns: expected > now {ts}, got {exp}",
            )
        else:
            problem = self._kind_problem(otype, tif, trig)
        if problem is None:
            raise ValueError("FastMarket.place: expire_at_ns of an acceptable order must fit int64")
        if self._mode == 1:
            self._py_msgs.clear()
        n = self.expire(ts)
        seq = int(self._S[H_SEQ])
        self._retry(
            k_reject,
            ts,
            0,
            cid,
            owner,
            sub,
            int(problem[0]),
            T_PYTHON,
            status=k_reject(self._addr, ts, 0, cid, owner, sub, int(problem[0]), T_PYTHON),
        )
        self._py_msgs[seq] = problem[1]
        return n + 1

    def _kind_problem(self, otype: int, tif: int, trig: int) -> tuple[RejectCode, str] | None:
        """``ExchangeCore._check_order_kind`` for arguments the kernel cannot take."""
        spec = self.spec
        if otype in (MARKET, STOP_MARKET, TAKE_PROFIT_MARKET) and tif not in (IOC, FOK):
            return (
                RejectCode.INVALID_ORDER_TYPE,
                f"time_in_force: expected IOC or FOK for {_TYPE_NAMES[otype]}, got "
                f"{_TIF_NAMES[tif]}",
            )
        if STOP_MARKET <= otype <= TAKE_PROFIT_LIMIT:
            if tif in (FOK, PO, POS):
                return (
                    RejectCode.INVALID_ORDER_TYPE,
                    f"time_in_force: expected GTC or IOC for a trigger order, got "
                    f"{_TIF_NAMES[tif]}",
                )
            tick = spec.tick_size
            if trig <= 0 or trig % tick or trig // tick > spec.max_price_ticks:
                return (
                    RejectCode.INVALID_TRIGGER_PRICE,
                    f"trigger_price: expected a positive multiple of {tick} up "
                    f"to {spec.max_price_ticks * tick}, got {trig}",
                )
        elif trig:
            return (
                RejectCode.INVALID_TRIGGER_PRICE,
                f"trigger_price: expected 0 for {_TYPE_NAMES[otype]}, got {trig}",
            )
        return None

    def update_trigger_price(self, price: int, ts_ns: int = 0) -> int:
        """``UpdateTriggerPrice``: fire, oldest first, every pending stop / take-profit
        order that ``price`` (``PRICE_PRECISION``, need not be on a tick) reaches."""
        try:
            n = _E_TRIGGER(self._addr, price, 0, ts_ns)
        except OverflowError:
            return self._trigger_wide(price, ts_ns)
        if n < 0:
            return self._retry(_E_TRIGGER, price, 0, ts_ns, status=n)
        return n  # type: ignore[no-any-return]

    def _trigger_wide(self, price: int, ts_ns: int) -> int:
        """``update_trigger_price`` with a price outside int64: below, refused as the
        reference refuses it; above, it reaches every rising trigger and no falling one
        (the kernel runs with ``wide``; the rows' price is restored on decoding)."""
        if not _fits(ts_ns):
            raise ValueError("FastMarket.update_trigger_price: ts_ns must fit int64")
        if self._mode == 1:
            self._py_msgs.clear()
            self._py_prices.clear()
        if price < 0:
            n = self.expire(ts_ns)
            seq = int(self._S[H_SEQ])
            code = int(RejectCode.NON_POSITIVE_PRICE)
            self._retry(
                k_reject,
                ts_ns,
                0,
                0,
                0,
                0,
                code,
                T_PYTHON,
                status=k_reject(self._addr, ts_ns, 0, 0, 0, 0, code, T_PYTHON),
            )
            self._py_msgs[seq] = f"price: expected > 0, got {price}"
            return n + 1
        n = self._retry(
            _E_TRIGGER, _I64_MAX, 1, ts_ns, status=_E_TRIGGER(self._addr, _I64_MAX, 1, ts_ns)
        )
        end = int(self._S[H_EVN])
        for row in self._E[end - n : end].tolist():
            if row[0] == K_TRIG:
                self._py_prices[row[1]] = price
        return n

    def execute(self, cmd: Any, ts_ns: int) -> list[Any]:
        """Run one ``exchange.core.commands`` command of this market; return its events.

        Convenience for tests and tools: it drains (discards) events not yet drained."""
        from exchange.core.commands import (
            AmendOrder,
            CancelAll,
            CancelOrder,
            ExpireOrders,
            PlaceOrder,
            UpdateTriggerPrice,
        )

        self.drain_events()
        kind = type(cmd)
        if kind is ExpireOrders:
            self.expire(ts_ns)
            return self.drain_events()
        if cmd.market_id != self.market_id:
            raise ValueError(
                f"FastMarket: expected market_id {self.market_id}, got {cmd.market_id}"
            )
        if kind is PlaceOrder:
            self.place(*cmd[1:], ts_ns=ts_ns)  # type: ignore[misc]
        elif kind is CancelOrder:
            self.cancel(*cmd[1:], ts_ns=ts_ns)  # type: ignore[misc]
        elif kind is CancelAll:
            self.cancel_all(*cmd[1:], ts_ns=ts_ns)  # type: ignore[misc]
        elif kind is AmendOrder:
            self.amend(*cmd[1:], ts_ns=ts_ns)  # type: ignore[misc]
        elif kind is UpdateTriggerPrice:
            self.update_trigger_price(cmd.price, ts_ns)
        else:
            raise NotImplementedError(f"FastMarket: {kind.__name__} is not supported")
        return self.drain_events()

    # ------------------------------------------------------------ batch
    @staticmethod
    def encode(commands: list[tuple[Any, int]]) -> np.ndarray:
        """``[(command, ts_ns), ...]`` -> the int64 op array of ``run_batch``."""
        from exchange.core.commands import (
            AmendOrder,
            CancelAll,
            CancelOrder,
            ExpireOrders,
            PlaceOrder,
            UpdateTriggerPrice,
        )

        codes = {
            PlaceOrder: OP_PLACE,
            CancelOrder: OP_CANCEL,
            CancelAll: OP_CANCEL_ALL,
            AmendOrder: OP_AMEND,
            ExpireOrders: OP_EXPIRE,
            UpdateTriggerPrice: OP_TRIGGER,
        }
        ops = np.zeros((len(commands), OP_W), np.int64)
        for i, (cmd, ts) in enumerate(commands):
            kind = type(cmd)
            fields = [] if kind is ExpireOrders else [int(x) for x in cmd[1:]]
            if kind is PlaceOrder or kind is CancelOrder:
                j = 7 if kind is PlaceOrder else 3
                fields[j] = FastMarket._wrap_cid(fields[j])
            ops[i, : 2 + len(fields)] = [codes[kind], ts, *fields]
        return ops

    def run_batch(self, ops: np.ndarray, keep_events: bool = False) -> int:
        """Process a whole op array inside numba; returns the number of event rows.

        ``keep_events`` keeps every row for ``drain_events()``; otherwise rows are only
        counted (each command overwrites the previous one's, as in ``events="last"``).
        """
        ops = np.ascontiguousarray(ops, dtype=np.int64)
        i, n, rows = 0, len(ops), 0
        while True:
            i = k_batch(self._addr, ops, i, 1 if keep_events else 0)
            rows += int(self._S[H_BROWS])
            if i >= n:
                return rows
            self._handle(int(self._S[H_STATUS]))

    # ------------------------------------------------------------ state
    @property
    def seq(self) -> int:
        """The next global sequence number."""
        return int(self._S[H_SEQ])

    @seq.setter
    def seq(self, value: int) -> None:
        self._S[H_SEQ] = value

    @property
    def next_order_id(self) -> int:
        return int(self._S[H_NOID])

    @next_order_id.setter
    def next_order_id(self, value: int) -> None:
        self._S[H_NOID] = value

    def best_bid(self) -> int:
        """Best bid in ticks, 0 when the side is empty."""
        S = self._S
        n = int(S[H_N0])
        return int(S[S[H_K0] + n - 1]) if n else 0

    def best_ask(self) -> int:
        """Best ask in ticks, 0 when the side is empty."""
        S = self._S
        n = int(S[H_N0 + 1])
        return -int(S[S[H_K0 + 1] + n - 1]) if n else 0

    def fill_stats(self) -> tuple[int, int]:
        """(maker fills, lots traded) since construction: statistics for benchmarks."""
        return int(self._S[H_NTRADES]), int(self._S[H_TRADED])

    def open_order_count(self) -> int:
        """Live orders: resting plus pending trigger orders."""
        return int(self._S[H_LIVE])

    def trigger_orders(self) -> list[tuple[int, ...]]:
        """Pending trigger orders by order id, each as ``Order.canonical()``: exactly the
        reference's ``canonical()["markets"][i]["triggers"]``."""
        S = self._S
        rows = np.empty((int(S[H_NTR0] + S[H_NTR0 + 1]), 15), np.int64)
        n = k_export_triggers(self._addr, rows)
        out = []
        for r in sorted(rows[:n].tolist()):
            r[1] = _u64(r[1])
            out.append(tuple(r))
        return out

    def canonical(self) -> list[Any]:
        """Exactly ``OrderBook.canonical()`` of the reference book."""
        rows = np.empty((int(self._S[H_LIVE]), 18), np.int64)
        n = k_export(self._addr, rows)
        sides: list[list[Any]] = [[], []]
        level: list[Any] | None = None
        last = (-1, -1)
        for r in rows[:n].tolist():
            if (r[0], r[1]) != last:
                last = (r[0], r[1])
                level = [r[1], r[2], []]
                sides[r[0]].append(level)
            r[4] = _u64(r[4])
            level[2].append(tuple(r[3:]))  # type: ignore[index]
        return sides

    def positions(self) -> dict[int, int]:
        """Non-zero signed positions in lots by account (``owner * 2**16 + sub``)."""
        S = self._S
        a0, na = int(S[H_ACC]), int(S[H_NACC])
        recs = S[a0 : a0 + na * AF].reshape(na, AF)
        pos, keys = recs[:, A_POS], recs[:, A_KEY1]
        used = pos != 0
        return dict(zip((keys[used] - 1).tolist(), pos[used].tolist()))

    # ------------------------------------------------------------ events
    def events(self) -> list[Any]:
        """Decoded events currently held (all since the last drain, or the last command's)."""
        out: list[Any] = []
        for rows in self._spill:
            out.extend(self.decode(rows))
        n = int(self._S[H_EVN])
        out.extend(self.decode(self._E[:n].tolist()))
        return out

    def drain_events(self) -> list[Any]:
        out = self.events()
        self.clear_events()
        return out

    def clear_events(self) -> None:
        self._spill.clear()
        self._py_msgs.clear()
        self._py_prices.clear()
        self._S[H_EVN] = 0

    def rows(self) -> np.ndarray:
        """The raw event rows currently in the buffer (a view; valid until the next call)."""
        return self._E[: int(self._S[H_EVN])]

    def decode(self, rows: Any) -> list[Any]:
        """Event rows (a list of lists, or an array) -> ``exchange.core.events`` tuples."""
        if isinstance(rows, np.ndarray):
            rows = rows.tolist()
        new = tuple.__new__
        out: list[Any] = []
        append = out.append
        mid = self.spec.market_id
        for r in rows:
            r = list(r)
            r.insert(3, mid)  # rows leave out the market id (the same for every row)
            k = r[0]
            if k == K_TRADE:
                append(new(TradeExecuted, r[1:15]))
            elif k == K_ACC:
                r[5] = _u64(r[5])
                r[14] = bool(r[14])
                append(new(OrderAccepted, r[1:17]))
            elif k == K_REST:
                append(new(OrderRested, r[1:7]))
            elif k == K_CANCEL:
                append(new(OrderCanceled, r[1:9]))
            elif k == K_REJ:
                r[5] = _u64(r[5])
                append(new(OrderRejected, (*r[1:9], self._message(r))))
            elif k == K_EXP:
                append(new(OrderExpired, r[1:8]))
            elif k == K_AMEND:
                r[7] = bool(r[7])
                append(new(OrderAmended, r[1:8]))
            elif k == K_STD:
                append(new(SelfTradeDecremented, r[1:7]))
            elif k == K_TRIG:
                if r[5] == _I64_MAX:  # the kernel's stand-in for a price beyond int64
                    r[5] = self._py_prices.get(r[1], _I64_MAX)
                append(new(OrderTriggered, r[1:6]))
            else:
                raise ValueError(f"event row: expected a known KIND, got {r[:1]!r}")
        return out

    def _message(self, r: list[int]) -> str:
        """The reference core's rejection text, rebuilt from a row's template and params."""
        spec = self.spec
        tick, lot = spec.tick_size, spec.lot_size
        t, p1, p2 = r[9], r[10], r[11]
        if t <= T_SIZE_MAX:  # price_size_problem: p2 = 1 names amend's fields
            pn, sn = ("new_price", "new_size") if p2 else ("price", "size")
            if t == T_NON_POS_PRICE:
                return f"{pn}: expected > 0, got {p1}"
            if t == T_OFF_TICK:
                return f"{pn}: expected a multiple of tick_size {tick}, got {p1}"
            if t == T_PRICE_MAX:
                return f"{pn}: expected <= {spec.max_price_ticks * tick}, got {p1}"
            if t == T_NON_POS_SIZE:
                return f"{sn}: expected > 0, got {p1}"
            if t == T_OFF_LOT:
                return f"{sn}: expected a multiple of lot_size {lot}, got {p1}"
            if t == T_SIZE_MIN:
                return f"{sn}: expected >= {spec.min_size_lots * lot}, got {p1}"
            return f"{sn}: expected <= {spec.max_size_lots * lot}, got {p1}"
        if t == T_EXPIRED:
            return f"expire_at_ns: expected > now {r[2]}, got {p1}"
        if t == T_BAD_TYPE:
            return f"time_in_force: expected IOC or FOK for {_TYPE_NAMES[p1]}, got {_TIF_NAMES[p2]}"
        if t == T_BAD_TRIGGER:
            return f"trigger_price: expected 0 for {_TYPE_NAMES[p1]}, got {p2}"
        if t == T_DUP_CID:
            return (
                f"client_order_id: expected one not live on this account, got "
                f"{_u64(p1)} (order {p2})"
            )
        if t == T_TOO_MANY:
            return (
                f"open orders: expected < {spec.max_open_orders_per_account} per account, got {p1}"
            )
        if t == T_REDUCE:
            return (
                f"reduce_only: expected a {'short' if p1 == 0 else 'long'} position to "
                f"reduce, got {p2} lots"
            )
        if t == T_FOK:
            return f"size: expected {p1} lots fillable at once, got {p2}"
        if t == T_PO_CROSS:
            return (
                f"price: expected a post-only price that does not cross, got {p1} ticks "
                f"against {p2}"
            )
        if t == T_SLIDE_RANGE:
            return (
                f"price: expected a slid post-only price in 1..{spec.max_price_ticks} "
                f"ticks, got {p1}"
            )
        if t == T_CANCEL_UNKNOWN:
            return (
                f"order: expected a live order of this account, got order_id {p1} "
                f"client_order_id {_u64(p2)}"
            )
        if t == T_AMEND_UNKNOWN:
            return f"order_id: expected a live order of this account, got {p1}"
        if t == T_AMEND_SAME:
            return "amend: expected a new price or size, got the order's current ones"
        if t == T_TRIG_TIF:
            return f"time_in_force: expected GTC or IOC for a trigger order, got {_TIF_NAMES[p1]}"
        if t == T_TRIG_PRICE:
            return (
                f"trigger_price: expected a positive multiple of {tick} up "
                f"to {spec.max_price_ticks * tick}, got {p1}"
            )
        if t == T_AMEND_TRIGGER:
            return "order: expected a resting order, got a pending trigger order"
        if t == T_PYTHON:
            return self._py_msgs.get(r[1], "")
        raise ValueError(f"rejection row: expected a known template, got {t}")


__all__ = ["CapacityError", "FastMarket"]
