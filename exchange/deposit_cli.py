"""``perpdex deposit``: a wallet's own on-chain deposit into the clearing program's vault.

Open sign-up (docs/PROTOCOL.md, Account registry): the node's deposit bridge sees the
deposit, registers the wallet (its first deposit) and credits the engine; from then on the
wallet's key signs API requests. With ``--api URL`` the command waits for that and prints the
account (``GET /v1/account``). On a local node, ``--data-dir DIR`` takes the RPC address from
``DIR/node.json`` and uses the node's mint authority (``DIR/keys/authority.json``) as a faucet:
SOL for fees is airdropped and the USDC minted to the wallet's associated token account first.
Elsewhere the wallet deposits from the USDC it holds in that token account.

One JSON object per line on stdout; errors exit non-zero with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from exchange.core.units import QUOTE_PRECISION, U64_MAX
from exchange.liquidation_cli import _load_keypair

AIRDROP_LAMPORTS = 1_000_000_000  # 1 SOL: fees and the User / token account rent


def parse_amount_quote(text: str) -> int:
    """A decimal USDC amount (at most 6 decimals) as exact QUOTE_PRECISION units."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise SystemExit(f"--amount: expected a decimal USDC amount, got {text!r}") from None
    quote = value * QUOTE_PRECISION
    if not value.is_finite() or quote != quote.to_integral_value() or not 0 < quote <= U64_MAX:
        raise SystemExit(
            f"--amount: expected a positive USDC amount with at most 6 decimals, got {text!r}"
        )
    return int(quote)


def _say(**fields: Any) -> None:
    print(json.dumps(fields, sort_keys=True), flush=True)


async def deposit(
    *,
    rpc_url: str,
    keypair: Any,
    amount_quote: int,
    program_id: Any,
    faucet: Any | None,
    api_url: str | None,
    wait_s: float,
) -> dict[str, Any]:
    """Deposit (after the faucet, if any); with ``api_url`` wait until the wallet's key is
    registered and return its account."""
    from solana.rpc.async_api import AsyncClient
    from solana.rpc.commitment import Confirmed

    from settlement.onchain import clearing_program, deposit_from_wallet, read_exchange_setup

    async with AsyncClient(rpc_url, commitment=Confirmed) as client:
        if faucet is not None:
            sig = (await client.request_airdrop(keypair.pubkey(), AIRDROP_LAMPORTS)).value
            await client.confirm_transaction(sig, Confirmed)
        program = clearing_program(client, keypair, program_id)
        setup = await read_exchange_setup(program)
        user = await deposit_from_wallet(
            program, setup, wallet=keypair, amount_quote=amount_quote, mint_authority=faucet
        )
    result: dict[str, Any] = {
        "event": "deposited", "wallet": str(keypair.pubkey()), "user": str(user),
        "amount_quote": amount_quote,
    }  # fmt: skip
    _say(**result)
    if api_url is None:
        return result
    from exchange.client import ApiRequestError, PerpdexRest

    deadline = time.monotonic() + wait_s
    async with PerpdexRest(api_url, keypair) as api:
        while True:
            try:
                me = await api.account()
                break
            except ApiRequestError as exc:
                if exc.code != "AUTH_UNKNOWN_KEY" or time.monotonic() > deadline:
                    raise SystemExit(
                        f"--api {api_url}: expected the wallet registered within {wait_s} s, "
                        f"got {exc}"
                    ) from None
            await asyncio.sleep(0.2)
        balances = {b.sub_account_id: b.collateral_quote for b in await api.balances()}
    result = {
        "event": "registered", "wallet": str(keypair.pubkey()), "owner_id": me.owner_id,
        "sub_account_id": me.sub_account_id, "collateral_quote": balances.get(me.sub_account_id or 0, 0),
    }  # fmt: skip
    _say(**result)
    return result


def cmd_deposit(args: argparse.Namespace) -> int:
    """``perpdex deposit --key K --amount USDC [--data-dir DIR | --rpc-url URL] [--api URL]``."""
    from solders.pubkey import Pubkey

    from settlement.onchain import LOCALNET_PROGRAM_ID

    keypair = _load_keypair(args.key)
    amount_quote = parse_amount_quote(args.amount)
    rpc_url, faucet, api_url = args.rpc_url, None, args.api
    if args.data_dir is not None:
        try:
            endpoints = json.loads((args.data_dir / "node.json").read_text())
        except (OSError, ValueError) as exc:
            raise SystemExit(
                f"--data-dir {args.data_dir}: expected a running node's node.json, got {exc}"
            ) from None
        rpc_url = rpc_url or endpoints["rpc_url"]
        api_url = api_url or endpoints["api_url"]
        faucet = _load_keypair(args.data_dir / "keys" / "authority.json")
    try:
        program_id = Pubkey.from_string(args.program_id) if args.program_id else LOCALNET_PROGRAM_ID
    except ValueError:
        raise SystemExit(
            f"--program-id: expected a base58 address, got {args.program_id!r}"
        ) from None
    asyncio.run(
        deposit(
            rpc_url=rpc_url or "http://127.0.0.1:8899", keypair=keypair,
            amount_quote=amount_quote, program_id=program_id, faucet=faucet,
            api_url=api_url, wait_s=args.wait_s,
        )
    )  # fmt: skip
    return 0


def register(sub: Any) -> None:
    """Add ``perpdex deposit`` to ``perpdex``'s subparsers."""
    dep = sub.add_parser(
        "deposit",
        help="deposit USDC on-chain from a wallet (its first deposit registers it for the API)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    dep.add_argument("--key", required=True, type=Path, help="solana CLI keypair file (JSON)")
    dep.add_argument("--amount", required=True, help="USDC, e.g. 1000 or 12.5 (6 decimals max)")
    dep.add_argument(
        "--data-dir", type=Path, default=None,
        help="a local node's data directory: its RPC and API, and its mint authority as faucet",
    )  # fmt: skip
    dep.add_argument("--rpc-url", default=None, help="default: node.json's, else 127.0.0.1:8899")
    dep.add_argument("--program-id", default=None, help="default: the localnet clearing program")
    dep.add_argument("--api", default=None, help="wait until the API knows the key, print it")
    dep.add_argument("--wait-s", type=float, default=30.0, help="how long to wait for --api")
    dep.set_defaults(func=cmd_deposit)
