"""Parse raw oracle account bytes into :class:`OraclePrice` (pure: no network, no clock).

Every parser checks, in this order, and refuses with an :mod:`oracle_feeds.errors` error:
owner program, exact data size, discriminator / magic (and version, account type, enum
tags), then the values (positive price, ranges; see :mod:`oracle_feeds.price`).

``decode_*`` functions return the format's full record (:mod:`oracle_feeds.layouts`);
``parse_*`` functions return the normalised :class:`OraclePrice`.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from pythclient.pythaccounts import PythPriceAccount, PythPriceStatus
from pythclient.solana import SolanaPublicKey
from solders.pubkey import Pubkey

from oracle_feeds.errors import (
    AccountDumpError,
    BadDiscriminatorError,
    BadEnumTagError,
    BadMagicError,
    FeedIdMismatchError,
    MalformedAccountError,
    NoResultError,
    UnsupportedVersionError,
    WrongAccountTypeError,
    WrongOwnerError,
    WrongSizeError,
)
from oracle_feeds.layouts import (
    PYTH_ACCOUNT_TYPE_PRICE,
    PYTH_COMP_OFFSET,
    PYTH_COMP_SIZE,
    PYTH_HEADER_SIZE,
    PYTH_MAGIC,
    PYTH_MAX_COMPONENTS,
    PYTH_OFF_AGG,
    PYTH_OFF_EMA_CONF,
    PYTH_OFF_EMA_PRICE,
    PYTH_OFF_PRICE_TYPE,
    PYTH_PRICE_INFO_FIELDS,
    PYTH_PRICE_TYPE_PRICE,
    PYTH_PULL_DISCRIMINATOR,
    PYTH_PULL_MESSAGE_FIELDS,
    PYTH_PULL_OFF_VERIFICATION,
    PYTH_PULL_OFF_WRITE_AUTHORITY,
    PYTH_PULL_SIZE,
    PYTH_PUSH_FIELDS,
    PYTH_PUSH_PROGRAM_ID,
    PYTH_PUSH_SIZE,
    PYTH_RECEIVER_PROGRAM_ID,
    PYTH_VERSION,
    SB_MAX_SUBMISSIONS,
    SB_OFF_FEED_HASH,
    SB_OFF_NAME,
    SB_ON_DEMAND_DECIMALS,
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
    SWITCHBOARD_ON_DEMAND_PROGRAM_ID,
    SWITCHBOARD_V2_PROGRAM_ID,
    FieldTable,
    PythComponent,
    PythPriceInfo,
    PythPullAccount,
    PythPushAccount,
    PythStatus,
    SwitchboardOnDemandAccount,
    SwitchboardSubmission,
    SwitchboardV2Account,
    VerificationLevel,
)
from oracle_feeds.price import OraclePrice, OracleSource

# ---------------------------------------------------------------- little-endian readers


def _u8(data: bytes, off: int) -> int:
    return data[off]


def _u32(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 4], "little")


def _i32(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 4], "little", signed=True)


def _u64(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 8], "little")


def _i64(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 8], "little", signed=True)


def _i128(data: bytes, off: int) -> int:
    return int.from_bytes(data[off : off + 16], "little", signed=True)


def _key(data: bytes, off: int) -> Pubkey:
    return Pubkey.from_bytes(data[off : off + 32])


_READERS: dict[str, Callable[[bytes, int], Any]] = {
    "u8": _u8,
    "u32": _u32,
    "i32": _i32,
    "u64": _u64,
    "i64": _i64,
    "i128": _i128,
    "key": _key,
}


def _fields(data: bytes, base: int, table: FieldTable) -> dict[str, Any]:
    """Each ``(field, offset, type)`` of ``table`` read at ``base + offset``, by field name."""
    return {name: _READERS[field_type](data, base + off) for name, off, field_type in table}


# ---------------------------------------------------------------- common checks


def _as_bytes(what: str, data: object) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise MalformedAccountError(
        f"{what}: expected account data as bytes, got {type(data).__name__}"
    )


def _check_owner(what: str, owner: object, expected: Pubkey) -> None:
    if not isinstance(owner, Pubkey):
        raise WrongOwnerError(f"{what}: expected owner Pubkey {expected}, got {owner!r}")
    if owner != expected:
        raise WrongOwnerError(f"{what}: expected owner {expected}, got {owner}")


def _check_size(what: str, data: bytes, size: int) -> None:
    if len(data) != size:
        raise WrongSizeError(f"{what}: expected {size} bytes of account data, got {len(data)}")


def _check_discriminator(what: str, data: bytes, expected: bytes) -> None:
    got = data[: len(expected)]
    if got != expected:
        raise BadDiscriminatorError(
            f"{what}: expected discriminator {expected.hex()}, got {got.hex()}"
        )


# ---------------------------------------------------------------- Pyth legacy push


def _pyth_info(data: bytes, off: int, what: str) -> PythPriceInfo:
    status = _u32(data, off + 16)
    if status not in PythStatus._value2member_map_:
        raise BadEnumTagError(f"{what}: expected a price status in 0..4, got {status}")
    return PythPriceInfo(status=PythStatus(status), **_fields(data, off, PYTH_PRICE_INFO_FIELDS))


def _check_pyth_push_header(data: bytes, owner: Pubkey, program_id: Pubkey) -> int:
    """Check owner, size and header of a legacy Pyth price account; return the used size."""
    what = "pyth push price account"
    _check_owner(what, owner, program_id)
    _check_size(what, data, PYTH_PUSH_SIZE)
    magic, version, account_type, used = (_u32(data, off) for off in (0, 4, 8, 12))
    if magic != PYTH_MAGIC:
        raise BadMagicError(f"{what}: expected magic {PYTH_MAGIC:#010x}, got {magic:#010x}")
    if version != PYTH_VERSION:
        raise UnsupportedVersionError(f"{what}: expected version {PYTH_VERSION}, got {version}")
    if account_type != PYTH_ACCOUNT_TYPE_PRICE:
        raise WrongAccountTypeError(
            f"{what}: expected account type {PYTH_ACCOUNT_TYPE_PRICE} (price), got {account_type}"
        )
    if not PYTH_COMP_OFFSET <= used <= PYTH_PUSH_SIZE or (used - PYTH_COMP_OFFSET) % PYTH_COMP_SIZE:
        raise WrongSizeError(
            f"{what}: expected header size {PYTH_COMP_OFFSET} + 96*n (n <= 32), got {used}"
        )
    price_type = _u32(data, PYTH_OFF_PRICE_TYPE)
    if price_type != PYTH_PRICE_TYPE_PRICE:
        raise WrongAccountTypeError(
            f"{what}: expected price type {PYTH_PRICE_TYPE_PRICE} (price), got {price_type}"
        )
    return used


def decode_pyth_push(
    data: bytes, owner: Pubkey, *, program_id: Pubkey = PYTH_PUSH_PROGRAM_ID
) -> PythPushAccount:
    """Decode every field of a legacy Pyth v2 price account (our own reader)."""
    data = _as_bytes("pyth push price account", data)
    used = _check_pyth_push_header(data, owner, program_id)
    components = []
    for index in range((used - PYTH_COMP_OFFSET) // PYTH_COMP_SIZE):
        off = PYTH_COMP_OFFSET + index * PYTH_COMP_SIZE
        components.append(
            PythComponent(
                publisher=_key(data, off),  # agg and latest follow the 32-byte publisher
                agg=_pyth_info(data, off + 32, f"component {index} agg"),
                latest=_pyth_info(data, off + 64, f"component {index} latest"),
            )
        )
    assert len(components) <= PYTH_MAX_COMPONENTS
    return PythPushAccount(
        agg=_pyth_info(data, PYTH_OFF_AGG, "pyth push aggregate"),
        ema_price=struct.unpack_from("<qqq", data, PYTH_OFF_EMA_PRICE),
        ema_conf=struct.unpack_from("<qqq", data, PYTH_OFF_EMA_CONF),
        components=tuple(components),
        **_fields(data, 0, PYTH_PUSH_FIELDS),
    )


def oracle_price_from_pythclient(account: Any) -> OraclePrice:
    """An :class:`OraclePrice` from a loaded pythclient ``PythPriceAccount``.

    pythclient's ``update_with_rpc_response`` (used by its RPC and websocket paths) logs and
    swallows every parse error, leaving the account unset (or, worse, holding the previous
    values): an account whose aggregate or exponent is still ``None`` is refused here.
    """
    info = account.aggregate_price_info
    exponent = account.exponent
    if info is None or exponent is None:
        raise MalformedAccountError(
            "pyth push price account: expected pythclient to have parsed an aggregate price, "
            "got none (pythclient swallows parse errors: see its log)"
        )
    return OraclePrice.from_raw(
        source=OracleSource.PYTH_PUSH,
        mantissa=info.raw_price,
        exponent=exponent,
        confidence=info.raw_confidence_interval,
        confidence_exponent=exponent,
        slot=info.pub_slot,
        publish_time_s=account.timestamp,
        status_ok=info.price_status == PythPriceStatus.TRADING,
    )


def parse_pyth_push(
    data: bytes, owner: Pubkey, *, program_id: Pubkey = PYTH_PUSH_PROGRAM_ID
) -> OraclePrice:
    """Parse a legacy Pyth v2 price account with pythclient's ``PythPriceAccount``.

    ``program_id`` is the Pyth oracle program expected to own the account (mainnet by
    default; ``PYTH_PUSH_DEVNET_PROGRAM_ID`` or a local program id otherwise). The header is
    checked here first; the values pythclient reads are then cross-checked against our own
    reader (:func:`decode_pyth_push`) and must agree.
    """
    data = _as_bytes("pyth push price account", data)
    record = decode_pyth_push(data, owner, program_id=program_id)
    used = _u32(data, 12)
    account = PythPriceAccount(SolanaPublicKey.NULL_KEY, None)
    try:
        # Called directly (not via update_with_rpc_response) so that errors surface.
        account.update_from(data[:used], version=PYTH_VERSION, offset=PYTH_HEADER_SIZE)
    except Exception as exc:
        raise MalformedAccountError(
            f"pyth push price account: expected pythclient to parse it, got {exc!r}"
        ) from exc
    price = oracle_price_from_pythclient(account)
    ours = (record.agg.price, record.agg.conf, record.exponent, record.agg.pub_slot)
    theirs = (price.raw_mantissa, price.raw_confidence, price.raw_exponent, price.slot)
    if ours != theirs or record.timestamp != price.publish_time_s:
        raise MalformedAccountError(
            f"pyth push price account: expected pythclient to agree with our reader "
            f"{(*ours, record.timestamp)}, got {(*theirs, price.publish_time_s)}"
        )
    return price


# ---------------------------------------------------------------- Pyth pull PriceUpdateV2


def decode_pyth_pull_price_update_v2(data: bytes, owner: Pubkey) -> PythPullAccount:
    """Decode a Pyth pull ``PriceUpdateV2`` (Borsh) account."""
    what = "pyth pull PriceUpdateV2"
    data = _as_bytes(what, data)
    _check_owner(what, owner, PYTH_RECEIVER_PROGRAM_ID)
    _check_size(what, data, PYTH_PULL_SIZE)
    _check_discriminator(what, data, PYTH_PULL_DISCRIMINATOR)
    tag = data[PYTH_PULL_OFF_VERIFICATION]
    if tag == VerificationLevel.FULL:
        level, num_signatures, off = VerificationLevel.FULL, 0, PYTH_PULL_OFF_VERIFICATION + 1
    elif tag == VerificationLevel.PARTIAL:
        level = VerificationLevel.PARTIAL
        num_signatures = data[PYTH_PULL_OFF_VERIFICATION + 1]
        off = PYTH_PULL_OFF_VERIFICATION + 2
    else:
        raise BadEnumTagError(
            f"{what}: expected verification level tag 0 (Partial) or 1 (Full), got {tag}"
        )
    return PythPullAccount(
        feed_id=data[off : off + 32],
        **_fields(data, off, PYTH_PULL_MESSAGE_FIELDS),
        verification_level=level,
        num_signatures=num_signatures,
        write_authority=_key(data, PYTH_PULL_OFF_WRITE_AUTHORITY),
    )


def parse_pyth_pull_price_update_v2(
    data: bytes, owner: Pubkey, *, expected_feed_id: bytes | None = None
) -> OraclePrice:
    """Parse a Pyth pull ``PriceUpdateV2``; ``status_ok`` is verification level == Full.

    Anyone can post a verified update for any feed, so callers must pin the feed: pass
    ``expected_feed_id`` (32 bytes) or check ``OraclePrice.feed_id`` themselves.
    """
    record = decode_pyth_pull_price_update_v2(data, owner)
    if expected_feed_id is not None and record.feed_id != expected_feed_id:
        raise FeedIdMismatchError(
            f"pyth pull PriceUpdateV2: expected feed id {expected_feed_id.hex()}, "
            f"got {record.feed_id.hex()}"
        )
    return OraclePrice.from_raw(
        source=OracleSource.PYTH_PULL,
        mantissa=record.price,
        exponent=record.exponent,
        confidence=record.conf,
        confidence_exponent=record.exponent,
        slot=record.posted_slot,
        publish_time_s=record.publish_time,
        status_ok=record.verification_level == VerificationLevel.FULL,
        feed_id=record.feed_id,
    )


# ---------------------------------------------------------------- Switchboard On-Demand


def decode_switchboard_on_demand(data: bytes, owner: Pubkey) -> SwitchboardOnDemandAccount:
    """Decode a Switchboard On-Demand ``PullFeedAccountData`` (non-empty submissions only)."""
    what = "switchboard on-demand PullFeedAccountData"
    data = _as_bytes(what, data)
    _check_owner(what, owner, SWITCHBOARD_ON_DEMAND_PROGRAM_ID)
    _check_size(what, data, SB_ON_DEMAND_SIZE)
    _check_discriminator(what, data, SB_ON_DEMAND_DISCRIMINATOR)
    submissions = []
    for index in range(SB_MAX_SUBMISSIONS):
        off = SB_SUBMISSIONS_OFFSET + index * SB_SUBMISSION_SIZE
        if data[off : off + SB_SUBMISSION_SIZE] == bytes(SB_SUBMISSION_SIZE):
            continue
        submissions.append(SwitchboardSubmission(**_fields(data, off, SB_SUBMISSION_FIELDS)))
    return SwitchboardOnDemandAccount(
        name=data[SB_OFF_NAME : SB_OFF_NAME + 32].rstrip(b"\0"),
        feed_hash=data[SB_OFF_FEED_HASH : SB_OFF_FEED_HASH + 32],
        submissions=tuple(submissions),
        **_fields(data, 0, SB_ON_DEMAND_FIELDS),
    )


def parse_switchboard_on_demand(data: bytes, owner: Pubkey) -> OraclePrice:
    """Parse ``result`` of a Switchboard On-Demand feed (value and std_dev are i128 / 1e18).

    ``slot`` is ``result.slot`` (0 = no result: refused); ``publish_time_s`` is
    ``last_update_timestamp`` (see :mod:`oracle_feeds.price`: use the slot for staleness);
    ``status_ok`` is ``result.num_samples >= min_sample_size``.
    """
    record = decode_switchboard_on_demand(data, owner)
    if record.slot == 0:
        raise NoResultError(
            "switchboard on-demand PullFeedAccountData: expected result.slot != 0, got 0 "
            "(the feed has no result yet)"
        )
    return OraclePrice.from_raw(
        source=OracleSource.SWITCHBOARD_ON_DEMAND,
        mantissa=record.value,
        exponent=-SB_ON_DEMAND_DECIMALS,
        confidence=record.std_dev,
        confidence_exponent=-SB_ON_DEMAND_DECIMALS,
        slot=record.slot,
        publish_time_s=record.last_update_timestamp,
        status_ok=record.num_samples >= record.min_sample_size,
    )


# ---------------------------------------------------------------- Switchboard V2


def decode_switchboard_v2(data: bytes, owner: Pubkey) -> SwitchboardV2Account:
    """Decode the latest confirmed round of a Switchboard V2 ``AggregatorAccountData``."""
    what = "switchboard v2 AggregatorAccountData"
    data = _as_bytes(what, data)
    _check_owner(what, owner, SWITCHBOARD_V2_PROGRAM_ID)
    _check_size(what, data, SB_V2_SIZE)
    _check_discriminator(what, data, SB_V2_DISCRIMINATOR)
    return SwitchboardV2Account(
        is_closed=data[SB_V2_OFF_IS_CLOSED] != 0,
        name=data[SB_V2_OFF_NAME : SB_V2_OFF_NAME + 32].rstrip(b"\0"),
        **_fields(data, 0, SB_V2_FIELDS),
    )


def parse_switchboard_v2(data: bytes, owner: Pubkey) -> OraclePrice:
    """Parse the latest confirmed round (``mantissa / 10**scale``; std deviation as confidence).

    ``slot``/``publish_time_s`` are the round's open slot/timestamp (slot 0 = never: refused);
    ``status_ok`` is ``num_success >= min_oracle_results``.
    """
    record = decode_switchboard_v2(data, owner)
    if record.round_open_slot == 0:
        raise NoResultError(
            "switchboard v2 AggregatorAccountData: expected a confirmed round "
            "(round_open_slot != 0), got round_open_slot 0"
        )
    return OraclePrice.from_raw(
        source=OracleSource.SWITCHBOARD_V2,
        mantissa=record.result_mantissa,
        exponent=-record.result_scale,
        confidence=record.std_mantissa,
        confidence_exponent=-record.std_scale,
        slot=record.round_open_slot,
        publish_time_s=record.round_open_timestamp,
        status_ok=record.num_success >= record.min_oracle_results,
    )


# ---------------------------------------------------------------- dispatch


def parse_oracle_account(
    source: OracleSource,
    data: bytes,
    owner: Pubkey,
    *,
    pyth_push_program_id: Pubkey = PYTH_PUSH_PROGRAM_ID,
    expected_feed_id: bytes | None = None,
) -> OraclePrice:
    """Parse ``data`` as the format named by ``source`` (``expected_feed_id``: Pyth pull only)."""
    if source is OracleSource.PYTH_PUSH:
        return parse_pyth_push(data, owner, program_id=pyth_push_program_id)
    if source is OracleSource.PYTH_PULL:
        return parse_pyth_pull_price_update_v2(data, owner, expected_feed_id=expected_feed_id)
    if source is OracleSource.SWITCHBOARD_ON_DEMAND:
        return parse_switchboard_on_demand(data, owner)
    if source is OracleSource.SWITCHBOARD_V2:
        return parse_switchboard_v2(data, owner)
    raise UnsupportedVersionError(f"oracle source: expected an OracleSource, got {source!r}")


# ---------------------------------------------------------------- account dumps


class AccountDump(NamedTuple):
    """One account from a ``solana account --output json`` dump."""

    pubkey: Pubkey
    owner: Pubkey
    data: bytes
    lamports: int
    executable: bool


def _pubkey_field(path: Path, name: str, value: object) -> Pubkey:
    if not isinstance(value, str):
        raise AccountDumpError(f"{path}: {name}: expected a base58 string, got {value!r}")
    try:
        return Pubkey.from_string(value)
    except ValueError as exc:
        raise AccountDumpError(f"{path}: {name}: expected a base58 pubkey, got {value!r}") from exc


def load_account_json(path: str | Path) -> AccountDump:
    """Read a ``solana account --output json`` file: ``(pubkey, owner, data, lamports, executable)``.

    Only base64 data is accepted; ``space``, when present, must equal the data length.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AccountDumpError(f"{path}: expected a readable JSON file, got {exc!r}") from exc
    account = doc.get("account") if isinstance(doc, dict) else None
    if not isinstance(account, dict):
        raise AccountDumpError(
            f"{path}: expected an object with an 'account' object, got {doc!r:.200}"
        )
    pubkey = _pubkey_field(path, "pubkey", doc.get("pubkey"))
    owner = _pubkey_field(path, "account.owner", account.get("owner"))
    raw = account.get("data")
    if not (
        isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str) and raw[1] == "base64"
    ):
        raise AccountDumpError(
            f'{path}: account.data: expected ["<base64>", "base64"], got {raw!r:.200}'
        )
    try:
        data = base64.b64decode(raw[0], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AccountDumpError(f"{path}: account.data: expected valid base64, got {exc}") from exc
    lamports = account.get("lamports")
    if type(lamports) is not int or lamports < 0:
        raise AccountDumpError(f"{path}: account.lamports: expected an int >= 0, got {lamports!r}")
    executable = account.get("executable", False)
    if type(executable) is not bool:
        raise AccountDumpError(f"{path}: account.executable: expected a bool, got {executable!r}")
    space = account.get("space")
    if space is not None and space != len(data):
        raise AccountDumpError(
            f"{path}: account.space: expected {len(data)} (the data length), got {space!r}"
        )
    return AccountDump(pubkey, owner, data, lamports, executable)
