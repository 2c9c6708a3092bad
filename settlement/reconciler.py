"""Reconciler: the engine's clearinghouse (the read model) against the clearing program's
accounts, to the unit.

Compared, for every mapped sub-account and configured market:

* the position: ``base`` and ``entry_quote`` of the engine position vs the User's slot for the
  market (a missing one on either side counts as zero);
* collateral with funding settled to each side's own index: the engine settles funding on
  more occasions than the program (every order, withdrawal, ...), so both sides are compared as
  if every position had just settled to its market's index (``collateral - pending funding``);
* per market the cumulative funding index and the open interest, and the Exchange's fee pool.

Call it with the engine state at a point settlement has reached (``recover(journal,
service.cursor)`` or the live clearinghouse once the service is caught up). Every difference
is a ``Mismatch`` record: logged at ERROR, counted in ``metrics.mismatches``, kept in
``mismatches`` and, given the engine's command sink ``submit``, journaled before any halt:

* each mismatch new in its market's incident (a new ``(owner, sub, field)`` or a new
  difference for it; collateral and exchange-wide values belong to ``NO_MARKET_ID``) as
  ``RecordReconciliationMismatch`` (with the sequence the engine state was at and the chain's
  confirmed slot) -> ``ReconciliationMismatchDetected``, which opens or extends the incident;
  a difference that persists unchanged is not journaled again run after run;
* each market found clean that has an incident open as ``RecordReconciliationClean`` ->
  ``ReconciliationMismatchResolved`` (after a restart every clean market is sent once: the
  engine closes the ones open and ignores the rest);

then, when ``halt_on_mismatch``, answered with ``SetMarketStatus(HALTED)`` for the market
concerned (every configured market for a collateral or global difference), journaled as
``MarketStatusChanged``. Without ``submit`` (read-only checks) nothing is journaled.
``compare`` and ``answer`` are the two halves of ``reconcile``, for a caller that must look
at the differences before they are journaled (the node discards a run a deposit overtook).
"""

from __future__ import annotations

import base64
import inspect
import logging
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from anchorpy import Program
from solana.rpc.commitment import Confirmed
from solders.pubkey import Pubkey

from exchange.core.commands import (
    BookOnChainLiquidation,
    Command,
    RecordReconciliationClean,
    RecordReconciliationMismatch,
    SetMarketStatus,
)
from exchange.core.events import (
    NO_MARKET_ID,
    OrderRejected,
    ReconciliationMismatchDetected,
    ReconciliationMismatchResolved,
)
from exchange.core.units import I64_MIN, U64_MAX
from perp.clearinghouse import Clearinghouse
from perp.math.funding import settle
from perp.risk_gate import MarketStatus
from settlement.errors import ReconciliationRecordRefused, SettlementConfigError, UnmappedAccount
from settlement.onchain import AccountMap, ClearingAddresses, check_market_ids
from settlement.spec import event_discriminator

log = logging.getLogger(__name__)

NO_ACCOUNT: Final = (-1, -1)
_PROGRAM_DATA: Final = "Program data: "
_POSITION_LIQUIDATED: Final = event_discriminator("PositionLiquidated")
# market, owner, liquidator, base_delta, quote_delta, price, fee, to liquidator, to fund, index
POSITION_LIQUIDATED_LAYOUT: Final = struct.Struct("<H32s32sqqQQQQ16s")


def program_events(
    logs: Iterable[str], discriminator: bytes, layout: struct.Struct
) -> Iterator[tuple[Any, ...]]:
    """The fields of each event with ``discriminator`` among a transaction's program logs
    (``Program data:`` lines), in order, unpacked with ``layout``."""
    for line in logs:
        if line.startswith(_PROGRAM_DATA):
            data = base64.b64decode(line.removeprefix(_PROGRAM_DATA))
            if data[:8] == discriminator:
                yield layout.unpack(data[8:])


def position_liquidated_events(logs: Iterable[str]) -> Iterator[tuple[Any, ...]]:
    """The fields of each ``PositionLiquidated`` in a transaction's logs, in
    ``POSITION_LIQUIDATED_LAYOUT`` order."""
    return program_events(logs, _POSITION_LIQUIDATED, POSITION_LIQUIDATED_LAYOUT)


class OnChainLiquidation(NamedTuple):
    """One ``PositionLiquidated`` of the program, in engine accounts: the fact the engine must
    book (docs/PROTOCOL.md, On-chain liquidation) for its positions to agree with the chain."""

    market_id: int
    owner_id: int  # the liquidated account
    sub_account_id: int
    liquidator_owner_id: int
    liquidator_sub_account_id: int
    base_delta: int  # BASE_PRECISION: the liquidated account's change (liquidator: -base_delta)
    quote_delta: int  # QUOTE_PRECISION: quote to the liquidated account (liquidator: -quote)
    price: int  # PRICE_PRECISION, the on-chain oracle price
    fee_quote: int
    liquidator_fee_quote: int
    insurance_fee_quote: int
    cumulative_funding: int  # the market's funding index on-chain when the slice moved


