"""Solana JSON-RPC over HTTP for an `EmbeddedCluster` (aiohttp).

`create_rpc_app(cluster)` serves JSON-RPC 2.0 POSTs on `/` (single requests and batches) and
`GET /health`. A background task in `cleanup_ctx` keeps the cluster's slot clock ticking.
Every failure becomes a JSON-RPC error object shaped like the real validator's; the server
never dies on a bad request.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import json
import logging
import zlib
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from solders.hash import Hash
from solders.message import from_bytes_versioned
from solders.pubkey import Pubkey
from solders.transaction import VersionedTransaction

from localnet import rpc_ledger, rpc_token  # noqa: F401  (they register their methods)
from localnet.cluster import (
    LAMPORTS_PER_SIGNATURE,
    EmbeddedCluster,
    SignatureRecord,
    SimulationOutcome,
    error_message,
    error_to_json,
)
from localnet.jsonrpc import (
    BLOCK_NOT_AVAILABLE,
    FEATURE_SET,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    MAX_MULTIPLE_ACCOUNTS,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    SEND_TRANSACTION_PREFLIGHT_FAILURE,
    SOLANA_CORE_VERSION,
    TRANSACTION_SIGNATURE_VERIFICATION_FAILURE,
    RpcError,
    account_encoding,
    check_min_context_slot,
    config,
    data_slice,
    decode_binary,
    dumps,
    encode_account,
    error_response,
    int_param,
    invalid_params,
    matches,
    param,
    parse_filters,
    pubkey_param,
    result_response,
    signature_param,
    validate_request,
)
from localnet.rpc_state import (
    CLUSTER_KEY,
    METHODS,
    STATE_KEY,
    RpcState,
    method,
    with_context,
)

log = logging.getLogger(__name__)

MAX_BATCH = 1000
MAX_SIGNATURE_STATUSES = 256
GENESIS_HASH = "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG"


# ----------------------------------------------------------------- cluster info
@method("getHealth")
def _get_health(state: RpcState, params: list[Any]) -> Any:
    return "ok"


@method("getVersion")
def _get_version(state: RpcState, params: list[Any]) -> Any:
    return {"solana-core": SOLANA_CORE_VERSION, "feature-set": FEATURE_SET}


@method("getGenesisHash")
def _get_genesis_hash(state: RpcState, params: list[Any]) -> Any:
    return GENESIS_HASH


@method("getIdentity")
def _get_identity(state: RpcState, params: list[Any]) -> Any:
    return {"identity": str(state.identity)}


@method("getSlot")
def _get_slot(state: RpcState, params: list[Any]) -> Any:
    check_min_context_slot(config(params, 0), state.cluster.slot)
    return state.cluster.slot


@method("getBlockHeight")
def _get_block_height(state: RpcState, params: list[Any]) -> Any:
    check_min_context_slot(config(params, 0), state.cluster.slot)
    return state.cluster.block_height


@method("getTransactionCount")
def _get_transaction_count(state: RpcState, params: list[Any]) -> Any:
    check_min_context_slot(config(params, 0), state.cluster.slot)
    return state.cluster.transaction_count


@method("getEpochInfo")
def _get_epoch_info(state: RpcState, params: list[Any]) -> Any:
    check_min_context_slot(config(params, 0), state.cluster.slot)
    return state.cluster.epoch_info()


@method("getEpochSchedule")
def _get_epoch_schedule(state: RpcState, params: list[Any]) -> Any:
    es = state.cluster.svm.get_epoch_schedule()
    return {
        "slotsPerEpoch": es.slots_per_epoch,
        "leaderScheduleSlotOffset": es.leader_schedule_slot_offset,
        "warmup": es.warmup,
        "firstNormalEpoch": es.first_normal_epoch,
        "firstNormalSlot": es.first_normal_slot,
    }


@method("getFirstAvailableBlock")
def _get_first_available_block(state: RpcState, params: list[Any]) -> Any:
    return state.cluster.first_available_slot


@method("getBlockTime")
def _get_block_time(state: RpcState, params: list[Any]) -> Any:
    cluster = state.cluster
    slot = int_param(param(params, 0, "slot"), "slot")
    if slot > cluster.slot:
        raise RpcError(BLOCK_NOT_AVAILABLE, f"Block not available for slot {slot}")
    return cluster.unix_timestamp - int((cluster.slot - slot) * cluster.slot_seconds)


@method("getClusterNodes")
def _get_cluster_nodes(state: RpcState, params: list[Any]) -> Any:
    host = state.rpc_url.split("//", 1)[-1].rsplit(":", 1)[0]
    return [
        {
            "pubkey": str(state.identity),
            "gossip": f"{host}:1024",
            "tpu": f"{host}:1027",
            "tpuQuic": f"{host}:1033",
            "rpc": state.rpc_url.split("//", 1)[-1],
            "pubsub": state.ws_url.split("//", 1)[-1],
            "version": SOLANA_CORE_VERSION,
            "featureSet": FEATURE_SET,
            "shredVersion": 0,
        }
    ]


@method("getMinimumBalanceForRentExemption")
def _get_min_balance(state: RpcState, params: list[Any]) -> Any:
    size = int_param(param(params, 0, "data length"), "data length")
    return state.cluster.minimum_balance_for_rent_exemption(size)


@method("getRecentPrioritizationFees")
def _get_recent_prioritization_fees(state: RpcState, params: list[Any]) -> Any:
    if params and params[0] is not None:
        if not isinstance(params[0], list) or len(params[0]) > 128:
            raise invalid_params("Invalid params: expected at most 128 account addresses")
        for key in params[0]:
            pubkey_param(key)
    return [{"slot": state.cluster.slot, "prioritizationFee": 0}]


@method("getFeeForMessage")
def _get_fee_for_message(state: RpcState, params: list[Any]) -> Any:
    raw = decode_binary(param(params, 0, "message"), "base64", "message")
    try:
        msg = from_bytes_versioned(raw)
    except Exception as exc:
        raise invalid_params(f"invalid message: {exc}") from exc
    if not state.cluster.is_blockhash_valid(msg.recent_blockhash):
        return with_context(state.cluster, None)
    return with_context(state.cluster, LAMPORTS_PER_SIGNATURE * msg.header.num_required_signatures)


# ------------------------------------------------------------------ blockhash
@method("getLatestBlockhash")
def _get_latest_blockhash(state: RpcState, params: list[Any]) -> Any:
    check_min_context_slot(config(params, 0), state.cluster.slot)
    bh, last_valid = state.cluster.latest_blockhash()
    return with_context(state.cluster, {"blockhash": str(bh), "lastValidBlockHeight": last_valid})


@method("isBlockhashValid")
def _is_blockhash_valid(state: RpcState, params: list[Any]) -> Any:
    raw = param(params, 0, "blockhash")
    try:
        bh = Hash.from_string(raw) if isinstance(raw, str) else None
    except ValueError:
        bh = None
    if bh is None:
        raise invalid_params(f"Invalid param: {raw!r} is not a valid blockhash")
    return with_context(state.cluster, state.cluster.is_blockhash_valid(bh))


# ------------------------------------------------------------------- accounts
@method("getBalance")
def _get_balance(state: RpcState, params: list[Any]) -> Any:
    pubkey = pubkey_param(param(params, 0, "pubkey"))
    check_min_context_slot(config(params, 1), state.cluster.slot)
    acct = state.cluster.get_account(pubkey)
    return with_context(state.cluster, acct.lamports if acct else 0)


@method("getAccountInfo")
def _get_account_info(state: RpcState, params: list[Any]) -> Any:
    pubkey = pubkey_param(param(params, 0, "pubkey"))
    cfg = config(params, 1)
    check_min_context_slot(cfg, state.cluster.slot)
    encoding, slice_ = account_encoding(cfg), data_slice(cfg)
    acct = state.cluster.get_account(pubkey)
    value = (
        encode_account(acct, encoding, slice_, state.cluster.get_account)
        if acct is not None
        else None
    )
    return with_context(state.cluster, value)


@method("getMultipleAccounts")
def _get_multiple_accounts(state: RpcState, params: list[Any]) -> Any:
    keys = param(params, 0, "pubkeys")
    if not isinstance(keys, list):
        raise invalid_params("Invalid params: pubkeys must be a list")
    if len(keys) > MAX_MULTIPLE_ACCOUNTS:
        raise invalid_params(f"Too many inputs provided; max {MAX_MULTIPLE_ACCOUNTS}")
    pubkeys = [pubkey_param(k) for k in keys]
    cfg = config(params, 1)
    check_min_context_slot(cfg, state.cluster.slot)
    encoding, slice_ = account_encoding(cfg, "base64"), data_slice(cfg)
    values = []
    for pk in pubkeys:
        acct = state.cluster.get_account(pk)
        values.append(
            encode_account(acct, encoding, slice_, state.cluster.get_account)
            if acct is not None
            else None
        )
    return with_context(state.cluster, values)


@method("getProgramAccounts")
def _get_program_accounts(state: RpcState, params: list[Any]) -> Any:
    program = pubkey_param(param(params, 0, "program id"), "program id")
    cfg = config(params, 1)
    check_min_context_slot(cfg, state.cluster.slot)
    encoding, slice_ = account_encoding(cfg), data_slice(cfg)
    filters = parse_filters(cfg.get("filters"))
    items = [
        {
            "pubkey": str(pk),
            "account": encode_account(acct, encoding, slice_, state.cluster.get_account),
        }
        for pk, acct in sorted(state.cluster.program_accounts(program), key=lambda x: bytes(x[0]))
        if matches(acct, filters)
    ]
    if cfg.get("withContext"):
        return with_context(state.cluster, items)
    return items


@method("requestAirdrop")
def _request_airdrop(state: RpcState, params: list[Any]) -> Any:
    pubkey = pubkey_param(param(params, 0, "pubkey"))
    lamports = int_param(param(params, 1, "lamports"), "lamports")
    try:
        record = state.cluster.airdrop(pubkey, lamports)
    except RuntimeError as exc:
        raise RpcError(INTERNAL_ERROR, str(exc)) from exc
    return str(record.signature)


# --------------------------------------------------------------- transactions
def _decode_transaction(
    params: list[Any], cfg: dict[str, Any]
) -> tuple[VersionedTransaction, bytes]:
    encoding = cfg.get("encoding", "base58")
    if encoding not in ("base58", "base64"):
        raise invalid_params(f"Invalid params: unsupported transaction encoding {encoding!r}")
    raw = decode_binary(param(params, 0, "transaction"), encoding, "transaction")
    try:
        tx = VersionedTransaction.from_bytes(raw)
    except Exception as exc:
        raise invalid_params(
            f"failed to deserialize solana_transaction::versioned::VersionedTransaction: {exc}"
        ) from exc
    try:
        tx.sanitize()
    except Exception as exc:
        raise invalid_params(f"invalid transaction: {exc}") from exc
    return tx, raw


def _signatures_ok(tx: VersionedTransaction) -> bool:
    try:
        return all(tx.verify_with_results())
    except Exception:
        return False


def _simulation_value(
    sim: SimulationOutcome,
    *,
    accounts: list[Any] | None = None,
    replacement: dict[str, Any] | None = None,
    inner_instructions: bool = False,
) -> dict[str, Any]:
    return_data = None
    if sim.return_data is not None:
        program_id, data = sim.return_data
        return_data = {
            "programId": str(program_id),
            "data": [base64.b64encode(data).decode(), "base64"],
        }
    return {
        "err": error_to_json(sim.err),
        "logs": sim.logs,
        "accounts": accounts,
        "unitsConsumed": sim.compute_units,
        "returnData": return_data,
        "innerInstructions": sim.inner_instructions if inner_instructions else None,
        "replacementBlockhash": replacement,
    }


@method("sendTransaction")
def _send_transaction(state: RpcState, params: list[Any]) -> Any:
    cluster = state.cluster
    cfg = config(params, 1)
    tx, raw = _decode_transaction(params, cfg)
    check_min_context_slot(cfg, cluster.slot)
    if not cfg.get("skipPreflight", False):
        if not _signatures_ok(tx):
            raise RpcError(
                TRANSACTION_SIGNATURE_VERIFICATION_FAILURE,
                "Transaction signature verification failure",
            )
        sim = cluster.simulate(tx, sig_verify=True)
        if sim.err is not None:
            raise RpcError(
                SEND_TRANSACTION_PREFLIGHT_FAILURE,
                f"Transaction simulation failed: {error_message(sim.err)}",
                _simulation_value(sim),
            )
    outcome = cluster.process(tx, raw)
    return str(outcome.signature)


@method("simulateTransaction")
def _simulate_transaction(state: RpcState, params: list[Any]) -> Any:
    cluster = state.cluster
    cfg = config(params, 1)
    tx, _ = _decode_transaction(params, cfg)
    check_min_context_slot(cfg, cluster.slot)
    sig_verify = bool(cfg.get("sigVerify", False))
    replace = bool(cfg.get("replaceRecentBlockhash", False))
    inner = cfg.get("innerInstructions", False)
    if not isinstance(inner, bool):
        raise invalid_params("Invalid params: innerInstructions must be a boolean")
    if sig_verify and replace:
        raise invalid_params("sigVerify may not be used with replaceRecentBlockhash")
    if sig_verify and not _signatures_ok(tx):
        raise RpcError(
            TRANSACTION_SIGNATURE_VERIFICATION_FAILURE, "Transaction signature verification failure"
        )
    accounts_cfg = cfg.get("accounts")
    addresses: list[Pubkey] = []
    acct_encoding = "base64"
    if accounts_cfg is not None:
        if not isinstance(accounts_cfg, dict) or not isinstance(
            accounts_cfg.get("addresses"), list
        ):
            raise invalid_params("Invalid params: accounts must be {addresses: [...], encoding}")
        addresses = [pubkey_param(a, "address") for a in accounts_cfg["addresses"]]
        acct_encoding = account_encoding(
            {k: v for k, v in accounts_cfg.items() if v is not None}, "base64"
        )
        if acct_encoding in ("binary", "base58"):
            raise invalid_params("Invalid params: base58 encoding not supported")
    sim = cluster.simulate(tx, sig_verify=sig_verify, replace_blockhash=replace)
    accounts: list[Any] | None = None
    if accounts_cfg is not None:
        accounts = []
        for addr in addresses:
            acct = sim.post_accounts.get(addr) if sim.err is None else None
            if acct is None:
                acct = cluster.get_account(addr)
            accounts.append(
                encode_account(acct, acct_encoding, None, cluster.get_account)
                if acct is not None
                else None
            )
    replacement = None
    if replace:
        bh, last_valid = cluster.latest_blockhash()
        replacement = {"blockhash": str(bh), "lastValidBlockHeight": last_valid}
    return with_context(
        cluster,
        _simulation_value(
            sim, accounts=accounts, replacement=replacement, inner_instructions=inner
        ),
    )


def _status(record: SignatureRecord) -> dict[str, Any]:
    err = record.err_json
    return {
        "slot": record.slot,
        "confirmations": None,
        "err": err,
        "status": {"Ok": None} if err is None else {"Err": err},
        "confirmationStatus": "finalized",
    }


@method("getSignatureStatuses")
def _get_signature_statuses(state: RpcState, params: list[Any]) -> Any:
    sigs = param(params, 0, "signatures")
    if not isinstance(sigs, list):
        raise invalid_params("Invalid params: signatures must be a list")
    if len(sigs) > MAX_SIGNATURE_STATUSES:
        raise invalid_params(f"Too many inputs provided; max {MAX_SIGNATURE_STATUSES}")
    values = []
    for s in sigs:
        record = state.cluster.signature_record(signature_param(s))
        values.append(_status(record) if record is not None else None)
    return with_context(state.cluster, values)


# ------------------------------------------------------------------- dispatch
def dispatch(state: RpcState, req: Any) -> dict[str, Any]:
    """Answer one request object; never raises."""
    req_id = req.get("id") if isinstance(req, dict) else None
    try:
        req_id, name, params = validate_request(req)
        handler = METHODS.get(name)
        if handler is None:
            raise RpcError(METHOD_NOT_FOUND, "Method not found")
        state.cluster.tick()
        return result_response(req_id, handler(state, params))
    except RpcError as err:
        return error_response(req_id, err)
    except Exception as exc:  # a bug must not kill the server: answer -32603
        log.exception("internal error in %r", req)
        return error_response(req_id, RpcError(INTERNAL_ERROR, f"Internal error: {exc}"))


def _decode_body(raw: bytes) -> Any:
    if raw[:2] == b"\x1f\x8b":  # really gzipped (anchorpy only *says* it gzips)
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise RpcError(PARSE_ERROR, f"Parse error: bad gzip body: {exc}") from exc
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RpcError(PARSE_ERROR, f"Parse error: {exc}") from exc


def answer(state: RpcState, raw: bytes) -> Any:
    """The JSON response (object or list) for a raw request body."""
    try:
        body = _decode_body(raw)
    except RpcError as err:
        return error_response(None, err)
    if isinstance(body, list):
        if not body:
            return error_response(None, RpcError(INVALID_REQUEST, "Invalid request: empty batch"))
        if len(body) > MAX_BATCH:
            return error_response(
                None, RpcError(INVALID_REQUEST, f"Invalid request: batch larger than {MAX_BATCH}")
            )
        return [dispatch(state, item) for item in body]
    return dispatch(state, body)


async def _handle_post(request: web.Request) -> web.Response:
    raw = await request.read()
    return web.Response(
        text=dumps(answer(request.app[STATE_KEY], raw)), content_type="application/json"
    )


async def _handle_health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _ticker(cluster: EmbeddedCluster, interval: float) -> None:
    while True:
        try:
            cluster.tick()
        except Exception:
            log.exception("slot tick failed")
        await asyncio.sleep(min(interval, max(0.005, cluster.seconds_until_next_slot())))


def create_rpc_app(
    cluster: EmbeddedCluster,
    *,
    rpc_url: str = "http://127.0.0.1:8899",
    ws_url: str = "ws://127.0.0.1:8900",
    tick_interval: float = 0.05,
) -> web.Application:
    """The HTTP JSON-RPC application; its cleanup context runs the slot ticker."""
    app = web.Application(handler_args={"auto_decompress": False}, client_max_size=64 * 1024**2)
    app[CLUSTER_KEY] = cluster
    app[STATE_KEY] = RpcState(cluster, rpc_url, ws_url)

    async def ticker_ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(_ticker(app[CLUSTER_KEY], tick_interval))
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    app.cleanup_ctx.append(ticker_ctx)
    app.router.add_post("/", _handle_post)
    app.router.add_get("/health", _handle_health)
    return app
