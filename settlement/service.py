"""Settlement service: the engine's journal -> ``settle_fills`` / ``update_funding``
transactions on the clearing program, exactly once.

Flow (docs/ARCHITECTURE.md, Settlement). ``resume`` reads every configured Market account:
its ``last_settled_sequence`` and ``last_funding_sequence`` are the progress, so a restart
(after a crash at any point, even between a landed transaction and the local bookkeeping)
continues exactly where the chain is. ``settle_available`` then reads the journal in ``seq``
order after the lowest of those sequences and turns it into actions, per market in journal
order:

* consecutive ``FillSettled`` of a market become one ``FillBatch``, as many fills as fit one
  transaction (1232 bytes, ``MAX_FILLS_PER_BATCH``, the compute budget), whose sequence is the
  ``seq`` of its last fill; a fill already covered by the on-chain sequence is skipped;
* a batch carries ``previous_sequence``, the ``seq`` of the market's fill before its first one
  (the Market's ``last_settled_sequence`` when planned, then the previous batch's sequence),
  and ``first_sequence``; the program applies it only when ``previous_sequence`` equals the
  Market's ``last_settled_sequence`` (the journal ``seq`` is global, so a market's fills have
  gaps: the batch names its predecessor instead of ``last + 1``). Two batches planned from one
  progress point, e.g. a dead process's transaction still in flight and its successor's larger
  batch, can therefore never both land;
* a ``FundingRateApplied`` closes the market's open batch and becomes a ``FundingUpdate``
  (sequence: its ``seq``), so fills before and after an interval see the same funding index
  on-chain as in the engine;
* the engine's own liquidations (``LiquidationExecuted``, ``PositionDeleveraged``,
  ``InsuranceFundPaidBadDebt`` with an amount) become ``LiquidationBatch`` actions for
  ``settle_liquidation``: consecutive ones share a batch (as many moves as fit), which first
  closes every open fill batch and is closed by the next fill or funding update, so actions
  land in journal order. A batch continues the Exchange's liquidation chain
  (``previous_sequence`` = ``Exchange.last_liquidation_sequence``, then the previous batch's
  sequence) and the settled chain of every market it moves, the chain fill batches continue:
  a fill after a liquidation names the liquidation's sequence as its predecessor. A slice the
  engine booked from an on-chain ``liquidate`` (``OnChainLiquidationBooked`` then its
  ``LiquidationExecuted`` and payment) is already on-chain and is skipped.

Each action is posted with anchorpy (``Program.rpc``, a ``SetComputeUnitLimit`` first),
confirmed, and checked against the Market account before the progress moves. RPC failures
(connection refused, HTTP 5xx, expired blockhash, unconfirmed) are retried with capped
exponential backoff; before every retry the Market account says whether the last attempt
landed after all, so nothing is posted twice. A batch refused as ``BatchNotContiguous`` while
the Market's sequence has moved past the batch's ``previous_sequence`` lost the race to another
process's batch: the service reloads its progress from the chain and plans again. Any other
batch the program rejects (an IDL error or any instruction error) halts the service: ``state`` becomes ``HALTED``, the rejection is kept in
``halt`` and logged at ERROR, and every later call raises ``SettlementHalted``; nothing is
skipped.

Units: fills go on-chain as ``price_ticks`` / ``num_base_lots`` of the on-chain market, derived
exactly from the journaled ``base`` and ``notional_quote`` (a remainder is an error, not a
rounding).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

import httpx
from anchorpy import Context, Program
from anchorpy.error import ProgramError
from solana.exceptions import SolanaRpcException
from solana.rpc.async_api import AsyncClient
from solana.rpc.commitment import Confirmed
from solana.rpc.core import (
    RPCException,
    TransactionExpiredBlockheightExceededError,
    UnconfirmedTxError,
)
from solders.compute_budget import set_compute_unit_limit
from solders.instruction import AccountMeta
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction_status import TransactionErrorInstructionError

from exchange.core.events import (
    NO_MARKET_ID,
    Event,
    FillSettled,
    FundingRateApplied,
    InsuranceFundPaidBadDebt,
    LiquidationExecuted,
    OnChainLiquidationBooked,
    PositionDeleveraged,
)
from exchange.core.orders import Side
from exchange.core.units import BASE_PRECISION
from exchange.engine.journal import Journal
from settlement.errors import (
    FillNotRepresentable,
    RetriesExhausted,
    SettlementConfigError,
    SettlementHalted,
    UnmappedAccount,
)
from settlement.onchain import AccountMap, ClearingAddresses, check_market_ids, clearing_program
from settlement.spec import (
    ERRORS,
    LIQUIDATION_MOVE_ADL,
    LIQUIDATION_MOVE_PAYMENT,
    LIQUIDATION_MOVE_SLICE,
    MAX_FILLS_PER_BATCH,
    MAX_LIQUIDATION_BATCH_MARKETS,
    MAX_LIQUIDATION_MOVES,
)

log = logging.getLogger(__name__)

MAX_TX_BYTES: Final = 1232  # a Solana packet
MAX_COMPUTE_UNITS: Final = 1_400_000  # per transaction
TAKER_SIDE_BUY: Final = 0
TAKER_SIDE_SELL: Final = 1
_FILL_BYTES: Final = 19  # Borsh Fill: u8 maker, u8 taker, u8 side, u64 price_ticks, u64 lots
_SETTLE_FIXED_ACCOUNTS: Final = 3  # exchange, market, operator
_JOURNAL_READ_CHUNK: Final = 50_000  # events per journal read
_CODES: Final = {e.name: e.code for e in ERRORS}
BATCH_NOT_CONTIGUOUS: Final = _CODES["BatchNotContiguous"]
#: Refusals that mean "another process's batch landed first" for a liquidation batch.
LIQUIDATION_NOT_CONTIGUOUS: Final = frozenset(
    _CODES[n]
    for n in (
        "LiquidationChainNotContiguous",
        "LiquidationMarketNotContiguous",
        "BatchNotContiguous",
    )
)
_MOVE_BYTES: Final = 44  # Borsh LiquidationMove
_LIQUIDATION_FIXED_ACCOUNTS: Final = 2  # exchange, operator
_LIQUIDATION_ARGS_BYTES: Final = 8 + 3 * 8 + 1 + 8 * MAX_LIQUIDATION_BATCH_MARKETS + 4


@dataclass(frozen=True, slots=True, kw_only=True)
class SettlementConfig:
    """How the service batches, budgets and retries.

    ``compute_units_base`` + ``compute_units_per_fill`` x fills is the ``SetComputeUnitLimit``
    of a batch (the program measures ~3,054 CU per fill plus a fixed part; the margin keeps a
    slower path such as a first position slot inside the budget). Backoff starts at
    ``retry_initial_s`` and doubles up to ``retry_max_s``; ``max_attempts`` 0 retries forever.
    """

    market_ids: tuple[int, ...]
    max_fills_per_tx: int = MAX_FILLS_PER_BATCH
    max_tx_bytes: int = MAX_TX_BYTES
    compute_units_base: int = 30_000
    compute_units_per_fill: int = 4_500
    retry_initial_s: float = 0.05
    retry_max_s: float = 2.0
    max_attempts: int = 0
    poll_interval_s: float = 0.05

    def __post_init__(self) -> None:
        check_market_ids(self.market_ids)
        for name, lo, hi in (
            ("max_fills_per_tx", 1, MAX_FILLS_PER_BATCH),
            ("max_tx_bytes", 300, MAX_TX_BYTES),
            ("compute_units_base", 0, MAX_COMPUTE_UNITS),
            ("compute_units_per_fill", 1, MAX_COMPUTE_UNITS),
            ("max_attempts", 0, 10**9),
        ):
            value = getattr(self, name)
            if type(value) is not int or not lo <= value <= hi:
                raise SettlementConfigError(f"{name}: expected an int in {lo}..{hi}, got {value!r}")
        for name in ("retry_initial_s", "retry_max_s", "poll_interval_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value <= 600:
                raise SettlementConfigError(f"{name}: expected seconds in (0, 600], got {value!r}")
        if self.retry_max_s < self.retry_initial_s:
            raise SettlementConfigError(
                f"retry_max_s: expected >= retry_initial_s {self.retry_initial_s}, "
                f"got {self.retry_max_s}"
            )
        if self.compute_units_base + self.compute_units_per_fill > MAX_COMPUTE_UNITS:
            raise SettlementConfigError(
                f"compute budget: expected one fill to fit {MAX_COMPUTE_UNITS} CU, got "
                f"{self.compute_units_base + self.compute_units_per_fill}"
            )


# ---------------------------------------------------------------- actions (plain data)


class OnChainFill(NamedTuple):
    """One ``Fill`` argument: maker/taker are indices into the batch's users."""

    maker: int
    taker: int
    taker_side: int
    price_ticks: int
    num_base_lots: int

    def arg(self) -> dict[str, int]:
        return self._asdict()


