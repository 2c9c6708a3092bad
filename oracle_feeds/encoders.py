"""Write oracle accounts in their real on-chain formats (for the simulated publisher, tests).

Each ``encode_*`` takes the format's record from :mod:`oracle_feeds.layouts` and returns the
exact account bytes the owning program would hold; bytes the record does not describe are
zero. Every field is range-checked against its on-chain width and refused with
:class:`ValueOutOfRangeError` rather than silently truncated. ``decode_*(encode_*(r)) == r``.
"""

from __future__ import annotations

from solders.pubkey import Pubkey

from oracle_feeds.errors import ValueOutOfRangeError
from oracle_feeds.layouts import (
    PYTH_ACCOUNT_TYPE_PRICE,
    PYTH_COMP_OFFSET,
    PYTH_COMP_SIZE,
    PYTH_MAGIC,
    PYTH_MAX_COMPONENTS,
    PYTH_OFF_AGG,
    PYTH_OFF_EMA_CONF,
    PYTH_OFF_EMA_PRICE,
    PYTH_OFF_EXPONENT,
    PYTH_OFF_LAST_SLOT,
    PYTH_OFF_MAX_LATENCY,
    PYTH_OFF_MESSAGE_SENT,
    PYTH_OFF_MIN_PUB,
    PYTH_OFF_NEXT,
    PYTH_OFF_NUM_COMPONENTS,
    PYTH_OFF_NUM_QT,
    PYTH_OFF_PREV,
    PYTH_OFF_PRICE_TYPE,
    PYTH_OFF_PRODUCT,
    PYTH_OFF_TIMESTAMP,
    PYTH_OFF_VALID_SLOT,
    PYTH_PULL_DISCRIMINATOR,
    PYTH_PULL_OFF_VERIFICATION,
    PYTH_PULL_OFF_WRITE_AUTHORITY,
    PYTH_PULL_SIZE,
    PYTH_PUSH_SIZE,
    PYTH_VERSION,
    SB_MAX_SUBMISSIONS,
    SB_OFF_AUTHORITY,
    SB_OFF_FEED_HASH,
    SB_OFF_HISTORICAL_RESULT_IDX,
    SB_OFF_INITIALIZED_AT,
    SB_OFF_LAST_UPDATE_TIMESTAMP,
    SB_OFF_LUT_SLOT,
    SB_OFF_MAX_STALENESS,
    SB_OFF_MAX_VARIANCE,
    SB_OFF_MIN_RESPONSES,
    SB_OFF_MIN_SAMPLE_SIZE,
    SB_OFF_NAME,
    SB_OFF_NUM_SAMPLES,
    SB_OFF_PERMISSIONS,
    SB_OFF_QUEUE,
    SB_OFF_RESULT,
    SB_OFF_RESULT_SLOT,
    SB_OFF_SUBMISSION_IDX,
    SB_ON_DEMAND_DISCRIMINATOR,
    SB_ON_DEMAND_SIZE,
    SB_SUBMISSION_SIZE,
    SB_SUBMISSIONS_OFFSET,
    SB_V2_DISCRIMINATOR,
    SB_V2_OFF_IS_CLOSED,
    SB_V2_OFF_MIN_ORACLE_RESULTS,
    SB_V2_OFF_NAME,
    SB_V2_OFF_NUM_ERROR,
    SB_V2_OFF_NUM_SUCCESS,
    SB_V2_OFF_RESULT,
    SB_V2_OFF_ROUND_OPEN_SLOT,
    SB_V2_OFF_ROUND_OPEN_TIMESTAMP,
    SB_V2_OFF_STD_DEVIATION,
    SB_V2_SIZE,
    PythPriceInfo,
    PythPullAccount,
    PythPushAccount,
    SwitchboardOnDemandAccount,
    SwitchboardV2Account,
    VerificationLevel,
)


