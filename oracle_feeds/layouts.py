"""On-chain layouts of the oracle accounts we read: program ids, sizes, offsets, records.

All integers are little-endian. Offsets are from the start of the account data (they include
the 8-byte Anchor discriminator where the format has one). Sources: the Pyth oracle
``pc_price_t`` layout (legacy push, v2), Pyth ``pyth-solana-receiver-sdk`` ``PriceUpdateV2``
(Borsh), ``switchboard-on-demand`` ``PullFeedAccountData`` (``repr(C)``, zero-copy) and
Switchboard V2 ``AggregatorAccountData`` (``repr(packed)``, zero-copy), cross-checked against
real mainnet dumps in ``tests/fixtures/oracle-accounts``.

The ``*Account`` dataclasses below hold every field the parsers read and the encoders write;
the parsers turn them into an :class:`oracle_feeds.price.OraclePrice`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, Literal

from solders.pubkey import Pubkey

# ---------------------------------------------------------------- owner programs (mainnet)

PYTH_PUSH_PROGRAM_ID: Final = Pubkey.from_string("FsJ3A3u2vn5cTVofAjvy6y5kwABJAqYWpe4975bi2epH")
PYTH_PUSH_DEVNET_PROGRAM_ID: Final = Pubkey.from_string(
    "gSbePebfvPy7tRqimPoVecS2UsBvYv46ynrzWocc92s"
)
PYTH_RECEIVER_PROGRAM_ID: Final = Pubkey.from_string("rec5EKMGg6MxZYaMdyBfgwp4d5rB9T1VQH5pJv5LtFJ")
SWITCHBOARD_ON_DEMAND_PROGRAM_ID: Final = Pubkey.from_string(
    "SBondMDrcV3K4kxZR1HNVT7osZxAHVHgYXL5Ze1oMUv"
)
SWITCHBOARD_V2_PROGRAM_ID: Final = Pubkey.from_string("SW1TCH7qEPTdLsDHRgPuMQjbQxKdH2aBStViMFnt64f")

ZERO_KEY: Final = Pubkey.default()

# ---------------------------------------------------------------- Pyth legacy push (v2)

PYTH_MAGIC: Final = 0xA1B2C3D4
PYTH_VERSION: Final = 2
PYTH_ACCOUNT_TYPE_PRICE: Final = 3
PYTH_PRICE_TYPE_PRICE: Final = 1
PYTH_PUSH_SIZE: Final = 3312  # sizeof(pc_price_t) with 32 components
PYTH_HEADER_SIZE: Final = 16  # magic, version, type, size: u32 each
PYTH_COMP_OFFSET: Final = 240
PYTH_COMP_SIZE: Final = 96  # publisher (32) + agg info (32) + latest info (32)
PYTH_MAX_COMPONENTS: Final = 32
# Offsets in pc_price_t
PYTH_OFF_PRICE_TYPE: Final = 16
PYTH_OFF_EXPONENT: Final = 20
PYTH_OFF_NUM_COMPONENTS: Final = 24
PYTH_OFF_NUM_QT: Final = 28
PYTH_OFF_LAST_SLOT: Final = 32
PYTH_OFF_VALID_SLOT: Final = 40
PYTH_OFF_EMA_PRICE: Final = 48  # i64 val, numer, denom
PYTH_OFF_EMA_CONF: Final = 72  # i64 val, numer, denom
PYTH_OFF_TIMESTAMP: Final = 96
PYTH_OFF_MIN_PUB: Final = 104
PYTH_OFF_MESSAGE_SENT: Final = 105
PYTH_OFF_MAX_LATENCY: Final = 106
PYTH_OFF_PRODUCT: Final = 112
PYTH_OFF_NEXT: Final = 144
PYTH_OFF_PREV: Final = 176  # prev_slot u64, prev_price i64, prev_conf u64, prev_timestamp i64
PYTH_OFF_AGG: Final = 208  # price i64, conf u64, status u32, corp_act u32, pub_slot u64


class PythStatus(IntEnum):
    """Pyth legacy aggregate / component price status."""

    UNKNOWN = 0
    TRADING = 1
    HALTED = 2
    AUCTION = 3
    IGNORED = 4


@dataclass(frozen=True, slots=True, kw_only=True)
class PythPriceInfo:
    """``pc_price_info_t``: a price with its confidence, status and publish slot."""

    price: int = 0
    conf: int = 0
    status: PythStatus = PythStatus.UNKNOWN
    corp_act: int = 0
    pub_slot: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class PythComponent:
    """``pc_price_comp_t``: one publisher's contribution."""

    publisher: Pubkey
    agg: PythPriceInfo = field(default_factory=PythPriceInfo)
    latest: PythPriceInfo = field(default_factory=PythPriceInfo)