class FillBatch(NamedTuple):
    market_id: int
    sequence: int  # seq of the last FillSettled in the batch
    first_seq: int
    fills: tuple[OnChainFill, ...]
    users: tuple[Pubkey, ...]  # remaining accounts, in first-use order
    previous_sequence: int  # seq of the market's fill before first_seq (0: none)


class FundingUpdate(NamedTuple):
    market_id: int
    sequence: int  # seq of the FundingRateApplied
    rate: int  # FUNDING_RATE_PRECISION
    index_price: int  # PRICE_PRECISION


class OnChainMove(NamedTuple):
    """One ``LiquidationMove`` argument: ``market`` indexes the batch's markets, ``account`` and
    ``counterparty`` its users."""

    kind: int  # LIQUIDATION_MOVE_*
    market: int
    account: int
    counterparty: int
    base_delta: int  # BASE_PRECISION, the account's change
    quote_delta: int  # QUOTE_PRECISION, quote to the account
    price: int  # PRICE_PRECISION
    fee_quote: int
    liquidator_fee_quote: int

    def arg(self) -> dict[str, int]:
        return self._asdict()


class LiquidationBatch(NamedTuple):
    """Consecutive engine liquidation events for one ``settle_liquidation``."""

    sequence: int  # seq of its last move
    first_seq: int
    previous_sequence: int  # Exchange.last_liquidation_sequence it continues
    markets: tuple[tuple[int, int], ...]  # (market_id, previous settled sequence), ascending
    moves: tuple[OnChainMove, ...]
    users: tuple[Pubkey, ...]  # remaining accounts after the markets, in first-use order

    @property
    def market_id(self) -> int:  # for logs: the batch may span markets
        return self.markets[0][0] if self.markets else NO_MARKET_ID