class _Writer:
    """A zero-filled buffer with range-checked little-endian field writers."""

    def __init__(self, size: int) -> None:
        self.buf = bytearray(size)

    def _int(self, name: str, off: int, value: int, width: int, signed: bool) -> None:
        bits = 8 * width
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        if type(value) is not int or not lo <= value <= hi:
            kind = f"{'i' if signed else 'u'}{bits}"
            raise ValueOutOfRangeError(
                f"{name}: expected an int in {lo}..{hi} ({kind}), got {value!r}"
            )
        self.buf[off : off + width] = value.to_bytes(width, "little", signed=signed)

    def u8(self, name: str, off: int, value: int) -> None:
        self._int(name, off, value, 1, False)

    def u32(self, name: str, off: int, value: int) -> None:
        self._int(name, off, value, 4, False)

    def i32(self, name: str, off: int, value: int) -> None:
        self._int(name, off, value, 4, True)

    def u64(self, name: str, off: int, value: int) -> None:
        self._int(name, off, value, 8, False)

    def i64(self, name: str, off: int, value: int) -> None:
        self._int(name, off, value, 8, True)

    def i128(self, name: str, off: int, value: int) -> None:
        self._int(name, off, value, 16, True)

    def raw(self, name: str, off: int, value: bytes, size: int, *, exact: bool = True) -> None:
        if type(value) is not bytes or (len(value) != size if exact else len(value) > size):
            want = f"{size} bytes" if exact else f"at most {size} bytes"
            raise ValueOutOfRangeError(f"{name}: expected {want}, got {value!r}")
        self.buf[off : off + len(value)] = value

    def key(self, name: str, off: int, value: Pubkey) -> None:
        if not isinstance(value, Pubkey):
            raise ValueOutOfRangeError(f"{name}: expected a Pubkey, got {value!r}")
        self.buf[off : off + 32] = bytes(value)

    def done(self) -> bytes:
        return bytes(self.buf)


def _pyth_info(w: _Writer, name: str, off: int, info: PythPriceInfo) -> None:
    w.i64(f"{name}.price", off, info.price)
    w.u64(f"{name}.conf", off + 8, info.conf)
    w.u32(f"{name}.status", off + 16, int(info.status))
    w.u32(f"{name}.corp_act", off + 20, info.corp_act)
    w.u64(f"{name}.pub_slot", off + 24, info.pub_slot)


def encode_pyth_push(account: PythPushAccount) -> bytes:
    """A legacy Pyth v2 price account (3312 bytes; header size = 240 + 96 * components)."""
    n = len(account.components)
    if n > PYTH_MAX_COMPONENTS:
        raise ValueOutOfRangeError(f"components: expected at most {PYTH_MAX_COMPONENTS}, got {n}")
    w = _Writer(PYTH_PUSH_SIZE)
    w.u32("magic", 0, PYTH_MAGIC)
    w.u32("version", 4, PYTH_VERSION)
    w.u32("account type", 8, PYTH_ACCOUNT_TYPE_PRICE)
    w.u32("size", 12, PYTH_COMP_OFFSET + n * PYTH_COMP_SIZE)
    w.u32("price_type", PYTH_OFF_PRICE_TYPE, account.price_type)
    w.i32("exponent", PYTH_OFF_EXPONENT, account.exponent)
    w.u32("num_components", PYTH_OFF_NUM_COMPONENTS, n)
    w.u32("num_qt", PYTH_OFF_NUM_QT, account.num_qt)
    w.u64("last_slot", PYTH_OFF_LAST_SLOT, account.last_slot)
    w.u64("valid_slot", PYTH_OFF_VALID_SLOT, account.valid_slot)
    for i, v in enumerate(account.ema_price):
        w.i64(f"ema_price[{i}]", PYTH_OFF_EMA_PRICE + 8 * i, v)
    for i, v in enumerate(account.ema_conf):
        w.i64(f"ema_conf[{i}]", PYTH_OFF_EMA_CONF + 8 * i, v)
    w.i64("timestamp", PYTH_OFF_TIMESTAMP, account.timestamp)
    w.u8("min_pub", PYTH_OFF_MIN_PUB, account.min_pub)
    w.u8("message_sent", PYTH_OFF_MESSAGE_SENT, account.message_sent)
    w.u8("max_latency", PYTH_OFF_MAX_LATENCY, account.max_latency)
    w.key("product", PYTH_OFF_PRODUCT, account.product)
    w.key("next_price", PYTH_OFF_NEXT, account.next_price)
    w.u64("prev_slot", PYTH_OFF_PREV, account.prev_slot)
    w.i64("prev_price", PYTH_OFF_PREV + 8, account.prev_price)
    w.u64("prev_conf", PYTH_OFF_PREV + 16, account.prev_conf)
    w.i64("prev_timestamp", PYTH_OFF_PREV + 24, account.prev_timestamp)
    _pyth_info(w, "agg", PYTH_OFF_AGG, account.agg)
    for i, comp in enumerate(account.components):
        off = PYTH_COMP_OFFSET + i * PYTH_COMP_SIZE
        w.key(f"components[{i}].publisher", off, comp.publisher)
        _pyth_info(w, f"components[{i}].agg", off + 32, comp.agg)
        _pyth_info(w, f"components[{i}].latest", off + 64, comp.latest)
    return w.done()