@dataclass(frozen=True, slots=True, kw_only=True)
class PythPushAccount:
    """The fields of a legacy Pyth v2 price account (``pc_price_t``)."""

    exponent: int
    agg: PythPriceInfo
    timestamp: int
    price_type: int = PYTH_PRICE_TYPE_PRICE
    num_qt: int = 0
    last_slot: int = 0
    valid_slot: int = 0
    ema_price: tuple[int, int, int] = (0, 0, 0)
    ema_conf: tuple[int, int, int] = (0, 0, 0)
    min_pub: int = 0
    message_sent: int = 0
    max_latency: int = 0
    product: Pubkey = ZERO_KEY
    next_price: Pubkey = ZERO_KEY
    prev_slot: int = 0
    prev_price: int = 0
    prev_conf: int = 0
    prev_timestamp: int = 0
    components: tuple[PythComponent, ...] = ()


# ---------------------------------------------------------------- Pyth pull PriceUpdateV2 (Borsh)

PYTH_PULL_DISCRIMINATOR: Final = bytes([34, 241, 35, 99, 157, 126, 244, 205])
PYTH_PULL_SIZE: Final = 134  # 8 + 32 + 2 (largest verification variant) + 84 + 8
PYTH_PULL_OFF_WRITE_AUTHORITY: Final = 8
PYTH_PULL_OFF_VERIFICATION: Final = 40
# The price message starts right after the verification level: 41 (Full) or 42 (Partial).
PYTH_PULL_MESSAGE_LEN: Final = (
    84  # feed_id 32, price, conf, expo, publish, prev_publish, ema, ema_conf
)


class VerificationLevel(IntEnum):
    """Borsh tag of ``VerificationLevel``: Partial carries a ``u8 num_signatures``."""

    PARTIAL = 0
    FULL = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class PythPullAccount:
    """The fields of a Pyth pull ``PriceUpdateV2`` account."""

    feed_id: bytes
    price: int
    conf: int
    exponent: int
    publish_time: int
    posted_slot: int
    prev_publish_time: int = 0
    ema_price: int = 0
    ema_conf: int = 0
    verification_level: VerificationLevel = VerificationLevel.FULL
    num_signatures: int = 0  # only stored for PARTIAL
    write_authority: Pubkey = ZERO_KEY


# ---------------------------------------------------------------- Switchboard On-Demand PullFeedAccountData

