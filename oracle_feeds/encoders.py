"""Write oracle accounts in their real on-chain formats (for the simulated publisher, tests).

Each ``encode_*`` takes the format's record from :mod:`oracle_feeds.layouts` and returns the
exact account bytes the owning program would hold; bytes the record does not describe are
zero. Every field is range-checked against its on-chain width and refused with
:class:`ValueOutOfRangeError` rather than silently truncated. ``decode_*(encode_*(r)) == r``.
"""

from __future__ import annotations

from typing import Any

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
    PYTH_OFF_NUM_COMPONENTS,
    PYTH_PRICE_INFO_FIELDS,
    PYTH_PULL_DISCRIMINATOR,
    PYTH_PULL_MESSAGE_FIELDS,
    PYTH_PULL_OFF_VERIFICATION,
    PYTH_PULL_OFF_WRITE_AUTHORITY,
    PYTH_PULL_SIZE,
    PYTH_PUSH_FIELDS,
    PYTH_PUSH_SIZE,
    PYTH_VERSION,
    SB_MAX_SUBMISSIONS,
    SB_OFF_FEED_HASH,
    SB_OFF_NAME,
    SB_ON_DEMAND_DISCRIMINATOR,
    SB_ON_DEMAND_FIELDS,
    SB_ON_DEMAND_SIZE,
    SB_SUBMISSION_FIELDS,
    SB_SUBMISSION_SIZE,
    SB_SUBMISSIONS_OFFSET,
    SB_V2_DISCRIMINATOR,
    SB_V2_FIELDS,
    SB_V2_OFF_IS_CLOSED,
    SB_V2_OFF_NAME,
    SB_V2_SIZE,
    FieldTable,
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

    def fields(self, prefix: str, base: int, table: FieldTable, record: Any) -> None:
        """Write each ``(field, offset, type)`` of ``table`` from ``record`` at ``base + offset``."""
        for field_name, off, field_type in table:
            getattr(self, field_type)(
                f"{prefix}{field_name}", base + off, getattr(record, field_name)
            )

    def done(self) -> bytes:
        return bytes(self.buf)


def _pyth_info(w: _Writer, name: str, off: int, info: PythPriceInfo) -> None:
    w.fields(f"{name}.", off, PYTH_PRICE_INFO_FIELDS, info)
    w.u32(f"{name}.status", off + 16, int(info.status))


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
    w.fields("", 0, PYTH_PUSH_FIELDS, account)
    w.u32("num_components", PYTH_OFF_NUM_COMPONENTS, n)
    for i, v in enumerate(account.ema_price):
        w.i64(f"ema_price[{i}]", PYTH_OFF_EMA_PRICE + 8 * i, v)
    for i, v in enumerate(account.ema_conf):
        w.i64(f"ema_conf[{i}]", PYTH_OFF_EMA_CONF + 8 * i, v)
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
    w.fields("", off, PYTH_PULL_MESSAGE_FIELDS, account)
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
        w.fields(f"submissions[{i}].", off, SB_SUBMISSION_FIELDS, sub)
    w.fields("", 0, SB_ON_DEMAND_FIELDS, account)
    w.raw("feed_hash", SB_OFF_FEED_HASH, account.feed_hash, 32)
    w.raw("name", SB_OFF_NAME, account.name, 32, exact=False)
    return w.done()


def encode_switchboard_v2(account: SwitchboardV2Account) -> bytes:
    """A Switchboard V2 ``AggregatorAccountData`` (3851 bytes) with its latest confirmed round."""
    w = _Writer(SB_V2_SIZE)
    w.raw("discriminator", 0, SB_V2_DISCRIMINATOR, 8)
    w.raw("name", SB_V2_OFF_NAME, account.name, 32, exact=False)
    w.fields("", 0, SB_V2_FIELDS, account)
    if type(account.is_closed) is not bool:
        raise ValueOutOfRangeError(f"is_closed: expected a bool, got {account.is_closed!r}")
    w.u8("is_closed", SB_V2_OFF_IS_CLOSED, int(account.is_closed))
    return w.done()