def encode_pyth_pull_price_update_v2(account: PythPullAccount) -> bytes:
    """A Pyth pull ``PriceUpdateV2`` account (134 bytes; Full leaves one trailing zero byte)."""
    w = _Writer(PYTH_PULL_SIZE)
    w.raw("discriminator", 0, PYTH_PULL_DISCRIMINATOR, 8)
    w.key("write_authority", PYTH_PULL_OFF_WRITE_AUTHORITY, account.write_authority)
    off = PYTH_PULL_OFF_VERIFICATION
    if account.verification_level is VerificationLevel.FULL:
        if account.num_signatures != 0:
            raise ValueOutOfRangeError(
                f"num_signatures: expected 0 for Full verification, got {account.num_signatures}"
            )
        w.u8("verification tag", off, int(VerificationLevel.FULL))
        off += 1
    elif account.verification_level is VerificationLevel.PARTIAL:
        w.u8("verification tag", off, int(VerificationLevel.PARTIAL))
        w.u8("num_signatures", off + 1, account.num_signatures)
        off += 2
    else:
        raise ValueOutOfRangeError(
            f"verification_level: expected a VerificationLevel, got {account.verification_level!r}"
        )
    w.raw("feed_id", off, account.feed_id, 32)
    w.i64("price", off + 32, account.price)
    w.u64("conf", off + 40, account.conf)
    w.i32("exponent", off + 48, account.exponent)
    w.i64("publish_time", off + 52, account.publish_time)
    w.i64("prev_publish_time", off + 60, account.prev_publish_time)
    w.i64("ema_price", off + 68, account.ema_price)
    w.u64("ema_conf", off + 76, account.ema_conf)
    w.u64("posted_slot", off + 84, account.posted_slot)
    return w.done()