SB_ON_DEMAND_DISCRIMINATOR: Final = bytes([196, 27, 108, 196, 10, 215, 219, 40])
SB_ON_DEMAND_SIZE: Final = 3208  # 8 + 3200
SB_ON_DEMAND_DECIMALS: Final = 18  # values are i128 / 10**18
SB_SUBMISSIONS_OFFSET: Final = 8
SB_SUBMISSION_SIZE: Final = 64  # oracle 32, slot u64 +32, landed_at u64 +40, value i128 +48
SB_MAX_SUBMISSIONS: Final = 32
SB_OFF_AUTHORITY: Final = 2056
SB_OFF_QUEUE: Final = 2088
SB_OFF_FEED_HASH: Final = 2120
SB_OFF_INITIALIZED_AT: Final = 2152
SB_OFF_PERMISSIONS: Final = 2160
SB_OFF_MAX_VARIANCE: Final = 2168
SB_OFF_MIN_RESPONSES: Final = 2176
SB_OFF_NAME: Final = 2180  # [u8; 32]
SB_OFF_HISTORICAL_RESULT_IDX: Final = 2214
SB_OFF_MIN_SAMPLE_SIZE: Final = 2215
SB_OFF_LAST_UPDATE_TIMESTAMP: Final = 2216
SB_OFF_LUT_SLOT: Final = 2224
SB_OFF_RESULT: Final = 2264  # value, std_dev, mean, range, min, max: i128 each
SB_OFF_NUM_SAMPLES: Final = 2360
SB_OFF_SUBMISSION_IDX: Final = 2361
SB_OFF_RESULT_SLOT: Final = 2368  # slot, min_slot, max_slot: u64 each
SB_OFF_MAX_STALENESS: Final = 2392


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchboardSubmission:
    """One ``OracleSubmission`` (value is an i128 at 18 decimals)."""

    oracle: Pubkey
    slot: int
    landed_at: int
    value: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchboardOnDemandAccount:
    """The fields of a Switchboard On-Demand ``PullFeedAccountData`` we read or write."""

    value: int  # result.value, i128 at 18 decimals
    std_dev: int
    slot: int  # result.slot: 0 means "no result yet"
    mean: int = 0
    value_range: int = 0
    min_value: int = 0
    max_value: int = 0
    num_samples: int = 1
    submission_idx: int = 0
    min_slot: int = 0
    max_slot: int = 0
    last_update_timestamp: int = 0
    lut_slot: int = 0
    initialized_at: int = 0
    permissions: int = 0
    max_variance: int = 0
    min_responses: int = 1
    min_sample_size: int = 1
    historical_result_idx: int = 0
    max_staleness: int = 0
    name: bytes = b""
    authority: Pubkey = ZERO_KEY
    queue: Pubkey = ZERO_KEY
    feed_hash: bytes = bytes(32)
    submissions: tuple[SwitchboardSubmission, ...] = ()


# ---------------------------------------------------------------- Switchboard V2 AggregatorAccountData

SB_V2_DISCRIMINATOR: Final = bytes.fromhex(
    "d9e64165c9a21b7d"
)  # sha256("account:AggregatorAccountData")[:8]
SB_V2_SIZE: Final = 3851
SB_V2_OFF_NAME: Final = 8
SB_V2_OFF_MIN_ORACLE_RESULTS: Final = 236
SB_V2_OFF_ROUND: Final = 341  # latest_confirmed_round
SB_V2_OFF_NUM_SUCCESS: Final = 341
SB_V2_OFF_NUM_ERROR: Final = 345
SB_V2_OFF_IS_CLOSED: Final = 349
SB_V2_OFF_ROUND_OPEN_SLOT: Final = 350
SB_V2_OFF_ROUND_OPEN_TIMESTAMP: Final = 358
SB_V2_OFF_RESULT: Final = 366  # SwitchboardDecimal: mantissa i128, scale u32 (20 bytes packed)
SB_V2_OFF_STD_DEVIATION: Final = 386


@dataclass(frozen=True, slots=True, kw_only=True)
class SwitchboardV2Account:
    """The fields of a Switchboard V2 aggregator's latest confirmed round we read or write."""

    result_mantissa: int
    result_scale: int
    round_open_slot: int
    round_open_timestamp: int
    num_success: int = 1
    num_error: int = 0
    is_closed: bool = False
    std_mantissa: int = 0
    std_scale: int = 0
    min_oracle_results: int = 1
    name: bytes = b""


# ---------------------------------------------------------------- field tables

# (record field, offset, on-chain type) of each record's plain integer and key fields: the one
# layout the encoders write from and the parsers read with. Fields with checks or shapes of
# their own (enums, bools, byte strings, arrays, nested records) stay in the code of each.
FieldType = Literal["u8", "u32", "i32", "u64", "i64", "i128", "key"]
FieldTable = tuple[tuple[str, int, FieldType], ...]

