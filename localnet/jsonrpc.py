"""JSON-RPC 2.0 plumbing shared by the HTTP and PubSub servers: errors, params, encodings."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Any

import base58
from solders.account import Account
from solders.pubkey import Pubkey
from solders.signature import Signature

from localnet.spl_token import json_parsed, parse_mint, parse_token_account

# Standard JSON-RPC codes and the Solana server codes (solana-rpc-client-api custom_error.rs).
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
BLOCK_NOT_AVAILABLE = -32004
SEND_TRANSACTION_PREFLIGHT_FAILURE = -32002
TRANSACTION_SIGNATURE_VERIFICATION_FAILURE = -32003
MIN_CONTEXT_SLOT_NOT_REACHED = -32016
UNSUPPORTED_TRANSACTION_VERSION = -32015

SOLANA_CORE_VERSION = "2.1.21"
FEATURE_SET = 1416569292
MAX_BASE58_BYTES = 128
MAX_MULTIPLE_ACCOUNTS = 100


class RpcError(Exception):
    """An error that becomes a JSON-RPC `error` object."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            err["data"] = self.data
        return err


def invalid_params(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, message)


def error_response(req_id: Any, err: RpcError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": err.to_json(), "id": req_id}


def result_response(req_id: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "result": result, "id": req_id}


def dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def validate_request(req: Any) -> tuple[Any, str, list[Any]]:
    """(id, method, params) of one request object, or RpcError(-32600 / -32602)."""
    if not isinstance(req, dict):
        raise RpcError(INVALID_REQUEST, "Invalid request: expected a JSON object")
    req_id = req.get("id")
    if req_id is not None and not isinstance(req_id, (int, str)):
        raise RpcError(INVALID_REQUEST, "Invalid request: id must be a number, string or null")
    if req.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, 'Invalid request: "jsonrpc" must be "2.0"')
    method = req.get("method")
    if not isinstance(method, str):
        raise RpcError(INVALID_REQUEST, 'Invalid request: "method" must be a string')
    params = req.get("params")
    if params is None:
        params = []
    if not isinstance(params, list):
        raise invalid_params("Invalid params: expected a sequence (positional params)")
    return req_id, method, params


# ---------------------------------------------------------------------- params
def param(params: Sequence[Any], index: int, name: str) -> Any:
    if index >= len(params) or params[index] is None:
        raise invalid_params(f"Invalid params: missing parameter {name!r} at position {index}")
    return params[index]


def config(params: Sequence[Any], index: int) -> dict[str, Any]:
    """Optional config object at `index`, with explicit nulls dropped."""
    if index >= len(params) or params[index] is None:
        return {}
    cfg = params[index]
    if not isinstance(cfg, dict):
        raise invalid_params(f"Invalid params: expected a config object at position {index}")
    return {k: v for k, v in cfg.items() if v is not None}


def pubkey_param(value: Any, name: str = "pubkey") -> Pubkey:
    if not isinstance(value, str):
        raise invalid_params(f"Invalid param: {name} must be a base58 string")
    try:
        return Pubkey.from_string(value)
    except ValueError as exc:
        raise invalid_params(f"Invalid param: {name} {value!r} is not a valid pubkey") from exc


def signature_param(value: Any) -> Signature:
    if not isinstance(value, str):
        raise invalid_params("Invalid param: signature must be a base58 string")
    try:
        return Signature.from_string(value)
    except ValueError as exc:
        raise invalid_params(f"Invalid param: {value!r} is not a valid signature") from exc


