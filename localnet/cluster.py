"""`EmbeddedCluster`: solders' LiteSVM plus what a JSON-RPC node needs and LiteSVM lacks.

LiteSVM is a real in-process SVM, but it has no notion of wall time (its Clock stays at slot 0),
accepts only its latest blockhash, and cannot enumerate accounts. This wrapper adds:

* a slot clock driven by an injectable time source (default: wall time, 400 ms per slot) that
  writes LiteSVM's Clock sysvar on every new slot, rotates the blockhash, and can be warped;
* a recent-blockhash store (valid for 150 blocks, like the real cluster) checked before LiteSVM
  sees a transaction (LiteSVM's own single-blockhash check is switched off);
* an account index (every account preloaded, airdropped to, or referenced by a processed
  transaction) so that `getProgramAccounts` can be answered;
* a signature status store and event callbacks (slots, account changes, transactions) that the
  PubSub server turns into notifications;
* preloading of accounts from `solana account --output json` files and of programs from `.so`.

Nothing here does I/O except reading preload files; the RPC and PubSub servers live in
`localnet.rpc` and `localnet.pubsub`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import base58
from solders.account import Account
from solders.clock import Clock
from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.message import Message
from solders.pubkey import Pubkey
from solders.rpc.responses import RpcSimulateTransactionResult
from solders.signature import Signature
from solders.transaction import Transaction, VersionedTransaction
from solders.transaction_metadata import (
    FailedTransactionMetadata,
    SimulatedTransactionInfo,
    TransactionMetadata,
)
from solders.transaction_status import TransactionReturnData

from localnet.loader_v3 import (
    LOADER_V3,
    DeployRequest,
    find_deploy,
    plan_deploy,
    programdata_size,
    strip_deploy,
)
from localnet.spl_token import parse_mint, parse_token_account, ui_token_amount

DEFAULT_SLOT_SECONDS = 0.4
MAX_BLOCKHASH_AGE = 150  # blocks a blockhash stays valid (MAX_PROCESSING_AGE)
LAMPORTS_PER_SIGNATURE = 5000
MAX_SIGNATURE_RECORDS = 100_000
MAX_SLOT_EVENTS_PER_TICK = 64  # a bigger jump (a warp) notifies only the last slots

TimeSource = Callable[[], float]


class PreloadError(ValueError):
    """A preload file (account JSON or program) could not be used."""


@dataclass(frozen=True)
class SignatureRecord:
    """What the cluster remembers about a processed transaction (or airdrop)."""

    signature: Signature
    slot: int
    block_time: int
    err: Any  # solders TransactionErrorType or None
    logs: list[str]
    compute_units: int
    fee: int
    account_keys: list[Pubkey]
    pre_balances: list[int]
    post_balances: list[int]
    raw_tx: bytes | None  # wire bytes; None for airdrops
    version: str | int = "legacy"
    inner_instructions: list[dict[str, Any]] = field(default_factory=list)  # UiInnerInstructions
    pre_token_balances: list[dict[str, Any]] = field(
        default_factory=list
    )  # UiTransactionTokenBalance
    post_token_balances: list[dict[str, Any]] = field(default_factory=list)

    @property
    def err_json(self) -> Any:
        return error_to_json(self.err)


@dataclass(frozen=True)
class SlotEvent:
    slot: int
    parent: int


@dataclass(frozen=True)
class TransactionEvent:
    record: SignatureRecord
    changed: list[tuple[Pubkey, Account | None]] = field(default_factory=list)


ClusterEvent = SlotEvent | TransactionEvent
Listener = Callable[[ClusterEvent], None]


@dataclass(frozen=True)
class SendOutcome:
    """Result of `EmbeddedCluster.process`: `record` is None when the transaction never landed."""

    signature: Signature
    record: SignatureRecord | None
    err: Any = None
    logs: list[str] = field(default_factory=list)
    compute_units: int = 0


@dataclass(frozen=True)
class SimulationOutcome:
    err: Any
    logs: list[str]
    compute_units: int
    post_accounts: dict[Pubkey, Account]
    return_data: tuple[Pubkey, bytes] | None = None
    inner_instructions: list[dict[str, Any]] = field(default_factory=list)  # UiInnerInstructions
    _deploy_writes: list[tuple[Pubkey, Account]] = field(default_factory=list, repr=False)

    def to_rpc_result(self) -> RpcSimulateTransactionResult:
        return RpcSimulateTransactionResult(
            err=self.err, logs=self.logs, accounts=None, units_consumed=self.compute_units
        )


def error_to_json(err: Any) -> Any:
    """The JSON form the validator uses for a `TransactionError` (None stays None)."""
    if err is None:
        return None
    raw = json.loads(RpcSimulateTransactionResult(err=err).to_json())
    return raw["err"]


_ERROR_MESSAGES = {
    "BlockhashNotFound": "Blockhash not found",
    "AlreadyProcessed": "This transaction has already been processed",
    "AccountNotFound": "Attempt to debit an account but found no record of a prior credit.",
    "InsufficientFundsForFee": "Insufficient funds for fee",
    "SignatureFailure": "Transaction did not pass signature verification",
    "AccountInUse": "Account in use",
    "InvalidAccountForFee": "This account may not be used to pay transaction fees",
}


def error_message(err: Any) -> str:
    """Human text close to the validator's `Display` of a `TransactionError`."""
    value = error_to_json(err)
    if isinstance(value, str):
        return _ERROR_MESSAGES.get(value, value)
    if isinstance(value, dict) and "InstructionError" in value:
        index, inner = value["InstructionError"]
        if isinstance(inner, dict) and "Custom" in inner:
            return (
                f"Error processing Instruction {index}: custom program error: {inner['Custom']:#x}"
            )
        return f"Error processing Instruction {index}: {inner}"
    return json.dumps(value)