Action = FillBatch | FundingUpdate | LiquidationBatch


class MarketProgress(NamedTuple):
    """A market's on-chain progress and the units its fills are expressed in."""

    settled_sequence: int
    funding_sequence: int
    tick_size: int
    lot_size: int


def _compact_len(n: int) -> int:
    return 1 if n < 0x80 else 2 if n < 0x4000 else 3


def settle_tx_bytes(num_users: int, num_fills: int) -> int:
    """Serialized size of a legacy settle transaction: one signature (the operator pays and
    signs), a SetComputeUnitLimit, then ``settle_fills`` with ``num_users`` remaining
    accounts and ``num_fills`` fills."""
    num_keys = _SETTLE_FIXED_ACCOUNTS + num_users + 2  # + clearing and compute-budget programs
    ix_accounts = _SETTLE_FIXED_ACCOUNTS + num_users
    data = 8 + 3 * 8 + 4 + _FILL_BYTES * num_fills  # discriminator, 3 sequences, vec len, fills
    return (
        1 + 64  # signatures
        + 3  # message header
        + _compact_len(num_keys) + 32 * num_keys
        + 32  # recent blockhash
        + 1  # two instructions
        + 1 + 1 + 1 + 5  # SetComputeUnitLimit: program index, no accounts, 5 data bytes
        + 1 + _compact_len(ix_accounts) + ix_accounts + _compact_len(data) + data
    )  # fmt: skip


def liquidation_tx_bytes(num_markets: int, num_users: int, num_moves: int) -> int:
    """Serialized size of a legacy ``settle_liquidation`` transaction (as ``settle_tx_bytes``)."""
    num_keys = _LIQUIDATION_FIXED_ACCOUNTS + num_markets + num_users + 2
    ix_accounts = _LIQUIDATION_FIXED_ACCOUNTS + num_markets + num_users
    data = _LIQUIDATION_ARGS_BYTES + _MOVE_BYTES * num_moves
    return (
        1 + 64 + 3 + _compact_len(num_keys) + 32 * num_keys + 32 + 1 + 1 + 1 + 1 + 5
        + 1 + _compact_len(ix_accounts) + ix_accounts + _compact_len(data) + data
    )  # fmt: skip


# (kind, market_id, account, counterparty, base_delta, quote_delta, price, fee, liquidator fee)
# with the accounts as (owner_id, sub_account_id): a move before the batch maps it.
_RawMove = tuple[int, int, tuple[int, int], tuple[int, int], int, int, int, int, int]


def move_of(event: Event) -> _RawMove | None:
    """The ``settle_liquidation`` move of an engine liquidation event (None: nothing to move)."""
    if isinstance(event, LiquidationExecuted):
        return (
            LIQUIDATION_MOVE_SLICE, event.market_id, (event.owner_id, event.sub_account_id),
            (event.liquidator_owner_id, event.liquidator_sub_account_id), event.base_delta,
            event.quote_delta, event.price, event.fee_quote, event.liquidator_fee_quote,
        )  # fmt: skip
    if isinstance(event, PositionDeleveraged):
        return (
            LIQUIDATION_MOVE_ADL, event.market_id, (event.owner_id, event.sub_account_id),
            (event.counterparty_owner_id, event.counterparty_sub_account_id), event.base_delta,
            event.quote_delta, event.bankruptcy_price, 0, 0,
        )  # fmt: skip
    if isinstance(event, InsuranceFundPaidBadDebt) and event.amount_quote > 0:
        account = (event.owner_id, event.sub_account_id)
        return (LIQUIDATION_MOVE_PAYMENT, NO_MARKET_ID, account, account, 0,
                event.amount_quote, 0, 0, 0)  # fmt: skip
    return None


def fill_for_chain(event: FillSettled, tick_size: int, lot_size: int) -> tuple[int, int, int]:
    """(taker_side, price_ticks, num_base_lots) of a journaled fill in the on-chain market's
    units; exact or ``FillNotRepresentable``."""
    lots, lot_rest = divmod(event.base, lot_size)
    price, price_rest = divmod(event.notional_quote * BASE_PRECISION, event.base)
    ticks, tick_rest = divmod(price, tick_size)
    if lot_rest or price_rest or tick_rest or lots <= 0 or ticks <= 0:
        raise FillNotRepresentable(
            f"fill seq {event.seq}: expected whole lots of {lot_size} and ticks of {tick_size}, "
            f"got base {event.base} notional {event.notional_quote}"
        )
    side = TAKER_SIDE_BUY if event.taker_side == Side.BID else TAKER_SIDE_SELL
    return side, ticks, lots


