"""The deposit bridge: collateral that lands in the clearing program's vault on-chain is credited
to the engine, exactly once.

A user deposits on-chain by itself (``deposit``, wallet-signed; the program emits a
``Deposited`` event). The bridge watches the chain: it lists the vault's transactions
(``getSignaturesForAddress``, newest first, paged back to the last one it has seen), reads
each confirmed transaction's logs and parses the program's events with anchorpy's
``EventParser``. Every ``Deposited`` of a wallet in the ``AccountMap`` becomes
``Deposit(owner_id, sub_account_id, amount_quote)`` into the engine. Open sign-up: with
``register`` set, the first deposit of a wallet the map does not know first sends
``RegisterAccount`` (durable before the credit); the engine's ``AccountRegistered`` names the
account, which joins the map (so settlement, withdrawals and the reconciler know it) and
takes the credit. Without ``register``, deposits of unmapped wallets stay on-chain and are
counted (``metrics.unmapped``). A failed transaction is skipped. A crash between the
registration and the credit leaves a registered wallet with an uncredited deposit: the map is
rebuilt from the engine's registry at start and the next poll credits it.

Exactly once across crashes: before a credit the bridge writes the deposit as ``pending`` in
its state file together with the engine's last sequence number at that moment; after the
engine acknowledged the durable ``CollateralDeposited`` it records the deposit as credited.
On start a leftover ``pending`` is resolved from the journal (a ``CollateralDeposited`` of that
sub-account and amount after the recorded sequence means it was credited), so a crash between
the two writes neither loses nor doubles a deposit. The bridge is the only source of
``Deposit`` commands in a node, which makes that match unambiguous.

Every credited deposit is also kept in the state file's ``history`` (signature, slot, engine
account, amount, the engine seq of its ``CollateralDeposited``): ``deposits(owner_id)`` is the
API's ``GET /v1/deposits``.

The same vault transactions carry the two other on-chain facts the engine must book (``book``,
the engine's submit; without it they are left and counted, ``metrics.unbooked``):

* a wallet's own ``withdraw`` (the escape hatch, open only after the operator was inactive for
  ``Exchange.escape_hatch_slots``; event ``Withdrawn``; the operator's ``process_withdrawal``
  logs ``WithdrawalProcessed`` instead and is the engine's own ``CollateralWithdrawn``) becomes
  ``BookOnChainWithdrawal(owner, sub, amount, signature, index)``. The engine books each
  ``(signature, index)`` once and refuses a second (``ONCHAIN_WITHDRAWAL_DUPLICATE``, counted as
  booked), so no pending record is needed: a crash before the state is saved re-sends it.
* an insurance top-up (``deposit_insurance``, event ``InsuranceDeposited``) becomes the engine's
  ``DepositInsurance(amount)``, the only source of that command in a node: exactly once like a
  deposit (``pending`` with the engine's last seq; at start an ``InsuranceFundDeposited`` of
  that amount after it means it was credited).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from anchorpy import EventParser, Program
from solders.pubkey import Pubkey

from exchange.core.commands import (
    BookOnChainWithdrawal,
    Deposit,
    DepositInsurance,
    RegisterAccount,
)
from exchange.core.errors import RejectCode
from exchange.core.events import (
    AccountRegistered,
    CollateralDeposited,
    Event,
    InsuranceFundDeposited,
    OnChainWithdrawalBooked,
    OrderRejected,
)
from exchange.engine.journal import Journal
from settlement.errors import SettlementError
from settlement.onchain import AccountMap, confirmed_logs, unscanned_signatures, wallet_hex

log = logging.getLogger(__name__)

SCANNED_KEPT: Final = 50_000  # signatures remembered (newest), bounds the state file
STATE_VERSION: Final = 1


class BridgeError(SettlementError):
    """The bridge cannot continue (state file unreadable, engine refused a landed deposit)."""

    code = "BRIDGE"


@dataclass(frozen=True, slots=True)
class ChainDeposit:
    """One ``Deposited`` event of a confirmed transaction."""

    signature: str
    event_index: int  # position among the transaction's Deposited events
    slot: int
    wallet: Pubkey
    amount_quote: int  # QUOTE_PRECISION

    @property
    def key(self) -> str:
        return f"{self.signature}:{self.event_index}"


@dataclass(frozen=True, slots=True)
class ChainWithdrawal:
    """One ``Withdrawn`` event (a wallet's escape-hatch ``withdraw``) of a confirmed
    transaction."""

    signature: str
    event_index: int  # position among the transaction's Withdrawn events
    slot: int
    wallet: Pubkey
    amount_quote: int  # QUOTE_PRECISION

    @property
    def key(self) -> str:
        return f"{self.signature}:w{self.event_index}"


@dataclass(frozen=True, slots=True)
class ChainInsuranceDeposit:
    """One ``InsuranceDeposited`` event (``deposit_insurance``) of a confirmed transaction."""

    signature: str
    event_index: int  # position among the transaction's InsuranceDeposited events
    slot: int
    funder: Pubkey
    amount_quote: int  # QUOTE_PRECISION

    @property
    def key(self) -> str:
        return f"{self.signature}:i{self.event_index}"


ChainFact = ChainDeposit | ChainWithdrawal | ChainInsuranceDeposit


@dataclass(slots=True)
class BridgeMetrics:
    polls: int = 0
    transactions_read: int = 0
    deposits_credited: int = 0
    deposited_quote: int = 0  # QUOTE_PRECISION, credited by this process
    unmapped: int = 0  # deposits of wallets outside the account map (left on-chain)
    registered: int = 0  # wallets this process registered (open sign-up)
    failed_transactions: int = 0
    recovered_pending: int = 0  # pending credits found in the journal at start
    withdrawals_booked: int = 0  # escape-hatch withdrawals the engine booked (or had booked)
    withdrawn_quote: int = 0  # QUOTE_PRECISION, booked by this process
    insurance_credited: int = 0  # insurance top-ups credited
    insurance_quote: int = 0  # QUOTE_PRECISION, credited by this process
    unbooked: int = 0  # withdrawals / top-ups left on-chain (no ``book``, unmapped wallet)


@dataclass(slots=True)
class BridgeState:
    """What the bridge has done, persisted (``state_path``) after every step."""

    scanned: list[str] = field(default_factory=list)  # vault signatures fully processed
    credited: list[str] = field(default_factory=list)  # ChainDeposit keys credited
    pending: dict[str, Any] | None = None  # the credit in flight, see the module docstring
    # credited deposits (signature, slot, owner_id, sub_account_id, amount_quote, sequence:
    # the engine seq of its CollateralDeposited), oldest first: the API's deposit listing
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> BridgeState:
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != STATE_VERSION:
                raise ValueError(f"version {raw.get('version')!r}")
            return cls(
                list(raw["scanned"]),
                list(raw["credited"]),
                raw["pending"],
                list(raw.get("history", [])),  # absent in files written before it existed
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise BridgeError(
                f"bridge state {path}: expected a version {STATE_VERSION} JSON file, got {exc}"
            ) from exc

    def save(self, path: Path) -> None:
        """Atomically (write, fsync, rename)."""
        del self.scanned[:-SCANNED_KEPT]
        del self.credited[:-SCANNED_KEPT]
        del self.history[:-SCANNED_KEPT]
        body = {
            "version": STATE_VERSION,
            "scanned": self.scanned,
            "credited": self.credited,
            "pending": self.pending,
            "history": self.history,
        }
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


Credit = Callable[[Deposit], Awaitable[Sequence[Event]]]
Register = Callable[[RegisterAccount], Awaitable[Sequence[Event]]]
Book = Callable[[BookOnChainWithdrawal | DepositInsurance], Awaitable[Sequence[Event]]]


class DepositBridge:
    """Credits on-chain deposits to the engine; call ``recover`` once, then ``poll``."""

    def __init__(
        self,
        *,
        program: Program,
        vault: Pubkey,
        accounts: AccountMap,
        credit: Credit,
        engine_last_seq: Callable[[], int],
        journal: Journal,
        state_path: Path,
        register: Register | None = None,
        book: Book | None = None,
    ) -> None:
        self.program = program
        self.register = register
        self.book = book
        self.client = program.provider.connection
        self.vault = vault
        self.accounts = accounts
        self.credit = credit
        self.engine_last_seq = engine_last_seq
        self.journal = journal
        self.state_path = state_path
        self.state = BridgeState.load(state_path)
        self._scanned = set(self.state.scanned)
        self._credited = set(self.state.credited)
        self._parser = EventParser(program.program_id, program.coder)
        self.metrics = BridgeMetrics()

    # ------------------------------------------------------------------ start
    def recover(self) -> None:
        """Resolve a credit that was in flight when the last process stopped."""
        pending = self.state.pending
        if pending is None:
            return
        self.journal.refresh()
        owner, sub, amount = pending["owner_id"], pending["sub_account_id"], pending["amount"]
        insurance = pending.get("kind") == "insurance"
        landed = next(
            (
                e
                for e in self.journal.read(after_seq=pending["after_seq"])
                if (
                    type(e) is InsuranceFundDeposited and e.amount_quote == amount
                    if insurance
                    else type(e) is CollateralDeposited
                    and (e.owner_id, e.sub_account_id, e.amount_quote) == (owner, sub, amount)
                )
            ),
            None,
        )
        if landed is not None:
            if not insurance:
                self._remember(pending, landed.seq)
            self._mark_credited(pending["key"])
            self.metrics.recovered_pending += 1
            log.info("bridge: pending deposit %s was credited before the restart", pending["key"])
        else:
            log.info("bridge: pending deposit %s was not credited; crediting it", pending["key"])
            self.state.pending = None  # the next poll finds it uncredited on-chain
        self.state.save(self.state_path)

    # ------------------------------------------------------------------ chain
    async def _deposits_of(self, signature: str, slot: int) -> list[ChainFact] | None:
        """The transaction's Deposited, Withdrawn and InsuranceDeposited events, in log order
        (None: not readable yet)."""
        logs = await confirmed_logs(self.client, signature)
        if logs is None:
            return None
        events: list[Any] = []
        self._parser.parse_logs(logs, events.append)
        out: list[ChainFact] = []
        counts = {"Deposited": 0, "Withdrawn": 0, "InsuranceDeposited": 0}
        for event in events:
            if event.name not in counts:
                continue
            index = counts[event.name]
            counts[event.name] += 1
            amount = int(event.data.amount_quote)
            if event.name == "Deposited":
                out.append(ChainDeposit(signature, index, slot, event.data.owner, amount))
            elif event.name == "Withdrawn":
                out.append(ChainWithdrawal(signature, index, slot, event.data.owner, amount))
            else:
                out.append(ChainInsuranceDeposit(signature, index, slot, event.data.funder, amount))
        return out

    async def scan(self) -> list[tuple[str, list[ChainFact]]]:
        """New vault transactions (oldest first) with their deposits, withdrawals and top-ups;
        stops at the first one the RPC cannot return yet, so order is kept."""
        out: list[tuple[str, list[ChainFact]]] = []
        for sig, slot, failed in await unscanned_signatures(self.client, self.vault, self._scanned):
            if failed:
                self.metrics.failed_transactions += 1
                out.append((sig, []))
                continue
            deposits = await self._deposits_of(sig, slot)
            if deposits is None:
                break
            self.metrics.transactions_read += 1
            out.append((sig, deposits))
        return out

    # ------------------------------------------------------------------ credit
    async def poll(self) -> int:
        """Credit every new on-chain deposit; returns how many were credited."""
        self.metrics.polls += 1
        credited = 0
        for sig, facts in await self.scan():
            for fact in facts:
                if fact.key in self._credited:
                    continue
                if type(fact) is ChainDeposit:
                    credited += await self._credit(fact)
                elif type(fact) is ChainWithdrawal:
                    await self._book_withdrawal(fact)
                elif type(fact) is ChainInsuranceDeposit:
                    await self._credit_insurance(fact)
            self._scanned.add(sig)
            self.state.scanned.append(sig)
            self.state.save(self.state_path)
        return credited

    async def _register(self, deposit: ChainDeposit) -> tuple[int, int]:
        """Open sign-up: the engine registers the wallet (journaled) and the map learns it."""
        assert self.register is not None
        events = await self.register(RegisterAccount(wallet_hex(deposit.wallet)))
        registered = next((e for e in events if type(e) is AccountRegistered), None)
        if registered is None:  # the map is fed from the registry: it cannot be missing here
            raise BridgeError(
                f"deposit {deposit.key}: expected the engine to register wallet "
                f"{deposit.wallet}, got {list(events)!r}"
            )
        account = (registered.owner_id, registered.sub_account_id)
        self.accounts.add(*account, deposit.wallet)
        self.metrics.registered += 1
        log.info("bridge: wallet %s registered as %s", deposit.wallet, account)
        return account

    async def _credit(self, deposit: ChainDeposit) -> int:
        account = self.accounts.account_of_wallet(deposit.wallet)
        if account is None and self.register is not None:
            account = await self._register(deposit)
        if account is None:
            self.metrics.unmapped += 1
            log.warning(
                "bridge: deposit %s of %d quote from unmapped wallet %s left on-chain",
                deposit.key, deposit.amount_quote, deposit.wallet,
            )  # fmt: skip
            return 0
        owner_id, sub_account_id = account
        self.state.pending = {
            "key": deposit.key,
            "owner_id": owner_id,
            "sub_account_id": sub_account_id,
            "amount": deposit.amount_quote,
            "after_seq": self.engine_last_seq(),
            "slot": deposit.slot,
        }
        self.state.save(self.state_path)
        events = await self.credit(Deposit(owner_id, sub_account_id, deposit.amount_quote))
        credited = next((e for e in events if type(e) is CollateralDeposited), None)
        if credited is None:
            raise BridgeError(
                f"deposit {deposit.key}: expected the engine to credit {deposit.amount_quote} "
                f"quote to ({owner_id}, {sub_account_id}), got {list(events)!r}"
            )
        self._remember(self.state.pending, credited.seq)
        self._mark_credited(deposit.key)
        self.state.save(self.state_path)
        self.metrics.deposits_credited += 1
        self.metrics.deposited_quote += deposit.amount_quote
        log.info(
            "bridge: credited %d quote to (%d, %d) from %s",
            deposit.amount_quote, owner_id, sub_account_id, deposit.key,
        )  # fmt: skip
        return 1

    def _unbooked(self, fact: ChainWithdrawal | ChainInsuranceDeposit, why: str) -> None:
        """Count and log a fact left on-chain (like a deposit of an unmapped wallet)."""
        self.metrics.unbooked += 1
        log.warning("bridge: %s of %d quote left unbooked: %s", fact.key, fact.amount_quote, why)

    async def _book_withdrawal(self, withdrawal: ChainWithdrawal) -> None:
        """An escape-hatch withdrawal into the engine as a fact (exactly once by signature)."""
        account = self.accounts.account_of_wallet(withdrawal.wallet)
        if self.book is None or account is None:
            why = "no engine submit" if self.book is None else f"unmapped {withdrawal.wallet}"
            self._unbooked(withdrawal, why)
            return
        command = BookOnChainWithdrawal(
            *account, withdrawal.amount_quote, withdrawal.signature, withdrawal.event_index
        )
        events = await self.book(command)
        booked = any(type(e) is OnChainWithdrawalBooked for e in events)
        duplicate = any(
            type(e) is OrderRejected and e.code == RejectCode.ONCHAIN_WITHDRAWAL_DUPLICATE
            for e in events
        )
        if not booked and not duplicate:
            raise BridgeError(
                f"withdrawal {withdrawal.key}: expected the engine to book {withdrawal.amount_quote} "
                f"quote from {account}, got {list(events)!r}"
            )
        self._mark_credited(withdrawal.key)
        self.state.save(self.state_path)
        self.metrics.withdrawals_booked += 1
        if booked:
            self.metrics.withdrawn_quote += withdrawal.amount_quote
        log.info(
            "bridge: escape-hatch withdrawal %s of %d quote from %s %s",
            withdrawal.key, withdrawal.amount_quote, account,
            "booked" if booked else "was booked before",
        )  # fmt: skip

    async def _credit_insurance(self, top_up: ChainInsuranceDeposit) -> None:
        """An on-chain insurance top-up into the engine's fund (exactly once, as a deposit)."""
        if self.book is None:
            self._unbooked(top_up, "no engine submit")
            return
        self.state.pending = {
            "kind": "insurance",
            "key": top_up.key,
            "owner_id": 0,
            "sub_account_id": 0,
            "amount": top_up.amount_quote,
            "after_seq": self.engine_last_seq(),
            "slot": top_up.slot,
        }
        self.state.save(self.state_path)
        events = await self.book(DepositInsurance(top_up.amount_quote))
        if not any(type(e) is InsuranceFundDeposited for e in events):
            raise BridgeError(
                f"insurance top-up {top_up.key}: expected the engine to credit "
                f"{top_up.amount_quote} quote to the fund, got {list(events)!r}"
            )
        self._mark_credited(top_up.key)
        self.state.save(self.state_path)
        self.metrics.insurance_credited += 1
        self.metrics.insurance_quote += top_up.amount_quote
        log.info(
            "bridge: insurance top-up %s of %d quote from %s credited",
            top_up.key, top_up.amount_quote, top_up.funder,
        )  # fmt: skip

    def _remember(self, pending: dict[str, Any], sequence: int) -> None:
        self.state.history.append({
            "signature": pending["key"].split(":")[0],
            "slot": pending.get("slot", 0),
            "owner_id": pending["owner_id"],
            "sub_account_id": pending["sub_account_id"],
            "amount_quote": pending["amount"],
            "sequence": sequence,
        })  # fmt: skip

    def deposits(self, owner_id: int) -> list[dict[str, Any]]:
        """The owner's credited on-chain deposits, newest first (``GET /v1/deposits``)."""
        return [
            {**{k: v for k, v in row.items() if k != "owner_id"}, "status": "credited"}
            for row in reversed(self.state.history)
            if row["owner_id"] == owner_id
        ]

    def _mark_credited(self, key: str) -> None:
        self._credited.add(key)
        self.state.credited.append(key)
        self.state.pending = None