def int_param(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise invalid_params(f"Invalid param: {name} must be a non-negative integer")
    return value


def decode_binary(value: Any, encoding: str, what: str) -> bytes:
    """Decode base58/base64 text with -32602 errors shaped like the validator's."""
    if not isinstance(value, str):
        raise invalid_params(f"Invalid params: {what} must be a string")
    if encoding == "base64":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise invalid_params(f"invalid base64 encoding: {exc}") from exc
    if encoding in ("base58", "binary"):
        try:
            return base58.b58decode(value)
        except ValueError as exc:
            raise invalid_params(f"invalid base58 encoding: {exc}") from exc
    raise invalid_params(f"Invalid params: unsupported encoding {encoding!r}")


def check_min_context_slot(cfg: dict[str, Any], slot: int) -> None:
    min_slot = cfg.get("minContextSlot")
    if min_slot is not None and int(min_slot) > slot:
        raise RpcError(
            MIN_CONTEXT_SLOT_NOT_REACHED,
            "Minimum context slot has not been reached",
            {"contextSlot": slot},
        )


# ------------------------------------------------------------------- accounts
_ACCOUNT_ENCODINGS = ("base64", "base64+zstd", "base58", "binary", "jsonParsed")


def account_encoding(cfg: dict[str, Any], default: str = "base64") -> str:
    encoding = cfg.get("encoding", default)
    if encoding not in _ACCOUNT_ENCODINGS:
        raise invalid_params(f"Invalid params: unknown account encoding {encoding!r}")
    return str(encoding)


def data_slice(cfg: dict[str, Any]) -> tuple[int, int] | None:
    ds = cfg.get("dataSlice")
    if ds is None:
        return None
    if not isinstance(ds, dict):
        raise invalid_params("Invalid params: dataSlice must be {offset, length}")
    return int_param(ds.get("offset"), "dataSlice.offset"), int_param(
        ds.get("length"), "dataSlice.length"
    )


AccountLookup = Callable[[Pubkey], Account | None]


def _mint_decimals(account: Account, lookup: AccountLookup | None) -> int | None:
    token = parse_token_account(account)
    if token is None or lookup is None:
        return None
    mint_account = lookup(token.mint)
    mint = parse_mint(mint_account) if mint_account is not None else None
    return mint.decimals if mint is not None else None


def encode_account(
    account: Account,
    encoding: str,
    slice_: tuple[int, int] | None = None,
    lookup: AccountLookup | None = None,
) -> dict[str, Any]:
    """UiAccount JSON. zstd is not available here, so base64+zstd answers base64 (which the
    clients accept); jsonParsed parses SPL Token accounts and mints (`lookup` finds a token
    account's mint) and answers base64 for anything else, like the validator."""
    if encoding == "jsonParsed" and slice_ is None:
        parsed = json_parsed(account, _mint_decimals(account, lookup))
        if parsed is not None:
            return {
                "data": parsed,
                "executable": account.executable,
                "lamports": account.lamports,
                "owner": str(account.owner),
                "rentEpoch": account.rent_epoch,
                "space": len(account.data),
            }
    data = bytes(account.data)
    if slice_ is not None:
        data = data[slice_[0] : slice_[0] + slice_[1]]
    encoded: Any
    if encoding == "binary":
        encoded = base58.b58encode(data).decode()
    elif encoding == "base58":
        encoded = [base58.b58encode(data).decode(), "base58"]
    else:
        encoded = [base64.b64encode(data).decode(), "base64"]
    if encoding in ("binary", "base58") and len(data) > MAX_BASE58_BYTES:
        raise invalid_params(
            "Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding."
        )
    return {
        "data": encoded,
        "executable": account.executable,
        "lamports": account.lamports,
        "owner": str(account.owner),
        "rentEpoch": account.rent_epoch,
        "space": len(account.data),
    }


def deleted_account() -> Account:
    return Account(lamports=0, data=b"", owner=Pubkey.default())


# -------------------------------------------------------------------- filters
AccountFilter = Callable[[Account], bool]


def parse_filters(raw: Any) -> list[AccountFilter]:
    """`getProgramAccounts` / `programSubscribe` filters: dataSize and memcmp."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise invalid_params("Invalid params: filters must be a list")
    if len(raw) > 4:
        raise invalid_params("Too many filters provided; max 4")
    out: list[AccountFilter] = []
    for f in raw:
        if not isinstance(f, dict) or len(f) != 1:
            raise invalid_params(f"Invalid params: bad filter {f!r}")
        if "dataSize" in f:
            out.append(_data_size(int_param(f["dataSize"], "dataSize")))
        elif "memcmp" in f:
            out.append(_memcmp(f["memcmp"]))
        elif "tokenAccountState" in f:
            out.append(_data_size(165))  # SPL token account size
        else:
            raise invalid_params(f"Invalid params: unknown filter {next(iter(f))!r}")
    return out


def _data_size(size: int) -> AccountFilter:
    def check(a: Account) -> bool:
        return len(a.data) == size

    return check


def _memcmp(m: Any) -> AccountFilter:
    if not isinstance(m, dict):
        raise invalid_params("Invalid params: memcmp must be an object")
    offset = int_param(m.get("offset"), "memcmp.offset")
    raw = m.get("bytes")
    encoding = m.get("encoding") or "base58"
    if encoding == "bytes" or isinstance(raw, list):
        if not isinstance(raw, list) or not all(isinstance(b, int) and 0 <= b < 256 for b in raw):
            raise invalid_params("Invalid params: memcmp bytes must be a list of u8")
        needle = bytes(raw)
    else:
        if encoding == "base58" and isinstance(raw, str) and len(raw) > MAX_BASE58_BYTES:
            raise invalid_params("Invalid params: memcmp base58 data too large")
        needle = decode_binary(raw, encoding, "memcmp.bytes")

    def check(a: Account) -> bool:
        return bytes(a.data)[offset : offset + len(needle)] == needle

    return check


def matches(account: Account, filters: Sequence[AccountFilter]) -> bool:
    return all(f(account) for f in filters)
