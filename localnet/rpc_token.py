"""SPL Token JSON-RPC methods (Token and Token-2022) of the embedded cluster.

Answered from the cluster's account index (every account a transaction touched or a preload
set), with the validator's error messages for a missing or non-token account / mint.
"""

from __future__ import annotations

from typing import Any

from solders.account import Account
from solders.pubkey import Pubkey

from localnet.jsonrpc import (
    account_encoding,
    check_min_context_slot,
    config,
    data_slice,
    encode_account,
    invalid_params,
    param,
    pubkey_param,
)
from localnet.rpc_state import RpcState, method, with_context
from localnet.spl_token import (
    TOKEN_PROGRAMS,
    Mint,
    TokenAccount,
    parse_mint,
    parse_token_account,
    ui_token_amount,
)

MAX_LARGEST_TOKEN_ACCOUNTS = 20


def _account(state: RpcState, pubkey: Pubkey) -> Account:
    acct = state.cluster.get_account(pubkey)
    if acct is None:
        raise invalid_params("Invalid param: could not find account")
    return acct


def _mint(state: RpcState, pubkey: Pubkey, missing: str = "could not find account") -> Mint:
    acct = state.cluster.get_account(pubkey)
    if acct is None:
        raise invalid_params(f"Invalid param: {missing}")
    mint = parse_mint(acct)
    if mint is None:
        raise invalid_params("Invalid param: not a Token mint")
    return mint


def _token_account(state: RpcState, pubkey: Pubkey) -> TokenAccount:
    token = parse_token_account(_account(state, pubkey))
    if token is None:
        raise invalid_params("Invalid param: not a Token account")
    return token


@method("getTokenAccountBalance")
def _get_token_account_balance(state: RpcState, params: list[Any]) -> Any:
    token = _token_account(state, pubkey_param(param(params, 0, "pubkey")))
    check_min_context_slot(config(params, 1), state.cluster.slot)
    mint = _mint(state, token.mint, "could not find mint")
    return with_context(state.cluster, ui_token_amount(token.amount, mint.decimals))


@method("getTokenSupply")
def _get_token_supply(state: RpcState, params: list[Any]) -> Any:
    mint = _mint(state, pubkey_param(param(params, 0, "mint"), "mint"))
    check_min_context_slot(config(params, 1), state.cluster.slot)
    return with_context(state.cluster, ui_token_amount(mint.supply, mint.decimals))


def _token_program_filter(state: RpcState, raw: Any) -> tuple[Pubkey, Pubkey | None]:
    """(token program, mint or None) from `{"mint": ..}` or `{"programId": ..}`."""
    if not isinstance(raw, dict) or len(raw) != 1 or not ({"mint", "programId"} & raw.keys()):
        raise invalid_params(
            'Invalid params: expected {"mint": <pubkey>} or {"programId": <pubkey>}'
        )
    if "mint" in raw:
        mint_key = pubkey_param(raw["mint"], "mint")
        acct = state.cluster.get_account(mint_key)
        if acct is None or acct.owner not in TOKEN_PROGRAMS:
            raise invalid_params("Invalid param: could not find mint")
        return acct.owner, mint_key
    program = pubkey_param(raw["programId"], "programId")
    if program not in TOKEN_PROGRAMS:
        raise invalid_params("Invalid param: unrecognized Token program id")
    return program, None


def _token_accounts_by(state: RpcState, params: list[Any], field: str) -> Any:
    who = pubkey_param(param(params, 0, field), field)
    program, mint = _token_program_filter(state, param(params, 1, "filter"))
    cfg = config(params, 2)
    check_min_context_slot(cfg, state.cluster.slot)
    encoding, slice_ = account_encoding(cfg), data_slice(cfg)
    items = []
    for pubkey, acct in sorted(
        state.cluster.program_accounts(program), key=lambda kv: bytes(kv[0])
    ):
        token = parse_token_account(acct)
        if token is None or (mint is not None and token.mint != mint):
            continue
        if (token.owner if field == "owner" else token.delegate) != who:
            continue
        items.append(
            {
                "pubkey": str(pubkey),
                "account": encode_account(acct, encoding, slice_, state.cluster.get_account),
            }
        )
    return with_context(state.cluster, items)


@method("getTokenAccountsByOwner")
def _get_token_accounts_by_owner(state: RpcState, params: list[Any]) -> Any:
    return _token_accounts_by(state, params, "owner")


@method("getTokenAccountsByDelegate")
def _get_token_accounts_by_delegate(state: RpcState, params: list[Any]) -> Any:
    return _token_accounts_by(state, params, "delegate")


@method("getTokenLargestAccounts")
def _get_token_largest_accounts(state: RpcState, params: list[Any]) -> Any:
    mint_key = pubkey_param(param(params, 0, "mint"), "mint")
    mint = _mint(state, mint_key)
    check_min_context_slot(config(params, 1), state.cluster.slot)
    owner_program = _account(state, mint_key).owner
    holders = [
        (pubkey, token.amount)
        for pubkey, acct in state.cluster.program_accounts(owner_program)
        if (token := parse_token_account(acct)) is not None and token.mint == mint_key
    ]
    holders.sort(key=lambda kv: (-kv[1], bytes(kv[0])))
    value = [
        {"address": str(pubkey), **ui_token_amount(amount, mint.decimals)}
        for pubkey, amount in holders[:MAX_LARGEST_TOKEN_ACCOUNTS]
    ]
    return with_context(state.cluster, value)
