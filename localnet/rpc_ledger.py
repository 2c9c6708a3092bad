"""Ledger-history and cluster-economics JSON-RPC methods of the embedded cluster.

Blocks: the embedded cluster produces one block per slot (no skipped slots, block height ==
slot); a block holds the transactions processed while that slot was current, in order. Airdrops
are credited directly by LiteSVM, so they have no wire transaction: they appear in
`getSignaturesForAddress` (as on a real cluster, where the faucet's transfer touches the
recipient) but not in `getBlock`. History is bounded like the signature store: once records are
evicted, `getFirstAvailableBlock` / `minimumLedgerSlot` move up and older blocks answer
"cleaned up", the way a validator with a pruned ledger does.

There is one node and no stake: vote accounts, inflation rewards and block commitment are
empty or zero; the leader of every slot is the node identity.
"""

from __future__ import annotations

import base64
from typing import Any

import base58
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from localnet.cluster import SignatureRecord
from localnet.jsonrpc import (
    BLOCK_NOT_AVAILABLE,
    UNSUPPORTED_TRANSACTION_VERSION,
    RpcError,
    check_min_context_slot,
    config,
    int_param,
    invalid_params,
    param,
    pubkey_param,
    signature_param,
)
from localnet.rpc_state import RpcState, method, with_context

BLOCK_CLEANED_UP = -32001
NO_SNAPSHOT = -32008
MAX_GET_BLOCKS_RANGE = 500_000
MAX_SIGNATURES_FOR_ADDRESS = 1000
MAX_SLOT_LEADERS = 5000
MAX_PERFORMANCE_SAMPLES = 720
MAX_LARGEST_ACCOUNTS = 20
MAX_INFLATION_REWARD_ADDRESSES = 1000
PERFORMANCE_SAMPLE_SLOTS = 150  # 60 s of 400 ms slots, the validator's sample period
MEMO_PROGRAMS = frozenset(
    {
        Pubkey.from_string("MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"),
        Pubkey.from_string("Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo"),
    }
)
# The validator's defaults (solana-inflation `Inflation::default()`), served as the JSON floats
# the RPC API specifies; not used for any amount here.
INFLATION_GOVERNOR = {
    "initial": 0.08,
    "terminal": 0.015,
    "taper": 0.15,
    "foundation": 0.05,
    "foundationTerm": 7.0,
}
STAKE_MINIMUM_DELEGATION_LAMPORTS = 1  # until feature stake_raise_minimum_delegation_to_1_sol


# ------------------------------------------------------------------ transaction JSON
def ui_transaction(tx: VersionedTransaction) -> dict[str, Any]:
    """The `json` encoding of a transaction (UiTransaction with a raw message)."""
    msg = tx.message
    header = msg.header
    ui_msg: dict[str, Any] = {
        "accountKeys": [str(k) for k in msg.account_keys],
        "header": {
            "numRequiredSignatures": header.num_required_signatures,
            "numReadonlySignedAccounts": header.num_readonly_signed_accounts,
            "numReadonlyUnsignedAccounts": header.num_readonly_unsigned_accounts,
        },
        "recentBlockhash": str(msg.recent_blockhash),
        "instructions": [
            {
                "programIdIndex": ix.program_id_index,
                "accounts": list(ix.accounts),
                "data": base58.b58encode(bytes(ix.data)).decode(),
                "stackHeight": None,
            }
            for ix in msg.instructions
        ],
    }
    if isinstance(msg, MessageV0):
        ui_msg["addressTableLookups"] = [
            {
                "accountKey": str(lk.account_key),
                "writableIndexes": list(lk.writable_indexes),
                "readonlyIndexes": list(lk.readonly_indexes),
            }
            for lk in msg.address_table_lookups
        ]
    return {"signatures": [str(s) for s in tx.signatures], "message": ui_msg}


def transaction_meta(record: SignatureRecord) -> dict[str, Any]:
    err = record.err_json
    return {
        "err": err,
        "status": {"Ok": None} if err is None else {"Err": err},
        "fee": record.fee,
        "preBalances": record.pre_balances,
        "postBalances": record.post_balances,
        "innerInstructions": record.inner_instructions,
        "logMessages": record.logs,
        "preTokenBalances": record.pre_token_balances,
        "postTokenBalances": record.post_token_balances,
        "rewards": [],
        "loadedAddresses": {"writable": [], "readonly": []},
        "computeUnitsConsumed": record.compute_units,
    }


