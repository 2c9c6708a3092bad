"""SPL Token / Token-2022 account and mint layouts, and their `jsonParsed` RPC form.

Only the base layouts are read (Token: account 165 bytes, mint 82; Token-2022: the same base,
optionally followed by an account-type byte at offset 165 and TLV extensions, which the parsed
form here leaves out). Anything else is "not parseable", and the RPC answers base64, as the
validator does for accounts it cannot parse.

Amounts stay integers; `uiAmountString` is built from the integer by string arithmetic. The
RPC wire format also wants `uiAmount` as a JSON float: it is derived from that string and is a
display field only.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

from solders.account import Account
from solders.pubkey import Pubkey

TOKEN_PROGRAM_ID: Final = Pubkey.from_string("TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA")
TOKEN_2022_PROGRAM_ID: Final = Pubkey.from_string("TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb")
TOKEN_PROGRAMS: Final = {TOKEN_PROGRAM_ID: "spl-token", TOKEN_2022_PROGRAM_ID: "spl-token-2022"}
NATIVE_MINT: Final = Pubkey.from_string("So11111111111111111111111111111111111111112")

ACCOUNT_LEN: Final = 165
MINT_LEN: Final = 82
ACCOUNT_TYPE_OFFSET: Final = 165  # Token-2022 extended accounts: 1 = mint, 2 = account
_STATES: Final = ("uninitialized", "initialized", "frozen")


@dataclass(frozen=True, slots=True)
class TokenAccount:
    mint: Pubkey
    owner: Pubkey
    amount: int
    delegate: Pubkey | None
    state: int  # 0 uninitialized, 1 initialized, 2 frozen
    is_native: int | None  # rent-exempt reserve of a wrapped-SOL account
    delegated_amount: int
    close_authority: Pubkey | None


@dataclass(frozen=True, slots=True)
class Mint:
    mint_authority: Pubkey | None
    supply: int
    decimals: int
    is_initialized: bool
    freeze_authority: Pubkey | None


def _coption_key(data: bytes, offset: int) -> Pubkey | None:
    (tag,) = struct.unpack_from("<I", data, offset)
    return Pubkey.from_bytes(data[offset + 4 : offset + 36]) if tag == 1 else None


def _is_kind(account: Account, base_len: int, type_byte: int) -> bool:
    if account.owner not in TOKEN_PROGRAMS:
        return False
    n = len(account.data)
    if n == base_len:
        return True
    return (
        account.owner == TOKEN_2022_PROGRAM_ID
        and n > ACCOUNT_TYPE_OFFSET
        and account.data[ACCOUNT_TYPE_OFFSET] == type_byte
    )


def parse_token_account(account: Account) -> TokenAccount | None:
    """The token account in `account`, or None if it is not an initialized one."""
    if not _is_kind(account, ACCOUNT_LEN, 2):
        return None
    data = bytes(account.data)
    state = data[108]
    if state == 0 or state >= len(_STATES):
        return None
    (native_tag,) = struct.unpack_from("<I", data, 109)
    return TokenAccount(
        mint=Pubkey.from_bytes(data[0:32]),
        owner=Pubkey.from_bytes(data[32:64]),
        amount=struct.unpack_from("<Q", data, 64)[0],
        delegate=_coption_key(data, 72),
        state=state,
        is_native=struct.unpack_from("<Q", data, 113)[0] if native_tag == 1 else None,
        delegated_amount=struct.unpack_from("<Q", data, 121)[0],
        close_authority=_coption_key(data, 129),
    )


def parse_mint(account: Account) -> Mint | None:
    """The mint in `account`, or None if it is not an initialized one."""
    if not _is_kind(account, MINT_LEN, 1):
        return None
    data = bytes(account.data)
    if data[45] != 1:
        return None
    return Mint(
        mint_authority=_coption_key(data, 0),
        supply=struct.unpack_from("<Q", data, 36)[0],
        decimals=data[44],
        is_initialized=True,
        freeze_authority=_coption_key(data, 46),
    )


def ui_amount_string(amount: int, decimals: int) -> str:
    """`amount / 10**decimals` as the validator prints it (no trailing zeros, no float)."""
    if decimals == 0:
        return str(amount)
    whole, frac = divmod(amount, 10**decimals)
    frac_text = str(frac).rjust(decimals, "0").rstrip("0")
    return f"{whole}.{frac_text}" if frac_text else str(whole)


def ui_token_amount(amount: int, decimals: int) -> dict[str, Any]:
    text = ui_amount_string(amount, decimals)
    return {
        "amount": str(amount),
        "decimals": decimals,
        "uiAmount": float(text),  # wire-format display field (see module docstring)
        "uiAmountString": text,
    }


def json_parsed(account: Account, mint_decimals: int | None) -> dict[str, Any] | None:
    """The `jsonParsed` data of a token account or mint, or None if not parseable.

    A token account needs its mint's decimals (`mint_decimals`; None when the mint is unknown,
    which makes the account unparseable, as on the validator)."""
    program = TOKEN_PROGRAMS.get(account.owner)
    if program is None:
        return None
    token = parse_token_account(account)
    if token is not None:
        if mint_decimals is None:
            return None
        info: dict[str, Any] = {
            "isNative": token.is_native is not None,
            "mint": str(token.mint),
            "owner": str(token.owner),
            "state": _STATES[token.state],
            "tokenAmount": ui_token_amount(token.amount, mint_decimals),
        }
        if token.delegate is not None:
            info["delegate"] = str(token.delegate)
            info["delegatedAmount"] = ui_token_amount(token.delegated_amount, mint_decimals)
        if token.is_native is not None:
            info["rentExemptReserve"] = ui_token_amount(token.is_native, mint_decimals)
        if token.close_authority is not None:
            info["closeAuthority"] = str(token.close_authority)
        parsed = {"type": "account", "info": info}
    else:
        mint = parse_mint(account)
        if mint is None:
            return None
        parsed = {
            "type": "mint",
            "info": {
                "decimals": mint.decimals,
                "freezeAuthority": str(mint.freeze_authority) if mint.freeze_authority else None,
                "isInitialized": mint.is_initialized,
                "mintAuthority": str(mint.mint_authority) if mint.mint_authority else None,
                "supply": str(mint.supply),
            },
        }
    return {"program": program, "parsed": parsed, "space": len(account.data)}