def load_account_file(path: str | Path) -> tuple[Pubkey, Account]:
    """Parse a `solana account --output json` file (what `solana-test-validator --account` takes)."""
    try:
        raw = json.loads(Path(path).read_text())
        return parse_account_json(raw)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise PreloadError(f"{path}: not a usable account file: {exc}") from exc


def parse_account_json(raw: dict[str, Any]) -> tuple[Pubkey, Account]:
    pubkey = Pubkey.from_string(raw["pubkey"])
    acct = raw["account"]
    data_field = acct.get("data", ["", "base64"])
    if isinstance(data_field, str):
        data = base58.b58decode(data_field)
    else:
        blob, encoding = data_field
        if encoding == "base64":
            data = base64.b64decode(blob, validate=True)
        elif encoding == "base58":
            data = base58.b58decode(blob)
        else:
            raise ValueError(f"unsupported data encoding {encoding!r}")
    rent_epoch = int(acct.get("rentEpoch", 2**64 - 1))
    account = Account(
        lamports=int(acct["lamports"]),
        data=data,
        owner=Pubkey.from_string(acct["owner"]),
        executable=bool(acct.get("executable", False)),
        rent_epoch=rent_epoch,
    )
    return pubkey, account


def transaction_from_bytes(raw: bytes) -> VersionedTransaction:
    """Decode wire bytes as a versioned transaction (legacy wire format is accepted too)."""
    return VersionedTransaction.from_bytes(raw)


def _message_keys(tx: VersionedTransaction) -> list[Pubkey]:
    return list(tx.message.account_keys)