def _transaction_encoding(cfg: dict[str, Any]) -> str:
    encoding = cfg.get("encoding", "json")
    if encoding not in ("json", "jsonParsed", "base64", "base58"):
        raise invalid_params(f"Invalid params: unsupported encoding {encoding!r}")
    return str(encoding)


def _max_version(cfg: dict[str, Any]) -> int | None:
    raw = cfg.get("maxSupportedTransactionVersion")
    return None if raw is None else int_param(raw, "maxSupportedTransactionVersion")


def _check_version(record: SignatureRecord, max_version: int | None) -> None:
    if record.version != "legacy" and max_version is None:
        raise RpcError(
            UNSUPPORTED_TRANSACTION_VERSION,
            "Transaction version (0) is not supported by the requesting client. Please try the "
            'request again with the following configuration parameter: "maxSupportedTransactionVersion": 0',
        )


def encoded_transaction(record: SignatureRecord, encoding: str) -> Any:
    assert record.raw_tx is not None
    if encoding == "base64":
        return [base64.b64encode(record.raw_tx).decode(), "base64"]
    if encoding == "base58":
        return [base58.b58encode(record.raw_tx).decode(), "base58"]
    return ui_transaction(VersionedTransaction.from_bytes(record.raw_tx))  # json(Parsed)


def _check_commitment_at_least_confirmed(cfg: dict[str, Any]) -> None:
    if cfg.get("commitment") == "processed":
        raise invalid_params("Method does not support commitment below `confirmed`")


@method("getTransaction")
def _get_transaction(state: RpcState, params: list[Any]) -> Any:
    sig = signature_param(param(params, 0, "signature"))
    # the legacy form passes the encoding string as the second param
    cfg = (
        {"encoding": params[1]}
        if len(params) > 1 and isinstance(params[1], str)
        else config(params, 1)
    )
    encoding = _transaction_encoding(cfg)
    _check_commitment_at_least_confirmed(cfg)
    max_version = _max_version(cfg)
    record = state.cluster.signature_record(sig)
    if record is None or record.raw_tx is None:
        return None
    _check_version(record, max_version)
    result: dict[str, Any] = {
        "slot": record.slot,
        "blockTime": record.block_time,
        "transaction": encoded_transaction(record, encoding),
        "meta": transaction_meta(record),
    }
    if max_version is not None:
        result["version"] = record.version
    return result


# ------------------------------------------------------------------------- blocks
def _check_block_slot(state: RpcState, slot: int) -> None:
    cluster = state.cluster
    if slot > cluster.slot:
        raise RpcError(BLOCK_NOT_AVAILABLE, f"Block not available for slot {slot}")
    if slot < cluster.first_available_slot:
        raise RpcError(
            BLOCK_CLEANED_UP,
            f"Block {slot} cleaned up, does not exist on node. First available block: "
            f"{cluster.first_available_slot}",
        )


def _block_time(state: RpcState, slot: int) -> int:
    cluster = state.cluster
    return cluster.unix_timestamp - int((cluster.slot - slot) * cluster.slot_seconds)


@method("getBlock")
def _get_block(state: RpcState, params: list[Any]) -> Any:
    cluster = state.cluster
    slot = int_param(param(params, 0, "slot"), "slot")
    cfg = (
        {"encoding": params[1]}
        if len(params) > 1 and isinstance(params[1], str)
        else config(params, 1)
    )
    encoding = _transaction_encoding(cfg)
    _check_commitment_at_least_confirmed(cfg)
    details = cfg.get("transactionDetails", "full")
    if details not in ("full", "signatures", "none", "accounts"):
        raise invalid_params(f"Invalid params: unknown transactionDetails {details!r}")
    rewards = cfg.get("rewards", True)
    if not isinstance(rewards, bool):
        raise invalid_params("Invalid params: rewards must be a boolean")
    max_version = _max_version(cfg)
    _check_block_slot(state, slot)
    records = cluster.block_records(slot)
    block: dict[str, Any] = {
        "blockHeight": slot,
        "blockTime": _block_time(state, slot),
        "blockhash": str(cluster.blockhash_at(slot)),
        "parentSlot": max(slot - 1, 0),
        "previousBlockhash": str(cluster.blockhash_at(max(slot - 1, 0))),
    }
    if details == "full":
        txs = []
        for record in records:
            _check_version(record, max_version)
            entry: dict[str, Any] = {
                "transaction": encoded_transaction(record, encoding),
                "meta": transaction_meta(record),
            }
            if max_version is not None:
                entry["version"] = record.version
            txs.append(entry)
        block["transactions"] = txs
    elif details == "accounts":
        txs = []
        for record in records:
            _check_version(record, max_version)
            tx = VersionedTransaction.from_bytes(record.raw_tx or b"")
            header = tx.message.header
            signers = header.num_required_signatures
            n = len(record.account_keys)
            ro_signed = header.num_readonly_signed_accounts
            ro_unsigned = header.num_readonly_unsigned_accounts
            keys = [
                {
                    "pubkey": str(k),
                    "signer": i < signers,
                    "writable": (i < signers - ro_signed) or (signers <= i < n - ro_unsigned),
                    "source": "transaction",
                }
                for i, k in enumerate(record.account_keys)
            ]
            meta = transaction_meta(record)
            for dropped in ("innerInstructions", "logMessages", "loadedAddresses", "rewards"):
                meta.pop(dropped)
            entry = {
                "transaction": {"signatures": [str(s) for s in tx.signatures], "accountKeys": keys},
                "meta": meta,
            }
            if max_version is not None:
                entry["version"] = record.version
            txs.append(entry)
        block["transactions"] = txs
    elif details == "signatures":
        block["signatures"] = [str(r.signature) for r in records]
    if rewards:
        block["rewards"] = []
    return block