class BatchPlanner:
    """Journal events -> actions (pure). Keeps one open batch per market between calls to
    ``plan`` only within a call: whatever is open at the end of the events is emitted."""

    def __init__(
        self,
        accounts: AccountMap,
        progress: dict[int, MarketProgress],
        config: SettlementConfig,
        *,
        liquidation_sequence: int = 0,
        booked_onchain: dict[int, type] | None = None,
    ) -> None:
        self.accounts = accounts
        self.progress = progress
        self.config = config
        self.liquidation_sequence = liquidation_sequence  # Exchange.last_liquidation_sequence
        # seq -> event type of slices (and payments) an on-chain liquidate already applied:
        # kept by the caller across calls, a booking may straddle two journal reads
        self.booked_onchain = booked_onchain if booked_onchain is not None else {}

    def liquidation_fits(self, num_markets: int, num_users: int, num_moves: int) -> bool:
        cfg = self.config
        return (
            num_moves <= MAX_LIQUIDATION_MOVES
            and num_markets <= MAX_LIQUIDATION_BATCH_MARKETS
            and liquidation_tx_bytes(num_markets, num_users, num_moves) <= cfg.max_tx_bytes
            and cfg.compute_units_base + 2 * cfg.compute_units_per_fill * num_moves
            <= MAX_COMPUTE_UNITS
            and num_users <= 256
        )

    def fits(self, num_users: int, num_fills: int) -> bool:
        cfg = self.config
        return (
            num_fills <= cfg.max_fills_per_tx
            and settle_tx_bytes(num_users, num_fills) <= cfg.max_tx_bytes
            and cfg.compute_units_base + cfg.compute_units_per_fill * num_fills <= MAX_COMPUTE_UNITS
            and num_users <= 256  # u8 indices
        )

    def plan(self, events: Iterable[Event]) -> list[Action]:
        actions: list[Action] = []
        open_batches: dict[int, tuple[list[OnChainFill], dict[Pubkey, int], int, int]] = {}
        # the settled chain's tail per market: the on-chain progress, then each batch planned
        chain_tail = {m: p.settled_sequence for m, p in self.progress.items()}
        liquidation_tail = self.liquidation_sequence
        # the open liquidation batch: raw moves with their first and last seq
        open_moves: list[_RawMove] = []
        open_span = [0, 0]

        def liquidation_keys(moves: list[_RawMove]) -> tuple[set[int], dict[tuple[int, int], None]]:
            markets = {m[1] for m in moves if m[0] != LIQUIDATION_MOVE_PAYMENT}
            users: dict[tuple[int, int], None] = {}
            for m in moves:
                users.setdefault(m[2])
                if m[0] != LIQUIDATION_MOVE_PAYMENT:
                    users.setdefault(m[3])
            return markets, users

        def close_liquidation() -> None:
            nonlocal liquidation_tail
            if not open_moves:
                return
            market_ids, keys = liquidation_keys(open_moves)
            markets = sorted(market_ids)
            users = [self.accounts.user(*k) for k in keys]
            index = {k: i for i, k in enumerate(keys)}
            moves = tuple(
                OnChainMove(
                    kind,
                    0 if kind == LIQUIDATION_MOVE_PAYMENT else markets.index(market_id),
                    index[account],
                    0 if kind == LIQUIDATION_MOVE_PAYMENT else index[counterparty],
                    *amounts,
                )
                for kind, market_id, account, counterparty, *amounts in open_moves
            )
            batch = LiquidationBatch(
                open_span[1], open_span[0], liquidation_tail,
                tuple((m, chain_tail[m]) for m in markets), moves, tuple(users),
            )  # fmt: skip
            actions.append(batch)
            liquidation_tail = batch.sequence
            for m in markets:
                chain_tail[m] = batch.sequence
            open_moves.clear()

        def close(market_id: int) -> None:
            batch = open_batches.pop(market_id, None)
            if batch is not None:
                fills, users, first, last = batch
                actions.append(
                    FillBatch(
                        market_id, last, first, tuple(fills), tuple(users), chain_tail[market_id]
                    )
                )
                chain_tail[market_id] = last

        for e in events:
            if isinstance(e, OnChainLiquidationBooked):
                # its slice (next seq) and the fund's payment (the one after) are on-chain
                self.booked_onchain[e.seq + 1] = LiquidationExecuted
                self.booked_onchain[e.seq + 2] = InsuranceFundPaidBadDebt
                continue
            booked = self.booked_onchain.pop(e.seq, None)
            if booked is not None and type(e) is booked:
                continue
            raw = move_of(e) if type(e) in _LIQUIDATION_EVENTS else None
            if raw is not None:
                if e.seq <= liquidation_tail:
                    continue
                if raw[0] != LIQUIDATION_MOVE_PAYMENT:
                    self._progress(raw[1])
                if not open_moves:  # everything journaled before it lands first
                    for market_id in list(open_batches):
                        close(market_id)
                market_ids, keys = liquidation_keys([*open_moves, raw])
                if open_moves and not self.liquidation_fits(
                    len(market_ids), len(keys), len(open_moves) + 1
                ):
                    close_liquidation()
                if not open_moves:
                    open_span[0] = e.seq
                open_moves.append(raw)
                open_span[1] = e.seq
                continue
            if isinstance(e, FillSettled | FundingRateApplied):
                close_liquidation()
            if isinstance(e, FillSettled):
                progress = self._progress(e.market_id)
                if e.seq <= progress.settled_sequence:
                    continue
                side, ticks, lots = fill_for_chain(e, progress.tick_size, progress.lot_size)
                maker = self.accounts.user(e.maker_owner_id, e.maker_sub_account_id)
                taker = self.accounts.user(e.taker_owner_id, e.taker_sub_account_id)
                batch = open_batches.get(e.market_id)
                if batch is not None:
                    fills, users, _, _ = batch
                    new_users = len(users) + (maker not in users) + (taker not in users)
                    if not self.fits(new_users, len(fills) + 1):
                        close(e.market_id)
                        batch = None
                if batch is None:
                    batch = open_batches[e.market_id] = ([], {}, e.seq, e.seq)
                fills, users, first, _ = batch
                for user in (maker, taker):
                    users.setdefault(user, len(users))
                fills.append(OnChainFill(users[maker], users[taker], side, ticks, lots))
                open_batches[e.market_id] = (fills, users, first, e.seq)
            elif isinstance(e, FundingRateApplied):
                progress = self._progress(e.market_id)
                if e.seq <= progress.funding_sequence:
                    continue
                close(e.market_id)
                actions.append(FundingUpdate(e.market_id, e.seq, e.funding_rate, e.index_price))
        for market_id in list(open_batches):
            close(market_id)
        close_liquidation()
        return actions

    def _progress(self, market_id: int) -> MarketProgress:
        try:
            return self.progress[market_id]
        except KeyError:
            raise UnmappedAccount(
                f"market {market_id}: expected one of the settled markets {sorted(self.progress)}"
            ) from None