PYTH_PUSH_FIELDS: Final[FieldTable] = (
    ("price_type", PYTH_OFF_PRICE_TYPE, "u32"),
    ("exponent", PYTH_OFF_EXPONENT, "i32"),
    ("num_qt", PYTH_OFF_NUM_QT, "u32"),
    ("last_slot", PYTH_OFF_LAST_SLOT, "u64"),
    ("valid_slot", PYTH_OFF_VALID_SLOT, "u64"),
    ("timestamp", PYTH_OFF_TIMESTAMP, "i64"),
    ("min_pub", PYTH_OFF_MIN_PUB, "u8"),
    ("message_sent", PYTH_OFF_MESSAGE_SENT, "u8"),
    ("max_latency", PYTH_OFF_MAX_LATENCY, "u8"),
    ("product", PYTH_OFF_PRODUCT, "key"),
    ("next_price", PYTH_OFF_NEXT, "key"),
    ("prev_slot", PYTH_OFF_PREV, "u64"),
    ("prev_price", PYTH_OFF_PREV + 8, "i64"),
    ("prev_conf", PYTH_OFF_PREV + 16, "u64"),
    ("prev_timestamp", PYTH_OFF_PREV + 24, "i64"),
)
# Offsets within a pc_price_info_t; its status (u32 at +16) is an enum.
PYTH_PRICE_INFO_FIELDS: Final[FieldTable] = (
    ("price", 0, "i64"),
    ("conf", 8, "u64"),
    ("corp_act", 20, "u32"),
    ("pub_slot", 24, "u64"),
)
# Offsets within the price message, which starts after the verification level (41 or 42);
# feed_id (32 bytes) is at +0.
PYTH_PULL_MESSAGE_FIELDS: Final[FieldTable] = (
    ("price", 32, "i64"),
    ("conf", 40, "u64"),
    ("exponent", 48, "i32"),
    ("publish_time", 52, "i64"),
    ("prev_publish_time", 60, "i64"),
    ("ema_price", 68, "i64"),
    ("ema_conf", 76, "u64"),
    ("posted_slot", 84, "u64"),
)
SB_ON_DEMAND_FIELDS: Final[FieldTable] = (
    ("authority", SB_OFF_AUTHORITY, "key"),
    ("queue", SB_OFF_QUEUE, "key"),
    ("initialized_at", SB_OFF_INITIALIZED_AT, "i64"),
    ("permissions", SB_OFF_PERMISSIONS, "u64"),
    ("max_variance", SB_OFF_MAX_VARIANCE, "u64"),
    ("min_responses", SB_OFF_MIN_RESPONSES, "u32"),
    ("historical_result_idx", SB_OFF_HISTORICAL_RESULT_IDX, "u8"),
    ("min_sample_size", SB_OFF_MIN_SAMPLE_SIZE, "u8"),
    ("last_update_timestamp", SB_OFF_LAST_UPDATE_TIMESTAMP, "i64"),
    ("lut_slot", SB_OFF_LUT_SLOT, "u64"),
    ("value", SB_OFF_RESULT, "i128"),
    ("std_dev", SB_OFF_RESULT + 16, "i128"),
    ("mean", SB_OFF_RESULT + 32, "i128"),
    ("value_range", SB_OFF_RESULT + 48, "i128"),
    ("min_value", SB_OFF_RESULT + 64, "i128"),
    ("max_value", SB_OFF_RESULT + 80, "i128"),
    ("num_samples", SB_OFF_NUM_SAMPLES, "u8"),
    ("submission_idx", SB_OFF_SUBMISSION_IDX, "u8"),
    ("slot", SB_OFF_RESULT_SLOT, "u64"),
    ("min_slot", SB_OFF_RESULT_SLOT + 8, "u64"),
    ("max_slot", SB_OFF_RESULT_SLOT + 16, "u64"),
    ("max_staleness", SB_OFF_MAX_STALENESS, "u32"),
)
# Offsets within one OracleSubmission.
SB_SUBMISSION_FIELDS: Final[FieldTable] = (
    ("oracle", 0, "key"),
    ("slot", 32, "u64"),
    ("landed_at", 40, "u64"),
    ("value", 48, "i128"),
)
SB_V2_FIELDS: Final[FieldTable] = (
    ("min_oracle_results", SB_V2_OFF_MIN_ORACLE_RESULTS, "u32"),
    ("num_success", SB_V2_OFF_NUM_SUCCESS, "u32"),
    ("num_error", SB_V2_OFF_NUM_ERROR, "u32"),
    ("round_open_slot", SB_V2_OFF_ROUND_OPEN_SLOT, "u64"),
    ("round_open_timestamp", SB_V2_OFF_ROUND_OPEN_TIMESTAMP, "i64"),
    ("result_mantissa", SB_V2_OFF_RESULT, "i128"),
    ("result_scale", SB_V2_OFF_RESULT + 16, "u32"),
    ("std_mantissa", SB_V2_OFF_STD_DEVIATION, "i128"),
    ("std_scale", SB_V2_OFF_STD_DEVIATION + 16, "u32"),
)