class EmbeddedCluster:
    """LiteSVM with a wall-time slot clock, account index, blockhash and signature stores."""

    def __init__(
        self,
        *,
        time_source: TimeSource = time.time,
        slot_seconds: float = DEFAULT_SLOT_SECONDS,
        start_slot: int = 0,
        svm: LiteSVM | None = None,
    ) -> None:
        if slot_seconds <= 0:
            raise ValueError("slot_seconds must be positive")
        self.svm = svm if svm is not None else LiteSVM()
        self.svm.with_blockhash_check(False)
        self._time = time_source
        self.slot_seconds = slot_seconds
        self._t0 = time_source()
        self._start_slot = start_slot
        self._warp_slots = 0
        self._slot = -1
        self._unix = 0
        self._index: dict[Pubkey, None] = {}
        self._signatures: OrderedDict[Signature, SignatureRecord] = OrderedDict()
        self._blockhashes: OrderedDict[Hash, int] = OrderedDict()  # hash -> block height issued
        # the ledger view getBlock / getSignaturesForAddress answer from (bounded like the
        # signature store): slot -> blockhash rotated at that slot, slot -> its transactions,
        # address -> its transactions (oldest first)
        self._slot_hashes: OrderedDict[int, Hash] = OrderedDict()
        self._slot_signatures: dict[int, list[Signature]] = {}
        self._address_signatures: dict[Pubkey, deque[Signature]] = {}
        self._transaction_count = 0
        self._first_available_slot = start_slot
        self._listeners: list[Listener] = []
        self._epoch_schedule = self.svm.get_epoch_schedule()
        self.tick()

    # ------------------------------------------------------------------ clock
    @property
    def slot(self) -> int:
        return self._slot

    @property
    def block_height(self) -> int:
        return self._slot  # no skipped slots: one block per slot

    @property
    def unix_timestamp(self) -> int:
        return self._unix

    def epoch_info(self) -> dict[str, int]:
        epoch, slot_index = self._epoch_schedule.get_epoch_and_slot_index(self._slot)
        return {
            "absoluteSlot": self._slot,
            "blockHeight": self.block_height,
            "epoch": epoch,
            "slotIndex": slot_index,
            "slotsInEpoch": self._epoch_schedule.get_slots_in_epoch(epoch),
            "transactionCount": self._transaction_count,
        }

    def _target(self) -> tuple[int, int]:
        elapsed = max(0.0, self._time() - self._t0)
        # the epsilon keeps float noise (1.7e9 + 0.8 - 1.7e9 = 0.79999995) from losing a slot
        slot = self._start_slot + int(elapsed / self.slot_seconds + 1e-6) + self._warp_slots
        unix = int(self._t0 + elapsed + self._warp_slots * self.slot_seconds)
        return slot, unix

    def tick(self) -> int:
        """Advance to the slot the time source says it is; returns the current slot."""
        slot, unix = self._target()
        if slot > self._slot:
            parent = self._slot
            self._slot = slot
            self._unix = max(unix, self._unix)
            epoch = self._epoch_schedule.get_epoch(slot)
            self.svm.set_clock(
                Clock(
                    slot=slot,
                    epoch_start_timestamp=self._unix
                    - int(
                        (slot - self._epoch_schedule.get_first_slot_in_epoch(epoch))
                        * self.slot_seconds
                    ),
                    epoch=epoch,
                    leader_schedule_epoch=epoch + 1,
                    unix_timestamp=self._unix,
                )
            )
            self.svm.expire_blockhash()
            self._blockhashes[self.svm.latest_blockhash()] = self.block_height
            self._slot_hashes[slot] = self.svm.latest_blockhash()
            while len(self._slot_hashes) > MAX_SIGNATURE_RECORDS:
                forgotten, _ = self._slot_hashes.popitem(last=False)
                # a block whose hash is gone is gone too
                self._first_available_slot = max(self._first_available_slot, forgotten + 1)
            while len(self._blockhashes) > MAX_BLOCKHASH_AGE + 50:
                self._blockhashes.popitem(last=False)
            first = max(parent + 1, slot - MAX_SLOT_EVENTS_PER_TICK + 1)
            for s in range(first, slot + 1):
                self._emit(SlotEvent(slot=s, parent=max(s - 1, 0)))
        return self._slot

    def warp(self, slots: int) -> int:
        """Jump `slots` slots (and slots x slot_seconds of cluster time) forward."""
        if slots < 0:
            raise ValueError("cannot warp backwards")
        self._warp_slots += slots
        return self.tick()

    def seconds_until_next_slot(self) -> float:
        elapsed = max(0.0, self._time() - self._t0)
        nxt = (math.floor(elapsed / self.slot_seconds + 1e-6) + 1) * self.slot_seconds
        return max(0.0, nxt - elapsed)

    # ------------------------------------------------------------- blockhash
    def latest_blockhash(self) -> tuple[Hash, int]:
        """(blockhash, lastValidBlockHeight)."""
        self.tick()
        bh = self.svm.latest_blockhash()
        issued = self._blockhashes.get(bh, self.block_height)
        return bh, issued + MAX_BLOCKHASH_AGE

    def is_blockhash_valid(self, blockhash: Hash) -> bool:
        self.tick()
        issued = self._blockhashes.get(blockhash)
        return issued is not None and self.block_height <= issued + MAX_BLOCKHASH_AGE

    # ------------------------------------------------------------- listeners
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _emit(self, event: ClusterEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the cluster
                continue

    # --------------------------------------------------------------- accounts
    def get_account(self, pubkey: Pubkey) -> Account | None:
        acct = self.svm.get_account(pubkey)
        if acct is None or (acct.lamports == 0 and not acct.data and not acct.executable):
            return None
        return acct

    def set_account(self, pubkey: Pubkey, account: Account) -> None:
        before = self.get_account(pubkey)
        self.svm.set_account(pubkey, account)
        self._index[pubkey] = None
        after = self.get_account(pubkey)
        if before != after:
            self._emit_changes([(pubkey, after)])

    def _emit_changes(self, changed: list[tuple[Pubkey, Account | None]]) -> None:
        # Account changes outside a transaction are delivered as a transaction-less event.
        record = SignatureRecord(
            signature=Signature.default(),
            slot=self._slot,
            block_time=self._unix,
            err=None,
            logs=[],
            compute_units=0,
            fee=0,
            account_keys=[k for k, _ in changed],
            pre_balances=[],
            post_balances=[],
            raw_tx=None,
        )
        self._emit(TransactionEvent(record=record, changed=changed))

    def indexed_accounts(self) -> Iterator[tuple[Pubkey, Account]]:
        """Every live account the cluster knows of (preloaded or touched)."""
        for pubkey in list(self._index):
            acct = self.get_account(pubkey)
            if acct is not None:
                yield pubkey, acct

    def program_accounts(self, owner: Pubkey) -> list[tuple[Pubkey, Account]]:
        return [(k, a) for k, a in self.indexed_accounts() if a.owner == owner]

    def minimum_balance_for_rent_exemption(self, data_len: int) -> int:
        return self.svm.minimum_balance_for_rent_exemption(data_len)

    # ---------------------------------------------------------------- preload
    def load_account_file(self, path: str | Path, address: Pubkey | None = None) -> Pubkey:
        """Preload like `solana-test-validator --account ADDRESS FILE` (ADDRESS overrides)."""
        pubkey, account = load_account_file(path)
        if address is not None:
            pubkey = address
        self.set_account(pubkey, account)
        return pubkey

    def load_account_dir(self, directory: str | Path) -> list[Pubkey]:
        return [self.load_account_file(p) for p in sorted(Path(directory).glob("*.json"))]

    def add_program(self, program_id: Pubkey, so: str | Path | bytes) -> None:
        """Deploy an SBF program like `solana-test-validator --bpf-program ID FILE.so`."""
        try:
            if isinstance(so, bytes):
                self.svm.add_program(program_id, so)
            else:
                self.svm.add_program(program_id, Path(so).read_bytes())
        except OSError as exc:
            raise PreloadError(f"{so!s}: cannot read program: {exc}") from exc
        except Exception as exc:  # LiteSVM raises on ELF verification failures
            raise PreloadError(f"{program_id}: program rejected: {exc}") from exc
        self._index[program_id] = None

    # ------------------------------------------------------------- signatures
    def signature_record(self, signature: Signature) -> SignatureRecord | None:
        return self._signatures.get(signature)

    def _remember(self, record: SignatureRecord) -> None:
        self._signatures[record.signature] = record
        self._transaction_count += 1
        self._slot_signatures.setdefault(record.slot, []).append(record.signature)
        for key in dict.fromkeys(record.account_keys):
            self._address_signatures.setdefault(key, deque()).append(record.signature)
        while len(self._signatures) > MAX_SIGNATURE_RECORDS:
            _, oldest = self._signatures.popitem(last=False)
            self._forget(oldest)

    def _forget(self, record: SignatureRecord) -> None:
        """Drop an evicted record from the ledger indexes (its slot is no longer complete)."""
        self._first_available_slot = max(self._first_available_slot, record.slot + 1)
        # slots are inserted in increasing order: the oldest are at the front
        while self._slot_signatures:
            slot = next(iter(self._slot_signatures))
            if slot >= self._first_available_slot:
                break
            del self._slot_signatures[slot]
        for key in dict.fromkeys(record.account_keys):
            sigs = self._address_signatures.get(key)
            while sigs and sigs[0] not in self._signatures:
                sigs.popleft()
            if sigs is not None and not sigs:
                del self._address_signatures[key]

    # ----------------------------------------------------------------- ledger
    @property
    def first_available_slot(self) -> int:
        """The oldest slot whose transactions are all still remembered."""
        return self._first_available_slot

    @property
    def transaction_count(self) -> int:
        return self._transaction_count

    def blockhash_at(self, slot: int) -> Hash:
        """The blockhash of `slot`: the one rotated in at that slot, or (for a slot passed over
        in one jump, e.g. a warp) a deterministic stand-in derived from the slot number."""
        recorded = self._slot_hashes.get(slot)
        if recorded is not None:
            return recorded
        return Hash(hashlib.sha256(b"perpdex-localnet-slot" + slot.to_bytes(8, "little")).digest())

    def block_records(self, slot: int) -> list[SignatureRecord]:
        """The transactions processed in `slot`, in order (airdrops have no wire transaction
        and are not part of a block)."""
        records = (self._signatures.get(s) for s in self._slot_signatures.get(slot, ()))
        return [r for r in records if r is not None and r.raw_tx is not None]

    def address_records(self, address: Pubkey) -> list[SignatureRecord]:
        """Every remembered transaction (and airdrop) that touched `address`, oldest first."""
        records = (self._signatures.get(s) for s in self._address_signatures.get(address, ()))
        return [r for r in records if r is not None]

    # ----------------------------------------------------------- transactions
    def airdrop(self, pubkey: Pubkey, lamports: int) -> SignatureRecord:
        self.tick()
        pre = self.svm.get_balance(pubkey) or 0
        result = self.svm.airdrop(pubkey, lamports)
        if isinstance(result, FailedTransactionMetadata):
            raise RuntimeError(f"airdrop failed: {error_message(result.err())}")
        self._index[pubkey] = None
        post = self.svm.get_balance(pubkey) or 0
        record = SignatureRecord(
            signature=result.signature(),
            slot=self._slot,
            block_time=self._unix,
            err=None,
            logs=list(result.logs()),
            compute_units=result.compute_units_consumed(),
            fee=LAMPORTS_PER_SIGNATURE,
            account_keys=[pubkey],
            pre_balances=[pre],
            post_balances=[post],
            raw_tx=None,
        )
        self._remember(record)
        self._emit(TransactionEvent(record=record, changed=[(pubkey, self.get_account(pubkey))]))
        return record

    def check_blockhash(self, tx: VersionedTransaction) -> Any:
        """None if the transaction's blockhash is recent, else the BlockhashNotFound error."""
        if self.is_blockhash_valid(tx.message.recent_blockhash):
            return None
        return _blockhash_not_found()

    def simulate(
        self,
        tx: VersionedTransaction,
        *,
        sig_verify: bool = True,
        replace_blockhash: bool = False,
    ) -> SimulationOutcome:
        self.tick()
        if not replace_blockhash:
            err = self.check_blockhash(tx)
            if err is not None:
                return SimulationOutcome(err=err, logs=[], compute_units=0, post_accounts={})
        if tx.signatures and tx.signatures[0] in self._signatures:
            return SimulationOutcome(
                err=_already_processed(), logs=[], compute_units=0, post_accounts={}
            )
        deploy = find_deploy(tx)
        if deploy is not None:
            return self._simulate_deploy(tx, deploy, sig_verify)
        return self._simulate_raw(tx, sig_verify)

    def _simulate_raw(self, tx: VersionedTransaction, sig_verify: bool) -> SimulationOutcome:
        if not sig_verify:
            self.svm.with_sigverify(False)
        try:
            result = self.svm.simulate_transaction(tx)
        finally:
            if not sig_verify:
                self.svm.with_sigverify(True)
        if isinstance(result, SimulatedTransactionInfo):
            meta = result.meta()
            rd = _return_data(meta)
            return SimulationOutcome(
                err=None,
                logs=list(meta.logs()),
                compute_units=meta.compute_units_consumed(),
                post_accounts=dict(result.post_accounts()),
                return_data=(rd.program_id, bytes(rd.data)) if rd.data else None,
                inner_instructions=inner_instructions_json(meta),
            )
        meta = result.meta()
        return SimulationOutcome(
            err=result.err(),
            logs=list(meta.logs()),
            compute_units=meta.compute_units_consumed(),
            post_accounts={},
            inner_instructions=inner_instructions_json(meta),
        )

    def _simulate_deploy(
        self, tx: VersionedTransaction, deploy: DeployRequest, sig_verify: bool
    ) -> SimulationOutcome:
        """Simulate the transaction minus its deploy, then plan the deploy on the result."""
        if sig_verify and not all(tx.verify_with_results()):
            err = error_from_json("SignatureFailure")
            return SimulationOutcome(err=err, logs=[], compute_units=0, post_accounts={})
        sim = self._simulate_raw(strip_deploy(tx), sig_verify=False)
        if sim.err is not None:
            return sim
        wanted = (deploy.payer, deploy.program, deploy.buffer, deploy.programdata)
        state = {k: sim.post_accounts.get(k) or self.get_account(k) for k in wanted}
        rent = self.minimum_balance_for_rent_exemption(programdata_size(deploy))
        plan = plan_deploy(deploy, state, rent, self._slot)
        if isinstance(plan, str):
            err = error_from_json({"InstructionError": [deploy.index, plan]})
            logs = [*sim.logs, f"Program {LOADER_V3} invoke [1]", f"Program {LOADER_V3} failed"]
            return SimulationOutcome(
                err=err, logs=logs, compute_units=sim.compute_units, post_accounts={}
            )
        post = {**sim.post_accounts, **dict(plan.accounts)}
        return SimulationOutcome(
            err=None,
            logs=[*sim.logs, *plan.logs],
            compute_units=sim.compute_units + 2370,
            post_accounts=post,
            _deploy_writes=plan.accounts,
        )

    def process(self, tx: VersionedTransaction, raw: bytes | None = None) -> SendOutcome:
        """Execute a transaction (no preflight). A stale blockhash means it never lands."""
        self.tick()
        sig = tx.signatures[0]
        if self.check_blockhash(tx) is not None:
            return SendOutcome(signature=sig, record=None, err=_blockhash_not_found())
        previous = self._signatures.get(sig)
        if previous is not None:
            return SendOutcome(signature=sig, record=previous, err=_already_processed())
        keys = _message_keys(tx)
        before = {k: self.get_account(k) for k in keys}
        pre_balances = [a.lamports if a is not None else 0 for a in before.values()]
        pre_tokens = self._token_balances(list(before.values()))
        err, logs, units, inner = self._execute(tx)
        if error_to_json(err) in ("SignatureFailure", "AlreadyProcessed", "AccountNotFound"):
            # rejected before execution: nothing lands, like the real banking stage
            return SendOutcome(signature=sig, record=None, err=err, logs=logs)
        after = {k: self.get_account(k) for k in keys}
        for k in keys:
            if after[k] is not None:
                self._index[k] = None
            else:
                self._index.pop(k, None)
        post_balances = [a.lamports if a is not None else 0 for a in after.values()]
        post_tokens = self._token_balances(list(after.values()))
        record = SignatureRecord(
            signature=sig,
            slot=self._slot,
            block_time=self._unix,
            err=err,
            logs=logs,
            compute_units=units,
            fee=LAMPORTS_PER_SIGNATURE * tx.message.header.num_required_signatures,
            account_keys=keys,
            pre_balances=pre_balances,
            post_balances=post_balances,
            raw_tx=raw if raw is not None else bytes(tx),
            version="legacy" if _is_legacy(tx) else 0,
            inner_instructions=inner,
            pre_token_balances=pre_tokens,
            post_token_balances=post_tokens,
        )
        self._remember(record)
        changed = [(k, after[k]) for k in keys if after[k] != before[k]]
        self._emit(TransactionEvent(record=record, changed=changed))
        return SendOutcome(
            signature=sig,
            record=record,
            err=err,
            logs=record.logs,
            compute_units=record.compute_units,
        )

    def _token_balances(self, accounts: list[Account | None]) -> list[dict[str, Any]]:
        """The validator's pre/postTokenBalances: every SPL token account among the
        transaction's accounts whose mint is known, by account index."""
        out = []
        for index, account in enumerate(accounts):
            token = parse_token_account(account) if account is not None else None
            if token is None or account is None:
                continue
            mint_account = self.get_account(token.mint)
            mint = parse_mint(mint_account) if mint_account is not None else None
            if mint is None:
                continue
            out.append(
                {
                    "accountIndex": index,
                    "mint": str(token.mint),
                    "owner": str(token.owner),
                    "programId": str(account.owner),
                    "uiTokenAmount": ui_token_amount(token.amount, mint.decimals),
                }
            )
        return out

    def _execute(
        self, tx: VersionedTransaction
    ) -> tuple[Any, list[str], int, list[dict[str, Any]]]:
        """Run a transaction in LiteSVM: (err or None, logs, compute units, inner
        instructions). A deploy's inner instructions are not reported (the deploy itself is
        carried out here, outside the SVM)."""
        deploy = find_deploy(tx)
        if deploy is not None:
            if not all(tx.verify_with_results()):
                return error_from_json("SignatureFailure"), [], 0, []
            planned = self._simulate_deploy(tx, deploy, sig_verify=False)
            if planned.err is not None:
                return planned.err, planned.logs, planned.compute_units, []
            self.svm.with_sigverify(False)
            try:
                result = self.svm.send_transaction(strip_deploy(tx))
            finally:
                self.svm.with_sigverify(True)
            if isinstance(result, FailedTransactionMetadata):
                meta = result.meta()
                return result.err(), list(meta.logs()), meta.compute_units_consumed(), []
            for pubkey, account in planned._deploy_writes:
                self.svm.set_account(pubkey, account)
            return None, planned.logs, planned.compute_units, []
        result = self.svm.send_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            meta = result.meta()
            inner = inner_instructions_json(meta)
            return result.err(), list(meta.logs()), meta.compute_units_consumed(), inner
        inner = inner_instructions_json(result)
        return None, list(result.logs()), result.compute_units_consumed(), inner

    def send_legacy(self, tx: Transaction) -> SendOutcome:
        return self.process(VersionedTransaction.from_legacy(tx))


def _return_data(meta: TransactionMetadata) -> TransactionReturnData:
    # solders 0.26's stub names it `transaction_return_data`; the runtime method is `return_data`
    getter = getattr(meta, "return_data", None) or meta.transaction_return_data
    rd: TransactionReturnData = getter()
    return rd


def _short_vec_items(value: Any) -> list[int]:
    # solders' JSON of a short_vec field is [[len], item, item, ...]
    if value and isinstance(value[0], list):
        return [int(v) for v in value[1:]]
    return [int(v) for v in value]


def inner_instructions_json(meta: TransactionMetadata) -> list[dict[str, Any]]:
    """The validator's `innerInstructions` (UiInnerInstructions, raw form) of a run."""
    out: list[dict[str, Any]] = []
    for index, inner in enumerate(meta.inner_instructions()):
        if not inner:
            continue
        instructions = []
        for item in inner:
            raw = json.loads(item.to_json())
            ix = raw["instruction"]
            instructions.append(
                {
                    "programIdIndex": int(ix["programIdIndex"]),
                    "accounts": _short_vec_items(ix["accounts"]),
                    "data": base58.b58encode(bytes(_short_vec_items(ix["data"]))).decode(),
                    "stackHeight": raw.get("stackHeight"),
                }
            )
        out.append({"index": index, "instructions": instructions})
    return out


def _is_legacy(tx: VersionedTransaction) -> bool:
    return isinstance(tx.message, Message)


def error_from_json(value: Any) -> Any:
    """A solders `TransactionErrorType` from its validator JSON form."""
    raw = json.dumps({"err": value, "logs": None, "accounts": None, "unitsConsumed": None})
    return RpcSimulateTransactionResult.from_json(raw).err


def _fieldless_error(name: str) -> Any:
    return error_from_json(name)


def _blockhash_not_found() -> Any:
    return _fieldless_error("BlockhashNotFound")


def _already_processed() -> Any:
    return _fieldless_error("AlreadyProcessed")


__all__: Sequence[str] = [
    "ClusterEvent",
    "EmbeddedCluster",
    "PreloadError",
    "SendOutcome",
    "SignatureRecord",
    "SimulationOutcome",
    "SlotEvent",
    "TransactionEvent",
    "error_from_json",
    "error_message",
    "error_to_json",
    "load_account_file",
    "parse_account_json",
    "transaction_from_bytes",
]
