"""The one description of the on-chain clearing program: instructions, accounts, types, errors
and events. ``settlement.gen_idl`` turns it into the Anchor IDL (``idl/perpdex_clearing.json``,
legacy format for anchorpy 0.21) and the C header the program is compiled against
(``settlement/program/include/perpdex_clearing_idl.h``), so the two cannot disagree.

Layout rules (checked by :func:`check_spec`, which the generator runs first):

* Accounts are Borsh structs behind an 8-byte discriminator, ``sha256("account:" + Name)[:8]``;
  the C header declares them packed and static-asserts every offset. Every account field sits
  at an offset that is a multiple of its own alignment (explicit ``padding*`` fields fill the
  gaps), so the program reads them with aligned loads; ``reserved`` tails leave room for the
  governance parameters of issue 8 without a migration.
* Instruction data is ``sha256("global:" + snake_name)[:8]`` followed by the Borsh arguments;
  a ``vec`` may only be the last argument (the C side reads ``u32`` length then elements).
* Units follow ``exchange/core/units.py``: prices at ``PRICE_PRECISION``, base at
  ``BASE_PRECISION``, quote at ``QUOTE_PRECISION``, ratios in ppm, funding rates at 1e9, the
  cumulative funding index in quote x 1e9 per whole base unit (an ``i128``).
* Error codes start at 6000 (Anchor's custom range) and never get renumbered: append only.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Final

# ---------------------------------------------------------------- type references

PRIMITIVE_SIZES: Final[dict[str, int]] = {
    "u8": 1,
    "i8": 1,
    "bool": 1,
    "u16": 2,
    "i16": 2,
    "u32": 4,
    "i32": 4,
    "u64": 8,
    "i64": 8,
    "u128": 16,
    "i128": 16,
    "publicKey": 32,
}
#: Alignment the program relies on for aligned loads (a public key is a byte array).
PRIMITIVE_ALIGN: Final[dict[str, int]] = {
    **{name: size for name, size in PRIMITIVE_SIZES.items() if name != "publicKey"},
    "u128": 8,
    "i128": 8,
    "publicKey": 1,
}


@dataclass(frozen=True, slots=True)
class Array:
    """``[element; length]``: fixed-size array."""

    element: TypeRef
    length: int


@dataclass(frozen=True, slots=True)
class Vec:
    """Borsh ``Vec<element>``: ``u32`` length, then the elements (last instruction arg only)."""

    element: TypeRef


@dataclass(frozen=True, slots=True)
class Defined:
    """A struct from :data:`TYPES`, by name."""

    name: str


TypeRef = str | Array | Vec | Defined


@dataclass(frozen=True, slots=True)
class Field:
    """One named field; ``doc`` states its unit (or meaning)."""

    name: str
    type: TypeRef
    doc: str


@dataclass(frozen=True, slots=True)
class Struct:
    name: str
    fields: tuple[Field, ...]
    doc: str


@dataclass(frozen=True, slots=True)
class AccountSpec:
    """A program-owned account: its struct, and the seeds of its PDA."""

    name: str
    fields: tuple[Field, ...]
    doc: str
    seeds: str  # human-readable, e.g. '"market", index as u16 little-endian'
    seed_prefix: str  # the constant first seed


@dataclass(frozen=True, slots=True)
class AccountMeta:
    """One account an instruction takes, in order."""

    name: str
    writable: bool
    signer: bool
    doc: str


@dataclass(frozen=True, slots=True)
class Instruction:
    name: str  # snake_case
    accounts: tuple[AccountMeta, ...]
    args: tuple[Field, ...]
    doc: str
    remaining: str = ""  # what follows the named accounts, if anything


@dataclass(frozen=True, slots=True)
class ErrorSpec:
    code: int
    name: str  # CamelCase
    msg: str


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    fields: tuple[Field, ...]
    doc: str


@dataclass(frozen=True, slots=True)
class Constant:
    name: str  # UPPER_SNAKE
    value: int
    doc: str


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    name: str
    version: str
    constants: tuple[Constant, ...]
    types: tuple[Struct, ...]
    accounts: tuple[AccountSpec, ...]
    instructions: tuple[Instruction, ...]
    errors: tuple[ErrorSpec, ...]
    events: tuple[Event, ...] = field(default=())


def f(name: str, type_: TypeRef, doc: str) -> Field:
    return Field(name, type_, doc)


def acc(name: str, *, mut: bool = False, signer: bool = False, doc: str = "") -> AccountMeta:
    return AccountMeta(name, mut, signer, doc)


KEY = "publicKey"

# ---------------------------------------------------------------- constants

MAX_MARGIN_TIERS: Final = 4
MAX_POSITIONS: Final = 8
MAX_FILLS_PER_BATCH: Final = 64
MAX_COUNCIL: Final = 7
#: (Market, oracle) pairs one liquidate may read: every market either account holds.
MAX_LIQUIDATION_MARKETS: Final = 2 * MAX_POSITIONS
#: The engine's default liquidation split and sizing buffer (perp.params.PerpMarketParams);
#: each Market carries its own (liquidator_share_ppm, liquidation_buffer_ppm).
LIQUIDATOR_SHARE_PPM: Final = 500_000
LIQUIDATION_BUFFER_PPM: Final = 10_000
#: Moves one settle_liquidation may carry, and the Markets it may chain on.
MAX_LIQUIDATION_MOVES: Final = 32
MAX_LIQUIDATION_BATCH_MARKETS: Final = MAX_POSITIONS
#: settle_liquidation move kinds (LiquidationMove.kind).
LIQUIDATION_MOVE_SLICE: Final = 0
LIQUIDATION_MOVE_ADL: Final = 1
LIQUIDATION_MOVE_PAYMENT: Final = 2
#: Bounds of Exchange.escape_hatch_slots (~1 minute .. ~7 days at 400 ms slots).
MIN_ESCAPE_HATCH_SLOTS: Final = 150
MAX_ESCAPE_HATCH_SLOTS: Final = 1_512_000
#: First seed of the PDA that owns the vault and insurance-fund token accounts.
VAULT_AUTHORITY_SEED: Final = "vault"

CONSTANTS: Final = (
    Constant("MAX_MARGIN_TIERS", MAX_MARGIN_TIERS, "margin tiers a market holds"),
    Constant("MAX_POSITIONS", MAX_POSITIONS, "position slots in one User account"),
    Constant("MAX_FILLS_PER_BATCH", MAX_FILLS_PER_BATCH, "fills one settle_fills may carry"),
    Constant("MAX_FEE_PPM", 10_000, "hard bound on maker/taker fee rates (1 %)"),
    Constant("RATIO_PRECISION", 10**6, "ppm"),
    Constant("BASE_PRECISION", 10**9, "base nano-units per whole base unit"),
    Constant("PRICE_PRECISION", 10**6, "quote micro-units per whole base unit"),
    Constant("FUNDING_RATE_PRECISION", 10**9, "1e9 == 100 % per funding interval"),
    Constant("MARKET_STATUS_ACTIVE", 0, "market status: all orders"),
    Constant("MARKET_STATUS_POST_ONLY", 1, "market status: resting orders only"),
    Constant("MARKET_STATUS_REDUCE_ONLY", 2, "market status: reducing orders only"),
    Constant("MARKET_STATUS_CANCEL_ONLY", 3, "market status: cancels only"),
    Constant("MARKET_STATUS_HALTED", 4, "market status: nothing"),
    Constant("ORACLE_SOURCE_PYTH_PULL", 2, "oracle_source: Pyth PriceUpdateV2 (Full only)"),
    Constant("ORACLE_SOURCE_SWITCHBOARD_ON_DEMAND", 3, "oracle_source: Switchboard pull feed"),
    Constant("TAKER_SIDE_BUY", 0, "Fill.taker_side: the taker bought"),
    Constant("TAKER_SIDE_SELL", 1, "Fill.taker_side: the taker sold"),
    Constant("MAX_COUNCIL", MAX_COUNCIL, "council keys Governance holds (approvals: a u8 mask)"),
    Constant("GLOBAL_TARGET", 0xFFFF, "Proposal.market_index of a global change"),
    Constant("PROPOSAL_PENDING", 0, "Proposal.status: awaiting approvals / the timelock"),
    Constant("PROPOSAL_EXECUTED", 1, "Proposal.status: applied (exactly once)"),
    Constant("PROPOSAL_CANCELLED", 2, "Proposal.status: cancelled"),
    Constant("MIN_TIMELOCK_SECONDS", 3_600, "hard bound: timelock >= 1 hour"),
    Constant("MAX_TIMELOCK_SECONDS", 30 * 86_400, "hard bound: timelock <= 30 days"),
    Constant("MAX_LEVERAGE", 100, "hard bound: max_leverage and max_leverage_cap <= 100"),
    Constant("MAX_LIQUIDATION_FEE_PPM", 100_000, "hard bound: liquidation fee <= 10 %"),
    Constant("MAX_ORACLE_AGE_SLOTS", 9_000, "hard bound: oracle_max_age_slots (~1 hour)"),
    Constant("MAX_ORACLE_AGE_SECONDS", 3_600, "hard bound: oracle_max_age_seconds"),
    Constant("MAX_MARGIN_FALL_PPM", 200_000, "rate limit: a margin ratio falls <= 20 % per change"),
    Constant(
        "MAX_LIQUIDATION_MARKETS", MAX_LIQUIDATION_MARKETS, "(Market, oracle) pairs of a liquidate"
    ),
    Constant("LIQUIDATOR_SHARE_PPM", LIQUIDATOR_SHARE_PPM, "liquidator's share of the fee, ppm"),
    Constant(
        "LIQUIDATION_BUFFER_PPM",
        LIQUIDATION_BUFFER_PPM,
        "sizing target: maintenance + this x notional",
    ),
    Constant(
        "MAX_LIQUIDATION_MOVES", MAX_LIQUIDATION_MOVES, "moves one settle_liquidation carries"
    ),
    Constant(
        "MAX_LIQUIDATION_BATCH_MARKETS",
        MAX_LIQUIDATION_BATCH_MARKETS,
        "Markets one settle_liquidation chains on",
    ),
    Constant("LIQUIDATION_MOVE_SLICE", LIQUIDATION_MOVE_SLICE, "move: a slice to the liquidator"),
    Constant("LIQUIDATION_MOVE_ADL", LIQUIDATION_MOVE_ADL, "move: an ADL fill at bankruptcy price"),
    Constant(
        "LIQUIDATION_MOVE_PAYMENT", LIQUIDATION_MOVE_PAYMENT, "move: insurance fund -> account"
    ),
    Constant("MIN_ESCAPE_HATCH_SLOTS", MIN_ESCAPE_HATCH_SLOTS, "hard bound: escape_hatch_slots"),
    Constant("MAX_ESCAPE_HATCH_SLOTS", MAX_ESCAPE_HATCH_SLOTS, "hard bound: escape_hatch_slots"),
)

# ---------------------------------------------------------------- types

TYPES: Final = (
    Struct(
        "MarginTier",
        (
            f("up_to_notional_quote", "u64", "upper bound of the bracket, quote (last: u64 max)"),
            f("initial_ppm", "u32", "initial margin ratio of the bracket, ppm"),
            f("maintenance_ppm", "u32", "maintenance margin ratio of the bracket, ppm"),
        ),
        "One marginal bracket of a margin schedule (docs/PROTOCOL.md, Margin).",
    ),
    Struct(
        "Position",
        (
            f("funding_snapshot", "i128", "cumulative funding index at the last settlement"),
            f("base", "i64", "signed position, BASE_PRECISION (long > 0)"),
            f("entry_quote", "i64", "signed cost basis of the open base, quote (long < 0)"),
            f("realized_pnl_quote", "i64", "cumulative realised PnL, quote (a statistic)"),
            f("market_index", "u16", "market of this slot"),
            f("in_use", "u8", "1 when the slot holds a market, 0 when free"),
            f("padding", Array("u8", 5), "zero"),
            f(
                "funding_carry_numerator",
                "u64",
                "funding paid beyond the exact amounts, over 1e18 (< 1e18; docs/PROTOCOL.md)",
            ),
        ),
        "One market's position inside a User account (docs/PROTOCOL.md, Positions).",
    ),
    Struct(
        "Fill",
        (
            f("maker", "u8", "index of the maker's User among the remaining accounts"),
            f("taker", "u8", "index of the taker's User among the remaining accounts"),
            f("taker_side", "u8", "TAKER_SIDE_BUY or TAKER_SIDE_SELL"),
            f("price_ticks", "u64", "fill price in ticks of the market (maker's price)"),
            f("num_base_lots", "u64", "fill size in lots of the market"),
        ),
        "One fill of an engine batch (Borsh: 19 bytes, unaligned inside the args).",
    ),
    Struct(
        "LiquidationMove",
        (
            f("kind", "u8", "LIQUIDATION_MOVE_SLICE, _ADL or _PAYMENT"),
            f("market", "u8", "index of its Market among the instruction's Markets (payment: 0)"),
            f("account", "u8", "index of the liquidated / bankrupt User among the Users"),
            f("counterparty", "u8", "the liquidator's / ADL counterparty's User (payment: 0)"),
            f("base_delta", "i64", "the account's position change (counterparty: -base_delta)"),
            f(
                "quote_delta",
                "i64",
                "quote to the account (counterparty: -quote_delta; payment: from the fund)",
            ),
            f("price", "u64", "slice: oracle price; ADL: bankruptcy price (PRICE_PRECISION)"),
            f("fee_quote", "u64", "slice: liquidation fee paid by the account (else 0)"),
            f("liquidator_fee_quote", "u64", "slice: its share to the liquidator (else 0)"),
        ),
        "One engine liquidation event (LiquidationExecuted, PositionDeleveraged or "
        "InsuranceFundPaidBadDebt) of a settle_liquidation batch (Borsh: 44 bytes, unaligned).",
    ),
    Struct(
        "MarketParams",
        (
            f("tick_size", "u64", "price units (PRICE_PRECISION) per tick"),
            f("lot_size", "u64", "base units (BASE_PRECISION) per lot"),
            f("funding_cap_rate", "u64", "|rate| cap per interval, FUNDING_RATE_PRECISION"),
            f("oracle_max_age_slots", "u64", "oracle older than this many slots is stale"),
            f("oracle_max_age_seconds", "u64", "oracle older than this many seconds is stale"),
            f("maker_fee_ppm", "i32", "maker fee, ppm (negative: rebate)"),
            f("taker_fee_ppm", "u32", "taker fee, ppm"),
            f("insurance_share_ppm", "u32", "share of every fee for the insurance fund, ppm"),
            f("oracle_max_confidence_ppm", "u32", "confidence / price above this is refused"),
            f("oracle_feed_id", Array("u8", 32), "Pyth feed id (zero for Switchboard)"),
            f("index", "u16", "market index (== Exchange.num_markets at creation)"),
            f("oracle_source", "u8", "ORACLE_SOURCE_*"),
            f("num_margin_tiers", "u8", "1..MAX_MARGIN_TIERS tiers in use"),
            f("margin_tiers", Array(Defined("MarginTier"), MAX_MARGIN_TIERS), "schedule"),
            f("liquidation_fee_ppm", "u32", "fee on liquidated notional, ppm; < first mm, <= 1e5"),
            f("liquidator_share_ppm", "u32", "liquidator's share of that fee, ppm; <= 1e6"),
            f("liquidation_buffer_ppm", "u32", "sizing target: maintenance + this, ppm; <= 1e5"),
        ),
        "Risk and trading parameters of a new market.",
    ),
    Struct(
        "RiskParams",
        (
            f("funding_cap_rate", "u64", "|rate| cap per interval, FUNDING_RATE_PRECISION"),
            f("oracle_max_age_slots", "u64", "oracle older than this many slots is stale"),
            f("oracle_max_age_seconds", "u64", "oracle older than this many seconds is stale"),
            f("max_position_base", "u64", "largest |position| of one account, BASE_PRECISION"),
            f("max_open_interest_base", "u64", "largest open interest, BASE_PRECISION"),
            f("maker_fee_ppm", "i32", "maker fee, ppm (negative: rebate)"),
            f("taker_fee_ppm", "u32", "taker fee, ppm"),
            f("insurance_share_ppm", "u32", "share of every fee for the insurance fund, ppm"),
            f("oracle_max_confidence_ppm", "u32", "confidence / price above this is refused"),
            f("liquidation_fee_ppm", "u32", "fee on liquidated notional, ppm"),
            f("max_leverage", "u32", "largest leverage an order may open at, 1..100"),
            f("num_margin_tiers", "u8", "tiers in use (unchanged by governance)"),
            f("padding", Array("u8", 7), "zero"),
            f("margin_tiers", Array(Defined("MarginTier"), MAX_MARGIN_TIERS), "schedule"),
            f("liquidator_share_ppm", "u32", "liquidator's share of the liquidation fee; <= 1e6"),
            f("liquidation_buffer_ppm", "u32", "sizing target: maintenance + this, ppm; <= 1e5"),
        ),
        "The governable risk parameters of one market (a proposal's new values).",
    ),
    Struct(
        "GlobalParams",
        (
            f("timelock_seconds", "u64", "delay from proposal to earliest execution, seconds"),
            f("max_leverage_cap", "u32", "ceiling of every market's max_leverage, 1..100"),
            f("padding", Array("u8", 4), "zero"),
            f(
                "escape_hatch_slots",
                "u64",
                "Exchange.escape_hatch_slots: operator inactivity (slots) opening wallet withdraw",
            ),
        ),
        "The governable exchange-wide parameters.",
    ),
)

# ---------------------------------------------------------------- accounts

ACCOUNTS: Final = (
    AccountSpec(
        "Exchange",
        (
            f("authority", KEY, "governance authority: creates markets, sets status"),
            f("operator", KEY, "engine key: settles fills, updates funding"),
            f("collateral_mint", KEY, "SPL mint of the collateral (USDC, 6 decimals)"),
            f("vault", KEY, "token account holding all collateral; owner: vault authority PDA"),
            f("insurance_vault", KEY, "insurance-fund token account; owner: vault authority"),
            f("fee_pool_quote", "u64", "venue fees held in the vault, quote"),
            f("insurance_fund_quote", "u64", "insurance fund's claim on the vault, quote"),
            f("net_deposits_quote", "u64", "deposits minus withdrawals, quote"),
            f("num_markets", "u16", "markets created (next market index)"),
            f("bump", "u8", "bump of this PDA"),
            f("vault_authority_bump", "u8", "bump of the vault authority PDA"),
            f("padding", Array("u8", 4), "zero"),
            f("address", KEY, "this account's own address (the PDA, verified at creation)"),
            f(
                "last_withdrawal_sequence",
                "u64",
                "engine seq of the last process_withdrawal applied (0: none)",
            ),
            f(
                "last_liquidation_sequence",
                "u64",
                "engine seq of the last settle_liquidation batch applied (0: none)",
            ),
            f(
                "operator_active_slot",
                "u64",
                "Clock slot of the operator's last settle_fills / settle_liquidation / "
                "process_withdrawal (initialize: its slot)",
            ),
            f(
                "escape_hatch_slots",
                "u64",
                "wallet withdraw opens once the operator has been inactive this many slots",
            ),
        ),
        "The singleton root: keys, vaults and global balances.",
        seeds='"exchange"',
        seed_prefix="exchange",
    ),
    AccountSpec(
        "Market",
        (
            f("exchange", KEY, "the Exchange PDA"),
            f("oracle", KEY, "oracle account read by withdraw"),
            f("oracle_feed_id", Array("u8", 32), "Pyth feed id the oracle must carry"),
            f("index", "u16", "market index"),
            f("status", "u8", "MARKET_STATUS_*"),
            f("oracle_source", "u8", "ORACLE_SOURCE_*"),
            f("bump", "u8", "bump of this PDA"),
            f("num_margin_tiers", "u8", "tiers in use"),
            f("padding", Array("u8", 2), "zero"),
            f("tick_size", "u64", "price units per tick"),
            f("lot_size", "u64", "base units per lot"),
            f("maker_fee_ppm", "i32", "maker fee, ppm (negative: rebate)"),
            f("taker_fee_ppm", "u32", "taker fee, ppm"),
            f("insurance_share_ppm", "u32", "insurance share of fees, ppm"),
            f("oracle_max_confidence_ppm", "u32", "confidence guard, ppm of price"),
            f("oracle_max_age_slots", "u64", "staleness guard, slots"),
            f("oracle_max_age_seconds", "u64", "staleness guard, seconds"),
            f("funding_cap_rate", "u64", "|rate| cap per interval, FUNDING_RATE_PRECISION"),
            f("last_settled_sequence", "u64", "sequence of the last settled fill batch"),
            f("last_funding_sequence", "u64", "sequence of the last funding update"),
            f("open_interest_base", "u64", "sum of long positions, BASE_PRECISION"),
            f("funding_pool_quote", "i64", "funding paid in minus paid out minus swept, quote"),
            f("funding_surplus_numerator", "u64", "rounding surplus over BASE x 1e9, < 1e18"),
            f("cumulative_funding", "i128", "funding index, quote x 1e9 per whole base unit"),
            f("margin_tiers", Array(Defined("MarginTier"), MAX_MARGIN_TIERS), "schedule"),
            f("address", KEY, "this account's own address (the PDA, verified at creation)"),
            f("max_position_base", "u64", "largest |position| of one account (engine-enforced)"),
            f("max_open_interest_base", "u64", "largest open interest (engine-enforced)"),
            f("liquidation_fee_ppm", "u32", "fee on liquidated notional, ppm"),
            f("max_leverage", "u32", "largest leverage an order may open at (engine-enforced)"),
            f("liquidator_share_ppm", "u32", "liquidator's share of the liquidation fee, ppm"),
            f("liquidation_buffer_ppm", "u32", "liquidation sizing buffer over maintenance, ppm"),
        ),
        "One perpetual market: parameters, funding index, settlement progress.",
        seeds='"market", index as u16 little-endian',
        seed_prefix="market",
    ),
    AccountSpec(
        "User",
        (
            f("owner", KEY, "wallet that deposits and withdraws"),
            f("collateral_quote", "i64", "cash, quote (realised PnL, fees and funding applied)"),
            f("bump", "u8", "bump of this PDA"),
            f("padding", Array("u8", 7), "zero"),
            f("positions", Array(Defined("Position"), MAX_POSITIONS), "per-market positions"),
            f("address", KEY, "this account's own address (the PDA, verified at creation)"),
        ),
        "One trader's collateral and positions (cross margin).",
        seeds='"user", owner',
        seed_prefix="user",
    ),
    AccountSpec(
        "Governance",
        (
            f("exchange", KEY, "the Exchange PDA"),
            f("guardian", KEY, "may only make markets safer, without a timelock"),
            f("council", Array(KEY, MAX_COUNCIL), "council keys (first num_council in use)"),
            f("address", KEY, "this account's own address (the PDA, verified at creation)"),
            f("next_proposal_id", "u64", "id of the next proposal (its PDA seed)"),
            f("params", Defined("GlobalParams"), "exchange-wide governable parameters"),
            f("num_council", "u8", "council keys in use, 1..MAX_COUNCIL"),
            f("threshold", "u8", "approvals an execution needs, 1..num_council"),
            f("bump", "u8", "bump of this PDA"),
            f("padding", Array("u8", 5), "zero"),
            f("reserved", Array("u8", 16), "zero"),
        ),
        "The council (N keys, threshold M), the guardian and the global parameters.",
        seeds='"governance"',
        seed_prefix="governance",
    ),
    AccountSpec(
        "Proposal",
        (
            f("proposer", KEY, "council member who proposed (and approved) it"),
            f("address", KEY, "this account's own address (the PDA, verified at creation)"),
            f("id", "u64", "Governance.next_proposal_id at creation"),
            f("created_unix_s", "i64", "Clock unix_timestamp at proposal"),
            f("earliest_execution_unix_s", "i64", "created + Governance timelock"),
            f("market_index", "u16", "market changed, or GLOBAL_TARGET"),
            f("status", "u8", "PROPOSAL_*"),
            f("approvals_mask", "u8", "bit i: council[i] approved"),
            f("bump", "u8", "bump of this PDA"),
            f("padding", Array("u8", 3), "zero"),
            f("risk", Defined("RiskParams"), "new market parameters (zero for a global change)"),
            f("global_params", Defined("GlobalParams"), "new global parameters (zero otherwise)"),
        ),
        "One parameter change: approvals, timelock, outcome.",
        seeds='"proposal", id as u64 little-endian',
        seed_prefix="proposal",
    ),
)

# ---------------------------------------------------------------- instructions

SYSTEM = acc("system_program", doc="the System program (creates the PDA)")
TOKEN = acc("token_program", doc="the SPL Token program")

INSTRUCTIONS: Final = (
    Instruction(
        "initialize",
        (
            acc("exchange", mut=True, doc="Exchange PDA, created here"),
            acc("authority", mut=True, signer=True, doc="governance authority; pays rent"),
            acc("collateral_mint", doc="SPL mint of the collateral"),
            acc("vault", doc="token account of the mint owned by the vault authority"),
            acc("insurance_vault", doc="token account of the mint owned by the vault authority"),
            acc("vault_authority", doc='PDA ["vault"] that owns both vaults'),
            SYSTEM,
        ),
        (
            f("operator", KEY, "engine key allowed to settle and update funding"),
            f("bump", "u8", "bump of the Exchange PDA"),
            f("vault_authority_bump", "u8", "bump of the vault authority PDA"),
            f(
                "escape_hatch_slots",
                "u64",
                "operator inactivity (slots) after which wallet withdraw opens; "
                "MIN_ESCAPE_HATCH_SLOTS..MAX_ESCAPE_HATCH_SLOTS",
            ),
        ),
        "Create the Exchange once.",
    ),
    Instruction(
        "create_market",
        (
            acc("exchange", mut=True, doc="Exchange PDA"),
            acc("market", mut=True, doc='Market PDA ["market", index], created here'),
            acc("authority", mut=True, signer=True, doc="Exchange.authority; pays rent"),
            acc("oracle", doc="oracle account of the market"),
            SYSTEM,
        ),
        (
            f("params", Defined("MarketParams"), "the market's parameters"),
            f("bump", "u8", "bump of the Market PDA"),
        ),
        "Create the next market (index == Exchange.num_markets).",
    ),
    Instruction(
        "deposit",
        (
            acc("exchange", mut=True, doc="Exchange PDA"),
            acc("user", mut=True, doc='User PDA ["user", owner]; created on first deposit'),
            acc("owner", mut=True, signer=True, doc="the user's wallet; pays rent"),
            acc("owner_token", mut=True, doc="owner's token account of the collateral mint"),
            acc("vault", mut=True, doc="Exchange.vault"),
            TOKEN,
            SYSTEM,
        ),
        (
            f("amount_quote", "u64", "collateral to move in, quote"),
            f("user_bump", "u8", "bump of the User PDA"),
        ),
        "Move collateral from the owner's token account into the vault.",
    ),
    Instruction(
        "withdraw",
        (
            acc("exchange", mut=True, doc="Exchange PDA"),
            acc("user", mut=True, doc="User PDA of the owner"),
            acc("owner", signer=True, doc="User.owner"),
            acc("owner_token", mut=True, doc="destination token account"),
            acc("vault", mut=True, doc="Exchange.vault"),
            acc("vault_authority", doc="vault authority PDA (signs the transfer)"),
            TOKEN,
        ),
        (f("amount_quote", "u64", "collateral to move out, quote"),),
        "Escape hatch: move free collateral out after settling funding and checking initial "
        "margin at on-chain oracle prices; only once the operator has been inactive for "
        "Exchange.escape_hatch_slots (otherwise withdraw through the exchange).",
        remaining="for each used position slot, in slot order: its Market (writable), its oracle",
    ),
    Instruction(
        "settle_fills",
        (
            acc("exchange", mut=True, doc="Exchange PDA (fee pool, insurance fund)"),
            acc("market", mut=True, doc="the market of every fill"),
            acc("operator", signer=True, doc="Exchange.operator"),
        ),
        (
            f(
                "previous_sequence",
                "u64",
                "seq of the market's fill before the batch; == Market.last_settled_sequence",
            ),
            f("first_sequence", "u64", "seq of the batch's first fill; > previous_sequence"),
            f("sequence", "u64", "seq of the batch's last fill; >= first_sequence"),
            f("fills", Vec(Defined("Fill")), "1..MAX_FILLS_PER_BATCH fills"),
        ),
        "Apply an engine batch of fills exactly once: funding, positions, fees. The batch "
        "must continue the settled chain (previous_sequence == Market.last_settled_sequence), "
        "so two batches built from one progress point can never both land.",
        remaining="the User accounts the fills index (writable)",
    ),
    Instruction(
        "update_funding",
        (
            acc("exchange", doc="Exchange PDA"),
            acc("market", mut=True, doc="the market"),
            acc("operator", signer=True, doc="Exchange.operator"),
        ),
        (
            f("sequence", "u64", "engine sequence; > Market.last_funding_sequence"),
            f("rate", "i64", "funding rate of the interval, FUNDING_RATE_PRECISION"),
            f("index_price", "u64", "index price of the interval, PRICE_PRECISION"),
        ),
        "Advance the cumulative funding index by rate x index_price (|rate| <= cap).",
    ),
    Instruction(
        "set_market_status",
        (
            acc("exchange", doc="Exchange PDA"),
            acc("market", mut=True, doc="the market"),
            acc("signer", signer=True, doc="Exchange.authority or Exchange.operator"),
        ),
        (f("status", "u8", "MARKET_STATUS_*"),),
        "Set a market's status.",
    ),
    Instruction(
        "initialize_governance",
        (
            acc("exchange", doc="Exchange PDA"),
            acc("governance", mut=True, doc='Governance PDA ["governance"], created here'),
            acc("authority", mut=True, signer=True, doc="Exchange.authority; pays rent"),
            SYSTEM,
        ),
        (
            f("council", Array(KEY, MAX_COUNCIL), "council keys (first num_council used)"),
            f("num_council", "u8", "1..MAX_COUNCIL"),
            f("threshold", "u8", "1..num_council"),
            f("guardian", KEY, "guardian key"),
            f("params", Defined("GlobalParams"), "initial global parameters"),
            f("bump", "u8", "bump of the Governance PDA"),
        ),
        "Create the Governance account once (council, threshold, guardian, timelock).",
    ),
    Instruction(
        "propose_param_change",
        (
            acc("governance", mut=True, doc="Governance PDA"),
            acc("proposal", mut=True, doc='Proposal PDA ["proposal", id], created here'),
            acc("proposer", mut=True, signer=True, doc="a council member; pays rent"),
            SYSTEM,
        ),
        (
            f("id", "u64", "== Governance.next_proposal_id"),
            f("market_index", "u16", "market to change, or GLOBAL_TARGET"),
            f("risk", Defined("RiskParams"), "new market parameters (zero for a global change)"),
            f("global_params", Defined("GlobalParams"), "new global parameters (zero otherwise)"),
            f("bump", "u8", "bump of the Proposal PDA"),
        ),
        "Propose new values; earliest execution = now + timelock; the proposer approves.",
    ),
    Instruction(
        "approve",
        (
            acc("governance", doc="Governance PDA"),
            acc("proposal", mut=True, doc="the pending proposal"),
            acc("member", signer=True, doc="a council member who has not approved it"),
        ),
        (),
        "Add one council approval.",
    ),
    Instruction(
        "execute",
        (
            acc("governance", mut=True, doc="Governance PDA"),
            acc("proposal", mut=True, doc="the pending proposal"),
        ),
        (),
        "Apply a proposal once: approvals >= threshold, timelock elapsed, bounds and "
        "rate limits against the current values. Anyone may send it.",
        remaining="for a market change: its Market (writable); for a global change: the "
        "Exchange (writable: escape_hatch_slots)",
    ),
    Instruction(
        "cancel",
        (
            acc("governance", doc="Governance PDA"),
            acc("proposal", mut=True, doc="the pending proposal"),
            acc("signer", signer=True, doc="the proposer or a council member"),
        ),
        (),
        "Cancel a pending proposal.",
    ),
    Instruction(
        "guardian_set_status",
        (
            acc("governance", doc="Governance PDA"),
            acc("market", mut=True, doc="the market"),
            acc("guardian", signer=True, doc="Governance.guardian"),
        ),
        (f("status", "u8", "REDUCE_ONLY, CANCEL_ONLY or HALTED, stricter than now"),),
        "The guardian makes a market stricter at once (no timelock, never looser).",
    ),
    Instruction(
        "liquidate",
        (
            acc("exchange", mut=True, doc="Exchange PDA (insurance fund)"),
            acc("user", mut=True, doc="the User liquidated"),
            acc("liquidator_user", mut=True, doc="the liquidator's User (takes the positions)"),
            acc("liquidator", signer=True, doc="liquidator_user.owner"),
        ),
        (),
        "Permissionless partial liquidation at on-chain oracle prices (docs/PROTOCOL.md, "
        "Liquidation): below maintenance, never bankrupt, sized to maintenance + buffer as "
        "liquidation/rules.py; slices move to the liquidator at the oracle price, the fee is "
        "split between the liquidator and the insurance fund; the liquidator must stay at or "
        "above initial margin.",
        remaining="(Market (writable), oracle) pairs, strictly ascending market index, one for "
        "every market either User holds",
    ),
    Instruction(
        "process_withdrawal",
        (
            acc("exchange", mut=True, doc="Exchange PDA (last_withdrawal_sequence)"),
            acc("user", mut=True, doc="the User whose engine withdrawal this is"),
            acc("operator", signer=True, doc="Exchange.operator"),
            acc("owner_token", mut=True, doc="destination: a token account owned by User.owner"),
            acc("vault", mut=True, doc="Exchange.vault"),
            acc("vault_authority", doc="vault authority PDA (signs the transfer)"),
            TOKEN,
        ),
        (
            f(
                "previous_sequence",
                "u64",
                "seq of the engine withdrawal before it; == Exchange.last_withdrawal_sequence",
            ),
            f("sequence", "u64", "engine seq of the CollateralWithdrawn; > previous_sequence"),
            f("amount_quote", "u64", "collateral to move out, quote"),
        ),
        "Execute one engine withdrawal (CollateralWithdrawn) exactly once: the operator signs, "
        "the tokens go only to a token account of User.owner, and the program checks what "
        "withdraw checks (funding settled, amount <= collateral and free collateral at the "
        "on-chain oracle prices). Withdrawals form one chain over the Exchange "
        "(previous_sequence == last_withdrawal_sequence), so each applies once and in order.",
        remaining="for each used position slot, in slot order: its Market (writable), its oracle",
    ),
    Instruction(
        "settle_liquidation",
        (
            acc("exchange", mut=True, doc="Exchange PDA (insurance fund, liquidation chain)"),
            acc("operator", signer=True, doc="Exchange.operator"),
        ),
        (
            f(
                "previous_liquidation_sequence",
                "u64",
                "seq of the previous batch; == Exchange.last_liquidation_sequence",
            ),
            f("first_sequence", "u64", "seq of the batch's first move; > every previous sequence"),
            f("sequence", "u64", "seq of the batch's last move; >= first_sequence"),
            f("num_markets", "u8", "Markets first among the remaining accounts, 0..8"),
            f(
                "previous_sequences",
                Array("u64", MAX_LIQUIDATION_BATCH_MARKETS),
                "per Market: == its last_settled_sequence (the chain shared with fills); rest 0",
            ),
            f("moves", Vec(Defined("LiquidationMove")), "1..MAX_LIQUIDATION_MOVES, journal order"),
        ),
        "Apply engine liquidation events exactly once and in journal order: slices to the "
        "liquidator at the engine's price and fee, ADL fills at the bankruptcy price, the "
        "insurance fund's bad-debt payments; funding of both sides settled first. The batch "
        "continues the Exchange's liquidation chain and the settled chain of every Market it "
        "moves (shared with settle_fills), whose last_settled_sequence becomes sequence.",
        remaining="num_markets Markets (writable, ascending index), then the Users the moves "
        "index (writable)",
    ),
    Instruction(
        "deposit_insurance",
        (
            acc("exchange", mut=True, doc="Exchange PDA (insurance_fund_quote)"),
            acc("funder", signer=True, doc="any wallet; owner of funder_token"),
            acc("funder_token", mut=True, doc="funder's token account of the collateral mint"),
            acc("vault", mut=True, doc="Exchange.vault (the fund is a claim on the vault)"),
            TOKEN,
        ),
        (f("amount_quote", "u64", "tokens added to the insurance fund, quote"),),
        "Top up the insurance fund: move tokens from the funder into the vault and add them to "
        "Exchange.insurance_fund_quote (permissionless: it only adds money). The engine books "
        "the InsuranceDeposited event as its DepositInsurance (the deposit bridge).",
    ),
)

# ---------------------------------------------------------------- errors (append only)

_ERRORS: Final = (
    ("UnknownInstruction", "instruction data: unknown discriminator"),
    ("InstructionDataLength", "instruction data: wrong length for the instruction"),
    ("NotEnoughAccounts", "accounts: fewer than the instruction needs"),
    ("AccountNotWritable", "accounts: an account that must be writable is not"),
    ("AuthorityNotSigner", "authority: expected a signature"),
    ("AuthorityMismatch", "authority: expected Exchange.authority"),
    ("OperatorNotSigner", "operator: expected a signature"),
    ("OperatorMismatch", "operator: expected Exchange.operator"),
    ("OwnerNotSigner", "owner: expected a signature"),
    ("OwnerMismatch", "owner: expected User.owner"),
    ("StatusSignerMismatch", "signer: expected Exchange.authority or Exchange.operator"),
    ("ExchangeWrongOwner", "exchange: expected an account owned by this program"),
    ("ExchangeWrongPda", 'exchange: expected the PDA of ["exchange"] and its bump'),
    ("ExchangeBadDiscriminator", "exchange: expected the Exchange discriminator"),
    ("ExchangeWrongSize", "exchange: expected the Exchange size"),
    ("ExchangeAlreadyInitialized", "exchange: already initialised"),
    ("MarketWrongOwner", "market: expected an account owned by this program"),
    ("MarketWrongPda", 'market: expected the PDA of ["market", index] and its bump'),
    ("MarketBadDiscriminator", "market: expected the Market discriminator"),
    ("MarketWrongSize", "market: expected the Market size"),
    ("MarketAlreadyInitialized", "market: already created"),
    ("MarketIndexMismatch", "market: expected index == Exchange.num_markets"),
    ("UserWrongOwner", "user: expected an account owned by this program"),
    ("UserWrongPda", 'user: expected the PDA of ["user", owner] and its bump'),
    ("UserBadDiscriminator", "user: expected the User discriminator"),
    ("UserWrongSize", "user: expected the User size"),
    ("VaultAuthorityWrongPda", 'vault_authority: expected the PDA of ["vault"] and its bump'),
    ("VaultMismatch", "vault: expected Exchange.vault"),
    ("TokenAccountWrongOwner", "token account: expected one owned by the SPL Token program"),
    ("TokenAccountBadLayout", "token account: expected an initialised SPL token account"),
    ("TokenAccountMintMismatch", "token account: expected Exchange.collateral_mint"),
    ("VaultNotOwnedByAuthority", "vault: expected the vault authority as token owner"),
    ("MintBadLayout", "collateral_mint: expected an SPL mint owned by the Token program"),
    ("TokenProgramMismatch", "token_program: expected the SPL Token program"),
    ("SystemProgramMismatch", "system_program: expected the System program"),
    ("AmountZero", "amount: expected > 0"),
    ("CollateralOverflow", "collateral: the result does not fit an i64"),
    ("InsufficientCollateral", "withdraw: expected amount <= collateral"),
    ("InsufficientFreeCollateral", "withdraw: expected amount <= free collateral"),
    ("WithdrawMarketMissing", "withdraw: expected a Market and oracle for every position"),
    ("WithdrawMarketMismatch", "withdraw: expected the Market of the position's slot"),
    ("OracleMismatch", "oracle: expected Market.oracle"),
    ("OracleWrongOwner", "oracle: expected the owner program of the market's oracle source"),
    ("OracleBadLayout", "oracle: expected the size and discriminator of the source's layout"),
    ("OracleNotVerified", "oracle: expected a Full verification / enough samples"),
    ("OracleFeedMismatch", "oracle: expected Market.oracle_feed_id"),
    ("OracleStaleSlots", "oracle: older than Market.oracle_max_age_slots"),
    ("OracleStaleSeconds", "oracle: older than Market.oracle_max_age_seconds"),
    ("OracleConfidenceTooWide", "oracle: confidence above Market.oracle_max_confidence_ppm"),
    ("OracleNonPositivePrice", "oracle: expected a price > 0"),
    ("OracleExponentOutOfRange", "oracle: expected an exponent in -38..38"),
    ("OraclePriceOutOfRange", "oracle: price must round to 1..i64 max"),
    ("OracleConfidenceOutOfRange", "oracle: confidence must fit a u64"),
    ("InvalidOracleSource", "params: oracle_source must be a supported ORACLE_SOURCE_*"),
    (
        "InvalidTickOrLot",
        "params: expected tick_size, lot_size > 0 and tick x lot a multiple of 1e9",
    ),
    (
        "InvalidFeeSchedule",
        "params: expected 0 <= taker <= 10000, -taker <= maker <= 10000, share <= 1e6",
    ),
    (
        "InvalidMarginTiers",
        "params: expected rising bounds, non-falling ratios, 0 < mm < im <= 1e6, last bound u64 max",
    ),
    ("InvalidGuardLimits", "params: expected oracle_max_confidence_ppm <= 1e6"),
    ("InvalidFundingCap", "params: expected funding_cap_rate <= 1e9"),
    ("InvalidStatus", "status: expected a MARKET_STATUS_* value"),
    ("SequenceNotIncreasing", "sequence: expected > the last applied sequence"),
    ("FillBatchEmpty", "fills: expected at least one fill"),
    ("FillBatchTooLarge", "fills: expected at most MAX_FILLS_PER_BATCH"),
    ("FillUserIndexOutOfRange", "fill: maker/taker index beyond the remaining accounts"),
    ("FillSelfTrade", "fill: maker and taker are the same account"),
    ("FillZeroSize", "fill: expected price_ticks > 0 and num_base_lots > 0"),
    ("FillBadSide", "fill: taker_side must be TAKER_SIDE_BUY or TAKER_SIDE_SELL"),
    ("FillValueOverflow", "fill: price, base or notional does not fit a u64/i64"),
    ("PositionSlotsFull", "user: no free position slot for this market"),
    ("PositionOverflow", "position: base or entry quote does not fit an i64"),
    ("OpenInterestOverflow", "market: open interest does not fit a u64"),
    ("FeeOverflow", "fees: a fee or a pool does not fit"),
    ("FundingRateAboveCap", "update_funding: expected |rate| <= Market.funding_cap_rate"),
    ("FundingIndexOverflow", "funding: index does not fit an i128"),
    ("FundingPaymentOverflow", "funding: payment or pool does not fit an i64"),
    ("IndexPriceZero", "update_funding: expected index_price > 0"),
    ("NotionalOverflow", "margin: notional does not fit a u64"),
    ("PnlOverflow", "margin: unrealised PnL does not fit an i64"),
    ("RequirementOverflow", "margin: requirement does not fit"),
    ("MathDivideByZero", "maths: division by zero"),
    ("DepositOverflow", "deposit: balances do not fit"),
    ("PdaDerivationFailed", "pda: seeds do not give a valid program address"),
    ("GovernanceWrongOwner", "governance: expected an account owned by this program"),
    ("GovernanceWrongPda", 'governance: expected the PDA of ["governance"] and its bump'),
    ("GovernanceBadDiscriminator", "governance: expected the Governance discriminator"),
    ("GovernanceWrongSize", "governance: expected the Governance size"),
    ("GovernanceAlreadyInitialized", "governance: already initialised"),
    ("ProposalWrongOwner", "proposal: expected an account owned by this program"),
    ("ProposalWrongPda", 'proposal: expected the PDA of ["proposal", id] and its bump'),
    ("ProposalBadDiscriminator", "proposal: expected the Proposal discriminator"),
    ("ProposalWrongSize", "proposal: expected the Proposal size"),
    ("InvalidCouncil", "council: expected 1..MAX_COUNCIL distinct non-zero keys, rest zero"),
    ("InvalidThreshold", "council: expected 1 <= threshold <= num_council"),
    ("InvalidGuardian", "guardian: expected a non-zero key"),
    ("InvalidTimelock", "params: expected MIN_TIMELOCK_SECONDS <= timelock <= MAX"),
    ("InvalidMaxLeverageCap", "params: expected 1 <= max_leverage_cap <= MAX_LEVERAGE"),
    ("CouncilNotSigner", "council member: expected a signature"),
    ("NotCouncilMember", "signer: expected a Governance council key"),
    ("ProposalIdMismatch", "proposal: expected id == Governance.next_proposal_id"),
    ("ProposalTargetMismatch", "proposal: expected zero values for the side not targeted"),
    ("ProposalNotPending", "proposal: expected a pending proposal (not executed/cancelled)"),
    ("AlreadyApproved", "approve: this council member already approved"),
    ("NotEnoughApprovals", "execute: expected approvals >= Governance.threshold"),
    ("TimelockNotElapsed", "execute: expected now >= Proposal.earliest_execution_unix_s"),
    ("ProposalMarketMissing", "execute: expected the proposal's Market after the accounts"),
    ("ProposalMarketMismatch", "execute: expected the Market of Proposal.market_index"),
    ("CancelNotAllowed", "cancel: expected the proposer or a council member"),
    ("GuardianNotSigner", "guardian: expected a signature"),
    ("GuardianMismatch", "guardian: expected Governance.guardian"),
    ("GuardianStatusNotSafer", "guardian: expected REDUCE_ONLY/CANCEL_ONLY/HALTED above now"),
    ("InvalidMaxLeverage", "params: expected 1 <= max_leverage <= Governance max_leverage_cap"),
    ("LeverageAboveMargin", "params: expected max_leverage x first initial_ppm <= 1e6"),
    ("InvalidLiquidationFee", "params: expected liquidation fee < first maintenance, <= 1e5"),
    ("InvalidOracleAge", "params: expected oracle ages in 1..MAX_ORACLE_AGE_*"),
    ("InvalidPositionCaps", "params: expected 0 < max_position_base <= max_open_interest"),
    ("MarginTierCountChanged", "params: expected num_margin_tiers unchanged"),
    ("MarginFallsTooFast", "rate limit: a margin ratio falls > MAX_MARGIN_FALL_PPM at once"),
    ("TierBoundRisesTooFast", "rate limit: a tier bound more than doubles at once"),
    ("LeverageRisesTooFast", "rate limit: max leverage rises > 25 % (or 1) at once"),
    ("OracleLimitsLoosenTooFast", "rate limit: an oracle limit more than doubles at once"),
    ("CapsRiseTooFast", "rate limit: a position/OI cap or funding cap more than doubles"),
    ("TimelockFallsTooFast", "rate limit: the timelock falls > 50 % at once"),
    ("BatchNotContiguous", "settle_fills: expected previous_sequence == last_settled_sequence"),
    (
        "BatchSequenceRange",
        "settle_fills: expected previous_sequence < first_sequence <= sequence",
    ),
    ("LiquidatorNotSigner", "liquidator: expected a signature"),
    ("LiquidatorMismatch", "liquidator: expected liquidator_user.owner"),
    ("SelfLiquidation", "liquidate: expected the liquidator's User to differ from the user's"),
    (
        "LiquidationMarketsInvalid",
        "liquidate: expected (Market, oracle) pairs, ascending index, <= MAX_LIQUIDATION_MARKETS",
    ),
    ("LiquidationMarketMissing", "liquidate: expected a Market and oracle for every position"),
    ("NotLiquidatable", "liquidate: expected equity < maintenance at the oracle prices"),
    ("AccountBankrupt", "liquidate: equity < 0, left to the engine (insurance fund / ADL)"),
    ("LiquidatorBelowInitialMargin", "liquidate: expected the liquidator >= initial margin after"),
    (
        "WithdrawalNotContiguous",
        "process_withdrawal: expected previous_sequence == Exchange.last_withdrawal_sequence",
    ),
    ("DestinationNotOwner", "owner_token: expected a token account owned by User.owner"),
    ("FundingCarryOutOfRange", "funding: expected a position's carry numerator < 1e18"),
    (
        "LiquidationChainNotContiguous",
        "settle_liquidation: expected previous == Exchange.last_liquidation_sequence",
    ),
    (
        "LiquidationMarketNotContiguous",
        "settle_liquidation: expected previous_sequences[i] == Market.last_settled_sequence",
    ),
    (
        "LiquidationSequenceRange",
        "settle_liquidation: expected every previous sequence < first_sequence <= sequence",
    ),
    ("LiquidationBatchEmpty", "settle_liquidation: expected at least one move"),
    ("LiquidationBatchTooLarge", "settle_liquidation: expected at most MAX_LIQUIDATION_MOVES"),
    (
        "LiquidationBatchMarketsInvalid",
        "settle_liquidation: expected <= 8 Markets, ascending index, unused previous zero",
    ),
    ("LiquidationMarketUnused", "settle_liquidation: expected a move in every Market"),
    ("LiquidationMoveBadKind", "move: kind must be LIQUIDATION_MOVE_SLICE, _ADL or _PAYMENT"),
    ("LiquidationMoveMarketOutOfRange", "move: market index beyond num_markets"),
    ("LiquidationMoveUserOutOfRange", "move: account/counterparty beyond the Users"),
    ("LiquidationMoveSelf", "move: expected the counterparty to differ from the account"),
    (
        "LiquidationMoveNotReducing",
        "move: expected whole lots reducing the account's position (ADL: both positions)",
    ),
    (
        "LiquidationQuoteMismatch",
        "move: expected quote_delta = base_delta x price rounded against the account "
        "(ADL: against the counterparty)",
    ),
    (
        "LiquidationFeeInvalid",
        "move: expected liquidator_fee <= fee <= notional x MAX_LIQUIDATION_FEE_PPM",
    ),
    (
        "LiquidationMoveFieldsInvalid",
        "move: expected price > 0 for a slice, no fee for ADL, a payment only quote_delta > 0",
    ),
    ("LiquidationValueOverflow", "move: a quote, notional or fee does not fit"),
    ("InsuranceFundInsufficient", "payment: expected <= Exchange.insurance_fund_quote"),
    ("InsurancePaymentAccountOpen", "payment: expected the account to hold no position"),
    ("InsurancePaymentAboveDeficit", "payment: expected the account's collateral <= 0 after"),
    (
        "OperatorActive",
        "withdraw: the operator settled within Exchange.escape_hatch_slots; "
        "withdraw through the exchange",
    ),
    (
        "InvalidEscapeHatch",
        "escape_hatch_slots: expected MIN_ESCAPE_HATCH_SLOTS <= escape_hatch_slots <= MAX",
    ),
    (
        "InvalidLiquidationSplit",
        "params: expected liquidator_share_ppm <= 1e6 and liquidation_buffer_ppm <= 1e5",
    ),
    (
        "EscapeHatchMismatch",
        "initialize_governance: expected params.escape_hatch_slots == Exchange's",
    ),
    ("ExecuteExchangeMissing", "execute: expected the Exchange after the accounts (global)"),
    ("EscapeHatchChangeTooFast", "rate limit: escape_hatch_slots more than doubles or halves"),
    (
        "SourceNotOwner",
        "owner_token / funder_token: expected a token account of the mint owned by the signer",
    ),
)

ERROR_BASE: Final = 6000
ERRORS: Final = tuple(ErrorSpec(ERROR_BASE + i, n, m) for i, (n, m) in enumerate(_ERRORS))

# ---------------------------------------------------------------- events (sol_log_data)

EVENTS: Final = (
    Event(
        "Deposited",
        (
            f("owner", KEY, "User.owner"),
            f("amount_quote", "u64", "moved in, quote"),
            f("collateral_quote", "i64", "collateral after, quote"),
        ),
        "A deposit landed.",
    ),
    Event(
        "Withdrawn",
        (
            f("owner", KEY, "User.owner"),
            f("amount_quote", "u64", "moved out, quote"),
            f("collateral_quote", "i64", "collateral after, quote"),
        ),
        "A withdrawal landed.",
    ),
    Event(
        "FillsSettled",
        (
            f("market_index", "u16", "market"),
            f("sequence", "u64", "batch sequence (its last fill's seq)"),
            f("num_fills", "u32", "fills applied"),
            f("first_sequence", "u64", "seq of its first fill"),
        ),
        "A fill batch was applied.",
    ),
    Event(
        "FundingUpdated",
        (
            f("market_index", "u16", "market"),
            f("sequence", "u64", "update sequence"),
            f("rate", "i64", "rate, FUNDING_RATE_PRECISION"),
            f("cumulative_funding", "i128", "index after"),
        ),
        "The funding index moved.",
    ),
    Event(
        "MarketStatusChanged",
        (f("market_index", "u16", "market"), f("status", "u8", "MARKET_STATUS_* after")),
        "A market's status changed.",
    ),
    Event(
        "ParamChangeProposed",
        (
            f("proposal_id", "u64", "proposal"),
            f("market_index", "u16", "market or GLOBAL_TARGET"),
            f("earliest_execution_unix_s", "i64", "created + timelock"),
        ),
        "A proposal was created.",
    ),
    Event(
        "ProposalApproved",
        (f("proposal_id", "u64", "proposal"), f("approvals_mask", "u8", "after")),
        "A council member approved.",
    ),
    Event(
        "RiskParamsChanged",
        (
            f("proposal_id", "u64", "proposal executed"),
            f("market_index", "u16", "market or GLOBAL_TARGET"),
            f("slot", "u64", "Clock slot of the execution"),
        ),
        "A proposal was executed: the new values are in the Market / Governance account.",
    ),
    Event(
        "ProposalCancelled",
        (f("proposal_id", "u64", "proposal"),),
        "A proposal was cancelled.",
    ),
    Event(
        "PositionLiquidated",
        (
            f("market_index", "u16", "market of the slice"),
            f("owner", KEY, "owner of the User liquidated"),
            f("liquidator", KEY, "owner of the liquidator's User"),
            f("base_delta", "i64", "the liquidated position's change (liquidator: -base_delta)"),
            f("quote_delta", "i64", "quote to the liquidated account (liquidator: -quote_delta)"),
            f("price", "u64", "the oracle price, PRICE_PRECISION"),
            f("fee_quote", "u64", "liquidation fee paid by the liquidated account"),
            f("liquidator_fee_quote", "u64", "its share paid to the liquidator"),
            f("insurance_fee_quote", "u64", "the rest, to the insurance fund"),
            f("cumulative_funding", "i128", "the market's funding index the slice moved at"),
        ),
        "A slice of a position moved to the liquidator (one per market, in plan order).",
    ),
    Event(
        "AccountLiquidated",
        (
            f("owner", KEY, "owner of the User liquidated"),
            f("liquidator", KEY, "owner of the liquidator's User"),
            f("equity_before_quote", "i64", "equity at the oracle prices before"),
            f("maintenance_before_quote", "u64", "maintenance requirement before"),
            f("insurance_payment_quote", "u64", "insurance fund -> account (rounding dust)"),
            f("collateral_after_quote", "i64", "collateral of the liquidated account after"),
            f("num_slices", "u8", "PositionLiquidated events before this one"),
        ),
        "A liquidation finished (after its PositionLiquidated slices).",
    ),
    Event(
        "WithdrawalProcessed",
        (
            f("owner", KEY, "User.owner (the destination token account's owner)"),
            f("sequence", "u64", "engine seq of the CollateralWithdrawn"),
            f("amount_quote", "u64", "moved out, quote"),
            f("collateral_quote", "i64", "collateral after, quote"),
        ),
        "An engine withdrawal landed (process_withdrawal).",
    ),
    Event(
        "LiquidationsSettled",
        (
            f("sequence", "u64", "batch sequence (its last move's seq)"),
            f("first_sequence", "u64", "seq of its first move"),
            f("num_moves", "u32", "moves applied"),
            f("num_markets", "u8", "Markets whose settled chain moved to sequence"),
        ),
        "An engine liquidation batch was applied (settle_liquidation).",
    ),
    Event(
        "InsuranceDeposited",
        (
            f("funder", KEY, "the wallet that paid"),
            f("amount_quote", "u64", "added to the insurance fund, quote"),
            f("insurance_fund_quote", "u64", "Exchange.insurance_fund_quote after, quote"),
        ),
        "The insurance fund was topped up (deposit_insurance).",
    ),
)

SPEC: Final = ProgramSpec(
    name="perpdex_clearing",
    version="0.1.0",
    constants=CONSTANTS,
    types=TYPES,
    accounts=ACCOUNTS,
    instructions=INSTRUCTIONS,
    errors=ERRORS,
    events=EVENTS,
)

# ---------------------------------------------------------------- derived facts


class SpecError(ValueError):
    """The description breaks one of its layout rules."""

    code = "SPEC"


def camel(snake: str) -> str:
    """``amount_quote`` -> ``amountQuote`` (the IDL's spelling)."""
    head, *rest = snake.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def snake(name: str) -> str:
    """``MarketStatusChanged`` -> ``market_status_changed``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def instruction_discriminator(snake_name: str) -> bytes:
    """Anchor's: ``sha256("global:" + snake_name)[:8]``."""
    return hashlib.sha256(f"global:{snake_name}".encode()).digest()[:8]


def account_discriminator(name: str) -> bytes:
    """Anchor's: ``sha256("account:" + CamelName)[:8]``."""
    return hashlib.sha256(f"account:{name}".encode()).digest()[:8]


def event_discriminator(name: str) -> bytes:
    """Anchor's: ``sha256("event:" + CamelName)[:8]``."""
    return hashlib.sha256(f"event:{name}".encode()).digest()[:8]


def _struct(spec: ProgramSpec, name: str) -> Struct:
    for struct in spec.types:
        if struct.name == name:
            return struct
    raise SpecError(f"type: expected one of {[t.name for t in spec.types]}, got {name!r}")


def size_of(spec: ProgramSpec, type_: TypeRef) -> int:
    """Borsh size of a fixed-size type (no padding: Borsh has none)."""
    if isinstance(type_, str):
        return PRIMITIVE_SIZES[type_]
    if isinstance(type_, Array):
        return type_.length * size_of(spec, type_.element)
    if isinstance(type_, Defined):
        return sum(size_of(spec, fld.type) for fld in _struct(spec, type_.name).fields)
    raise SpecError(f"size: a vec has no fixed size, got {type_!r}")


def align_of(spec: ProgramSpec, type_: TypeRef) -> int:
    """Alignment the program assumes for aligned loads of ``type_``."""
    if isinstance(type_, str):
        return PRIMITIVE_ALIGN[type_]
    if isinstance(type_, Array):
        return align_of(spec, type_.element)
    if isinstance(type_, Defined):
        return max(align_of(spec, fld.type) for fld in _struct(spec, type_.name).fields)
    raise SpecError(f"align: a vec has no alignment, got {type_!r}")


def offsets(spec: ProgramSpec, fields: tuple[Field, ...], start: int) -> list[tuple[Field, int]]:
    """Each field with its byte offset, the first at ``start``."""
    out = []
    at = start
    for fld in fields:
        out.append((fld, at))
        at += size_of(spec, fld.type)
    return out


ACCOUNT_DISCRIMINATOR_SIZE: Final = 8
#: Types that live inside accounts: every field at a multiple of its alignment from the
#: struct's start, so the header declares them (and the accounts) 8-byte aligned.
SELF_ALIGNED_TYPES: Final = ("MarginTier", "Position", "RiskParams", "GlobalParams")


def account_size(spec: ProgramSpec, account: AccountSpec) -> int:
    """Bytes of the account: discriminator plus fields."""
    return ACCOUNT_DISCRIMINATOR_SIZE + sum(size_of(spec, fld.type) for fld in account.fields)


def check_spec(spec: ProgramSpec) -> None:
    """Fail fast on a description that would give a layout the program cannot rely on."""
    names: set[str] = set()
    for struct in spec.types:
        if struct.name in names:
            raise SpecError(f"types: expected unique names, got {struct.name!r} twice")
        names.add(struct.name)
    for struct in spec.types:
        if struct.name in SELF_ALIGNED_TYPES:
            _check_aligned(spec, struct.name, struct.fields, 0)
            size = size_of(spec, Defined(struct.name))
            if size % align_of(spec, Defined(struct.name)):
                raise SpecError(f"{struct.name}: size {size} not a multiple of its alignment")
    for account in spec.accounts:
        _check_aligned(spec, account.name, account.fields, ACCOUNT_DISCRIMINATOR_SIZE)
        if account_size(spec, account) % 8:
            raise SpecError(f"{account.name}: expected a size multiple of 8")
    for ix in spec.instructions:
        for i, arg in enumerate(ix.args):
            if isinstance(arg.type, Vec) and i != len(ix.args) - 1:
                raise SpecError(f"{ix.name}.{arg.name}: a vec must be the last argument")
    codes = [e.code for e in spec.errors]
    if codes != list(range(ERROR_BASE, ERROR_BASE + len(codes))):
        raise SpecError("errors: expected consecutive codes from 6000")
    if len({e.name for e in spec.errors}) != len(codes):
        raise SpecError("errors: expected unique names")


def _check_aligned(spec: ProgramSpec, owner: str, fields: tuple[Field, ...], start: int) -> None:
    for fld, at in offsets(spec, fields, start):
        alignment = align_of(spec, fld.type)
        if at % alignment:
            raise SpecError(
                f"{owner}.{fld.name}: expected an offset multiple of {alignment}, got {at}"
            )