def encode_switchboard_on_demand(account: SwitchboardOnDemandAccount) -> bytes:
    """A Switchboard On-Demand ``PullFeedAccountData`` (3208 bytes).

    Submissions fill slots 0..n-1; historical results and reserved bytes are zero.
    """
    n = len(account.submissions)
    if n > SB_MAX_SUBMISSIONS:
        raise ValueOutOfRangeError(f"submissions: expected at most {SB_MAX_SUBMISSIONS}, got {n}")
    w = _Writer(SB_ON_DEMAND_SIZE)
    w.raw("discriminator", 0, SB_ON_DEMAND_DISCRIMINATOR, 8)
    for i, sub in enumerate(account.submissions):
        off = SB_SUBMISSIONS_OFFSET + i * SB_SUBMISSION_SIZE
        w.key(f"submissions[{i}].oracle", off, sub.oracle)
        w.u64(f"submissions[{i}].slot", off + 32, sub.slot)
        w.u64(f"submissions[{i}].landed_at", off + 40, sub.landed_at)
        w.i128(f"submissions[{i}].value", off + 48, sub.value)
    w.key("authority", SB_OFF_AUTHORITY, account.authority)
    w.key("queue", SB_OFF_QUEUE, account.queue)
    w.raw("feed_hash", SB_OFF_FEED_HASH, account.feed_hash, 32)
    w.i64("initialized_at", SB_OFF_INITIALIZED_AT, account.initialized_at)
    w.u64("permissions", SB_OFF_PERMISSIONS, account.permissions)
    w.u64("max_variance", SB_OFF_MAX_VARIANCE, account.max_variance)
    w.u32("min_responses", SB_OFF_MIN_RESPONSES, account.min_responses)
    w.raw("name", SB_OFF_NAME, account.name, 32, exact=False)
    w.u8("historical_result_idx", SB_OFF_HISTORICAL_RESULT_IDX, account.historical_result_idx)
    w.u8("min_sample_size", SB_OFF_MIN_SAMPLE_SIZE, account.min_sample_size)
    w.i64("last_update_timestamp", SB_OFF_LAST_UPDATE_TIMESTAMP, account.last_update_timestamp)
    w.u64("lut_slot", SB_OFF_LUT_SLOT, account.lut_slot)
    r = SB_OFF_RESULT
    w.i128("result.value", r, account.value)
    w.i128("result.std_dev", r + 16, account.std_dev)
    w.i128("result.mean", r + 32, account.mean)
    w.i128("result.range", r + 48, account.value_range)
    w.i128("result.min_value", r + 64, account.min_value)
    w.i128("result.max_value", r + 80, account.max_value)
    w.u8("result.num_samples", SB_OFF_NUM_SAMPLES, account.num_samples)
    w.u8("result.submission_idx", SB_OFF_SUBMISSION_IDX, account.submission_idx)
    w.u64("result.slot", SB_OFF_RESULT_SLOT, account.slot)
    w.u64("result.min_slot", SB_OFF_RESULT_SLOT + 8, account.min_slot)
    w.u64("result.max_slot", SB_OFF_RESULT_SLOT + 16, account.max_slot)
    w.u32("max_staleness", SB_OFF_MAX_STALENESS, account.max_staleness)
    return w.done()


def encode_switchboard_v2(account: SwitchboardV2Account) -> bytes:
    """A Switchboard V2 ``AggregatorAccountData`` (3851 bytes) with its latest confirmed round."""
    w = _Writer(SB_V2_SIZE)
    w.raw("discriminator", 0, SB_V2_DISCRIMINATOR, 8)
    w.raw("name", SB_V2_OFF_NAME, account.name, 32, exact=False)
    w.u32("min_oracle_results", SB_V2_OFF_MIN_ORACLE_RESULTS, account.min_oracle_results)
    w.u32("num_success", SB_V2_OFF_NUM_SUCCESS, account.num_success)
    w.u32("num_error", SB_V2_OFF_NUM_ERROR, account.num_error)
    if type(account.is_closed) is not bool:
        raise ValueOutOfRangeError(f"is_closed: expected a bool, got {account.is_closed!r}")
    w.u8("is_closed", SB_V2_OFF_IS_CLOSED, int(account.is_closed))
    w.u64("round_open_slot", SB_V2_OFF_ROUND_OPEN_SLOT, account.round_open_slot)
    w.i64("round_open_timestamp", SB_V2_OFF_ROUND_OPEN_TIMESTAMP, account.round_open_timestamp)
    w.i128("result.mantissa", SB_V2_OFF_RESULT, account.result_mantissa)
    w.u32("result.scale", SB_V2_OFF_RESULT + 16, account.result_scale)
    w.i128("std_deviation.mantissa", SB_V2_OFF_STD_DEVIATION, account.std_mantissa)
    w.u32("std_deviation.scale", SB_V2_OFF_STD_DEVIATION + 16, account.std_scale)
    return w.done()