# ---------------------------------------------------------------- the service


_LIQUIDATION_EVENTS: Final = (LiquidationExecuted, PositionDeleveraged, InsuranceFundPaidBadDebt)


class ServiceState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    HALTED = "halted"


@dataclass(frozen=True, slots=True)
class SettlementRejection:
    """Why settlement halted: the action the program refused and its error."""

    market_id: int
    sequence: int
    action: str  # "settle_fills" or "update_funding"
    error_code: int | None  # IDL code (6000+) when the program gave one
    message: str


@dataclass(slots=True)
class SettlementMetrics:
    batches_posted: int = 0
    fills_settled: int = 0
    funding_updates: int = 0
    liquidation_batches: int = 0
    liquidation_moves: int = 0
    rpc_retries: int = 0
    found_landed: int = 0  # actions an ambiguous failure had in fact landed
    lost_races: int = 0  # batches refused because another process's batch had landed first
    last_seq_read: int = 0
    # (signature, fills; 0 for a funding update) of recent transactions, bounded
    posted: list[tuple[Signature, int]] = field(default_factory=list)

    def note_posted(self, sig: Signature, num_fills: int) -> None:
        self.posted.append((sig, num_fills))
        if len(self.posted) > 100_000:
            del self.posted[:50_000]


_TRANSIENT = (
    httpx.HTTPError,
    SolanaRpcException,
    UnconfirmedTxError,
    TransactionExpiredBlockheightExceededError,
    OSError,
    asyncio.TimeoutError,
)


def rejection_of(exc: BaseException) -> tuple[int | None, str] | None:
    """(IDL code or None, message) when ``exc`` says the program refused the transaction;
    ``None`` when it is an RPC/transport failure worth retrying."""
    if isinstance(exc, ProgramError):
        return exc.code, exc.msg or str(exc)
    if isinstance(exc, RPCException):
        info = exc.args[0] if exc.args else None
        err = getattr(getattr(info, "data", None), "err", None)
        if isinstance(err, TransactionErrorInstructionError):
            return None, f"instruction error: {err}"
    return None


class _ChainMoved(Exception):
    """A batch lost the race to another process's batch: re-plan from the chain's progress."""


