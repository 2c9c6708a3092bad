"""The liquidation scanner: on-chain liquidations reach the engine, exactly once.

Keepers may call the clearing program's permissionless ``liquidate`` while the engine is down
or in parallel with it (docs/PROTOCOL.md, On-chain liquidation). The engine must then book the
same slices as facts, or its positions and the chain's disagree. The scanner lists the
Exchange account's transactions (``liquidate`` writes the Exchange: the insurance fund) with
``getSignaturesForAddress``, newest first, paged back to the last one it has processed; reads
each confirmed, successful transaction's logs (``getTransaction``); turns its
``PositionLiquidated`` / ``AccountLiquidated`` events into ``BookOnChainLiquidation`` commands
(``settlement.reconciler.booking_commands``: one per slice, the fund's payment on the last)
and submits them into the engine, oldest transaction first. Transactions without a
liquidation (fills, deposits, withdrawals, ...) are read and passed over.

Exactly once: the engine refuses a slice it has booked (``ONCHAIN_LIQUIDATION_DUPLICATE``,
by transaction signature and slice index, in the state hash), so a re-submission after a
crash or restart changes nothing and counts as a duplicate. The scanner's own progress (the
signatures fully processed, newest ``SCANNED_KEPT``) is saved atomically after each
transaction, so a restart resumes where it stopped instead of re-reading the history; with
``booked`` (the engine's own record) it does not even re-submit.

Incidents: a liquidation of a wallet the account map does not know (``UnmappedAccount``) or
a slice the engine's state cannot take (``ONCHAIN_LIQUIDATION_INCONSISTENT``) stops the scan at
that transaction: logged at ERROR, kept in ``incident``, counted once, retried at every poll
(slices before it in the transaction stay booked: each is a fact on its own). Meanwhile the
reconciler reports the difference.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from solana.rpc.async_api import AsyncClient
from solders.pubkey import Pubkey

from exchange.core.commands import BookOnChainLiquidation
from exchange.core.errors import RejectCode
from exchange.core.events import Event, OrderRejected
from settlement.errors import SettlementError, UnmappedAccount
from settlement.onchain import AccountMap, confirmed_logs, unscanned_signatures
from settlement.reconciler import booking_commands

log = logging.getLogger(__name__)

SCANNED_KEPT: Final = 50_000  # signatures remembered (newest), bounds the state file
STATE_VERSION: Final = 1


class ScannerError(SettlementError):
    """The scanner's state file is unreadable."""

    code = "LIQUIDATION_SCANNER"


@dataclass(slots=True)
class ScannerMetrics:
    polls: int = 0
    transactions_read: int = 0
    failed_transactions: int = 0  # failed on-chain: nothing to book
    liquidation_transactions: int = 0
    slices_booked: int = 0
    duplicates: int = 0  # slices the engine had already booked
    incidents: int = 0


@dataclass(slots=True)
class ScannerState:
    """Signatures of the Exchange's transactions fully processed, oldest first."""

    scanned: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path) -> ScannerState:
        if not path.exists():
            return cls()
        try:
            raw = json.loads(path.read_text())
            if raw.get("version") != STATE_VERSION:
                raise ValueError(f"version {raw.get('version')!r}")
            scanned = raw["scanned"]
            if not isinstance(scanned, list) or not all(isinstance(s, str) for s in scanned):
                raise ValueError(f"scanned: {type(scanned).__name__}")
            return cls(list(scanned))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ScannerError(
                f"liquidation scanner state {path}: expected a version {STATE_VERSION} JSON "
                f"file, got {exc}"
            ) from exc

    def save(self, path: Path) -> None:
        """Atomically (write, fsync, rename)."""
        del self.scanned[:-SCANNED_KEPT]
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump({"version": STATE_VERSION, "scanned": self.scanned}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)


Submit = Callable[[BookOnChainLiquidation], Awaitable[Sequence[Event]]]
Booked = Callable[[str, int], bool]  # (signature, slice index) already in the engine?


class LiquidationScanner:
    """Books the program's liquidations into the engine; call ``poll`` periodically."""

    def __init__(
        self,
        *,
        client: AsyncClient,
        exchange: Pubkey,
        accounts: AccountMap,
        submit: Submit,
        state_path: Path,
        booked: Booked | None = None,
    ) -> None:
        self.client = client
        self.exchange = exchange
        self.accounts = accounts
        self.submit = submit
        self.booked = booked
        self.state_path = state_path
        self.state = ScannerState.load(state_path)
        self._scanned = set(self.state.scanned)
        self.incident: str | None = None
        self.metrics = ScannerMetrics()

    def _report(self, message: str) -> None:
        if message != self.incident:
            self.metrics.incidents += 1
            log.error("liquidation scanner: %s", message)
        self.incident = message

    def _done(self, signature: str) -> None:
        self._scanned.add(signature)
        self.state.scanned.append(signature)
        self.state.save(self.state_path)

    async def _book(self, signature: str, logs: list[str]) -> bool:
        """Submit one transaction's slices; False at an incident (stop the scan here)."""
        try:
            commands = booking_commands(logs, signature, self.accounts)
        except UnmappedAccount as exc:
            self._report(f"transaction {signature}: {exc}")
            return False
        if commands:
            self.metrics.liquidation_transactions += 1
        for command in commands:
            if self.booked is not None and self.booked(signature, command.slice_index):
                self.metrics.duplicates += 1
                continue
            events = await self.submit(command)
            refused = [e for e in events if type(e) is OrderRejected]
            if not refused:
                self.metrics.slices_booked += 1
                log.info(
                    "liquidation scanner: booked %s slice %d (market %d, account %d/%d)",
                    signature, command.slice_index, command.market_id,
                    command.owner_id, command.sub_account_id,
                )  # fmt: skip
                continue
            if refused[0].code == RejectCode.ONCHAIN_LIQUIDATION_DUPLICATE:
                self.metrics.duplicates += 1
                continue
            self._report(
                f"transaction {signature} slice {command.slice_index}: expected the engine "
                f"to book it, got {RejectCode(refused[0].code).name}: {refused[0].message}"
            )
            return False
        return True

    async def poll(self) -> int:
        """Book every new on-chain liquidation; returns the number of slices booked. Stops
        at a transaction the RPC cannot return yet or at an incident, so order is kept."""
        self.metrics.polls += 1
        before = self.metrics.slices_booked
        for signature, _, failed in await unscanned_signatures(
            self.client, self.exchange, self._scanned
        ):
            if failed:
                self.metrics.failed_transactions += 1
                self._done(signature)
                continue
            logs = await confirmed_logs(self.client, signature)
            if logs is None:
                break
            self.metrics.transactions_read += 1
            if not await self._book(signature, logs):
                break
            self.incident = None
            self._done(signature)
        return self.metrics.slices_booked - before