def _engine_account(accounts: AccountMap, wallet: bytes) -> tuple[int, int]:
    user = accounts.addresses.user(Pubkey.from_bytes(wallet))[0]
    try:
        return accounts.engine_account(user)
    except KeyError:
        raise UnmappedAccount(
            f"wallet {Pubkey.from_bytes(wallet)}: expected a wallet of the account map"
        ) from None


def liquidations_in_logs(logs: Iterable[str], accounts: AccountMap) -> list[OnChainLiquidation]:
    """The ``PositionLiquidated`` events of one transaction's program logs, in order, with both
    owners' wallets mapped to engine accounts (an unmapped wallet is ``UnmappedAccount``)."""
    out = []
    for event in position_liquidated_events(logs):
        market, owner, liquidator, base, quote, price, fee, to_liquidator, to_fund, index = event
        liquidated_key = _engine_account(accounts, owner)
        liquidator_key = _engine_account(accounts, liquidator)
        out.append(
            OnChainLiquidation(
                market,
                *liquidated_key,
                *liquidator_key,
                base,
                quote,
                price,
                fee,
                to_liquidator,
                to_fund,
                int.from_bytes(index, "little", signed=True),
            )
        )
    return out


_ACCOUNT_LIQUIDATED: Final = event_discriminator("AccountLiquidated")
_ACCOUNT_LIQUIDATED_LAYOUT: Final = struct.Struct("<64xqQQqB")


def booking_commands(
    logs: Iterable[str], tx_signature: str, accounts: AccountMap
) -> list[BookOnChainLiquidation]:
    """The engine commands that book one transaction's on-chain liquidation(s) as facts: one
    ``BookOnChainLiquidation`` per ``PositionLiquidated`` (slice index = its position in the
    transaction), the fund's payment of each ``AccountLiquidated`` on that liquidation's
    last slice. The engine applies each exactly once (signature, slice index)."""
    logs = list(logs)
    slices = liquidations_in_logs(logs, accounts)
    payments = [
        (count, payment)
        for _, _, payment, _, count in program_events(
            logs, _ACCOUNT_LIQUIDATED, _ACCOUNT_LIQUIDATED_LAYOUT
        )
    ]
    last_slice_payment: dict[int, int] = {}
    at = 0
    for count, payment in payments:  # AccountLiquidated follows its slices
        at += count
        if count:
            last_slice_payment[at - 1] = payment
    return [
        BookOnChainLiquidation(
            s.market_id,
            s.owner_id,
            s.sub_account_id,
            s.liquidator_owner_id,
            s.liquidator_sub_account_id,
            s.base_delta,
            s.quote_delta,
            s.price,
            s.fee_quote,
            s.liquidator_fee_quote,
            s.insurance_fee_quote,
            s.cumulative_funding,
            tx_signature,
            i,
            last_slice_payment.get(i, 0),
        )
        for i, s in enumerate(slices)
    ]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReconcilerConfig:
    market_ids: tuple[int, ...]
    halt_on_mismatch: bool = True

    def __post_init__(self) -> None:
        check_market_ids(self.market_ids)
        if type(self.halt_on_mismatch) is not bool:
            raise SettlementConfigError(
                f"halt_on_mismatch: expected a bool, got {self.halt_on_mismatch!r}"
            )


class Mismatch(NamedTuple):
    """One value on which the engine and the chain disagree."""

    owner_id: int  # -1 for a market or exchange value
    sub_account_id: int
    market_id: int  # NO_MARKET_ID for collateral and exchange values
    field: str  # e.g. "base", "entry_quote", "settled_collateral_quote"
    engine_value: int
    onchain_value: int


@dataclass(slots=True)
class ReconcilerMetrics:
    runs: int = 0
    accounts_checked: int = 0
    mismatches: int = 0
    halts_sent: int = 0
    mismatches_recorded: int = 0  # ReconciliationMismatchDetected journaled
    incidents_resolved: int = 0  # ReconciliationMismatchResolved journaled


@dataclass(frozen=True, slots=True)
class Comparison:
    """What one comparison found, before anything is journaled or halted."""

    accounts_checked: int
    mismatches: tuple[Mismatch, ...]
    settled_through_seq: int  # the journal sequence of the engine state compared
    chain_slot: int  # the cluster's confirmed slot when the reads began (accounts: it or later)