class SettlementService:
    """Posts the journal's fills and funding updates to the clearing program, exactly once."""

    def __init__(
        self,
        *,
        journal: Journal,
        program: Program,
        operator: Keypair,
        accounts: AccountMap,
        config: SettlementConfig,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if program.provider.wallet.public_key != operator.pubkey():
            raise SettlementConfigError(
                f"program provider: expected the operator {operator.pubkey()} as payer, got "
                f"{program.provider.wallet.public_key}"
            )
        self.journal = journal
        self.program = program
        self.operator = operator
        self.accounts = accounts
        self.config = config
        self.addresses = ClearingAddresses(program.program_id)
        self.exchange = self.addresses.exchange()[0]
        self.markets = {i: self.addresses.market(i)[0] for i in config.market_ids}
        self.progress: dict[int, MarketProgress] = {}
        self.liquidation_sequence = 0  # Exchange.last_liquidation_sequence
        self._booked_onchain: dict[int, type] = {}  # see BatchPlanner.booked_onchain
        self.cursor = 0  # journal seq read up to
        self.state = ServiceState.NEW
        self.halt: SettlementRejection | None = None
        self.metrics = SettlementMetrics()
        self._sleep = sleep
        self._outcome_unknown = False  # an action was posted but its outcome not recorded
        # Test seam: awaited after an action landed and before the progress records it.
        self.after_landed: Callable[[Action], Awaitable[None]] | None = None

    # ------------------------------------------------------------ progress (on-chain)
    async def _fetch_markets(self) -> dict[int, Any]:
        ids = list(self.markets)
        accounts = await self.program.account["Market"].fetch_multiple(
            [self.markets[i] for i in ids], commitment=Confirmed
        )
        out = {}
        for market_id, market in zip(ids, accounts, strict=True):
            if market is None:
                raise UnmappedAccount(
                    f"market {market_id}: expected a Market account at {self.markets[market_id]}"
                )
            out[market_id] = market
        return out

    async def _fetch_exchange(self) -> Any:
        exchange = await self.program.account["Exchange"].fetch(self.exchange, commitment=Confirmed)
        if exchange is None:
            raise UnmappedAccount(f"exchange: expected an Exchange account at {self.exchange}")
        return exchange

    async def resume(self) -> None:
        """Load progress from the Market accounts (the only progress that counts)."""
        self._check_not_halted()
        markets = await self._with_retries("resume", self._fetch_markets)
        exchange = await self._with_retries("resume", self._fetch_exchange)
        self.liquidation_sequence = int(exchange.last_liquidation_sequence)
        self._booked_onchain = {}
        self.progress = {
            i: MarketProgress(
                m.last_settled_sequence, m.last_funding_sequence, m.tick_size, m.lot_size
            )
            for i, m in markets.items()
        }
        self.cursor = min(
            min(p.settled_sequence, p.funding_sequence) for p in self.progress.values()
        )
        self.state = ServiceState.RUNNING
        log.info("settlement: resumed after journal seq %d (%s)", self.cursor, self.progress)

    # ------------------------------------------------------------ main loop
    async def settle_available(self, upto_seq: int | None = None) -> int:
        """Settle everything journaled so far (only up to ``upto_seq`` when given: the
        withdrawal executor settles the fills before a withdrawal first); returns the number
        of actions that landed."""
        self._check_not_halted()
        landed = 0
        while True:
            if self.state is ServiceState.NEW or self._outcome_unknown:
                # After an action whose outcome was never recorded (an exception between
                # posting and recording) or a lost race, only the chain knows where settlement
                # is; the program refuses any batch that does not continue it.
                await self.resume()
            last = self.journal.refresh()
            if upto_seq is not None:
                last = min(last, upto_seq)
            try:
                while self.cursor < last:
                    upto = min(last, self.cursor + _JOURNAL_READ_CHUNK)
                    events = list(self.journal.read(after_seq=self.cursor, upto_seq=upto))
                    planner = BatchPlanner(
                        self.accounts, self.progress, self.config,
                        liquidation_sequence=self.liquidation_sequence,
                        booked_onchain=self._booked_onchain,
                    )  # fmt: skip
                    for action in planner.plan(events):
                        await self._settle(action)
                        landed += 1
                    self.cursor = upto
                    self.metrics.last_seq_read = upto
                return landed
            except _ChainMoved as moved:
                self.metrics.lost_races += 1
                log.warning("settlement: %s; reloading progress from the chain", moved)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll the journal until ``stop`` is set (or a rejection halts settlement)."""
        while not stop.is_set():
            await self.settle_available()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.poll_interval_s)

    # ------------------------------------------------------------ one action
    async def _settle(self, action: Action) -> None:
        self._outcome_unknown = True
        delay = self.config.retry_initial_s
        attempts = 0
        while True:
            attempts += 1
            try:
                sig = await self._post(action)
                landed = await self._landed(action)
                if not landed:
                    # confirmed but not applied: a failed transaction is a rejection
                    self._reject(action, None, "confirmed, but the Market sequence did not move")
                self.metrics.note_posted(
                    sig,
                    len(action.fills)
                    if isinstance(action, FillBatch)
                    else len(action.moves)
                    if isinstance(action, LiquidationBatch)
                    else 0,
                )
                break
            except (ProgramError, RPCException) as exc:
                refusal = rejection_of(exc)
                if refusal is None:
                    error: BaseException = exc
                else:
                    if await self._landed_after_failure(action):
                        break  # an earlier attempt had landed; the retry hit the sequence check
                    if refusal[0] == BATCH_NOT_CONTIGUOUS and isinstance(action, FillBatch):
                        await self._raise_if_chain_moved(action)
                    if refusal[0] in LIQUIDATION_NOT_CONTIGUOUS and isinstance(
                        action, LiquidationBatch
                    ):
                        await self._raise_if_liquidations_moved(action)
                    self._reject(action, *refusal)
            except _TRANSIENT as exc:
                error = exc
            self.metrics.rpc_retries += 1
            log.warning(
                "settlement: %s seq %d attempt %d failed (%r); retrying in %.2fs",
                type(action).__name__, action.sequence, attempts, error, delay,
            )  # fmt: skip
            if self.config.max_attempts and attempts >= self.config.max_attempts:
                raise RetriesExhausted(
                    f"{type(action).__name__} seq {action.sequence}: expected success within "
                    f"{self.config.max_attempts} attempts, got {error!r}"
                ) from error
            await self._sleep(delay)
            delay = min(delay * 2, self.config.retry_max_s)
            if await self._landed_after_failure(action):
                break
        if self.after_landed is not None:
            await self.after_landed(action)
        self._record(action)
        self._outcome_unknown = False

    async def _post(self, action: Action) -> Signature:
        if isinstance(action, LiquidationBatch):
            return await self._post_liquidations(action)
        market = self.markets[action.market_id]
        if isinstance(action, FillBatch):
            limit = self.config.compute_units_base + self.config.compute_units_per_fill * len(
                action.fills
            )
            ctx = Context(
                accounts={"exchange": self.exchange, "market": market,
                          "operator": self.operator.pubkey()},
                remaining_accounts=[AccountMeta(u, False, True) for u in action.users],
                pre_instructions=[set_compute_unit_limit(min(limit, MAX_COMPUTE_UNITS))],
            )  # fmt: skip
            fills = [f.arg() for f in action.fills]
            sig: Signature = await self.program.rpc["settle_fills"](
                action.previous_sequence, action.first_seq, action.sequence, fills, ctx=ctx
            )
            return sig
        ctx = Context(
            accounts={"exchange": self.exchange, "market": market,
                      "operator": self.operator.pubkey()},
        )  # fmt: skip
        sig = await self.program.rpc["update_funding"](
            action.sequence, action.rate, action.index_price, ctx=ctx
        )
        return sig

    async def _post_liquidations(self, action: LiquidationBatch) -> Signature:
        limit = self.config.compute_units_base + 2 * self.config.compute_units_per_fill * len(
            action.moves
        )
        remaining = [AccountMeta(self.markets[m], False, True) for m, _ in action.markets]
        remaining += [AccountMeta(u, False, True) for u in action.users]
        ctx = Context(
            accounts={"exchange": self.exchange, "operator": self.operator.pubkey()},
            remaining_accounts=remaining,
            pre_instructions=[set_compute_unit_limit(min(limit, MAX_COMPUTE_UNITS))],
        )
        previous = [p for _, p in action.markets]
        previous += [0] * (MAX_LIQUIDATION_BATCH_MARKETS - len(previous))
        sig: Signature = await self.program.rpc["settle_liquidation"](
            action.previous_sequence, action.first_seq, action.sequence, len(action.markets),
            previous, [m.arg() for m in action.moves], ctx=ctx,
        )  # fmt: skip
        return sig

    async def _landed(self, action: Action) -> bool:
        if isinstance(action, LiquidationBatch):
            exchange = await self._fetch_exchange()
            return bool(exchange.last_liquidation_sequence >= action.sequence)
        market = await self.program.account["Market"].fetch(
            self.markets[action.market_id], commitment=Confirmed
        )
        if isinstance(action, FillBatch):
            return bool(market.last_settled_sequence >= action.sequence)
        return bool(market.last_funding_sequence >= action.sequence)

    async def _landed_after_failure(self, action: Action) -> bool:
        """Whether an earlier attempt landed (reads retried until the RPC answers)."""
        landed = bool(await self._with_retries("read Market", lambda: self._landed(action)))
        if landed:
            self.metrics.found_landed += 1
            log.info(
                "settlement: %s seq %d had landed",
                type(action).__name__, action.sequence,
            )  # fmt: skip
        return landed

    async def _raise_if_chain_moved(self, action: FillBatch) -> None:
        """``_ChainMoved`` when the Market's settled sequence is no longer the one the batch
        continues: another process's batch landed first (nothing of ours was applied)."""
        market = await self._with_retries(
            "read Market",
            lambda: self.program.account["Market"].fetch(
                self.markets[action.market_id], commitment=Confirmed
            ),
        )
        if market.last_settled_sequence != action.previous_sequence:
            raise _ChainMoved(
                f"market {action.market_id} batch {action.first_seq}..{action.sequence}: "
                f"expected the chain at {action.previous_sequence}, got "
                f"{market.last_settled_sequence}"
            )

    async def _raise_if_liquidations_moved(self, action: LiquidationBatch) -> None:
        """``_ChainMoved`` when the Exchange's liquidation chain (or a market's settled chain)
        no longer is where the batch continues it: another process's batch landed first."""
        exchange = await self._with_retries("read Exchange", self._fetch_exchange)
        markets = await self._with_retries("read Markets", self._fetch_markets)
        moved = exchange.last_liquidation_sequence != action.previous_sequence or any(
            markets[m].last_settled_sequence != previous for m, previous in action.markets
        )
        if moved:
            raise _ChainMoved(
                f"liquidation batch {action.first_seq}..{action.sequence}: expected the chain "
                f"at {action.previous_sequence}, got {exchange.last_liquidation_sequence}"
            )

    async def _with_retries(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        delay = self.config.retry_initial_s
        attempts = 0
        while True:
            attempts += 1
            try:
                return await call()
            except (*_TRANSIENT, RPCException) as exc:
                self.metrics.rpc_retries += 1
                if self.config.max_attempts and attempts >= self.config.max_attempts:
                    raise RetriesExhausted(
                        f"{what}: expected success within {self.config.max_attempts} "
                        f"attempts, got {exc!r}"
                    ) from exc
                log.warning("settlement: %s failed (%r); retrying in %.2fs", what, exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.config.retry_max_s)

    def _record(self, action: Action) -> None:
        if isinstance(action, LiquidationBatch):
            self.liquidation_sequence = action.sequence
            for market_id, _ in action.markets:
                self.progress[market_id] = self.progress[market_id]._replace(
                    settled_sequence=action.sequence
                )
            self.metrics.liquidation_batches += 1
            self.metrics.liquidation_moves += len(action.moves)
            return
        p = self.progress[action.market_id]
        if isinstance(action, FillBatch):
            self.progress[action.market_id] = p._replace(settled_sequence=action.sequence)
            self.metrics.batches_posted += 1
            self.metrics.fills_settled += len(action.fills)
        else:
            self.progress[action.market_id] = p._replace(funding_sequence=action.sequence)
            self.metrics.funding_updates += 1

    def _reject(self, action: Action, error_code: int | None, message: str) -> None:
        name = (
            "settle_fills"
            if isinstance(action, FillBatch)
            else "settle_liquidation"
            if isinstance(action, LiquidationBatch)
            else "update_funding"
        )
        self.halt = SettlementRejection(
            action.market_id, action.sequence, name, error_code, message
        )
        self.state = ServiceState.HALTED
        log.error(
            "settlement HALTED: %s market %d seq %d rejected by the program: %s (code %s)",
            name, action.market_id, action.sequence, message, error_code,
        )  # fmt: skip
        raise SettlementHalted(
            f"{name} market {action.market_id} seq {action.sequence}: expected the program to "
            f"accept it, got {message} (code {error_code})",
            error_code=error_code,
            sequence=action.sequence,
        )

    def _check_not_halted(self) -> None:
        if self.halt is not None:
            h = self.halt
            raise SettlementHalted(
                f"settlement: halted at {h.action} market {h.market_id} seq {h.sequence} "
                f"({h.message}); expected an operator to resolve it",
                error_code=h.error_code,
                sequence=h.sequence,
            )


# ---------------------------------------------------------------- command line


def load_accounts_file(path: Path, addresses: ClearingAddresses) -> AccountMap:
    """``[[owner_id, sub_account_id, "wallet base58"], ...]`` -> ``AccountMap``."""
    try:
        rows = json.loads(path.read_text())
        wallets = {(int(o), int(s)): Pubkey.from_string(w) for o, s, w in rows}
    except (OSError, ValueError, TypeError) as exc:
        raise SettlementConfigError(
            f"accounts file {path}: expected [[owner_id, sub_account_id, wallet], ...], got {exc}"
        ) from exc
    return AccountMap(wallets, addresses)


async def _main_async(args: argparse.Namespace) -> int:
    operator = Keypair.from_bytes(bytes(json.loads(Path(args.operator_keypair).read_text())))
    program_id = Pubkey.from_string(args.program_id)
    accounts = load_accounts_file(Path(args.accounts), ClearingAddresses(program_id))
    config = SettlementConfig(
        market_ids=tuple(int(m) for m in args.markets.split(",")),
        max_fills_per_tx=args.max_fills_per_tx,
    )
    client = AsyncClient(args.rpc_url)
    journal = Journal(args.journal_url, read_only=True)
    service = SettlementService(
        journal=journal,
        program=clearing_program(client, operator, program_id),
        operator=operator,
        accounts=accounts,
        config=config,
    )
    stop = asyncio.Event()
    try:
        await service.run(stop)
    except SettlementHalted as exc:
        print(f"settlement: {exc.code}: {exc}", file=sys.stderr)
        return 2
    finally:
        journal.close()
        await client.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m settlement.service``: settle a journal against a cluster until stopped."""
    parser = argparse.ArgumentParser(prog="python -m settlement.service", description=__doc__)
    parser.add_argument("--rpc-url", required=True)
    parser.add_argument("--journal-url", required=True, help="e.g. sqlite:///data/journal.sqlite")
    parser.add_argument("--program-id", required=True)
    parser.add_argument("--operator-keypair", required=True, help="JSON array of 64 bytes")
    parser.add_argument("--accounts", required=True, help="JSON [[owner, sub, wallet], ...]")
    parser.add_argument("--markets", required=True, help="comma-separated market ids")
    parser.add_argument("--max-fills-per-tx", type=int, default=MAX_FILLS_PER_BATCH)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        return asyncio.run(_main_async(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
