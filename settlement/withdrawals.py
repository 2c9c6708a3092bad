"""The withdrawal executor: the engine's ``CollateralWithdrawn`` -> ``process_withdrawal`` on the
clearing program, exactly once, in journal order.

The engine is the authority: a withdrawal exists once the engine journaled its
``CollateralWithdrawn`` (only free collateral may leave; a refusal is an ``OrderRejected`` and
never reaches the chain). The executor reads the journal and executes each withdrawal with the
operator-signed ``process_withdrawal(previous_sequence, sequence, amount_quote)``; the tokens go
to the owner's associated token account of the collateral mint (created in the same
transaction when missing; the program refuses any token account not owned by the User's
owner).

Exactly once across crashes. The program keeps ``Exchange.last_withdrawal_sequence`` and applies
a withdrawal only when its ``previous_sequence`` equals it (the withdrawals are one chain, like a
market's fill batches), so a retry, a transaction of a dead process still in flight or a replay
never applies twice; that sequence is the only progress that counts: everything journaled
after it is pending. Every attempt's signature is written to the state file before it is sent,
so after a crash between a landed transaction and the local record the signature is recovered
from the cluster's signature statuses.

Order of settlement (docs/PROTOCOL.md, Withdrawals): before the withdrawal at journal ``seq`` S
is executed, every fill and funding update with a smaller ``seq`` is settled on-chain
(``settle_through(S - 1)``), and nothing after S is settled before it; so the program's margin
check sees the account exactly as the engine did.

A refusal by the program (the chain disagrees with the engine: e.g. less free collateral at the
on-chain oracle than at the engine's marks) is an incident, not a skip: the record becomes
``failed`` with the IDL code, an ERROR is logged, ``halt`` is set and every later call raises
``WithdrawalHalted``; the reconciler then reports the difference. A stale or too-wide oracle on
the chain is retried (the publisher catches up), like RPC failures.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
from anchorpy import Context, Program
from solana.exceptions import SolanaRpcException
from solana.rpc.commitment import Confirmed
from solana.rpc.core import RPCException
from solana.rpc.types import TxOpts
from solders.compute_budget import set_compute_unit_limit
from solders.instruction import AccountMeta
from solders.keypair import Keypair
from solders.message import Message
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import Transaction
from solders.transaction_status import TransactionErrorInstructionError
from spl.token.constants import TOKEN_PROGRAM_ID
from spl.token.instructions import (
    create_idempotent_associated_token_account,
    get_associated_token_address,
)

from exchange.core.events import CollateralWithdrawn
from exchange.engine.journal import Journal
from settlement.errors import SettlementError
from settlement.onchain import AccountMap, ClearingAddresses
from settlement.spec import ERRORS

log = logging.getLogger(__name__)

STATE_VERSION: Final = 1
RECORDS_KEPT: Final = 100_000  # newest withdrawal records kept in the state file
COMPUTE_UNITS: Final = 400_000  # an ATA creation plus up to 8 positions' funding and oracles
ERROR_NAMES: Final = {e.code: e.name for e in ERRORS}
#: The chain's oracle is behind or too uncertain: wait for the publisher, do not halt.
RETRYABLE_CODES: Final = frozenset(
    e.code
    for e in ERRORS
    if e.name in ("OracleStaleSlots", "OracleStaleSeconds", "OracleConfidenceTooWide")
)
_TRANSIENT = (
    httpx.HTTPError,
    SolanaRpcException,
    OSError,
    asyncio.TimeoutError,
)

REQUESTED: Final = "requested"
EXECUTED: Final = "executed"
FAILED: Final = "failed"


class WithdrawalError(SettlementError):
    """The executor cannot continue (state file unreadable, unmapped account)."""

    code = "WITHDRAWAL"


class WithdrawalHalted(WithdrawalError):
    """The program refused a journaled withdrawal: engine and chain disagree."""

    code = "WITHDRAWAL_HALTED"


@dataclass(slots=True)
class WithdrawalRecord:
    """One journaled withdrawal and what became of it on-chain."""

    sequence: int  # journal seq of the CollateralWithdrawn
    ts_ns: int
    owner_id: int
    sub_account_id: int
    amount_quote: int  # QUOTE_PRECISION
    status: str = REQUESTED  # requested | executed | failed
    signature: str = ""  # the landed transaction (executed)
    destination: str = ""  # the owner's token account (base58)
    error_code: int | None = None  # IDL code of the refusal (failed)
    message: str = ""
    attempts: list[str] = field(default_factory=list)  # signatures sent, oldest first

    def to_json(self) -> dict[str, Any]:
        """The API's view (no attempts)."""
        return {
            "sequence": self.sequence,
            "ts_ns": self.ts_ns,
            "sub_account_id": self.sub_account_id,
            "amount_quote": self.amount_quote,
            "status": self.status,
            "signature": self.signature or None,
            "destination": self.destination or None,
            "error_code": self.error_code,
            "error_name": ERROR_NAMES.get(self.error_code) if self.error_code else None,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class WithdrawalIncident:
    """Why the executor halted."""

    sequence: int
    error_code: int | None
    message: str


@dataclass(slots=True)
class WithdrawalMetrics:
    executed: int = 0
    executed_quote: int = 0  # QUOTE_PRECISION, by this process
    attempts: int = 0
    retries: int = 0
    found_landed: int = 0  # an attempt whose outcome was unknown had landed
    incidents: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class WithdrawalConfig:
    """Backoff for RPC failures and a stale on-chain oracle (``max_attempts`` 0: forever)."""

    retry_initial_s: float = 0.05
    retry_max_s: float = 2.0
    max_attempts: int = 0

    def __post_init__(self) -> None:
        for name in ("retry_initial_s", "retry_max_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 < value <= 600:
                raise WithdrawalError(f"{name}: expected seconds in (0, 600], got {value!r}")
        if self.retry_max_s < self.retry_initial_s:
            raise WithdrawalError(
                f"retry_max_s: expected >= retry_initial_s {self.retry_initial_s}, "
                f"got {self.retry_max_s}"
            )
        if type(self.max_attempts) is not int or self.max_attempts < 0:
            raise WithdrawalError(f"max_attempts: expected an int >= 0, got {self.max_attempts!r}")


SettleThrough = Callable[[int], Awaitable[Any]]


def refusal_code(exc: BaseException) -> tuple[bool, int | None]:
    """(the program refused the transaction, its IDL code if any) of a send failure."""
    if not isinstance(exc, RPCException):
        return False, None
    info = exc.args[0] if exc.args else None
    err = getattr(getattr(info, "data", None), "err", None)
    if isinstance(err, TransactionErrorInstructionError):
        code = getattr(err.err, "code", None)
        return True, int(code) if isinstance(code, int) else None
    return False, None


class WithdrawalExecutor:
    """Executes the journal's withdrawals on-chain; ``run_once`` from the settlement loop."""

    def __init__(
        self,
        *,
        journal: Journal,
        program: Program,
        operator: Keypair,
        accounts: AccountMap,
        mint: Pubkey,
        vault: Pubkey,
        state_path: Path,
        config: WithdrawalConfig | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if program.provider.wallet.public_key != operator.pubkey():
            raise WithdrawalError(
                f"program provider: expected the operator {operator.pubkey()} as payer, got "
                f"{program.provider.wallet.public_key}"
            )
        self.journal = journal
        self.program = program
        self.client = program.provider.connection
        self.operator = operator
        self.accounts = accounts
        self.mint = mint
        self.vault = vault
        self.state_path = state_path
        self.config = config or WithdrawalConfig()
        self.addresses = ClearingAddresses(program.program_id)
        self.exchange = self.addresses.exchange()[0]
        self.vault_authority = self.addresses.vault_authority()[0]
        self.records: dict[int, WithdrawalRecord] = {}
        self.cursor = 0  # journal seq scanned up to (every withdrawal <= it is in records)
        self.progress = 0  # Exchange.last_withdrawal_sequence as last read
        self.resumed = False
        self.halt: WithdrawalIncident | None = None
        self.metrics = WithdrawalMetrics()
        self._sleep = sleep
        self._market_oracles: dict[int, Pubkey] = {}
        # Test seam: awaited after a transaction was sent and confirmed, before it is recorded.
        self.after_sent: Callable[[WithdrawalRecord], Awaitable[None]] | None = None
        self._load()

    # ------------------------------------------------------------ state file
    def _load(self) -> None:
        if not self.state_path.exists():
            return
        try:
            raw = json.loads(self.state_path.read_text())
            if raw.get("version") != STATE_VERSION:
                raise ValueError(f"version {raw.get('version')!r}")
            self.cursor = int(raw["cursor"])
            for row in raw["records"]:
                record = WithdrawalRecord(**row)
                self.records[record.sequence] = record
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise WithdrawalError(
                f"withdrawal state {self.state_path}: expected a version {STATE_VERSION} JSON "
                f"file, got {exc}"
            ) from exc

    def _save(self) -> None:
        """Atomically (write, fsync, rename)."""
        rows = sorted(self.records.values(), key=lambda r: r.sequence)[-RECORDS_KEPT:]
        body = {"version": STATE_VERSION, "cursor": self.cursor,
                "records": [asdict(r) for r in rows]}  # fmt: skip
        tmp = self.state_path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.state_path)

    # ------------------------------------------------------------ reads
    def withdrawals(self, owner_id: int) -> list[dict[str, Any]]:
        """The owner's journaled withdrawals, newest first (the API's ``GET /v1/withdrawals``)."""
        rows = [r for r in self.records.values() if r.owner_id == owner_id]
        return [r.to_json() for r in sorted(rows, key=lambda r: -r.sequence)]

    def pending(self) -> list[WithdrawalRecord]:
        return sorted(
            (r for r in self.records.values() if r.sequence > self.progress),
            key=lambda r: r.sequence,
        )

    def destination(self, owner_id: int, sub_account_id: int) -> Pubkey:
        """The owner's associated token account of the collateral mint."""
        wallet = self.accounts.wallet(owner_id, sub_account_id)
        return get_associated_token_address(wallet, self.mint)

    async def _read_progress(self) -> int:
        exchange = await self._with_retries(
            "read Exchange",
            lambda: self.program.account["Exchange"].fetch(self.exchange, commitment=Confirmed),
        )
        return int(exchange.last_withdrawal_sequence)

    # ------------------------------------------------------------ start
    async def resume(self) -> None:
        """Read the chain's progress; records at or below it are executed (their signature
        recovered from the attempts when the last process stopped before recording it)."""
        self.progress = await self._read_progress()
        self.cursor = max(self.cursor, self.progress) if self.records else self.progress
        for record in self.records.values():
            if record.sequence <= self.progress and record.status != EXECUTED:
                record.status, record.error_code, record.message = EXECUTED, None, ""
                record.signature = await self._landed_signature(record)
                self.metrics.found_landed += 1
            elif record.sequence > self.progress and record.status == EXECUTED:
                # the chain was restored from an earlier save: the journal replays onto it
                record.status, record.signature = REQUESTED, ""
        self._save()
        self.resumed = True
        log.info("withdrawals: resumed at on-chain sequence %d, %d pending",
                 self.progress, len(self.pending()))  # fmt: skip

    async def _landed_signature(self, record: WithdrawalRecord) -> str:
        if not record.attempts:
            return ""
        sigs = [Signature.from_string(s) for s in record.attempts]
        statuses = (await self.client.get_signature_statuses(sigs)).value
        for sig, status in zip(record.attempts, statuses, strict=True):
            if status is not None and status.err is None:
                return sig
        log.warning("withdrawals: seq %d landed but none of its attempts is known to the "
                    "cluster (history lost?)", record.sequence)  # fmt: skip
        return ""

    # ------------------------------------------------------------ the loop step
    def scan(self) -> int:
        """Journal -> records of new withdrawals; returns the journal seq scanned up to."""
        last = self.journal.refresh()
        if last > self.cursor:
            for e in self.journal.read(after_seq=self.cursor, upto_seq=last):
                if type(e) is CollateralWithdrawn and e.seq not in self.records:
                    self.records[e.seq] = WithdrawalRecord(
                        e.seq, e.ts_ns, e.owner_id, e.sub_account_id, e.amount_quote
                    )
            self.cursor = last
            self._save()
        return self.cursor

    async def run_once(self, settle_through: SettleThrough) -> int:
        """Settle and withdraw in journal order up to the journal's end: for each pending
        withdrawal at seq S, ``settle_through(S - 1)`` then ``process_withdrawal``; then
        ``settle_through`` the end. Returns the number of withdrawals executed."""
        self._check_not_halted()
        if not self.resumed:
            await self.resume()
        last = self.scan()
        executed = 0
        for record in self.pending():
            await settle_through(record.sequence - 1)
            await self._execute(record)
            executed += 1
        await settle_through(last)
        return executed

    # ------------------------------------------------------------ one withdrawal
    async def _instructions(self, record: WithdrawalRecord) -> tuple[list[Any], Pubkey]:
        wallet = self.accounts.wallet(record.owner_id, record.sub_account_id)
        user = self.accounts.user(record.owner_id, record.sub_account_id)
        state = await self.program.account["User"].fetch(user, commitment=Confirmed)
        remaining: list[AccountMeta] = []
        for position in state.positions:
            if position.in_use:
                market_id = int(position.market_index)
                market = self.addresses.market(market_id)[0]
                if market_id not in self._market_oracles:
                    fetched = await self.program.account["Market"].fetch(
                        market, commitment=Confirmed
                    )
                    self._market_oracles[market_id] = fetched.oracle
                remaining += [AccountMeta(market, False, True),
                              AccountMeta(self._market_oracles[market_id], False, False)]  # fmt: skip
        destination = get_associated_token_address(wallet, self.mint)
        create_ata = create_idempotent_associated_token_account(
            self.operator.pubkey(), wallet, self.mint, TOKEN_PROGRAM_ID
        )
        ix = self.program.instruction["process_withdrawal"](
            self.progress, record.sequence, record.amount_quote,
            ctx=Context(
                accounts={"exchange": self.exchange, "user": user,
                          "operator": self.operator.pubkey(), "owner_token": destination,
                          "vault": self.vault, "vault_authority": self.vault_authority,
                          "token_program": TOKEN_PROGRAM_ID},
                remaining_accounts=remaining,
            ),
        )  # fmt: skip
        return [set_compute_unit_limit(COMPUTE_UNITS), create_ata, ix], destination

    async def _execute(self, record: WithdrawalRecord) -> None:
        delay = self.config.retry_initial_s
        attempts = 0
        while True:
            attempts += 1
            try:
                ixs, destination = await self._instructions(record)
                blockhash = (await self.client.get_latest_blockhash(Confirmed)).value.blockhash
                tx = Transaction([self.operator], Message(ixs, self.operator.pubkey()), blockhash)
                signature = str(tx.signatures[0])
                record.attempts.append(signature)
                record.destination = str(destination)
                self._save()  # before sending: a crash after it still knows the signature
                self.metrics.attempts += 1
                await self.client.send_raw_transaction(
                    bytes(tx), opts=TxOpts(skip_confirmation=False, preflight_commitment=Confirmed)
                )
                if self.after_sent is not None:
                    await self.after_sent(record)
                if not await self._landed(record):
                    self._incident(
                        record, None, "confirmed, but last_withdrawal_sequence did not move"
                    )
                self._executed(record, signature)
                return
            except RPCException as exc:
                refused, code = refusal_code(exc)
                if not refused:
                    error: BaseException = exc
                elif await self._landed(record):  # an earlier attempt had landed
                    self.metrics.found_landed += 1
                    self._executed(record, await self._landed_signature(record))
                    return
                elif code in RETRYABLE_CODES:
                    error = exc
                else:
                    self._incident(record, code, str(exc.args[0] if exc.args else exc))
            except _TRANSIENT as exc:
                error = exc
            self.metrics.retries += 1
            log.warning("withdrawals: seq %d attempt %d failed (%r); retrying in %.2fs",
                        record.sequence, attempts, error, delay)  # fmt: skip
            if self.config.max_attempts and attempts >= self.config.max_attempts:
                self._incident(record, None, f"no success within {attempts} attempts: {error!r}")
            await self._sleep(delay)
            delay = min(delay * 2, self.config.retry_max_s)
            if await self._landed(record):
                self.metrics.found_landed += 1
                self._executed(record, await self._landed_signature(record))
                return

    async def _landed(self, record: WithdrawalRecord) -> bool:
        self.progress = await self._read_progress()
        return self.progress >= record.sequence

    def _executed(self, record: WithdrawalRecord, signature: str) -> None:
        record.status, record.signature = EXECUTED, signature
        record.error_code, record.message = None, ""
        self.progress = max(self.progress, record.sequence)
        self._save()
        self.metrics.executed += 1
        self.metrics.executed_quote += record.amount_quote
        log.info("withdrawals: seq %d: %d quote to (%d, %d) in %s",
                 record.sequence, record.amount_quote, record.owner_id, record.sub_account_id,
                 signature)  # fmt: skip

    def _incident(self, record: WithdrawalRecord, code: int | None, message: str) -> None:
        name = ERROR_NAMES.get(code, "") if code is not None else ""
        record.status, record.error_code = FAILED, code
        record.message = f"{name}: {message}" if name else message
        self._save()
        self.halt = WithdrawalIncident(record.sequence, code, record.message)
        self.metrics.incidents += 1
        log.error(
            "RECONCILIATION INCIDENT: withdrawal seq %d of %d quote for (%d, %d) refused by the "
            "program (%s, code %s); the engine has debited it, the chain has not; withdrawals "
            "halted", record.sequence, record.amount_quote, record.owner_id,
            record.sub_account_id, record.message, code,
        )  # fmt: skip
        raise WithdrawalHalted(
            f"withdrawal seq {record.sequence}: expected the program to accept it, got "
            f"{record.message} (code {code})"
        )

    def _check_not_halted(self) -> None:
        if self.halt is not None:
            h = self.halt
            raise WithdrawalHalted(
                f"withdrawals: halted at seq {h.sequence} ({h.message}); expected an operator to "
                "resolve it"
            )

    async def _with_retries(self, what: str, call: Callable[[], Awaitable[Any]]) -> Any:
        delay = self.config.retry_initial_s
        attempts = 0
        while True:
            attempts += 1
            try:
                return await call()
            except (*_TRANSIENT, RPCException) as exc:
                self.metrics.retries += 1
                if self.config.max_attempts and attempts >= self.config.max_attempts:
                    raise WithdrawalError(
                        f"{what}: expected success within {self.config.max_attempts} attempts, "
                        f"got {exc!r}"
                    ) from exc
                log.warning("withdrawals: %s failed (%r); retrying in %.2fs", what, exc, delay)
                await self._sleep(delay)
                delay = min(delay * 2, self.config.retry_max_s)