@dataclass(frozen=True, slots=True)
class ReconciliationReport:
    accounts_checked: int
    mismatches: tuple[Mismatch, ...]
    halted_markets: tuple[int, ...]
    recorded: tuple[Mismatch, ...] = ()  # journaled by this run (new in their incident)
    resolved_markets: tuple[int, ...] = ()  # incidents this run closed
    settled_through_seq: int = 0
    chain_slot: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _pending_payment(base: int, snapshot: int, carry: int, index_now: int) -> int:
    return settle(base, snapshot, index_now, carry).payment_quote if base else 0


def _journal_int(value: int) -> int:
    # the journal's JSON integers are 64-bit: a wilder on-chain value (an i128 funding index)
    # is recorded at the bound; the log line and the report keep it exact
    return min(max(value, I64_MIN), U64_MAX)


class Reconciler:
    """Compares engine and chain; see the module docstring."""

    def __init__(
        self,
        *,
        program: Program,
        accounts: AccountMap,
        config: ReconcilerConfig,
        submit: Callable[[Command], Any] | None = None,
    ) -> None:
        if config.halt_on_mismatch and submit is None:
            raise SettlementConfigError(
                "submit: expected the engine's command sink when halt_on_mismatch is set"
            )
        self.program = program
        self.accounts = accounts
        self.config = config
        self.submit = submit
        addresses = ClearingAddresses(program.program_id)
        self.exchange = addresses.exchange()[0]
        self.markets = {i: addresses.market(i)[0] for i in config.market_ids}
        self.metrics = ReconcilerMetrics()
        self.mismatches: list[Mismatch] = []
        # per market with an incident this reconciler opened or added to: each mismatch's
        # (owner, sub, field) -> the difference journaled (chain - engine); None before the
        # first answer, when any market may have an incident open from before a restart
        self._incidents: dict[int, dict[tuple[int, int, str], int]] | None = None

    async def reconcile(self, engine: Clearinghouse) -> ReconciliationReport:
        """One comparison of ``engine`` with the chain's current (confirmed) accounts,
        journaled and answered (:meth:`compare` then :meth:`answer`)."""
        return await self.answer(await self.compare(engine))

    async def compare(self, engine: Clearinghouse) -> Comparison:
        """Compare ``engine`` with the chain's current (confirmed) accounts; changes nothing."""
        keys = self.accounts.keys()
        slot = (await self.program.provider.connection.get_slot(Confirmed)).value
        users = await self.program.account["User"].fetch_multiple(
            [self.accounts.user(*k) for k in keys], commitment=Confirmed
        )
        ids = list(self.markets)
        markets = await self.program.account["Market"].fetch_multiple(
            [self.markets[i] for i in ids], commitment=Confirmed
        )
        exchange = await self.program.account["Exchange"].fetch(self.exchange, Confirmed)
        chain_markets = {}
        for market_id, market in zip(ids, markets, strict=True):
            if market is None:
                raise UnmappedAccount(f"market {market_id}: expected a Market account on-chain")
            chain_markets[market_id] = market
        found: list[Mismatch] = []

        def compare(
            key: tuple[int, int], market_id: int, name: str, mine: int, theirs: int
        ) -> None:
            if mine != theirs:
                found.append(Mismatch(key[0], key[1], market_id, name, mine, theirs))

        open_interest = dict.fromkeys(ids, 0)
        for key, user in zip(keys, users, strict=True):
            acct = engine.account(*key)
            slots = {}
            if user is not None:
                slots = {p.market_index: p for p in user.positions if p.in_use}
            engine_settled = acct.collateral_quote
            chain_settled = user.collateral_quote if user is not None else 0
            for market_id in ids:
                mine = acct.positions.get(market_id)
                theirs = slots.get(market_id)
                base = mine.base if mine else 0
                compare(key, market_id, "base", base, theirs.base if theirs else 0)
                compare(key, market_id, "entry_quote", mine.entry_quote if mine else 0,
                        theirs.entry_quote if theirs else 0)  # fmt: skip
                open_interest[market_id] += max(base, 0)
                if mine:
                    index = engine.markets[market_id].cumulative_funding
                    engine_settled -= _pending_payment(
                        mine.base, mine.funding_snapshot, mine.funding_carry_numerator, index
                    )
                if theirs:
                    index = chain_markets[market_id].cumulative_funding
                    chain_settled -= _pending_payment(
                        theirs.base, theirs.funding_snapshot, theirs.funding_carry_numerator, index
                    )
            compare(key, NO_MARKET_ID, "settled_collateral_quote", engine_settled, chain_settled)
        for market_id in ids:
            chain = chain_markets[market_id]
            compare(NO_ACCOUNT, market_id, "cumulative_funding",
                    engine.markets[market_id].cumulative_funding, chain.cumulative_funding)  # fmt: skip
            compare(NO_ACCOUNT, market_id, "open_interest_base", open_interest[market_id],
                    chain.open_interest_base)  # fmt: skip
        compare(NO_ACCOUNT, NO_MARKET_ID, "fee_pool_quote", engine.fee_pool_quote,
                exchange.fee_pool_quote)  # fmt: skip
        self.metrics.runs += 1
        self.metrics.accounts_checked += len(keys)
        return Comparison(len(keys), tuple(found), engine.next_seq - 1, slot)

    async def answer(self, comparison: Comparison) -> ReconciliationReport:
        """Log and count every mismatch; with ``submit``, journal each one new in its
        market's incident (``RecordReconciliationMismatch``) and close the incidents of the
        markets found clean (``RecordReconciliationClean``); then, with
        ``halt_on_mismatch``, halt the markets concerned. A record the engine refused is a
        ``ReconciliationRecordRefused`` once the halts are sent."""
        found = comparison.mismatches
        self.metrics.mismatches += len(found)
        self.mismatches.extend(found)
        for m in found:
            log.error("reconciliation mismatch: %s", m._asdict())
        recorded: list[Mismatch] = []
        resolved: list[int] = []
        refused: list[str] = []
        if self.submit is not None:
            await self._journal(comparison, recorded, resolved, refused)
        halted = await self._halt(found)
        if refused:
            raise ReconciliationRecordRefused(
                f"reconciliation records: expected the engine to journal them, got {refused}"
            )
        return ReconciliationReport(
            comparison.accounts_checked, found, halted, tuple(recorded), tuple(resolved),
            comparison.settled_through_seq, comparison.chain_slot,
        )  # fmt: skip

    async def _send(self, command: Command) -> list[Any]:
        assert self.submit is not None
        result = self.submit(command)
        if inspect.isawaitable(result):
            result = await result
        return list(result)

    async def _journal(
        self,
        comparison: Comparison,
        recorded: list[Mismatch],
        resolved: list[int],
        refused: list[str],
    ) -> None:
        seq, slot = comparison.settled_through_seq, comparison.chain_slot
        first = self._incidents is None
        incidents = self._incidents if self._incidents is not None else {}
        for m in comparison.mismatches:
            incident = incidents.setdefault(m.market_id, {})
            key = (m.owner_id, m.sub_account_id, m.field)
            difference = m.onchain_value - m.engine_value
            if incident.get(key) == difference:
                continue  # the same difference as journaled: the incident holds it already
            engine_value, onchain_value = (
                _journal_int(m.engine_value),
                _journal_int(m.onchain_value),
            )
            record = RecordReconciliationMismatch(
                m.market_id, m.owner_id, m.sub_account_id, m.field, engine_value, onchain_value,
                seq, slot,
            )  # fmt: skip
            events = await self._send(record)
            if not any(type(e) is ReconciliationMismatchDetected for e in events):
                refused.append(f"{m._asdict()}: {events!r}")
                continue
            incident[key] = difference
            recorded.append(m)
            self.metrics.mismatches_recorded += 1
        # a market is clean when none of its values differed (NO_MARKET_ID: no collateral or
        # exchange-wide value); after a (re)start every clean market may have one open
        dirty = {m.market_id for m in comparison.mismatches}
        candidates = (*self.config.market_ids, NO_MARKET_ID) if first else tuple(incidents)
        for market_id in sorted(set(candidates) - dirty):
            events = await self._send(RecordReconciliationClean(market_id, seq, slot))
            if any(type(e) is OrderRejected for e in events):
                refused.append(f"clean market {market_id}: {events!r}")
                continue
            incidents.pop(market_id, None)
            if any(type(e) is ReconciliationMismatchResolved for e in events):
                resolved.append(market_id)
                self.metrics.incidents_resolved += 1
        self._incidents = incidents

    async def _halt(self, found: tuple[Mismatch, ...]) -> tuple[int, ...]:
        if not found or not self.config.halt_on_mismatch:
            return ()
        markets: set[int] = set()
        for m in found:
            markets.update(
                self.config.market_ids if m.market_id == NO_MARKET_ID else (m.market_id,)
            )
        for market_id in sorted(markets):
            await self._send(SetMarketStatus(market_id, int(MarketStatus.HALTED)))
            self.metrics.halts_sent += 1
        log.error("reconciliation: halted markets %s", sorted(markets))
        return tuple(sorted(markets))