def _slot_range_end(state: RpcState, cfg: dict[str, Any]) -> int:
    check_min_context_slot(cfg, state.cluster.slot)
    return state.cluster.slot


@method("getBlocks")
def _get_blocks(state: RpcState, params: list[Any]) -> Any:
    start = int_param(param(params, 0, "start slot"), "start slot")
    # getBlocks(start, end?, config?): the second position may also hold the config
    end_raw = None
    cfg_index = 1
    if len(params) > 1 and not isinstance(params[1], dict):
        end_raw = params[1]
        cfg_index = 2
    cfg = config(params, cfg_index)
    _check_commitment_at_least_confirmed(cfg)
    end = _slot_range_end(state, cfg)
    # like the validator: an open range covers at most the maximum; the end is clamped to the
    # newest block before the range is checked
    wanted_end = start + MAX_GET_BLOCKS_RANGE if end_raw is None else int_param(end_raw, "end slot")
    end = min(end, wanted_end)
    if end >= start and end - start > MAX_GET_BLOCKS_RANGE:
        raise invalid_params(f"Slot range too large; max {MAX_GET_BLOCKS_RANGE}")
    first = max(start, state.cluster.first_available_slot)
    return list(range(first, end + 1))


@method("getBlocksWithLimit")
def _get_blocks_with_limit(state: RpcState, params: list[Any]) -> Any:
    start = int_param(param(params, 0, "start slot"), "start slot")
    limit = int_param(param(params, 1, "limit"), "limit")
    if limit > MAX_GET_BLOCKS_RANGE:
        raise invalid_params(f"Limit too large; max {MAX_GET_BLOCKS_RANGE}")
    cfg = config(params, 2)
    _check_commitment_at_least_confirmed(cfg)
    end = _slot_range_end(state, cfg)
    first = max(start, state.cluster.first_available_slot)
    return list(range(first, min(end + 1, first + limit)))


@method("getBlockCommitment")
def _get_block_commitment(state: RpcState, params: list[Any]) -> Any:
    int_param(param(params, 0, "slot"), "slot")
    return {"commitment": None, "totalStake": 0}  # no stake, no votes


@method("minimumLedgerSlot")
def _minimum_ledger_slot(state: RpcState, params: list[Any]) -> Any:
    return state.cluster.first_available_slot


@method("getHighestSnapshotSlot")
def _get_highest_snapshot_slot(state: RpcState, params: list[Any]) -> Any:
    raise RpcError(NO_SNAPSHOT, "No snapshot")


@method("getMaxRetransmitSlot")
def _get_max_retransmit_slot(state: RpcState, params: list[Any]) -> Any:
    return state.cluster.slot


@method("getMaxShredInsertSlot")
def _get_max_shred_insert_slot(state: RpcState, params: list[Any]) -> Any:
    return state.cluster.slot


# ------------------------------------------------------------- signatures for address
def _memo(record: SignatureRecord) -> str | None:
    if record.raw_tx is None:
        return None
    msg = VersionedTransaction.from_bytes(record.raw_tx).message
    keys = list(msg.account_keys)
    memos = []
    for ix in msg.instructions:
        if ix.program_id_index < len(keys) and keys[ix.program_id_index] in MEMO_PROGRAMS:
            data = bytes(ix.data)
            memos.append(f"[{len(data)}] {data.decode('utf-8', 'replace')}")
    return "; ".join(memos) if memos else None


@method("getSignaturesForAddress")
def _get_signatures_for_address(state: RpcState, params: list[Any]) -> Any:
    address = pubkey_param(param(params, 0, "address"), "address")
    cfg = config(params, 1)
    _check_commitment_at_least_confirmed(cfg)
    check_min_context_slot(cfg, state.cluster.slot)
    limit = int_param(cfg.get("limit", MAX_SIGNATURES_FOR_ADDRESS), "limit")
    if not 1 <= limit <= MAX_SIGNATURES_FOR_ADDRESS:
        raise invalid_params(f"Invalid limit; max {MAX_SIGNATURES_FOR_ADDRESS}")
    before = signature_param(cfg["before"]) if "before" in cfg else None
    until = signature_param(cfg["until"]) if "until" in cfg else None
    newest_first = list(reversed(state.cluster.address_records(address)))
    if before is not None:
        idx = next((i for i, r in enumerate(newest_first) if r.signature == before), None)
        newest_first = [] if idx is None else newest_first[idx + 1 :]
    out: list[dict[str, Any]] = []
    for record in newest_first:
        if until is not None and record.signature == until:
            break
        if len(out) == limit:
            break
        out.append(
            {
                "signature": str(record.signature),
                "slot": record.slot,
                "err": record.err_json,
                "memo": _memo(record),
                "blockTime": record.block_time,
                "confirmationStatus": "finalized",
            }
        )
    return out


@method("getRecentPerformanceSamples")
def _get_recent_performance_samples(state: RpcState, params: list[Any]) -> Any:
    limit = MAX_PERFORMANCE_SAMPLES
    if params and params[0] is not None:
        limit = int_param(params[0], "limit")
        if limit > MAX_PERFORMANCE_SAMPLES:
            raise invalid_params(f"Invalid limit; max {MAX_PERFORMANCE_SAMPLES}")
    cluster = state.cluster
    samples: list[dict[str, Any]] = []
    end = cluster.slot
    while len(samples) < limit and end > cluster.first_available_slot:
        start = max(end - PERFORMANCE_SAMPLE_SLOTS, cluster.first_available_slot)
        count = sum(len(cluster.block_records(s)) for s in range(start + 1, end + 1))
        samples.append(
            {
                "slot": end,
                "numSlots": end - start,
                "numTransactions": count,
                "numNonVoteTransactions": count,
                "samplePeriodSecs": int((end - start) * cluster.slot_seconds),
            }
        )
        end = start
    return samples


# ----------------------------------------------------------------- leaders and votes
def _identity_filter(state: RpcState, cfg: dict[str, Any]) -> bool:
    """False when the request asks about another identity than this node's."""
    if "identity" not in cfg:
        return True
    return pubkey_param(cfg["identity"], "identity") == state.identity


@method("getLeaderSchedule")
def _get_leader_schedule(state: RpcState, params: list[Any]) -> Any:
    cluster = state.cluster
    slot = cluster.slot
    cfg_index = 0
    if params and not isinstance(params[0], dict) and params[0] is not None:
        slot = int_param(params[0], "slot")
        cfg_index = 1
    elif params and params[0] is None:
        cfg_index = 1
    cfg = config(params, cfg_index)
    schedule = cluster.svm.get_epoch_schedule()
    epoch = schedule.get_epoch(slot)
    if epoch > schedule.get_epoch(cluster.slot) + 1:
        return None  # like a validator asked about an epoch it has no schedule for yet
    if not _identity_filter(state, cfg):
        return {}
    return {str(state.identity): list(range(schedule.get_slots_in_epoch(epoch)))}


@method("getSlotLeader")
def _get_slot_leader(state: RpcState, params: list[Any]) -> Any:
    check_min_context_slot(config(params, 0), state.cluster.slot)
    return str(state.identity)


@method("getSlotLeaders")
def _get_slot_leaders(state: RpcState, params: list[Any]) -> Any:
    int_param(param(params, 0, "start slot"), "start slot")
    limit = int_param(param(params, 1, "limit"), "limit")
    if not 1 <= limit <= MAX_SLOT_LEADERS:
        raise invalid_params(f"Invalid limit; max {MAX_SLOT_LEADERS}")
    return [str(state.identity)] * limit


@method("getBlockProduction")
def _get_block_production(state: RpcState, params: list[Any]) -> Any:
    cluster = state.cluster
    cfg = config(params, 0)
    rng = cfg.get("range") or {}
    if not isinstance(rng, dict):
        raise invalid_params("Invalid params: range must be {firstSlot, lastSlot}")
    first = int_param(rng.get("firstSlot", cluster.first_available_slot), "firstSlot")
    last = int_param(rng.get("lastSlot", cluster.slot), "lastSlot")
    if last > cluster.slot:
        raise invalid_params(f"lastSlot, {last}, cannot be greater than current slot")
    if first > last:
        raise invalid_params(f"lastSlot, {last}, cannot be less than firstSlot, {first}")
    count = last - first + 1
    by_identity = {str(state.identity): [count, count]} if _identity_filter(state, cfg) else {}
    return with_context(
        cluster, {"byIdentity": by_identity, "range": {"firstSlot": first, "lastSlot": last}}
    )


@method("getVoteAccounts")
def _get_vote_accounts(state: RpcState, params: list[Any]) -> Any:
    config(params, 0)
    return {"current": [], "delinquent": []}  # the embedded cluster does not vote


# ------------------------------------------------------------------------- economics
@method("getInflationGovernor")
def _get_inflation_governor(state: RpcState, params: list[Any]) -> Any:
    return dict(INFLATION_GOVERNOR)


@method("getInflationRate")
def _get_inflation_rate(state: RpcState, params: list[Any]) -> Any:
    epoch = state.cluster.epoch_info()["epoch"]
    return {"total": 0.0, "validator": 0.0, "foundation": 0.0, "epoch": epoch}


@method("getInflationReward")
def _get_inflation_reward(state: RpcState, params: list[Any]) -> Any:
    raw = param(params, 0, "addresses")
    if not isinstance(raw, list):
        raise invalid_params("Invalid params: addresses must be a list")
    if len(raw) > MAX_INFLATION_REWARD_ADDRESSES:
        raise invalid_params(f"Too many inputs provided; max {MAX_INFLATION_REWARD_ADDRESSES}")
    for address in raw:
        pubkey_param(address, "address")
    cfg = config(params, 1)
    check_min_context_slot(cfg, state.cluster.slot)
    current = state.cluster.epoch_info()["epoch"]
    epoch = int_param(cfg.get("epoch", max(current - 1, 0)), "epoch")
    if epoch >= current:
        schedule = state.cluster.svm.get_epoch_schedule()
        first = schedule.get_first_slot_in_epoch(epoch + 1)
        raise RpcError(BLOCK_NOT_AVAILABLE, f"Block not available for slot {first}")
    return [None] * len(raw)  # no stake, no rewards


@method("getStakeMinimumDelegation")
def _get_stake_minimum_delegation(state: RpcState, params: list[Any]) -> Any:
    check_min_context_slot(config(params, 0), state.cluster.slot)
    return with_context(state.cluster, STAKE_MINIMUM_DELEGATION_LAMPORTS)


def _lamport_holders(state: RpcState) -> list[tuple[Pubkey, int]]:
    return [(k, a.lamports) for k, a in state.cluster.indexed_accounts()]


@method("getSupply")
def _get_supply(state: RpcState, params: list[Any]) -> Any:
    cfg = config(params, 0)
    exclude = cfg.get("excludeNonCirculatingAccountsList", False)
    if not isinstance(exclude, bool):
        raise invalid_params("Invalid params: excludeNonCirculatingAccountsList must be a boolean")
    total = sum(lamports for _, lamports in _lamport_holders(state))
    value: dict[str, Any] = {
        "total": total,
        "circulating": total,
        "nonCirculating": 0,
        "nonCirculatingAccounts": [],
    }
    return with_context(state.cluster, value)


@method("getLargestAccounts")
def _get_largest_accounts(state: RpcState, params: list[Any]) -> Any:
    cfg = config(params, 0)
    which = cfg.get("filter")
    if which not in (None, "circulating", "nonCirculating"):
        raise invalid_params(f"Invalid params: unknown filter {which!r}")
    holders = [] if which == "nonCirculating" else _lamport_holders(state)
    holders.sort(key=lambda kv: (-kv[1], bytes(kv[0])))
    value = [{"address": str(k), "lamports": v} for k, v in holders[:MAX_LARGEST_ACCOUNTS]]
    return with_context(state.cluster, value)


__all__ = ["encoded_transaction", "transaction_meta", "ui_transaction"]
